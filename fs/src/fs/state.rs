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
}
