//! `symlink`: a promotion of a version from one stream to another, or an
//! alias of a product beside its directory. The mount decides what a link
//! means (its target, the two streams, the same path in both); core's
//! `promote_path_in` decides what the path promotes, `product_alias` what
//! an alias may be.

use super::*;

impl StreamFs {
    /// `ln -s TARGET LINK`: a promotion when TARGET is a version directory
    /// (or below) of another stream and LINK the same path in this one; an
    /// alias when TARGET is a product's directory of the same stream and
    /// LINK sits beside it.
    pub fn symlink(
        &self,
        caller: Caller,
        parent: u64,
        name: impl AsRef<OsStr>,
        target: &Path,
    ) -> FsResult<Attr> {
        let name = name_to_create(name.as_ref())?;
        let p = self.path_of(parent)?;
        let path = join(&p, name);
        self.may_write(caller, "symlink", &path)?;
        let link = format!("{path} -> {}", target.display());
        if let Some(product) = self
            .alias_target(&p, &path, target)
            .map_err(|e| refuse(e, "symlink", &link))?
        {
            self.alias_link(&path, &product)
                .map_err(|e| refuse(e, "symlink", &link))?;
            return self.stat(&path, true);
        }
        self.promote_link(&p, &path, target)
            .map_err(|e| refuse(e, "symlink", &format!("{path} -> {}", target.display())))?;
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .links
            .insert(path.clone(), target.display().to_string());
        self.stat(&path, true)
    }

    /// The product a link within one stream aliases: `None` when TARGET is
    /// in another stream (a promotion), an error when it is in this one but
    /// names no product's directory beside LINK.
    fn alias_target(&self, parent: &str, path: &str, target: &Path) -> FsResult<Option<String>> {
        let (Some(resolved), Some(to)) = (self.resolve_link_target(parent, target), split(path))
        else {
            return Ok(None);
        };
        let Some(from) = split(&resolved) else {
            return Ok(None);
        };
        if from.stream != to.stream {
            return Ok(None);
        }
        let view = self.current();
        let refused = || {
            FsError::NotPermitted(
                "a symlink within a stream is an alias: it must name a product's directory beside it"
                    .into(),
            )
        };
        if parent_of(from.rel) != parent_of(to.rel) {
            return Err(refused());
        }
        let st = view.snapshot.streams.get(from.stream).ok_or_else(refused)?;
        product_alias::product_dirs(&st.products)
            .into_iter()
            .find(|(_, dir)| dir == from.rel)
            .map(|(product, _)| Some(product))
            .ok_or_else(refused)
    }

    fn alias_link(&self, path: &str, product: &str) -> FsResult<()> {
        if self.resolve(&self.current(), path).is_some() {
            return Err(FsError::Exists);
        }
        let pl = split(path).expect("an alias is in a stream");
        let alias = pl.rel.rsplit('/').next().unwrap_or(pl.rel);
        let Committed { report: c, .. } =
            self.commit(|txn| Ok(product_alias::set(txn, pl.stream, alias, product)?))?;
        info!("{path}: alias of {product} (generation {})", c.generation);
        Ok(())
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
        if self.resolve(&self.current(), path).is_some() {
            return Err(FsError::Exists);
        }
        let rel = RelPath::new(from.rel).map_err(FsError::Invalid)?;
        let Committed {
            value: report,
            report: c,
        } = self.commit(|txn| {
            let report = promote_path_in(txn, from.stream, to.stream, &rel)?;
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
