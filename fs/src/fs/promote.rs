//! `symlink`: a promotion of a version from one stream to another.

use super::*;

pub(super) fn escape_regex(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl StreamFs {
    /// `ln -s TARGET LINK`: a promotion when TARGET is a version directory
    /// (or below) of another stream and LINK the same path in this one.
    pub fn symlink(
        &self,
        caller: Caller,
        parent: u64,
        name: &str,
        target: &Path,
    ) -> FsResult<Attr> {
        let p = self.path_of(parent)?;
        let path = join(&p, name);
        self.may_write(caller, "symlink", &path)?;
        self.promote_link(&p, &path, target)
            .map_err(|e| refuse(e, "symlink", &format!("{path} -> {}", target.display())))?;
        self.work
            .lock()
            .expect("work lock")
            .links
            .insert(path.clone(), target.display().to_string());
        self.stat_path(&path)
    }

    pub(super) fn promote_link(&self, parent: &str, path: &str, target: &Path) -> FsResult<()> {
        let resolved = self.resolve_link_target(parent, target).ok_or_else(|| {
            FsError::NotPermitted("symlinks may only point at a version of another stream".into())
        })?;
        let (Some(to), Some(from)) = (split(path), split(&resolved)) else {
            return Err(FsError::NotPermitted(
                "symlinks may only point at a version of another stream".into(),
            ));
        };
        if from.stream == to.stream {
            return Err(FsError::NotPermitted(
                "a promotion needs two different streams".into(),
            ));
        }
        if from.rel != to.rel {
            return Err(FsError::Invalid(format!(
                "a promotion keeps paths: link {} in stream {} to the same path in stream {}",
                from.rel, to.stream, from.stream
            )));
        }
        let view = self.current();
        let src = view
            .snapshot
            .streams
            .get(from.stream)
            .ok_or(FsError::NotFound)?;
        if self.resolve(&view, path).is_some() {
            return Err(FsError::Exists);
        }
        let mut products = BTreeSet::new();
        let mut versions = BTreeSet::new();
        for i in src.products.items() {
            if i.path()
                .and_then(|ip| RelPath::new(ip).ok())
                .is_some_and(|ip| ip.is_under(from.rel))
            {
                products.insert(i.product.to_string());
                versions.insert(i.version.to_string());
            }
        }
        let version = match (versions.len(), versions.first()) {
            (1, Some(v)) if from.rel.split('/').any(|c| c == v) => v.clone(),
            (0, _) => {
                return Err(FsError::NotPermitted(format!(
                    "stream {} has no items under {}",
                    from.stream, from.rel
                )));
            }
            _ => {
                return Err(FsError::NotPermitted(format!(
                    "{} is not a version directory (or below one) of stream {}",
                    from.rel, from.stream
                )));
            }
        };
        let alternation: Vec<String> = products.iter().map(|p| escape_regex(p)).collect();
        let filter = ItemFilter::parse(&format!("product_name~^({})$", alternation.join("|")))?;
        let Committed {
            value: report,
            report: c,
        } = self.commit(|txn| {
            let report = promote_in(
                txn,
                &PromoteRequest {
                    from: from.stream,
                    to: to.stream,
                    version: &version,
                    label: None,
                    filters: &[filter],
                    dry_run: false,
                },
            )?;
            if report.added.is_empty() {
                return Err(FsError::Exists);
            }
            Ok(report)
        })?;
        info!(
            "promoted {resolved} to {path}: {} product versions (generation {})",
            report.added.len(),
            c.generation
        );
        Ok(())
    }

    /// The mount path a symlink target names, lexically (`..` climbs the
    /// link's directory); absolute targets must lie in the mount.
    pub(super) fn resolve_link_target(&self, parent: &str, target: &Path) -> Option<String> {
        let (mut comps, rest): (Vec<String>, &Path) = if target.is_absolute() {
            let mnt = self.mountpoint.as_ref()?;
            (vec![], target.strip_prefix(mnt).ok()?)
        } else {
            (
                parent
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect(),
                target,
            )
        };
        for c in rest.components() {
            match c {
                Component::Normal(n) => comps.push(n.to_str()?.to_string()),
                Component::ParentDir => {
                    comps.pop()?;
                }
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        Some(comps.join("/"))
    }
}
