//! Periodic reaping of orphans by the running mount (ARCHITECTURE.md §3, "the daemon
//! reaps orphans older than `grace`").
//!
//! The daemon reads `orphans.json` every [`interval`] — a quarter of the
//! store's grace, at least one second and at most one minute — without any
//! lock, and only when an entry has been orphaned for longer than the grace
//! does it run the same reaping as `mountctl reap-orphans` (under the
//! writer lock, re-checking every blob against the live references). So a
//! blob is deleted at most one interval after its grace ends, and an idle
//! store costs one small file read per interval.

use std::time::Duration;

use streamfs_core::ops::orphans::reap_orphans;
use streamfs_core::store::{Orphans, Store};
use streamfs_core::timefmt;
use tracing::{info, warn};

/// How often the daemon looks at `orphans.json` for a store whose grace is
/// `grace`.
pub fn interval(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Whether some entry of `orphans` has been orphaned longer than `grace`.
/// An entry whose time does not parse counts as due, so that the reaping
/// reports it instead of the daemon skipping it silently forever.
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

/// One round: reaps what is due, if anything. Returns how many blobs went.
pub fn reap_due(store: &Store) -> usize {
    let grace = store.config().grace;
    let orphans = match Orphans::load(&store.orphans_path()) {
        Ok(o) => o,
        Err(e) => {
            warn!("periodic reaping: {e}");
            return 0;
        }
    };
    if !any_due(&orphans, grace) {
        return 0;
    }
    match reap_orphans(store, grace, false, false, None) {
        Ok(r) => {
            if !r.reaped.is_empty() {
                info!(
                    "reaped {} orphan(s) older than {}s ({} bytes freed)",
                    r.reaped.len(),
                    grace.as_secs(),
                    r.bytes_freed
                );
            }
            r.reaped.len()
        }
        Err(e) => {
            warn!("periodic reaping: {e}");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_a_quarter_of_the_grace_within_bounds() {
        assert_eq!(interval(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(interval(Duration::from_secs(120)), Duration::from_secs(30));
        assert_eq!(
            interval(Duration::from_secs(3 * 86400)),
            Duration::from_secs(60)
        );
    }

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
