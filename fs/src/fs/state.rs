//! In-flight state: open handles, files parked for their rename, removals not committed yet.

use super::*;

/// An open file handle.
pub(super) enum Handle {
    /// A pool blob or a generated file: reads only.
    Read(File),
    /// Data being written at `path` (mount path).
    Write {
        path: String,
        writer: Option<BlobWriter>,
        opener: Option<u32>,
    },
    /// A document being written into `streams/v1/`.
    Meta {
        path: String,
        buf: Vec<u8>,
        opener: Option<u32>,
    },
    /// A closed document read back before its rename.
    Bytes(Vec<u8>),
    /// Already finalized (flushed): later flushes and the release do nothing.
    Done,
}

/// What a file closed by its opener holds: staged data or a document. Under
/// an rsync staging name it waits here for its rename.
pub(super) enum Parked {
    Blob(Staged),
    Meta(Vec<u8>),
}

/// What the mount holds between requests and not in any generation yet:
/// directories made ahead of their items, files being written or parked,
/// promotions to show once, removals not committed yet.
#[derive(Default)]
pub(super) struct InFlight {
    /// Directories made by `mkdir` (or left by removals) that no item names
    /// yet: what `cp -r` and `rm -r` need between their steps. Mount paths.
    pub(super) dirs: BTreeSet<String>,
    pub(super) parked: BTreeMap<String, Parked>,
    /// Mount paths with an open writer → its size so far.
    pub(super) writing: BTreeMap<String, u64>,
    /// `streams/v1` documents → how many handles write one: builds carry
    /// products files named after their content id, so concurrent copies
    /// of two builds write the same name. Each handle writes a document of
    /// its own, merged at its close.
    pub(super) meta_writers: BTreeMap<String, usize>,
    /// Symlinks just turned into promotions: their target, shown once.
    pub(super) links: BTreeMap<String, String>,
    /// Removals acknowledged but not committed yet (see
    /// [`StreamFs::flush_removals`]): mount path → whether it is a
    /// directory (`rmdir`) rather than an item (`unlink`). Left out of
    /// listings at once, readable by path as every removed path is.
    pub(super) removing: BTreeMap<String, bool>,
    /// When the oldest of `removing` was acknowledged.
    pub(super) removing_since: Option<Instant>,
    /// Generated documents (`streams/v1/index.json`, the products file)
    /// that a copy unlinked to write its own in their place (`tar -x`,
    /// `install -D`): mount path → when. The name resolves to nothing until
    /// it is created again or [`DOC_GRACE`] passes; the generated document
    /// itself stays (see [`StreamFs::unlink`]).
    pub(super) replacing: BTreeMap<String, Instant>,
    /// Documents merged at their close under a name the mount does not
    /// generate (a build's products file): mount path → when, and what was
    /// written. For [`DOC_GRACE`] the name still resolves (not listed), so
    /// that the `chmod` and `utimes` that `install` and `cp -p` make after
    /// `close` find the file they wrote.
    pub(super) merged: BTreeMap<String, (Instant, Vec<u8>)>,
}

impl InFlight {
    /// Whether a copy is replacing the generated document at `path`.
    pub(super) fn is_replacing(&self, path: &str) -> bool {
        self.replacing
            .get(path)
            .is_some_and(|t| t.elapsed() < DOC_GRACE)
    }

    /// What was written at `path` if it was merged moments ago.
    pub(super) fn merged(&self, path: &str) -> Option<&[u8]> {
        self.merged
            .get(path)
            .filter(|(t, _)| t.elapsed() < DOC_GRACE)
            .map(|(_, b)| b.as_slice())
    }

    /// Records a document merged at `path`, forgetting those merged longer
    /// than [`DOC_GRACE`] ago.
    pub(super) fn note_merged(&mut self, path: &str, written: Vec<u8>) {
        self.merged.retain(|_, (t, _)| t.elapsed() < DOC_GRACE);
        self.replacing.retain(|_, t| t.elapsed() < DOC_GRACE);
        self.merged
            .insert(path.to_string(), (Instant::now(), written));
    }

    /// A document is being written at `path` again: it is neither a
    /// replaced generated one nor a merged one any more.
    pub(super) fn writing_doc(&mut self, path: &str) {
        self.replacing.remove(path);
        self.merged.remove(path);
    }
}
