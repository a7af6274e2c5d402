//! The filesystem API: every operation of the mount as a plain method over
//! mount paths and inode numbers, returning `Result<_, FsError>`. It knows
//! nothing of the kernel protocol (see `fuse.rs`), so tests call it directly.
//!
//! What the mount shows is derived from the store's current generation
//! (ARCHITECTURE.md §3): one directory per stream; the directories and files named by
//! the paths of the items of published versions; `streams/v1/` with the
//! generated metadata. Writes turn into store operations: a file closed is an
//! insert, a products file written into `streams/v1/` an insert by metadata,
//! `unlink` a removal, `symlink` a promotion. Every refusal is logged once,
//! with its reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use streamfs_core::ops::product_alias;
use streamfs_core::ops::promote::promote_path_in;
use streamfs_core::ops::put::{insert_metadata, put_blob};
use streamfs_core::ops::remove::remove_path;
use streamfs_core::relpath::RelPath;
use streamfs_core::store::pool::{BlobWriter, Staged};
use streamfs_core::store::publish::unpublishable_versions;
use streamfs_core::store::{BlobRef, Snapshot, Store};
use streamfs_core::streams::Products;
use streamfs_core::{Error, timefmt};
use tracing::{debug, info, warn};

use crate::inode::{Content, Doc, InodeTable, ItemStamp, ROOT, doc_ino, ino_of, item_ino};
use streamfs_core::store::verify::BlobVerifier;

mod api;
mod commit;
mod error;
mod handles;
mod insert;
mod listing;
mod lookup;
mod paths;
mod promote;
mod read;
mod remove;
mod state;
#[cfg(test)]
mod tests;
mod unsupported;
mod view;

pub use api::{Attr, AttrChange, BlobFile, Caller, Created, KernelHeld, Kind, OpenMode, Opened};
pub use commit::tracking_commits;
pub use error::{FsError, FsResult};
pub use listing::{DirEntry, DirectoryPlusReplier, DirectoryReplier};
pub use paths::staging_target;

use commit::Committed;
use error::refuse;
use paths::{StreamPath, is_v1, join, name_to_create, name_to_find, parent_of, split};
use state::{Handle, InFlight, Parked};
use view::{FileInfo, Node, View};

/// How long the kernel may keep the entries and attributes of items and
/// directories. They change only at a commit, and every commit (the mount's
/// own and those made beside it) invalidates the attributes of every inode
/// the kernel was given and the entries of paths that lead elsewhere now
/// (the mount's generation watcher), so a long lifetime costs no
/// staleness; it saves a `lookup` and a `getattr` round trip per path on
/// every `find`, `ls -l` or nginx `open` after the first, which on a mount
/// whose opens the kernel answers is every request to the daemon. Listings
/// the kernel caches (see `FuseFs::opendir`) are dropped by the kernel
/// itself when the directory changes through the mount (`unlink`, `rmdir`,
/// `create`, …), so a removal leaves them at once.
pub const CACHE_TTL_SECS: u64 = 3600;

/// How many blobs [`StreamFs::read_by_inode`] keeps open: as many as nginx
/// workers would read at once, with room to spare.
const OPEN_BLOBS: NonZeroUsize = NonZeroUsize::new(256).expect("non-zero");

/// How long removals acknowledged by `unlink` may wait for more before the
/// generation watcher commits them (see [`StreamFs::flush_removals`]).
pub const REMOVAL_WINDOW: Duration = Duration::from_millis(200);

/// How long a `streams/v1` document name keeps its in-between state after
/// a copy touched it (see `InFlight::replacing` and `InFlight::merged`):
/// the moment between `tar`'s `unlink` and its `create`, or between
/// `install`'s `close` and its `chmod`.
pub const DOC_GRACE: Duration = Duration::from_secs(5);

/// The mount's filesystem.
pub struct StreamFs {
    store: Store,
    owner: (u32, u32),
    mountpoint: Option<PathBuf>,
    inodes: InodeTable,
    view: Mutex<Arc<View>>,
    /// Signalled (with `view`) when a reload moved the view to a newer
    /// generation, so the generation watcher invalidates the kernel's caches
    /// right after the mount's own commits, not at its next poll.
    view_changed: Condvar,
    /// One reload at a time: after a commit, the committing request and the
    /// watcher would otherwise both rebuild the view (the second for
    /// nothing), and a slow rebuild could replace a newer view with an
    /// older one.
    reloading: Mutex<()>,
    /// One commit of pending removals at a time.
    flushing: Mutex<()>,
    in_flight: Mutex<InFlight>,
    handles: Mutex<HashMap<u64, Arc<Mutex<Handle>>>>,
    next_fh: AtomicU64,
    /// Blobs are hashed before they are served (see `verify`).
    blobs: BlobVerifier,
    /// Blobs read by [`StreamFs::read_by_inode`], kept open: the kernel
    /// reads a large file in many requests.
    open_blobs: Mutex<LruCache<String, Arc<File>>>,
    /// The store is on a read-only filesystem: every write fails with
    /// `EROFS`.
    read_only: bool,
}

impl StreamFs {
    /// The filesystem over `store`; `mountpoint` resolves absolute symlink
    /// targets that point into the mount.
    pub fn new(store: Store, mountpoint: Option<PathBuf>) -> FsResult<StreamFs> {
        let meta = std::fs::metadata(store.root())?;
        let view = View::build(&store)?;
        let read_only = store.on_read_only_fs();
        Ok(StreamFs {
            blobs: BlobVerifier::default(),
            open_blobs: Mutex::new(LruCache::new(OPEN_BLOBS)),
            read_only,
            owner: (meta.uid(), meta.gid()),
            store,
            mountpoint,
            inodes: InodeTable::default(),
            view: Mutex::new(Arc::new(view)),
            view_changed: Condvar::new(),
            reloading: Mutex::new(()),
            flushing: Mutex::new(()),
            in_flight: Mutex::new(InFlight::default()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Files open through the mount now.
    pub fn open_handles(&self) -> usize {
        self.handles.lock().expect("handles lock").len()
    }

    /// Whether the store is on a read-only filesystem (the mount is then
    /// read-only too).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The generation shown.
    pub fn generation(&self) -> u64 {
        self.current().generation
    }

    /// Picks up a generation committed beside the mount (by `mountctl`) and
    /// returns the generation shown. One `readlink`: the mount's watcher
    /// calls it periodically, so requests never pay for it.
    pub fn refresh(&self) -> u64 {
        let v = self.current();
        match self.store.current_generation() {
            Ok(g) if g != v.generation => self.reload().unwrap_or(v).generation,
            _ => v.generation,
        }
    }

    /// Every inode handed to the kernel and what it is now, for cache
    /// invalidation.
    pub fn known_inodes(&self) -> Vec<(u64, KernelHeld)> {
        let view = self.current();
        self.inodes
            .all()
            .into_iter()
            .map(|n| {
                let (ino, path) = (n.ino, n.path);
                let known = match (n.content, self.resolve(&view, &path)) {
                    (Some(Content::Doc(_)), _) => KernelHeld::Doc,
                    (Some(Content::Item(i)), Some(Node::Blob(f))) if f.blob.sha256 == i.sha256 => {
                        KernelHeld::Item
                    }
                    (_, Some(Node::Dir)) => KernelHeld::Dir,
                    // Entries the kernel keeps an hour, leading where the
                    // path no longer does; unless the kernel dropped the
                    // entry itself: telling it again takes the directory's
                    // lock (see `KernelCaches::drop_all`). Other numbers'
                    // entries are not cached.
                    (Some(Content::Item(_) | Content::Dir), _) if !n.dropped => KernelHeld::Gone {
                        parent: ino_of(parent_of(&path)),
                        name: path.rsplit('/').next().unwrap_or(&path).to_string(),
                    },
                    _ => KernelHeld::File,
                };
                (ino, known)
            })
            .collect()
    }

    /// The view requests are answered from: the mount's own commits reload
    /// it at once, [`StreamFs::refresh`] picks up the others.
    fn current(&self) -> Arc<View> {
        self.view.lock().expect("view lock").clone()
    }

    /// Waits up to `timeout` for the view to leave generation `seen` (a
    /// commit of the mount's own), then picks up commits made beside the
    /// mount ([`StreamFs::refresh`]). Returns the generation shown.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        let v = self.view.lock().expect("view lock");
        let (v, _) = self
            .view_changed
            .wait_timeout_while(v, timeout, |v| v.generation == seen)
            .expect("view lock");
        let g = v.generation;
        drop(v);
        if g != seen { g } else { self.refresh() }
    }

    /// Whether `caller` may change the store: root and the store's owner
    /// only (ARCHITECTURE.md §3), whatever the mode bits shown say.
    pub fn can_write(&self, caller: Caller) -> bool {
        caller.uid == 0 || caller.uid == self.owner.0
    }

    /// `access(2)`: everything is readable by whoever the mount lets in;
    /// writing is for root and the store's owner (checked again where it
    /// happens), so `test -w` answers what a write would. Not a refusal
    /// worth a log line: it is a question.
    pub fn access(&self, caller: Caller, ino: u64, write: bool) -> FsResult<()> {
        self.getattr(ino)?;
        if write && !self.can_write(caller) {
            return Err(FsError::Denied(format!(
                "uid {} is neither root nor the store's owner",
                caller.uid
            )));
        }
        Ok(())
    }

    fn may_write(&self, caller: Caller, op: &'static str, path: &str) -> FsResult<()> {
        if self.read_only {
            return Err(refuse(
                FsError::Core(Error::ReadOnly {
                    path: self.store.root().to_path_buf(),
                }),
                op,
                path,
            ));
        }
        if self.can_write(caller) {
            Ok(())
        } else {
            Err(refuse(
                FsError::Denied(format!(
                    "uid {} is neither root nor the store's owner",
                    caller.uid
                )),
                op,
                path,
            ))
        }
    }

    /// Whether any inode is the root (for the adapter's sanity checks).
    pub fn is_root(ino: u64) -> bool {
        ino == ROOT
    }

    /// The inode number of a mount path, registering it.
    pub fn ino(&self, path: &str) -> u64 {
        self.inodes.register(path)
    }
}
