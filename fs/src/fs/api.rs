//! The types the filesystem API hands to its callers (the FUSE adapter and tests).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

/// What `stat` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// How long the kernel may cache this answer, in seconds: generated
    /// files and transient nodes are not cached at all, items and
    /// directories for [`CACHE_TTL_SECS`].
    pub ttl_secs: u64,
}

/// Who asks.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    /// The asking process (thread group id), when known: a file is
    /// inserted at its opener's `close`, not at the close of a copy of the
    /// descriptor that a forked child inherited (see [`StreamFs::flush`]).
    pub process: Option<u32>,
}

impl Caller {
    /// A caller known by its uid alone.
    pub const fn user(uid: u32) -> Caller {
        Caller { uid, process: None }
    }
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    pub write: bool,
    pub truncate: bool,
}

/// What a `setattr` asks to change.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttrChange {
    /// A new size (`truncate`).
    pub size: Option<u64>,
    /// Mode, owner or times: accepted without effect (see
    /// [`StreamFs::setattr`]).
    pub other: bool,
}

/// A file created and opened (`creat`).
#[derive(Debug)]
pub struct Created {
    pub attr: Attr,
    pub opened: Opened,
}

/// An open file.
#[derive(Debug)]
pub struct Opened {
    pub fh: u64,
    /// A pool blob, immutable: the adapter may hand it to the kernel for
    /// passthrough reads.
    pub backing: Option<BlobFile>,
    /// Reads must come to the daemon with their real sizes (generated files,
    /// whose size changes between generations under the same inode).
    pub direct_io: bool,
}

/// What an inode handed to the kernel is now (see
/// [`StreamFs::known_inodes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelHeld {
    Dir,
    /// A number that follows its path (a file being written, one created
    /// under its path's number): what it names can change at a commit.
    File,
    /// An item that its path still holds: its content, hence its cached
    /// pages, never change; its attributes may (`touch`).
    Item,
    /// A generated document of one generation: nothing about it changes.
    Doc,
    /// An item number whose path holds other content now, or none (see
    /// [`crate::inode`]), or a path that names nothing any more (a removed
    /// directory, once reaped): the kernel's entry for the path, in
    /// directory `parent`, would lead to it until it expires.
    Gone {
        parent: u64,
        name: String,
    },
}

/// An open pool blob and the content it holds.
#[derive(Debug)]
pub struct BlobFile {
    pub file: File,
    pub sha256: String,
}
