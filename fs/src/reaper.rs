//! Periodic reaping of orphans by the running mount (ARCHITECTURE.md §3, "the daemon
//! reaps orphans older than `grace`").
//!
//! The daemon runs core's [`reap_due_orphans`] every [`interval`] — a
//! quarter of the store's grace, at least one second and at most one
//! minute — so a blob is deleted at most one interval after its grace
//! ends. The store logic (what is due, the reaping under the writer lock)
//! lives in core; this module only schedules it and logs.

use std::time::Duration;

use streamfs_core::ops::orphans::reap_due_orphans;
use streamfs_core::store::Store;
use tracing::{info, warn};

/// How often the daemon looks at `orphans.json` for a store whose grace is
/// `grace`.
pub fn interval(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// One round: reaps what is due, if anything (see
/// [`reap_due_orphans`]). Returns how many blobs went.
pub fn reap_due(store: &Store) -> usize {
    match reap_due_orphans(store) {
        Ok(Some(r)) => {
            if !r.reaped.is_empty() {
                info!(
                    "reaped {} orphan(s) older than {}s ({} bytes freed)",
                    r.reaped.len(),
                    store.config().grace.as_secs(),
                    r.bytes_freed
                );
            }
            r.reaped.len()
        }
        Ok(None) => 0,
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
}
