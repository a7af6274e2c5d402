//! find-orphans and reap-orphans.

use std::path::Path;
use std::time::Duration;

use crate::error::Result;
use crate::store::{Orphans, Pool, Store, referenced};
use crate::timefmt;

#[derive(Debug, Default)]
pub struct FindReport {
    /// Every orphan now recorded, pool path → first seen.
    pub orphans: Orphans,
    pub added: Vec<String>,
    pub dropped: Vec<String>,
}

/// Records every blob no stream references (keeping first-seen times, dropping
/// entries referenced again) in `orphans_json` (the store's `orphans.json`
/// when `None`).
pub fn find_orphans(store: &Store, orphans_json: Option<&Path>) -> Result<FindReport> {
    let _txn = store.begin()?;
    let path = orphans_json
        .map(Path::to_path_buf)
        .unwrap_or_else(|| store.orphans_path());
    let snap = store.snapshot()?;
    let refs = referenced(&snap.streams);
    let before = Orphans::load(&path)?;
    let stamp = timefmt::rfc2822(timefmt::now());
    let mut report = FindReport::default();
    for sha in store.pool().list()? {
        if refs.contains(&sha) {
            continue;
        }
        let key = Pool::rel_path(&sha);
        let t = before.entries.get(&key).cloned().unwrap_or_else(|| {
            report.added.push(key.clone());
            stamp.clone()
        });
        report.orphans.entries.insert(key, t);
    }
    report.dropped = before
        .entries
        .keys()
        .filter(|k| !report.orphans.entries.contains_key(*k))
        .cloned()
        .collect();
    if report.orphans != before {
        report.orphans.save(&path)?;
    }
    Ok(report)
}

#[derive(Debug, Default)]
pub struct ReapReport {
    pub reaped: Vec<String>,
    pub kept: Vec<String>,
    /// Entries dropped because their blob is referenced again or gone.
    pub stale: Vec<String>,
    pub bytes_freed: u64,
}

/// Deletes blobs orphaned for longer than `older` (all of them with `now`).
/// Each blob is re-checked against the current references under the writer
/// lock, so only truly unreferenced data is ever deleted. Removed paths that
/// pointed at reaped blobs stop being readable (a new generation is
/// committed when any was).
pub fn reap_orphans(
    store: &Store,
    older: Duration,
    now: bool,
    dry_run: bool,
    orphans_json: Option<&Path>,
) -> Result<ReapReport> {
    let mut txn = store.begin()?;
    let path = orphans_json
        .map(Path::to_path_buf)
        .unwrap_or_else(|| store.orphans_path());
    let mut orphans = Orphans::load(&path)?;
    let refs = txn.referenced();
    let t_now = timefmt::now();
    let mut report = ReapReport::default();
    for (key, when) in orphans.entries.clone() {
        let sha = key.rsplit('/').next().unwrap_or_default().to_string();
        if refs.contains(&sha) || !store.pool().contains(&sha) {
            report.stale.push(key.clone());
            orphans.entries.remove(&key);
            continue;
        }
        let since = timefmt::parse_rfc2822(&when)?;
        let age = (t_now - since).to_std().unwrap_or_default();
        if !now && age < older {
            report.kept.push(key);
            continue;
        }
        report.bytes_freed += std::fs::metadata(store.pool().path(&sha))
            .map(|m| m.len())
            .unwrap_or(0);
        if !dry_run {
            store.pool().remove(&sha)?;
            orphans.entries.remove(&key);
        }
        report.reaped.push(key);
    }
    if dry_run {
        return Ok(report);
    }
    orphans.save(&path)?;
    // Drop removed-path entries whose blobs are gone.
    let affected: Vec<String> = txn
        .streams()
        .iter()
        .filter(|(_, s)| {
            s.removed
                .values()
                .any(|r| !store.pool().contains(&r.blob.sha256))
        })
        .map(|(n, _)| n.clone())
        .collect();
    for s in affected {
        txn.stream_mut(&s)?;
    }
    txn.commit()?;
    Ok(report)
}

/// Whether some entry of `orphans` has been orphaned longer than `grace`.
/// An entry whose time does not parse counts as due, so that the reaping
/// reports it instead of a periodic caller skipping it silently forever.
pub fn any_due(orphans: &Orphans, grace: Duration) -> bool {
    let now = timefmt::now();
    orphans
        .entries
        .values()
        .any(|t| match timefmt::parse_rfc2822(t) {
            Ok(since) => (now - since).to_std().unwrap_or_default() >= grace,
            Err(_) => true,
        })
}

/// The reaping a running mount does periodically: reads `orphans.json`
/// without any lock and, only when an entry has been orphaned for longer
/// than the store's grace, runs [`reap_orphans`] (under the writer lock,
/// re-checking every blob against the live references). None when nothing
/// was due, so an idle store costs one small file read.
pub fn reap_due_orphans(store: &Store) -> Result<Option<ReapReport>> {
    let grace = store.config().grace;
    let orphans = Orphans::load(&store.orphans_path())?;
    if !any_due(&orphans, grace) {
        return Ok(None);
    }
    reap_orphans(store, grace, false, false, None).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entries_older_than_the_grace_are_due() {
        let now = timefmt::now();
        let mut o = Orphans::default();
        o.entries.insert(
            "pool/sha256/ab/ab".into(),
            timefmt::rfc2822(timefmt::from_unix(now.timestamp() - 10)),
        );
        assert!(any_due(&o, Duration::from_secs(5)));
        assert!(!any_due(&o, Duration::from_secs(60)));
        o.entries
            .insert("pool/sha256/cd/cd".into(), "not a time".into());
        assert!(any_due(&o, Duration::from_secs(60)));
    }
}
