//! The filesystem API: every operation of the mount as a plain method over
//! mount paths and inode numbers, returning `Result<_, FsError>`. It knows
//! nothing of the kernel protocol (see `fuse.rs`), so tests call it directly.
//!
//! What the mount shows is derived from the store's current generation
//! (DESIGN §3): one directory per stream; the directories and files named by
//! the paths of the items of published versions; `streams/v1/` with the
//! generated metadata. Writes turn into store operations: a file closed is an
//! insert, a products file written into `streams/v1/` an insert by metadata,
//! `unlink` a removal, `symlink` a promotion. Every refusal is logged once,
//! with its reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use streamfs_core::ops::promote::{PromoteRequest, promote_in};
use streamfs_core::ops::put::{insert_metadata, put_blob};
use streamfs_core::ops::remove::remove_path;
use streamfs_core::relpath::RelPath;
use streamfs_core::store::pool::{BlobWriter, Staged};
use streamfs_core::store::publish::unpublishable_versions;
use streamfs_core::store::{BlobRef, Snapshot, Store};
use streamfs_core::streams::Products;
use streamfs_core::streams::filter::ItemFilter;
use streamfs_core::{Error, timefmt};
use tracing::{debug, info, warn};

use crate::inode::{Content, Doc, InodeTable, ItemStamp, ROOT, doc_ino, ino_of, item_ino};
use crate::verify::BlobVerifier;

/// Why an operation failed; `errno.rs` maps it.
#[derive(Debug)]
pub enum FsError {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    /// Refused: the caller may not write, or no template explains the path.
    Denied(String),
    /// Refused: the operation has no meaning on this object.
    NotPermitted(String),
    Invalid(String),
    Busy(String),
    /// An inode number that no longer stands for what its path holds.
    Stale,
    BadHandle,
    /// The data or metadata written could not be inserted.
    Failed(String),
    Io(std::io::Error),
    Core(Error),
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsError::NotFound => write!(f, "no such file or directory"),
            FsError::Exists => write!(f, "already exists"),
            FsError::NotDir => write!(f, "not a directory"),
            FsError::IsDir => write!(f, "is a directory"),
            FsError::NotEmpty => write!(f, "directory not empty"),
            FsError::Denied(m)
            | FsError::NotPermitted(m)
            | FsError::Invalid(m)
            | FsError::Busy(m)
            | FsError::Failed(m) => write!(f, "{m}"),
            FsError::BadHandle => write!(f, "bad file handle"),
            FsError::Stale => write!(f, "stale inode: the path holds other content now"),
            FsError::Io(e) => write!(f, "{e}"),
            FsError::Core(e) => write!(f, "{e}"),
        }
    }
}

impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        FsError::Core(e)
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        FsError::Io(e)
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// Logs a refusal (one line, what and why) and returns it.
fn refuse(e: FsError, op: &str, path: &str) -> FsError {
    warn!("refused {op} {path}: {e}");
    e
}

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

/// A READDIRPLUS entry: inode, kind, name, attributes (none when the entry
/// vanished meanwhile).
pub type PlusEntry = (u64, Kind, String, Option<Attr>);

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
pub enum Known {
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

/// A file's content when the store is not the place to read it from.
#[derive(Clone, Debug)]
struct FileInfo {
    blob: BlobRef,
    mtime: i64,
}

/// One stream as the current generation shows it.
#[derive(Debug, Default)]
struct StreamView {
    /// Items of published versions, by stream-relative path.
    files: BTreeMap<String, FileInfo>,
    /// Directory (stream-relative, `""` the stream's root) → name → is a
    /// directory.
    children: BTreeMap<String, BTreeMap<String, bool>>,
    /// Readable by path, not listed: removed paths until reaped, items of
    /// versions not published yet whose data is present, and shared files
    /// kept until a product of their version exists.
    hidden: BTreeMap<String, FileInfo>,
    /// The directories of hidden paths: resolvable, so the paths are.
    hidden_dirs: BTreeSet<String>,
    /// Generated `streams/v1` documents, by name.
    generated: BTreeMap<String, Doc>,
}

#[derive(Debug)]
struct View {
    generation: u64,
    snapshot: Snapshot,
    /// Modification time of the generation: that of directories.
    mtime: i64,
    streams: BTreeMap<String, StreamView>,
}

impl View {
    fn build(store: &Store) -> FsResult<View> {
        let snapshot = store.snapshot()?;
        let mtime = std::fs::metadata(&snapshot.dir)
            .map(|m| m.mtime())
            .unwrap_or(0);
        let pool = store.pool();
        let mut streams = BTreeMap::new();
        for (name, st) in &snapshot.streams {
            let mut v = StreamView::default();
            let hold = unpublishable_versions(st, pool);
            for item in st.products.items() {
                let (Some(path), Some(sha)) = (item.path(), item.sha256()) else {
                    continue;
                };
                let info = FileInfo {
                    blob: BlobRef {
                        sha256: sha.to_string(),
                        size: item.size().unwrap_or(0),
                    },
                    mtime: st.mtimes.get(path).copied().unwrap_or(mtime),
                };
                if hold.contains(&(item.product.to_string(), item.version.to_string())) {
                    if pool.contains(sha) {
                        v.hidden.insert(path.to_string(), info);
                    }
                    continue;
                }
                v.files.insert(path.to_string(), info);
            }
            for (path, r) in &st.removed {
                if !v.files.contains_key(path) {
                    v.hidden.entry(path.clone()).or_insert(FileInfo {
                        blob: r.blob.clone(),
                        mtime: r.at,
                    });
                }
            }
            for (path, b) in &st.shared {
                if !v.files.contains_key(path) {
                    v.hidden.entry(path.clone()).or_insert(FileInfo {
                        blob: b.clone(),
                        mtime: st.mtimes.get(path).copied().unwrap_or(mtime),
                    });
                }
            }
            for path in v.hidden.keys() {
                let mut d = parent_of(path);
                while !d.is_empty() {
                    v.hidden_dirs.insert(d.to_string());
                    d = parent_of(d);
                }
            }
            for path in v.files.keys() {
                let mut dir = String::new();
                let comps: Vec<&str> = path.split('/').collect();
                for (i, c) in comps.iter().enumerate() {
                    let is_dir = i + 1 < comps.len();
                    v.children
                        .entry(dir.clone())
                        .or_default()
                        .entry(c.to_string())
                        .or_insert(is_dir);
                    if !dir.is_empty() {
                        dir.push('/');
                    }
                    dir.push_str(c);
                }
            }
            let v1 = snapshot.streams_v1(name);
            if let Ok(rd) = std::fs::read_dir(&v1) {
                for e in rd.flatten() {
                    let doc = e.file_name().to_string_lossy().into_owned();
                    let file = File::open(e.path())?;
                    let m = file.metadata()?;
                    let path = format!("{name}/streams/v1/{doc}");
                    v.generated.insert(
                        doc,
                        Doc {
                            ino: doc_ino(&path, Doc::file_id(&m)),
                            file: Arc::new(file),
                            size: m.len(),
                            mtime: m.mtime(),
                        },
                    );
                }
            }
            streams.insert(name.clone(), v);
        }
        Ok(View {
            generation: snapshot.generation,
            snapshot,
            mtime,
            streams,
        })
    }
}

/// What a mount path names.
#[derive(Clone, Debug)]
enum Node {
    Dir,
    Blob(FileInfo),
    Generated(Doc),
    /// A file being written, or written and waiting for its rename.
    Pending(u64),
}

/// An open file handle.
enum Handle {
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

/// A file closed under an rsync staging name, waiting for its rename.
enum Parked {
    Blob(Staged),
    Meta(Vec<u8>),
}

#[derive(Default)]
struct Work {
    /// Directories made by `mkdir` (or left by removals) that no item names
    /// yet: what `cp -r` and `rm -r` need between their steps. Mount paths.
    dirs: BTreeSet<String>,
    parked: BTreeMap<String, Parked>,
    /// Mount paths with an open writer → its size so far.
    writing: BTreeMap<String, u64>,
    /// `streams/v1` documents → how many handles write one: builds carry
    /// products files named after their content id, so concurrent copies
    /// of two builds write the same name. Each handle writes a document of
    /// its own, merged at its close.
    meta_writers: BTreeMap<String, usize>,
    /// Symlinks just turned into promotions: their target, shown once.
    links: BTreeMap<String, String>,
    /// Removals acknowledged but not committed yet (see
    /// [`StreamFs::flush_removals`]): mount path → whether it is a
    /// directory (`rmdir`) rather than an item (`unlink`). Left out of
    /// listings at once, readable by path as every removed path is.
    removing: BTreeMap<String, bool>,
    /// When the oldest of `removing` was acknowledged.
    removing_since: Option<Instant>,
}

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
    work: Mutex<Work>,
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

/// A mount path split at its stream.
struct Place<'a> {
    stream: &'a str,
    rel: &'a str,
}

fn split(path: &str) -> Option<Place<'_>> {
    if path.is_empty() {
        return None;
    }
    let (stream, rel) = path.split_once('/').unwrap_or((path, ""));
    Some(Place { stream, rel })
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// rsync's temporary name for `name`: `.name.XXXXXX`.
pub fn staging_target(name: &str) -> Option<&str> {
    let inner = name.strip_prefix('.')?;
    let (base, suffix) = inner.rsplit_once('.')?;
    (suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()) && !base.is_empty())
        .then_some(base)
}

fn is_v1(rel: &str) -> bool {
    rel.starts_with("streams/v1/")
}

impl StreamFs {
    /// The filesystem over `store`; `mountpoint` resolves absolute symlink
    /// targets that point into the mount.
    pub fn new(store: Store, mountpoint: Option<PathBuf>) -> FsResult<StreamFs> {
        let meta = std::fs::metadata(store.root())?;
        let view = View::build(&store)?;
        let read_only = on_read_only_fs(store.root());
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
            work: Mutex::new(Work::default()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
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
    pub fn known_inodes(&self) -> Vec<(u64, Known)> {
        let view = self.current();
        self.inodes
            .all()
            .into_iter()
            .map(|n| {
                let (ino, path) = (n.ino, n.path);
                let known = match (n.content, self.resolve(&view, &path)) {
                    (Some(Content::Doc(_)), _) => Known::Doc,
                    (Some(Content::Item(i)), Some(Node::Blob(f))) if f.blob.sha256 == i.sha256 => {
                        Known::Item
                    }
                    (_, Some(Node::Dir)) => Known::Dir,
                    // Entries the kernel keeps an hour, leading where the
                    // path no longer does; unless the kernel dropped the
                    // entry itself: telling it again takes the directory's
                    // lock (see `KernelCaches::drop_all`). Other numbers'
                    // entries are not cached.
                    (Some(Content::Item(_) | Content::Dir), _) if !n.dropped => Known::Gone {
                        parent: ino_of(parent_of(&path)),
                        name: path.rsplit('/').next().unwrap_or(&path).to_string(),
                    },
                    _ => Known::File,
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

    fn reload(&self) -> Option<Arc<View>> {
        let _one = self.reloading.lock().expect("reload lock");
        let cur = self.current();
        if self
            .store
            .current_generation()
            .is_ok_and(|g| g == cur.generation)
        {
            // Another reload got there first.
            return Some(cur);
        }
        match View::build(&self.store) {
            Ok(nv) => {
                let nv = Arc::new(nv);
                {
                    let mut v = self.view.lock().expect("view lock");
                    if nv.generation < v.generation {
                        return Some(v.clone());
                    }
                    *v = nv.clone();
                }
                self.view_changed.notify_all();
                let mut w = self.work.lock().expect("work lock");
                // Directories made by mkdir that now hold items exist
                // through them: forgetting them lets a directory go when
                // its items go without `rmdir` (keep retention, clean-md).
                w.dirs.retain(|d| {
                    split(d).is_none_or(|pl| {
                        nv.streams
                            .get(pl.stream)
                            .is_none_or(|s| !s.children.contains_key(pl.rel))
                    })
                });
                Some(nv)
            }
            Err(e) => {
                warn!("reloading the store failed: {e}");
                None
            }
        }
    }

    /// Whether `caller` may change the store: root and the store's owner
    /// only (DESIGN §3), whatever the mode bits shown say.
    pub fn can_write(&self, caller: Caller) -> bool {
        caller.uid == 0 || caller.uid == self.owner.0
    }

    /// Starts a commit of the mount's own, after committing the removals
    /// acknowledged before it (so operations reach the store in the order
    /// they were acknowledged).
    fn begin(&self) -> FsResult<streamfs_core::store::Txn<'_>> {
        self.flush_removals()?;
        Ok(self.store.begin()?)
    }

    /// Commits the removals acknowledged so far (`unlink` and `rmdir` of
    /// the mount), as one generation.
    ///
    /// `rm -r` of a version directory unlinks each of its items (14 in a
    /// meph2 build) and removes each of its directories; a commit per
    /// `unlink` would cost as many generations, each rewriting and
    /// re-signing the whole stream's metadata. So `unlink` only records the
    /// removal (the path leaves listings at once and stays readable by path,
    /// as removed paths do), and the batch is committed:
    /// - at the `rmdir` of a version directory (or one above it, per the
    ///   stream's path templates) that holds every pending removal: the last
    ///   step of `rm -r`, so one commit per version removed;
    /// - before anything reads the generated metadata (`streams/v1`, looked
    ///   up or opened through the mount), so removed paths also leave the
    ///   metadata at once for every client;
    /// - before any other commit of the mount's own (ordering);
    /// - by the generation watcher once the oldest removal is
    ///   [`REMOVAL_WINDOW`] old (a lone `rm FILE`, or `rm -r` below a
    ///   version directory), and at unmount.
    ///
    /// The price: an acknowledged removal not committed yet is lost if the
    /// daemon dies within that window (the items stay published); inserts,
    /// which a crash must not lose, still commit before `close` returns.
    pub fn flush_removals(&self) -> FsResult<()> {
        let _one = self.flushing.lock().expect("flush lock");
        let batch: Vec<(String, bool)> = {
            let w = self.work.lock().expect("work lock");
            w.removing.iter().map(|(p, d)| (p.clone(), *d)).collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        let files: Vec<&str> = batch
            .iter()
            .filter(|(_, is_dir)| !is_dir)
            .map(|(p, _)| p.as_str())
            .collect();
        // Only listed paths leave their directories listed: removing a kept
        // shared file (never published, not listed) changes no listing.
        let listed: Vec<&str> = {
            let view = self.current();
            files
                .iter()
                .copied()
                .filter(|f| {
                    split(f).is_some_and(|Place { stream, rel }| {
                        view.streams
                            .get(stream)
                            .is_some_and(|sv| sv.files.contains_key(rel))
                    })
                })
                .collect()
        };
        let result = if files.is_empty() {
            Ok(())
        } else {
            self.commit_removals(&files)
        };
        let mut w = self.work.lock().expect("work lock");
        for (p, _) in &batch {
            w.removing.remove(p);
        }
        if w.removing.is_empty() {
            w.removing_since = None;
        }
        if result.is_ok() {
            // Keep the emptied directories until `rm -r` removes them
            // (those it removed already stay gone).
            for f in &listed {
                let mut d = parent_of(f);
                while d.contains('/') {
                    if !batch.iter().any(|(p, is_dir)| *is_dir && p == d) {
                        w.dirs.insert(d.to_string());
                    }
                    d = parent_of(d);
                }
            }
        }
        result
    }

    fn commit_removals(&self, files: &[&str]) -> FsResult<()> {
        let mut txn = self.store.begin()?;
        let mut n = 0;
        for path in files {
            if let Some(Place { stream, rel }) = split(path) {
                n += remove_path(&mut txn, stream, rel)?;
            }
        }
        let c = txn.commit().inspect_err(|e| {
            warn!(
                "committing the removal of {} paths failed, they stay published: {e}",
                files.len()
            );
        })?;
        info!(
            "removed {} paths ({} items), {} new orphans (generation {})",
            files.len(),
            n,
            c.new_orphans.len(),
            c.generation
        );
        self.reload();
        Ok(())
    }

    /// Commits pending removals once the oldest is `window` old (the
    /// generation watcher calls this).
    pub fn flush_removals_older_than(&self, window: Duration) {
        let due = self
            .work
            .lock()
            .expect("work lock")
            .removing_since
            .is_some_and(|t| t.elapsed() >= window);
        if due && let Err(e) = self.flush_removals() {
            warn!("committing removals: {e}");
        }
    }

    /// Reading generated metadata commits pending removals first.
    fn flush_before_metadata(&self, path: &str) {
        if split(path).is_some_and(|p| is_v1(p.rel))
            && !self.work.lock().expect("work lock").removing.is_empty()
            && let Err(e) = self.flush_removals()
        {
            warn!("committing removals before reading {path}: {e}");
        }
    }

    fn may_write(&self, caller: Caller, op: &str, path: &str) -> FsResult<()> {
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

    fn path_of(&self, ino: u64) -> FsResult<String> {
        self.inodes.path(ino).ok_or(FsError::NotFound)
    }

    fn resolve(&self, view: &View, path: &str) -> Option<Node> {
        let Some(Place { stream, rel }) = split(path) else {
            return Some(Node::Dir);
        };
        let sv = view.streams.get(stream)?;
        if rel.is_empty() || rel == "streams" || rel == "streams/v1" {
            return Some(Node::Dir);
        }
        let w = self.work.lock().expect("work lock");
        if let Some(name) = rel.strip_prefix("streams/v1/") {
            if let Some(doc) = sv.generated.get(name) {
                return Some(Node::Generated(doc.clone()));
            }
        } else if rel.starts_with("streams/") {
            return None;
        }
        if let Some(f) = sv.files.get(rel) {
            return Some(Node::Blob(f.clone()));
        }
        if sv.children.contains_key(rel) || w.dirs.contains(path) {
            return Some(Node::Dir);
        }
        if let Some(size) = w.writing.get(path) {
            return Some(Node::Pending(*size));
        }
        if let Some(p) = w.parked.get(path) {
            return Some(Node::Pending(match p {
                Parked::Blob(s) => s.blob.size,
                Parked::Meta(b) => b.len() as u64,
            }));
        }
        if let Some(f) = sv.hidden.get(rel) {
            return Some(Node::Blob(f.clone()));
        }
        if sv.hidden_dirs.contains(rel) {
            return Some(Node::Dir);
        }
        None
    }

    /// The inode number of `node` at `path` (see [`crate::inode`]).
    fn ino_for(&self, path: &str, node: &Node) -> u64 {
        match node {
            Node::Blob(f) => self.inodes.register_item(
                path,
                ItemStamp {
                    sha256: f.blob.sha256.clone(),
                    size: f.blob.size,
                    mtime: f.mtime,
                },
            ),
            // Registered when handed to the kernel (see `hand_out`).
            Node::Generated(d) => d.ino,
            Node::Dir => self.inodes.register_dir(path),
            Node::Pending(_) => self.inodes.register(path),
        }
    }

    /// Records that the kernel is handed the entry of `node` at `path` (a
    /// LOOKUP or READDIRPLUS reply): a document's file stays open until
    /// the kernel forgets it ([`StreamFs::forget`]).
    fn hand_out(&self, path: &str, node: &Node) {
        if let Node::Generated(d) = node {
            self.inodes.hand_out_doc(path, d);
        }
    }

    /// The kernel is about to drop its entry `name` in `parent` (an
    /// `unlink`, `rmdir` or `rename` through the mount): recorded on the
    /// number it leads to (see [`InodeTable::dropped`]), which is returned
    /// for [`StreamFs::entry_kept`].
    pub fn entry_dropped(&self, parent: u64, name: &str) -> Option<u64> {
        let path = join(&self.inodes.path(parent)?, name);
        let ino = match self.resolve(&self.current(), &path)? {
            Node::Blob(f) => item_ino(&path, &f.blob.sha256),
            Node::Generated(d) => d.ino,
            Node::Dir | Node::Pending(_) => ino_of(&path),
        };
        self.inodes.dropped(ino, true);
        Some(ino)
    }

    /// The request of [`StreamFs::entry_dropped`] failed: the kernel keeps
    /// its entry leading to `ino`.
    pub fn entry_kept(&self, ino: u64) {
        self.inodes.dropped(ino, false);
    }

    /// The kernel forgot `n` of the entries it was handed for `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

    fn attr_of(&self, view: &View, path: &str, node: &Node) -> Attr {
        let ino = self.ino_for(path, node);
        let (uid, gid) = self.owner;
        let base = Attr {
            ino,
            kind: Kind::File,
            size: 0,
            mtime: view.mtime,
            perm: 0o444,
            uid,
            gid,
            ttl_secs: CACHE_TTL_SECS,
        };
        match node {
            Node::Dir => Attr {
                kind: Kind::Dir,
                perm: 0o755,
                ..base
            },
            Node::Blob(f) => Attr {
                size: f.blob.size,
                mtime: f.mtime,
                ..base
            },
            Node::Generated(d) => Attr {
                size: d.size,
                mtime: d.mtime,
                ttl_secs: 0,
                ..base
            },
            Node::Pending(size) => Attr {
                size: *size,
                perm: 0o644,
                mtime: timefmt::now().timestamp(),
                ttl_secs: 0,
                ..base
            },
        }
    }

    fn stat_path(&self, path: &str) -> FsResult<Attr> {
        self.stat(path, false)
    }

    /// [`StreamFs::stat_path`]; `handing_out` when the answer is an entry
    /// given to the kernel (see [`StreamFs::hand_out`]).
    fn stat(&self, path: &str, handing_out: bool) -> FsResult<Attr> {
        self.flush_before_metadata(path);
        let view = self.current();
        if self
            .work
            .lock()
            .expect("work lock")
            .links
            .remove(path)
            .is_some()
        {
            // The reply to the symlink that promoted: shown once as a link
            // (the kernel insists on it), a directory from then on.
            let (uid, gid) = self.owner;
            return Ok(Attr {
                ino: self.inodes.register(path),
                kind: Kind::Symlink,
                size: 0,
                mtime: view.mtime,
                perm: 0o777,
                uid,
                gid,
                ttl_secs: 0,
            });
        }
        let node = self.resolve(&view, path).ok_or(FsError::NotFound)?;
        if handing_out {
            self.hand_out(path, &node);
        }
        Ok(self.attr_of(&view, path, &node))
    }

    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        let p = self.path_of(parent)?;
        let path = join(&p, name);
        if self.is_unfinished_doc(&path) {
            return Err(FsError::NotFound);
        }
        self.stat(&path, true)
    }

    /// A document being written into `streams/v1/` under a name the mount
    /// does not generate. Each writer's document is its own (merged at its
    /// close), so lookups do not see it: when two builds are copied at once,
    /// the second `cp` (which saw no such file, then opens it with
    /// `O_CREAT|O_EXCL`) reaches `create` and writes a document of its own,
    /// where a visible name would make the kernel fail its open with EEXIST.
    fn is_unfinished_doc(&self, path: &str) -> bool {
        if !split(path).is_some_and(|p| is_v1(p.rel)) {
            return false;
        }
        let view = self.current();
        if !matches!(self.resolve(&view, path), Some(Node::Pending(_))) {
            return false;
        }
        let w = self.work.lock().expect("work lock");
        w.meta_writers.contains_key(path) && !w.parked.contains_key(path)
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let (path, content) = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        let item = match content {
            // One generation's document, whatever the path shows now: a
            // file opened before a commit reports the size it reads.
            Some(Content::Doc(d)) => {
                return Ok(self.attr_of(&self.current(), &path, &Node::Generated(d)));
            }
            Some(Content::Item(item)) => item,
            Some(Content::Dir) | None => return self.stat_path(&path),
        };
        let now = self.stat_path(&path);
        if now.as_ref().map_or(true, |a| a.ino != ino) {
            // An item number whose path came to name other content (or
            // none): files open on it keep their attributes (`fstat` asks
            // without a handle). The kernel's entry for the path is dropped
            // by the generation watcher (`Known::Gone`), so a lookup
            // by path finds the new content.
            let node = Node::Blob(FileInfo {
                blob: BlobRef {
                    sha256: item.sha256,
                    size: item.size,
                },
                mtime: item.mtime,
            });
            let attr = self.attr_of(&self.current(), &path, &node);
            return Ok(Attr {
                ttl_secs: 0,
                ..attr
            });
        }
        now
    }

    /// Directory entries (`.` and `..` included): (inode, kind, name).
    pub fn readdir(&self, ino: u64) -> FsResult<Vec<(u64, Kind, String)>> {
        let path = self.path_of(ino)?;
        let view = self.current();
        match self.resolve(&view, &path) {
            Some(Node::Dir) => {}
            Some(_) => return Err(FsError::NotDir),
            None => return Err(FsError::NotFound),
        }
        let mut names: BTreeMap<String, Kind> = BTreeMap::new();
        match split(&path) {
            None => {
                for s in view.streams.keys() {
                    names.insert(s.clone(), Kind::Dir);
                }
            }
            Some(Place { stream, rel }) => {
                let sv = &view.streams[stream];
                if rel.is_empty() {
                    names.insert("streams".into(), Kind::Dir);
                }
                if rel == "streams" {
                    names.insert("v1".into(), Kind::Dir);
                } else if rel == "streams/v1" {
                    for n in sv.generated.keys() {
                        names.insert(n.clone(), Kind::File);
                    }
                } else {
                    let w = self.work.lock().expect("work lock");
                    for (n, is_dir) in sv.children.get(rel).into_iter().flatten() {
                        if !w.removing.is_empty() && w.removing.contains_key(&join(&path, n)) {
                            continue;
                        }
                        names.insert(n.clone(), if *is_dir { Kind::Dir } else { Kind::File });
                    }
                    for d in &w.dirs {
                        if parent_of(d) == path {
                            let n = d.rsplit('/').next().unwrap_or(d);
                            names.entry(n.to_string()).or_insert(Kind::Dir);
                        }
                    }
                }
            }
        }
        let parent = parent_of(&path).to_string();
        let mut out = vec![
            (ino, Kind::Dir, ".".to_string()),
            (self.inodes.register(&parent), Kind::Dir, "..".to_string()),
        ];
        for (n, k) in names {
            let child = join(&path, &n);
            let ino = match (k, self.resolve(&view, &child)) {
                (Kind::File, Some(node)) => self.ino_for(&child, &node),
                _ => self.inodes.register(&child),
            };
            out.push((ino, k, n));
        }
        Ok(out)
    }

    /// [`StreamFs::readdir`] with each entry's attributes, for READDIRPLUS:
    /// the kernel learns every child's entry and attributes with the
    /// listing, so `find` and `ls -l` need no `lookup` per name afterwards.
    /// Same entries in the same order as `readdir` (the kernel may switch
    /// between the two within one listing, by offset); an entry that
    /// vanished since the listing was taken (a concurrent removal) gets no
    /// attributes, and the adapter lists it without. Entries from position
    /// `offset` on, each handed to the kernel (see [`StreamFs::hand_out`]):
    /// the adapter forgets those it finds no room for.
    pub fn readdir_plus(&self, ino: u64, offset: usize) -> FsResult<Vec<PlusEntry>> {
        let path = self.path_of(ino)?;
        let entries = self.readdir(ino)?;
        let view = self.current();
        let parent = parent_of(&path).to_string();
        Ok(entries
            .into_iter()
            .enumerate()
            .skip(offset)
            .map(|(i, (ino, kind, name))| {
                let p = match i {
                    0 => path.clone(),
                    1 => parent.clone(),
                    _ => join(&path, &name),
                };
                let attr = self.resolve(&view, &p).map(|node| {
                    // The kernel takes no reference for `.` and `..`.
                    if i > 1 {
                        self.hand_out(&p, &node);
                    }
                    self.attr_of(&view, &p, &node)
                });
                (ino, kind, name, attr)
            })
            .collect())
    }

    pub fn readlink(&self, ino: u64) -> FsResult<String> {
        let _ = self.path_of(ino)?;
        Err(FsError::Invalid("not a symlink".into()))
    }

    fn new_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .expect("handles lock")
            .insert(fh, Arc::new(Mutex::new(h)));
        fh
    }

    fn handle(&self, fh: u64) -> Option<Arc<Mutex<Handle>>> {
        self.handles.lock().expect("handles lock").get(&fh).cloned()
    }

    pub fn open(&self, caller: Caller, ino: u64, mode: OpenMode) -> FsResult<Opened> {
        let (path, content) = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        if !mode.write
            && let Some(Content::Doc(d)) = &content
        {
            // That generation's document, even after a commit.
            return self.open_doc(d);
        }
        self.flush_before_metadata(&path);
        let view = self.current();
        let node = self.resolve(&view, &path).ok_or(FsError::NotFound)?;
        if let (Some(Content::Item(item)), Node::Blob(f)) = (&content, &node)
            && f.blob.sha256 != item.sha256
        {
            // The kernel looks the path up again and opens its new inode.
            return Err(FsError::Stale);
        }
        if !mode.write {
            // rsync reads its staging file back before the rename.
            let parked = match self.work.lock().expect("work lock").parked.get(&path) {
                Some(Parked::Blob(st)) => Some(Handle::Read(File::open(st.staging_path())?)),
                Some(Parked::Meta(b)) => Some(Handle::Bytes(b.clone())),
                None => None,
            };
            if let Some(h) = parked {
                return Ok(Opened {
                    fh: self.new_handle(h),
                    backing: None,
                    direct_io: true,
                });
            }
            return match node {
                Node::Dir => Err(FsError::IsDir),
                Node::Blob(f) => {
                    let file = self
                        .blobs
                        .open(self.store.pool(), &f.blob.sha256)
                        .map_err(|e| refuse(e, "open", &path))?;
                    let backing = file.try_clone().ok().map(|file| BlobFile {
                        file,
                        sha256: f.blob.sha256.clone(),
                    });
                    Ok(Opened {
                        fh: self.new_handle(Handle::Read(file)),
                        backing,
                        direct_io: false,
                    })
                }
                Node::Generated(d) => self.open_doc(&d),
                Node::Pending(_) => {
                    Err(refuse(FsError::Busy("being written".into()), "open", &path))
                }
            };
        }
        self.may_write(caller, "open for writing", &path)?;
        match node {
            Node::Dir => Err(FsError::IsDir),
            Node::Generated(..) => Ok(self.open_meta(&path, caller)),
            Node::Pending(_) if split(&path).is_some_and(|p| is_v1(p.rel)) => {
                Ok(self.open_meta(&path, caller))
            }
            Node::Blob(_) if mode.truncate => self.open_writer(&path, caller),
            Node::Blob(_) => Err(refuse(
                FsError::NotPermitted(
                    "published items are immutable (only a rewrite from the start, O_TRUNC, with identical content is accepted)".into(),
                ),
                "open for writing",
                &path,
            )),
            Node::Pending(_) => Err(refuse(
                FsError::Busy("already being written".into()),
                "open for writing",
                &path,
            )),
        }
    }

    /// A reader of one generation's document.
    fn open_doc(&self, d: &Doc) -> FsResult<Opened> {
        Ok(Opened {
            fh: self.new_handle(Handle::Read(d.file.try_clone()?)),
            backing: None,
            direct_io: true,
        })
    }

    fn open_writer(&self, path: &str, caller: Caller) -> FsResult<Opened> {
        let writer = self.store.pool().writer()?;
        self.work
            .lock()
            .expect("work lock")
            .writing
            .insert(path.to_string(), 0);
        Ok(Opened {
            fh: self.new_handle(Handle::Write {
                path: path.to_string(),
                writer: Some(writer),
                opener: caller.process,
            }),
            backing: None,
            // Writes go straight to the daemon (no copy into the mount's
            // page cache first, which cost as much as the staging write
            // itself); the data is read back from the pool afterwards.
            direct_io: true,
        })
    }

    /// Checks that data written at `path` could be inserted: a pending item
    /// declared by metadata, or a path the stream's templates explain.
    fn check_insertable(&self, path: &str) -> FsResult<()> {
        let Some(Place { stream, rel }) = split(path) else {
            return Err(FsError::Denied("the root holds only streams".into()));
        };
        let cfg = self
            .store
            .config()
            .stream(stream)
            .map_err(|_| FsError::NotFound)?;
        let target = match rel.rsplit_once('/') {
            Some((d, n)) => join(d, staging_target(n).unwrap_or(n)),
            None => staging_target(rel).unwrap_or(rel).to_string(),
        };
        let view = self.current();
        let declared = view.snapshot.streams[stream]
            .products
            .items()
            .any(|i| i.path() == Some(target.as_str()));
        if declared || (RelPath::new(&target).is_ok() && cfg.layout.place(&target).is_some()) {
            Ok(())
        } else {
            Err(FsError::Denied(format!(
                "no path template of stream {stream} and no pending item explains '{target}'"
            )))
        }
    }

    /// The checks every new name passes: the caller may write, the name is
    /// free, its parent is a directory. Returns the new path and the view.
    fn new_entry(
        &self,
        caller: Caller,
        parent: u64,
        name: &str,
        op: &str,
    ) -> FsResult<(String, Arc<View>)> {
        let p = self.path_of(parent)?;
        let path = join(&p, name);
        self.may_write(caller, op, &path)?;
        let view = self.current();
        if self.resolve(&view, &path).is_some() {
            return Err(FsError::Exists);
        }
        match self.resolve(&view, &p) {
            Some(Node::Dir) => {}
            Some(_) => return Err(FsError::NotDir),
            None => return Err(FsError::NotFound),
        }
        Ok((path, view))
    }

    /// A handle writing a document into `streams/v1/` (see
    /// `Work::meta_writers`).
    fn open_meta(&self, path: &str, caller: Caller) -> Opened {
        {
            let mut w = self.work.lock().expect("work lock");
            *w.meta_writers.entry(path.to_string()).or_default() += 1;
            w.writing.entry(path.to_string()).or_insert(0);
        }
        Opened {
            fh: self.new_handle(Handle::Meta {
                path: path.to_string(),
                buf: Vec::new(),
                opener: caller.process,
            }),
            backing: None,
            direct_io: true,
        }
    }

    /// `creat`/`open(O_CREAT)` of a new file.
    pub fn create(&self, caller: Caller, parent: u64, name: &str) -> FsResult<(Attr, Opened)> {
        let path = join(&self.path_of(parent)?, name);
        let concurrent_doc = split(&path).is_some_and(|p| is_v1(p.rel))
            && self
                .work
                .lock()
                .expect("work lock")
                .meta_writers
                .contains_key(&path);
        if concurrent_doc {
            // Another build's document of the same name is being written.
            self.may_write(caller, "create", &path)?;
            let view = self.current();
            let opened = self.open_meta(&path, caller);
            return Ok((self.attr_of(&view, &path, &Node::Pending(0)), opened));
        }
        let (path, view) = self.new_entry(caller, parent, name, "create")?;
        let Some(Place { rel, .. }) = split(&path) else {
            return Err(refuse(
                FsError::Denied("the root holds only streams".into()),
                "create",
                &path,
            ));
        };
        let opened = if is_v1(rel) {
            self.open_meta(&path, caller)
        } else {
            self.check_insertable(&path)
                .map_err(|e| refuse(e, "create", &path))?;
            self.open_writer(&path, caller)?
        };
        let attr = self.attr_of(&view, &path, &Node::Pending(0));
        Ok((attr, opened))
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.handle(fh).ok_or(FsError::BadHandle)?;
        let mut h = h.lock().expect("handle lock");
        match &mut *h {
            Handle::Read(f) => read_full(f, offset, size),
            Handle::Write {
                writer: Some(w), ..
            } => {
                let mut buf = vec![0u8; size as usize];
                let n = w.file()?.read_at(&mut buf, offset)?;
                buf.truncate(n);
                Ok(buf)
            }
            Handle::Meta { buf, .. } | Handle::Bytes(buf) => {
                let start = (offset as usize).min(buf.len());
                let end = (start + size as usize).min(buf.len());
                Ok(buf[start..end].to_vec())
            }
            _ => Err(FsError::BadHandle),
        }
    }

    /// A read of a file the kernel opened without asking (a mount whose
    /// opens the kernel answers, see `FuseFs`): by content number, so the
    /// bytes are those of the item or document the kernel was handed, even
    /// after a commit.
    pub fn read_by_inode(&self, ino: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        match self.inodes.content(ino) {
            Some(Content::Doc(d)) => read_full(&d.file, offset, size),
            Some(Content::Item(item)) => {
                let file = self
                    .blob_file(&item.sha256)
                    .map_err(|e| refuse(e, "read", &self.inodes.path(ino).unwrap_or_default()))?;
                read_full(&file, offset, size)
            }
            // Only content is ever read without an open.
            _ => Err(FsError::BadHandle),
        }
    }

    /// An open, verified pool blob, from the last ones read.
    fn blob_file(&self, sha256: &str) -> FsResult<Arc<File>> {
        if let Some(f) = self.open_blobs.lock().expect("open blobs lock").get(sha256) {
            return Ok(f.clone());
        }
        let f = Arc::new(self.blobs.open(self.store.pool(), sha256)?);
        self.open_blobs
            .lock()
            .expect("open blobs lock")
            .put(sha256.to_string(), f.clone());
        Ok(f)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.handle(fh).ok_or(FsError::BadHandle)?;
        let mut h = h.lock().expect("handle lock");
        match &mut *h {
            Handle::Write {
                path,
                writer: Some(w),
                ..
            } => {
                w.write_at(offset, data)?;
                self.work
                    .lock()
                    .expect("work lock")
                    .writing
                    .insert(path.clone(), w.len());
            }
            Handle::Meta { path, buf, .. } => {
                let end = offset as usize + data.len();
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[offset as usize..end].copy_from_slice(data);
                self.work
                    .lock()
                    .expect("work lock")
                    .writing
                    .insert(path.clone(), buf.len() as u64);
            }
            _ => return Err(FsError::BadHandle),
        }
        Ok(data.len() as u32)
    }

    /// `close` (FLUSH): the insert happens here, so the writer learns of a
    /// refusal or a checksum mismatch from `close` itself.
    ///
    /// Every `close` of a descriptor sends a FLUSH, also the one a shell
    /// makes right after `dup2` when it sets up `cmd > file`, before `cmd`
    /// writes anything: a FLUSH of a handle that holds no data yet leaves it
    /// open, and the RELEASE after the last close inserts what it holds
    /// (an empty file included).
    ///
    /// A FLUSH also comes from every other process that closes a copy of
    /// the descriptor: a child forked while the file was open (its `exec`
    /// closes the inherited copy), or each command of `{ a; b; } > file`.
    /// Only the opener's close inserts; the others' leave the file open,
    /// and when the opener is gone first, the RELEASE after the last close
    /// inserts. A caller of unknown process (one in another pid namespace)
    /// is taken for the opener.
    pub fn flush(&self, fh: u64, caller: Caller) -> FsResult<()> {
        self.finish(fh, Some(caller))
    }

    /// Inserts what handle `fh` holds: at a FLUSH from `closer`, or at the
    /// RELEASE (`closer` None).
    fn finish(&self, fh: u64, closer: Option<Caller>) -> FsResult<()> {
        let Some(h) = self.handle(fh) else {
            return Ok(());
        };
        let mut h = h.lock().expect("handle lock");
        let (empty, opener) = match &*h {
            Handle::Write { writer, opener, .. } => {
                (writer.as_ref().is_none_or(|w| w.is_empty()), *opener)
            }
            Handle::Meta { buf, opener, .. } => (buf.is_empty(), *opener),
            _ => return Ok(()),
        };
        if let Some(closer) = closer {
            if empty {
                return Ok(());
            }
            if let (Some(o), Some(c)) = (opener, closer.process)
                && o != c
            {
                debug!("close of handle {fh} by process {c}, not its opener {o}: insert deferred");
                return Ok(());
            }
        }
        let taken = std::mem::replace(&mut *h, Handle::Done);
        // The path stays "being written" until its commit is shown: a
        // second writer racing for it gets EBUSY, never a moment where the
        // path is missing.
        let (path, r) = match taken {
            Handle::Write { path, writer, .. } => {
                let r = writer
                    .expect("writer until flushed")
                    .finish()
                    .map_err(FsError::from)
                    .and_then(|staged| self.finish_blob(&path, staged));
                (path, r)
            }
            Handle::Meta { path, buf, .. } => {
                let r = self.finish_meta(&path, buf);
                // Copies of the same products file may be written at once
                // (`Work::meta_writers`): the path is free when the last ends.
                let mut w = self.work.lock().expect("work lock");
                let n = w.meta_writers.get(&path).map_or(0, |n| n.saturating_sub(1));
                if n == 0 {
                    w.meta_writers.remove(&path);
                    w.writing.remove(&path);
                } else {
                    w.meta_writers.insert(path.clone(), n);
                }
                return r;
            }
            _ => return Ok(()),
        };
        self.work.lock().expect("work lock").writing.remove(&path);
        r
    }

    pub fn release(&self, fh: u64) -> FsResult<()> {
        let r = self.finish(fh, None);
        self.handles.lock().expect("handles lock").remove(&fh);
        r
    }

    fn finish_blob(&self, path: &str, staged: Staged) -> FsResult<()> {
        let name = path.rsplit('/').next().unwrap_or(path);
        if staging_target(name).is_some() {
            self.work
                .lock()
                .expect("work lock")
                .parked
                .insert(path.to_string(), Parked::Blob(staged));
            return Ok(());
        }
        self.insert_blob(path, staged)
            .map_err(|e| refuse(e, "insert", path))
    }

    fn insert_blob(&self, path: &str, staged: Staged) -> FsResult<()> {
        let Some(Place { stream, rel }) = split(path) else {
            return Err(FsError::NotFound);
        };
        let rel = RelPath::new(rel).map_err(FsError::Invalid)?;
        let sha = staged.blob.sha256.clone();
        let mut txn = self.begin()?;
        // Under the lock: when the pool lacks the blob, what enters it is
        // the staged file, hashed as it was written.
        let new_blob = !self.store.pool().contains(&sha);
        let outcome = put_blob(&mut txn, stream, &rel, staged)?;
        let report = txn.commit()?;
        if new_blob {
            self.blobs.trust(self.store.pool(), &sha);
        }
        info!(
            "inserted {path}: {outcome:?} (generation {})",
            report.generation
        );
        self.reload();
        Ok(())
    }

    fn finish_meta(&self, path: &str, buf: Vec<u8>) -> FsResult<()> {
        let name = path.rsplit('/').next().unwrap_or(path);
        if staging_target(name).is_some() {
            self.work
                .lock()
                .expect("work lock")
                .parked
                .insert(path.to_string(), Parked::Meta(buf));
            return Ok(());
        }
        self.insert_meta(path, &buf)
            .map_err(|e| refuse(e, "metadata insert", path))
    }

    /// A document written into `streams/v1/`: a products file is inserted
    /// by metadata; an index (a build's own) and signatures are accepted and
    /// ignored, since the mount generates and signs its own.
    fn insert_meta(&self, path: &str, buf: &[u8]) -> FsResult<()> {
        let Some(Place { stream, .. }) = split(path) else {
            return Err(FsError::NotFound);
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        if !name.ends_with(".json") {
            info!("{path}: ignored (signatures are generated by the mount)");
            return Ok(());
        }
        if buf.is_empty() {
            return Ok(());
        }
        let doc = streamfs_core::json::parse_object(path, buf)?;
        match doc.get("format").and_then(serde_json::Value::as_str) {
            Some("index:1.0") => {
                info!("{path}: a build's index, ignored (the mount generates its own)");
                return Ok(());
            }
            Some("products:1.0") | None => {}
            Some(other) => {
                return Err(FsError::Invalid(format!(
                    "format '{other}' is neither products:1.0 nor index:1.0"
                )));
            }
        }
        let products = Products::from_map(path, doc)?;
        let mut txn = self.begin()?;
        let report = insert_metadata(&mut txn, stream, &products)?;
        let c = txn.commit()?;
        info!(
            "inserted metadata {path}: {} versions added, {} existing, {} superseded, {} items pending (generation {})",
            report.added.len(),
            report.existing.len(),
            report.superseded.len(),
            report.pending,
            c.generation
        );
        self.reload();
        Ok(())
    }

    pub fn mkdir(&self, caller: Caller, parent: u64, name: &str) -> FsResult<Attr> {
        let (path, view) = self.new_entry(caller, parent, name, "mkdir")?;
        let ok = match split(&path) {
            None => false,
            Some(Place { stream, rel }) => {
                !rel.is_empty()
                    && !rel.starts_with("streams/")
                    && rel != "streams"
                    && self
                        .store
                        .config()
                        .stream(stream)
                        .is_ok_and(|c| c.layout.allows_dir(rel))
            }
        };
        if !ok {
            return Err(refuse(
                FsError::Denied("no path template of the stream has such a directory".into()),
                "mkdir",
                &path,
            ));
        }
        self.work
            .lock()
            .expect("work lock")
            .dirs
            .insert(path.clone());
        Ok(self.attr_of(&view, &path, &Node::Dir))
    }

    pub fn unlink(&self, caller: Caller, parent: u64, name: &str) -> FsResult<()> {
        let p = self.path_of(parent)?;
        let path = join(&p, name);
        self.may_write(caller, "unlink", &path)?;
        {
            let mut w = self.work.lock().expect("work lock");
            if w.parked.remove(&path).is_some() {
                return Ok(());
            }
        }
        let view = self.current();
        let Some(Place { stream, rel }) = split(&path) else {
            return Err(FsError::NotPermitted("the root holds only streams".into()));
        };
        match self.resolve(&view, &path) {
            None => return Err(FsError::NotFound),
            Some(Node::Dir) => return Err(FsError::IsDir),
            Some(Node::Generated(..)) => {
                return Err(refuse(
                    FsError::NotPermitted("generated metadata cannot be removed".into()),
                    "unlink",
                    &path,
                ));
            }
            Some(Node::Pending(_)) => {
                return Err(refuse(
                    FsError::Busy("being written".into()),
                    "unlink",
                    &path,
                ));
            }
            Some(Node::Blob(_)) => {}
        }
        let kept = view
            .snapshot
            .streams
            .get(stream)
            .is_some_and(|st| st.shared.contains_key(rel));
        let mut w = self.work.lock().expect("work lock");
        if (!view.streams[stream].files.contains_key(rel) && !kept)
            || w.removing.contains_key(&path)
        {
            // A removed path, still readable until reaped, or an item of a
            // version not published yet.
            return Err(FsError::NotFound);
        }
        // Committed with the removals that follow (`rm -r`): see
        // `flush_removals`.
        w.removing.insert(path, false);
        w.removing_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    pub fn rmdir(&self, caller: Caller, parent: u64, name: &str) -> FsResult<()> {
        let p = self.path_of(parent)?;
        let path = join(&p, name);
        self.may_write(caller, "rmdir", &path)?;
        let view = self.current();
        let Some(Place { stream, rel }) = split(&path) else {
            return Err(FsError::NotPermitted("the root holds only streams".into()));
        };
        match self.resolve(&view, &path) {
            None => return Err(FsError::NotFound),
            Some(Node::Dir) => {}
            Some(_) => return Err(FsError::NotDir),
        }
        if rel.is_empty() || rel == "streams" || rel == "streams/v1" {
            return Err(refuse(
                FsError::NotPermitted("streams and their metadata directories stay".into()),
                "rmdir",
                &path,
            ));
        }
        let flush = {
            let mut w = self.work.lock().expect("work lock");
            if w.removing.contains_key(&path) {
                return Err(FsError::NotFound);
            }
            let has_sub = w.dirs.iter().any(|d| parent_of(d) == path);
            let listed = view.streams[stream].children.get(rel);
            let has_items = listed
                .into_iter()
                .flatten()
                .any(|(n, _)| !w.removing.contains_key(&join(&path, n)));
            if has_items || has_sub {
                return Err(FsError::NotEmpty);
            }
            w.dirs.remove(&path);
            if listed.is_some() {
                // Emptied by pending removals: gone from its parent's
                // listing now, from the view at their commit.
                w.removing.insert(path.clone(), true);
            }
            // The end of `rm -r` of a version directory (or one above):
            // commit its removals now if they are all there is. Below a
            // version (`rm -r` visits kernel directories before the
            // version's own files) the batch goes on.
            let below = format!("{path}/");
            let version_depth = self
                .store
                .config()
                .stream(stream)
                .map_or(0, |c| c.layout.version_depth());
            rel.split('/').count() <= version_depth
                && !w.removing.is_empty()
                && w.removing
                    .keys()
                    .all(|p| *p == path || p.starts_with(&below))
        };
        if flush {
            self.flush_removals()?;
        }
        Ok(())
    }

    /// `ln -s TARGET LINK`: a promotion when TARGET is a version directory
    /// (or below) of another stream and LINK the same path in this one.
    pub fn symlink(
        &self,
        caller: Caller,
        parent: u64,
        name: &str,
        target: &Path,
    ) -> FsResult<Attr> {
        let p = self.path_of(parent)?;
        let path = join(&p, name);
        self.may_write(caller, "symlink", &path)?;
        self.promote_link(&p, &path, target)
            .map_err(|e| refuse(e, "symlink", &format!("{path} -> {}", target.display())))?;
        self.work
            .lock()
            .expect("work lock")
            .links
            .insert(path.clone(), target.display().to_string());
        self.stat_path(&path)
    }

    fn promote_link(&self, parent: &str, path: &str, target: &Path) -> FsResult<()> {
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
        let view = self.current();
        let src = view
            .snapshot
            .streams
            .get(from.stream)
            .ok_or(FsError::NotFound)?;
        if self.resolve(&view, path).is_some() {
            return Err(FsError::Exists);
        }
        let mut products = BTreeSet::new();
        let mut versions = BTreeSet::new();
        for i in src.products.items() {
            if i.path()
                .and_then(|ip| RelPath::new(ip).ok())
                .is_some_and(|ip| ip.is_under(from.rel))
            {
                products.insert(i.product.to_string());
                versions.insert(i.version.to_string());
            }
        }
        let version = match (versions.len(), versions.first()) {
            (1, Some(v)) if from.rel.split('/').any(|c| c == v) => v.clone(),
            (0, _) => {
                return Err(FsError::NotPermitted(format!(
                    "stream {} has no items under {}",
                    from.stream, from.rel
                )));
            }
            _ => {
                return Err(FsError::NotPermitted(format!(
                    "{} is not a version directory (or below one) of stream {}",
                    from.rel, from.stream
                )));
            }
        };
        let alternation: Vec<String> = products.iter().map(|p| escape_regex(p)).collect();
        let filter = ItemFilter::parse(&format!("product_name~^({})$", alternation.join("|")))?;
        let mut txn = self.begin()?;
        let report = promote_in(
            &mut txn,
            &PromoteRequest {
                from: from.stream,
                to: to.stream,
                version: &version,
                label: None,
                filters: &[filter],
                dry_run: false,
            },
        )?;
        if report.added.is_empty() {
            return Err(FsError::Exists);
        }
        let c = txn.commit()?;
        info!(
            "promoted {resolved} to {path}: {} product versions (generation {})",
            report.added.len(),
            c.generation
        );
        self.reload();
        Ok(())
    }

    /// The mount path a symlink target names, lexically (`..` climbs the
    /// link's directory); absolute targets must lie in the mount.
    fn resolve_link_target(&self, parent: &str, target: &Path) -> Option<String> {
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

    /// `rename`: rsync's staging file onto its final name is the insert.
    pub fn rename(
        &self,
        caller: Caller,
        parent: u64,
        name: &str,
        newparent: u64,
        newname: &str,
    ) -> FsResult<()> {
        let from = join(&self.path_of(parent)?, name);
        let to = join(&self.path_of(newparent)?, newname);
        self.may_write(caller, "rename", &from)?;
        let same_stream = split(&from).map(|p| p.stream) == split(&to).map(|p| p.stream);
        let parked = if same_stream {
            self.work.lock().expect("work lock").parked.remove(&from)
        } else {
            None
        };
        let what = format!("{from} -> {to}");
        match parked {
            Some(Parked::Blob(staged)) => {
                self.check_insertable(&to)
                    .map_err(|e| refuse(e, "rename", &what))?;
                self.insert_blob(&to, staged)
                    .map_err(|e| refuse(e, "rename", &what))
            }
            Some(Parked::Meta(buf)) => {
                if !split(&to).is_some_and(|p| is_v1(p.rel)) {
                    return Err(refuse(
                        FsError::NotPermitted("metadata stays in streams/v1".into()),
                        "rename",
                        &what,
                    ));
                }
                self.insert_meta(&to, &buf)
                    .map_err(|e| refuse(e, "rename", &what))
            }
            None => Err(refuse(
                FsError::NotPermitted(
                    "only a staging file written through the mount can be renamed (onto its final name)".into(),
                ),
                "rename",
                &what,
            )),
        }
    }

    /// `chmod`, `chown`, `utimes` (`attrs`) succeed without effect; a size
    /// change is only possible on data being written. Either is a write:
    /// refused to whoever may not write, so that nobody else truncates an
    /// insert in progress or sees a `touch` succeed.
    pub fn setattr(
        &self,
        caller: Caller,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        attrs: bool,
    ) -> FsResult<Attr> {
        let path = self.path_of(ino)?;
        if size.is_some() || attrs {
            let op = if size.is_some() {
                "truncate"
            } else {
                "setattr"
            };
            self.may_write(caller, op, &path)?;
        }
        if let Some(size) = size {
            let h = match fh.and_then(|fh| self.handle(fh)) {
                Some(h) => Some(h),
                None => self.writer_of(&path),
            };
            let mut done = false;
            if let Some(h) = h {
                let mut h = h.lock().expect("handle lock");
                match &mut *h {
                    Handle::Write {
                        writer: Some(w), ..
                    } => {
                        w.set_len(size)?;
                        self.work
                            .lock()
                            .expect("work lock")
                            .writing
                            .insert(path.clone(), size);
                        done = true;
                    }
                    Handle::Meta { buf, .. } => {
                        buf.resize(size as usize, 0);
                        done = true;
                    }
                    _ => {}
                }
            }
            if !done && self.stat_path(&path)?.size != size {
                return Err(refuse(
                    FsError::NotPermitted("published items are immutable".into()),
                    "truncate",
                    &path,
                ));
            }
        }
        self.getattr(ino)
    }

    fn writer_of(&self, path: &str) -> Option<Arc<Mutex<Handle>>> {
        let handles = self.handles.lock().expect("handles lock");
        handles
            .values()
            .find(|h| {
                h.try_lock().is_ok_and(|h| match &*h {
                    Handle::Write { path: p, .. } | Handle::Meta { path: p, .. } => p == path,
                    _ => false,
                })
            })
            .cloned()
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

/// Whether `path` lies on a filesystem mounted read-only.
/// Up to `size` bytes at `offset`: fewer only at the end of the file.
fn read_full(f: &File, offset: u64, size: u32) -> FsResult<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

fn on_read_only_fs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_flag & libc::ST_RDONLY != 0
}

fn escape_regex(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_CALLER: Caller = Caller::user(0);

    fn fs() -> (tempfile::TempDir, StreamFs) {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(&d.path().join("store")).unwrap();
        let fs = StreamFs::new(store, None).unwrap();
        (d, fs)
    }

    fn mkdirs(fs: &StreamFs, path: &str) -> u64 {
        let mut ino = ROOT;
        for c in path.split('/') {
            ino = match fs.lookup(ino, c) {
                Ok(a) => a.ino,
                Err(_) => fs.mkdir(ROOT_CALLER, ino, c).unwrap().ino,
            };
        }
        ino
    }

    fn write_file(fs: &StreamFs, dir: u64, name: &str, data: &[u8]) -> FsResult<()> {
        let (_, o) = fs.create(ROOT_CALLER, dir, name)?;
        fs.write(o.fh, 0, data)?;
        fs.release(o.fh)
    }

    #[test]
    fn the_root_lists_the_streams_and_each_stream_its_metadata() {
        let (_d, fs) = fs();
        let names: Vec<String> = fs.readdir(ROOT).unwrap().into_iter().map(|e| e.2).collect();
        assert_eq!(names, [".", "..", "daily", "released"]);
        let daily = fs.lookup(ROOT, "daily").unwrap();
        let streams = fs.lookup(daily.ino, "streams").unwrap();
        let v1 = fs.lookup(streams.ino, "v1").unwrap();
        let files: Vec<String> = fs
            .readdir(v1.ino)
            .unwrap()
            .into_iter()
            .map(|e| e.2)
            .collect();
        assert!(files.contains(&"index.json".to_string()), "{files:?}");
    }

    #[test]
    fn a_file_closed_at_a_template_path_is_inserted_and_unlinked_again() {
        let (_d, fs) = fs();
        let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
        write_file(&fs, dir, "boot-kernel", b"kernel").unwrap();
        let a = fs.lookup(dir, "boot-kernel").unwrap();
        assert_eq!((a.size, a.perm, a.kind), (6, 0o444, Kind::File));
        let o = fs.open(ROOT_CALLER, a.ino, OpenMode::default()).unwrap();
        assert_eq!(fs.read(o.fh, 0, 100).unwrap(), b"kernel");
        fs.release(o.fh).unwrap();
        // Not explained by any template: refused at create.
        let top = fs.lookup(ROOT, "daily").unwrap().ino;
        assert!(matches!(
            write_file(&fs, top, "stray", b"x"),
            Err(FsError::Denied(_))
        ));
        // Nobody but root and the owner writes.
        assert!(matches!(
            fs.create(Caller::user(4242), dir, "boot-initrd"),
            Err(FsError::Denied(_))
        ));
        fs.unlink(ROOT_CALLER, dir, "boot-kernel").unwrap();
        assert_eq!(fs.readdir(dir).unwrap().len(), 2);
        // Still readable by path until reaped.
        assert_eq!(fs.lookup(dir, "boot-kernel").unwrap().size, 6);
        // The emptied directory stays until rmdir, as `rm -r` expects.
        let up = fs.ino("daily/noble/amd64/20250101/ga-24.04");
        fs.rmdir(ROOT_CALLER, up, "generic").unwrap();
        let listed: Vec<String> = fs.readdir(up).unwrap().into_iter().map(|e| e.2).collect();
        assert!(!listed.contains(&"generic".to_string()), "{listed:?}");
        // …while the removed path below it stays resolvable.
        let generic = fs.lookup(up, "generic").unwrap();
        assert_eq!(fs.lookup(generic.ino, "boot-kernel").unwrap().size, 6);
    }

    fn names(fs: &StreamFs, dir: u64) -> Vec<String> {
        fs.readdir(dir).unwrap().into_iter().map(|e| e.2).collect()
    }

    /// A version with items in two kernel directories and a shared file.
    fn two_kernel_version(fs: &StreamFs) -> (u64, u64, u64) {
        let g = mkdirs(fs, "daily/noble/amd64/20250101/ga-24.04/generic");
        write_file(fs, g, "boot-kernel", b"k1").unwrap();
        write_file(fs, g, "boot-initrd", b"i1").unwrap();
        let l = mkdirs(fs, "daily/noble/amd64/20250101/ga-24.04/lowlatency");
        write_file(fs, l, "boot-kernel", b"k2").unwrap();
        write_file(fs, l, "boot-initrd", b"i2").unwrap();
        let v = fs.ino("daily/noble/amd64/20250101");
        write_file(fs, v, "squashfs", b"sq").unwrap();
        (v, g, l)
    }

    fn products_text(fs: &StreamFs) -> String {
        let v1 = fs.ino("daily/streams/v1");
        let a = fs
            .lookup(v1, "com.ubuntu.maas:daily:v3:download.json")
            .unwrap();
        let o = fs.open(ROOT_CALLER, a.ino, OpenMode::default()).unwrap();
        let text = String::from_utf8(fs.read(o.fh, 0, 1 << 20).unwrap()).unwrap();
        fs.release(o.fh).unwrap();
        text
    }

    #[test]
    fn rm_r_of_a_version_directory_is_one_commit_with_listings_changed_at_once() {
        let (_d, fs) = fs();
        let (v, g, l) = two_kernel_version(&fs);
        let ga = fs.ino("daily/noble/amd64/20250101/ga-24.04");
        let amd64 = fs.ino("daily/noble/amd64");
        let before = fs.generation();
        // What `rm -r` asks for: the items, then each directory once empty.
        fs.unlink(ROOT_CALLER, v, "squashfs").unwrap();
        fs.unlink(ROOT_CALLER, g, "boot-kernel").unwrap();
        assert_eq!(names(&fs, g), [".", "..", "boot-initrd"]);
        assert_eq!(fs.lookup(g, "boot-kernel").unwrap().size, 2, "readable");
        assert!(matches!(
            fs.unlink(ROOT_CALLER, g, "boot-kernel"),
            Err(FsError::NotFound)
        ));
        assert!(matches!(
            fs.rmdir(ROOT_CALLER, ga, "generic"),
            Err(FsError::NotEmpty)
        ));
        fs.unlink(ROOT_CALLER, g, "boot-initrd").unwrap();
        fs.rmdir(ROOT_CALLER, ga, "generic").unwrap();
        assert_eq!(names(&fs, ga), [".", "..", "lowlatency"]);
        fs.unlink(ROOT_CALLER, l, "boot-kernel").unwrap();
        fs.unlink(ROOT_CALLER, l, "boot-initrd").unwrap();
        fs.rmdir(ROOT_CALLER, ga, "lowlatency").unwrap();
        fs.rmdir(ROOT_CALLER, v, "ga-24.04").unwrap();
        assert_eq!(
            fs.generation(),
            before,
            "nothing committed before the last rmdir"
        );
        fs.rmdir(ROOT_CALLER, amd64, "20250101").unwrap();
        assert_eq!(fs.generation(), before + 1, "one commit for the version");
        assert_eq!(names(&fs, amd64), [".", ".."]);
        assert!(!products_text(&fs).contains("20250101"));
        // Every removed path stays readable until reaped.
        assert_eq!(fs.lookup(l, "boot-initrd").unwrap().size, 2);
        assert_eq!(fs.lookup(v, "squashfs").unwrap().size, 2);
    }

    #[test]
    fn reading_the_metadata_commits_pending_removals_first() {
        let (_d, fs) = fs();
        let (_, g, _) = two_kernel_version(&fs);
        let before = fs.generation();
        assert!(products_text(&fs).contains("ga-24.04/generic/boot-kernel"));
        fs.unlink(ROOT_CALLER, g, "boot-kernel").unwrap();
        assert_eq!(fs.generation(), before);
        let text = products_text(&fs);
        assert_eq!(fs.generation(), before + 1);
        assert!(!text.contains("ga-24.04/generic/boot-kernel"), "{text}");
        assert!(text.contains("ga-24.04/generic/boot-initrd"), "{text}");
        // A lone removal is committed by the watcher's call after the window.
        fs.unlink(ROOT_CALLER, g, "boot-initrd").unwrap();
        fs.flush_removals_older_than(Duration::from_secs(3600));
        assert_eq!(fs.generation(), before + 1);
        fs.flush_removals_older_than(Duration::ZERO);
        assert_eq!(fs.generation(), before + 2);
        assert_eq!(names(&fs, g), [".", ".."]);
    }

    #[test]
    fn two_products_files_of_the_same_name_written_at_once_are_both_merged() {
        let (_d, fs) = fs();
        let v1 = mkdirs(&fs, "daily/streams/v1");
        let doc = |v: &str| {
            format!(
                r#"{{"format": "products:1.0", "content_id": "c", "products": {{"com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04": {{"arch": "amd64", "versions": {{"{v}": {{"items": {{"boot-kernel": {{"ftype": "boot-kernel", "path": "noble/amd64/{v}/ga-24.04/generic/boot-kernel", "size": 1, "sha256": "{}"}}}}}}}}}}}}}}"#,
                "0".repeat(64)
            )
        };
        // Copies of builds whose products files share a name.
        let (_, a) = fs.create(ROOT_CALLER, v1, "build.json").unwrap();
        let (attr, b) = fs.create(ROOT_CALLER, v1, "build.json").unwrap();
        // Unfinished documents are their writers' own: a lookup does not
        // see them (a `cp` then creates its own with O_EXCL)…
        assert!(matches!(
            fs.lookup(v1, "build.json"),
            Err(FsError::NotFound)
        ));
        // …and a writer reopening the name by its inode gets one of its own.
        let c = fs
            .open(
                ROOT_CALLER,
                attr.ino,
                OpenMode {
                    write: true,
                    truncate: true,
                },
            )
            .unwrap();
        for (h, v) in [(a.fh, "20250101"), (b.fh, "20250102"), (c.fh, "20250103")] {
            fs.write(h, 0, doc(v).as_bytes()).unwrap();
        }
        fs.release(a.fh).unwrap();
        fs.release(b.fh).unwrap();
        fs.release(c.fh).unwrap();
        assert!(fs.lookup(v1, "build.json").is_err());
        let snap = fs.store().snapshot().unwrap();
        let versions: BTreeSet<String> = snap.streams["daily"]
            .products
            .items()
            .map(|i| i.version.to_string())
            .collect();
        assert_eq!(versions.len(), 3, "{versions:?}");
    }

    #[test]
    fn only_root_and_the_owner_truncate_or_touch() {
        let (_d, fs) = fs();
        let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
        let (a, o) = fs.create(ROOT_CALLER, dir, "boot-kernel").unwrap();
        fs.write(o.fh, 0, b"kernel").unwrap();
        let other = Caller::user(4242);
        assert!(!fs.can_write(other));
        // Nobody else shortens an insert in progress, by path or otherwise.
        assert!(matches!(
            fs.setattr(other, a.ino, None, Some(0), false),
            Err(FsError::Denied(_))
        ));
        assert!(matches!(
            fs.setattr(other, a.ino, None, None, true),
            Err(FsError::Denied(_))
        ));
        // A plain getattr-like setattr changes nothing and is anyone's.
        assert_eq!(fs.setattr(other, a.ino, None, None, false).unwrap().size, 6);
        fs.release(o.fh).unwrap();
        let a = fs.lookup(dir, "boot-kernel").unwrap();
        assert_eq!(a.size, 6);
        // The owner's `cp -a` sets attributes without effect.
        assert_eq!(
            fs.setattr(ROOT_CALLER, a.ino, None, None, true)
                .unwrap()
                .size,
            6
        );
    }

    /// `sh -c 'cmd > file'`: the shell's close after dup2 comes before any
    /// write; the insert waits for data or for the last close.
    #[test]
    fn a_close_before_any_write_leaves_the_file_open_for_the_shell_redirect() {
        let (_d, fs) = fs();
        let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
        let (_, o) = fs.create(ROOT_CALLER, dir, "boot-kernel").unwrap();
        fs.flush(o.fh, ROOT_CALLER).unwrap();
        assert_eq!(fs.write(o.fh, 0, b"kernel").unwrap(), 6);
        fs.flush(o.fh, ROOT_CALLER).unwrap();
        fs.release(o.fh).unwrap();
        assert_eq!(fs.lookup(dir, "boot-kernel").unwrap().size, 6);
        // An empty file is inserted at the last close.
        let (_, o) = fs.create(ROOT_CALLER, dir, "boot-initrd").unwrap();
        fs.flush(o.fh, ROOT_CALLER).unwrap();
        fs.release(o.fh).unwrap();
        let a = fs.lookup(dir, "boot-initrd").unwrap();
        assert_eq!((a.size, a.perm), (0, 0o444));
    }

    /// A forked child's close of its inherited copy of the descriptor is
    /// not the opener's: the insert waits for the opener's close.
    #[test]
    fn a_close_by_another_process_than_the_opener_does_not_insert() {
        let (_d, fs) = fs();
        let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
        let opener = Caller {
            uid: 0,
            process: Some(100),
        };
        let child = Caller {
            process: Some(101),
            ..opener
        };
        let (_, o) = fs.create(opener, dir, "boot-kernel").unwrap();
        assert_eq!(fs.write(o.fh, 0, b"first").unwrap(), 5);
        fs.flush(o.fh, child).unwrap();
        assert_eq!(fs.write(o.fh, 5, b"second").unwrap(), 6);
        fs.flush(o.fh, opener).unwrap();
        assert_eq!(fs.lookup(dir, "boot-kernel").unwrap().size, 11);
        fs.release(o.fh).unwrap();
        // An opener gone before its child: the last close inserts.
        let (_, o) = fs.create(opener, dir, "boot-initrd").unwrap();
        assert_eq!(fs.write(o.fh, 0, b"initrd").unwrap(), 6);
        fs.flush(o.fh, child).unwrap();
        assert_eq!(fs.write(o.fh, 6, b"!").unwrap(), 1);
        fs.release(o.fh).unwrap();
        let opened = fs
            .open(
                opener,
                fs.lookup(dir, "boot-initrd").unwrap().ino,
                OpenMode::default(),
            )
            .unwrap();
        assert_eq!(fs.read(opened.fh, 0, 64).unwrap(), b"initrd!");
        fs.release(opened.fh).unwrap();
    }

    #[test]
    fn rsync_staging_files_are_inserted_at_their_rename() {
        let (_d, fs) = fs();
        let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
        write_file(&fs, dir, ".boot-kernel.AbC123", b"k").unwrap();
        assert!(fs.lookup(dir, "boot-kernel").is_err());
        assert_eq!(fs.lookup(dir, ".boot-kernel.AbC123").unwrap().size, 1);
        fs.rename(ROOT_CALLER, dir, ".boot-kernel.AbC123", dir, "boot-kernel")
            .unwrap();
        assert_eq!(fs.lookup(dir, "boot-kernel").unwrap().size, 1);
        assert!(fs.lookup(dir, ".boot-kernel.AbC123").is_err());
    }

    #[test]
    fn staging_names_are_recognised() {
        assert_eq!(staging_target(".squashfs.Xy12Zq"), Some("squashfs"));
        assert_eq!(staging_target(".a.b.json.abcdef"), Some("a.b.json"));
        assert_eq!(staging_target("squashfs"), None);
        assert_eq!(staging_target(".x.abc"), None);
    }

    /// A mount whose opens the kernel answers reads documents by number:
    /// the number handed out before commits still reads that generation's
    /// bytes and size after its generation directory was deleted, until
    /// the kernel forgets it.
    #[test]
    fn a_document_number_reads_its_generation_until_forgotten() {
        let (_d, fs) = fs();
        let daily = fs.lookup(ROOT, "daily").unwrap().ino;
        let streams = fs.lookup(daily, "streams").unwrap().ino;
        let v1 = fs.lookup(streams, "v1").unwrap().ino;
        let old = fs.lookup(v1, "index.json").unwrap();
        let old_bytes = fs.read_by_inode(old.ino, 0, 1 << 20).unwrap();
        assert_eq!(old_bytes.len() as u64, old.size);
        // Two commits: the store keeps the previous generation only.
        for v in ["20250101", "20250102"] {
            let dir = mkdirs(&fs, &format!("daily/noble/amd64/{v}/ga-24.04/generic"));
            write_file(&fs, dir, "boot-kernel", b"kernel").unwrap();
        }
        let new = fs.lookup(v1, "index.json").unwrap();
        assert_ne!(new.ino, old.ino);
        let new_bytes = fs.read_by_inode(new.ino, 0, 1 << 20).unwrap();
        assert_ne!(new_bytes, old_bytes);
        assert_eq!(fs.read_by_inode(old.ino, 0, 1 << 20).unwrap(), old_bytes);
        assert_eq!(fs.read_by_inode(old.ino, 3, 4).unwrap(), &old_bytes[3..7]);
        assert_eq!(fs.getattr(old.ino).unwrap().size, old.size);
        // An open of the old number (a handle) reads the same bytes.
        let o = fs.open(ROOT_CALLER, old.ino, OpenMode::default()).unwrap();
        assert_eq!(fs.read(o.fh, 0, 1 << 20).unwrap(), old_bytes);
        fs.release(o.fh).unwrap();
        fs.forget(old.ino, 1);
        assert!(fs.read_by_inode(old.ino, 0, 10).is_err());
        assert_eq!(fs.read_by_inode(new.ino, 0, 1 << 20).unwrap(), new_bytes);
        // Items read by number too; directories never are.
        let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
        let kernel = fs.lookup(dir, "boot-kernel").unwrap().ino;
        assert_eq!(fs.read_by_inode(kernel, 0, 100).unwrap(), b"kernel");
        assert!(matches!(
            fs.read_by_inode(dir, 0, 10),
            Err(FsError::BadHandle)
        ));
    }
}
