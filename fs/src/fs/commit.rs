//! Commits of the mount's own: every write that changes metadata (an
//! insert, an insert by metadata, a promotion, a batch of removals) is one
//! generation, made here (ARCHITECTURE.md §2).

use super::*;
use streamfs_core::store::{CommitReport, Txn};

thread_local! {
    /// Commits made on this thread: a request is served on one thread, so
    /// [`tracking_commits`] learns whether that request committed.
    static COMMITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Runs `op` (one request) and says whether it committed a generation of
/// the mount's own: the adapter then drops the kernel's caches before
/// answering (see `crate::caches`).
pub fn tracking_commits<T>(op: impl FnOnce() -> T) -> (T, bool) {
    let before = COMMITS.get();
    let r = op();
    (r, COMMITS.get() != before)
}

/// What a commit's operation returned, with the commit's report.
pub(super) struct Committed<T> {
    pub(super) value: T,
    pub(super) report: CommitReport,
}

impl StreamFs {
    /// Runs `op` in one commit of the mount's own, after committing the
    /// removals acknowledged before it (so operations reach the store in
    /// the order they were acknowledged), then moves the view to the new
    /// generation. When `op` fails nothing is committed.
    pub(super) fn commit<T>(
        &self,
        op: impl FnOnce(&mut Txn<'_>) -> FsResult<T>,
    ) -> FsResult<Committed<T>> {
        self.flush_removals()?;
        self.commit_now(op)
    }

    /// [`StreamFs::commit`] without committing pending removals first: the
    /// commit of those removals itself.
    pub(super) fn commit_now<T>(
        &self,
        op: impl FnOnce(&mut Txn<'_>) -> FsResult<T>,
    ) -> FsResult<Committed<T>> {
        // The view's state is the current generation's unless another
        // writer committed since; the store checks that under its lock.
        let mut txn = self.store.begin_from(Some(&self.current().snapshot))?;
        let value = op(&mut txn)?;
        let (report, state) = txn.commit_with_state()?;
        COMMITS.set(COMMITS.get() + 1);
        self.reload_from(Some(state));
        Ok(Committed { value, report })
    }
}
