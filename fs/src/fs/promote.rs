//! `symlink`: a promotion of a version from one stream to another. The
//! mount decides what a link means (its target, the two streams, the same
//! path in both); core's `promote_path_in` decides what the path promotes.

use super::*;

impl StreamFs {
    /// `ln -s TARGET LINK`: a promotion when TARGET is a version directory
    /// (or below) of another stream and LINK the same path in this one.
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
        self.promote_link(&p, &path, target)
            .map_err(|e| refuse(e, "symlink", &format!("{path} -> {}", target.display())))?;
        self.in_flight
            .lock()
            .expect("in-flight lock")
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
