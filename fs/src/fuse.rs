//! The fuser adapter: unpacks kernel requests, calls the filesystem API
//! (`crate::fs`), replies. Every failure goes through [`failed`], which logs
//! each refusal once and maps the error to its errno (`crate::errno`). Only
//! the decisions about the kernel protocol live here: FUSE passthrough for
//! pool blobs, opens answered by the kernel on read-only mounts, which
//! requests the mount declines for good (ENOSYS), and dropping the kernel's
//! caches after a request that committed.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tracing::{debug, info, warn};

use crate::caches::KernelCaches;
use crate::errno::errno;
use crate::fs::{
    Attr, AttrChange, Caller, Created, DirEntry, DirectoryPlusReplier, DirectoryReplier, FsError,
    Kind, OpenMode, StreamFs, tracking_commits,
};
use crate::metrics::{self, Op, RateLimit};

/// How reads of pool blobs reach them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Opens are answered by the kernel (see [`FuseFs::open`]): read-only
    /// mounts only.
    KernelOpens,
    /// FUSE passthrough: the kernel reads the blob file itself.
    Passthrough,
    /// Every read is answered by the daemon.
    Daemon,
}

/// The mounted filesystem.
pub struct FuseFs {
    fs: Arc<StreamFs>,
    reads: Reads,
    /// Passthrough needs one backing id per inode while any handle is open.
    backing: Mutex<Backing>,
    warned_daemon_reads: AtomicBool,
    caches: Arc<KernelCaches>,
}

/// The kernel accepts one backing file per inode at a time (a second one
/// fails the open with EBUSY), so handles of an inode share its id, which
/// stays registered while any of them is open.
#[derive(Default)]
struct Backing {
    by_handle: HashMap<u64, Arc<BackingId>>,
    /// The id of each inode with open handles, and the blob it stands for:
    /// an item's number follows its content, but a file opened through the
    /// number it was created under (its path's) names whatever the path
    /// holds, which can change while an earlier open lasts.
    by_inode: HashMap<u64, (String, Weak<BackingId>)>,
}

impl FuseFs {
    pub fn new(fs: Arc<StreamFs>, reads: Reads, caches: Arc<KernelCaches>) -> FuseFs {
        FuseFs {
            fs,
            reads,
            backing: Mutex::new(Backing::default()),
            warned_daemon_reads: AtomicBool::new(false),
            caches,
        }
    }

    /// Runs a request that may commit; when it did, the kernel's caches
    /// are dropped before it is answered (see [`crate::caches`]).
    fn committing<T>(&self, op: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let (r, committed) = tracking_commits(op);
        if committed {
            metrics::commit(started.elapsed());
            self.caches.sync(&self.fs);
        }
        r
    }
}

impl FuseFs {
    /// Runs a request after which the kernel drops its entries `names`
    /// (directory, name): unlink, rmdir, rename (both names), recording
    /// that beforehand, so that the generation watcher leaves those entries
    /// alone. Dropping an entry takes its directory's lock, which the kernel
    /// holds while this very request waits for its reply; were the daemon
    /// killed meanwhile, the watcher's thread would wait for it forever and
    /// keep the dying daemon (and every request to the mount) from ever
    /// finishing.
    fn dropping_entries<T>(
        &self,
        names: &[(INodeNo, &OsStr)],
        op: impl FnOnce() -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let inos: Vec<u64> = names
            .iter()
            .filter_map(|(parent, name)| self.fs.entry_dropped(parent.0, name.to_str()?))
            .collect();
        let r = op();
        if r.is_err() {
            for ino in inos {
                self.fs.entry_kept(ino);
            }
        }
        r
    }
}

fn caller(req: &Request) -> Caller {
    Caller::user(req.uid())
}

/// The caller with its process, for the requests that open a file for
/// writing or close one. The request carries the calling thread's id; the
/// opener is the thread group, so that a file opened by one thread and
/// closed by another is still closed by its opener.
fn writing_caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        process: thread_group(req.pid()),
    }
}

/// The thread group id of thread `tid`, from `/proc` (None when the
/// caller's pid is not visible here, e.g. from another pid namespace).
fn thread_group(tid: u32) -> Option<u32> {
    if tid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The errno for a failed request. A refusal (the filesystem layer says
/// what was refused and why) is logged here, once, as a warning; other
/// failures (a name not there, a handle gone) are what callers ask about
/// every day, and only traced.
fn failed(e: FsError) -> Errno {
    if matches!(e, FsError::Refused { .. }) {
        match REFUSALS_LOGGED.admit(std::time::Instant::now()) {
            Some(0) => warn!("{e}"),
            Some(held) => warn!("{e} ({held} more refusals not logged: too many at once)"),
            None => debug!("{e}"),
        }
    } else {
        debug!("{e}");
    }
    let n = errno(&e);
    metrics::error(n);
    Errno::from_i32(n)
}

/// Refusals are logged at most 20 at once and 5 a second after that: a
/// client retrying in a loop must not flood the journal.
static REFUSALS_LOGGED: RateLimit = RateLimit::new(20, 5);

/// Replies to a request that yields a value with `ok`, or with its error
/// through [`failed`].
macro_rules! reply {
    ($reply:expr, $r:expr, |$v:pat_param| $ok:expr) => {
        match $r {
            Ok($v) => $ok,
            Err(e) => $reply.error(failed(e)),
        }
    };
}

/// Declines a request for good: the kernel answers every later one of its
/// kind itself (see the callers for what each saves).
macro_rules! unsupported {
    ($reply:expr) => {
        $reply.error(Errno::ENOSYS)
    };
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
    }
}

fn time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH
    }
}

/// The preferred I/O size reported by `stat` (`st_blksize`): the largest
/// FUSE write this kernel takes (256 pages). `cp` sizes its buffer from it,
/// so a copy into the mount arrives in 1 MiB writes instead of 128 KiB ones:
/// an eighth of the requests for the same data.
const BLKSIZE: u32 = 1 << 20;

fn file_attr(a: &Attr) -> FileAttr {
    let t = time(a.mtime);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: if a.kind == Kind::Dir { 2 } else { 1 },
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

fn ttl(a: &Attr) -> Duration {
    Duration::from_secs(a.ttl_secs)
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // READDIRPLUS: listings carry each entry's attributes (see
        // `StreamFs::readdir_plus`); AUTO lets the kernel fall back to plain
        // listings for readers that never stat what they list.
        if let Err(e) = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO)
        {
            info!("the kernel offers no READDIRPLUS ({e:?}): one lookup per listed name");
        }
        // O_TRUNC reaches `open`: rewriting a file from the start (`cp` onto
        // an item with the same content, data for an item declared by
        // metadata whose blob is already there) is told apart from writing
        // into its middle, which is refused at open. Without it the kernel
        // opens without O_TRUNC and truncates afterwards.
        if config
            .add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC)
            .is_err()
        {
            warn!("the kernel offers no atomic O_TRUNC: rewrites of existing items are refused");
        }
        match self.reads {
            Reads::KernelOpens => info!(
                "read-only mount: opens answered by the kernel, reads served from its page cache"
            ),
            Reads::Passthrough => {
                let ok = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                    && config.set_max_stack_depth(2).is_ok();
                if ok {
                    info!("FUSE passthrough enabled for pool blobs");
                } else {
                    self.reads = Reads::Daemon;
                    warn!(
                        "the kernel offers no FUSE passthrough: reads are answered by the daemon"
                    );
                }
            }
            Reads::Daemon => {}
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        metrics::request(Op::Lookup);
        reply!(reply, self.fs.lookup(parent.0, name), |a| reply.entry(
            &ttl(&a),
            &file_attr(&a),
            Generation(0)
        ))
    }

    /// An open file's attributes are those of its number (see
    /// [`StreamFs::getattr`]): the handle is not needed.
    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        metrics::request(Op::Getattr);
        reply!(reply, self.fs.getattr(ino.0), |a| reply
            .attr(&ttl(&a), &file_attr(&a)))
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        metrics::request(Op::Setattr);
        // The kernel sends ctime alone with other changes; it is not one.
        let change = AttrChange {
            size,
            other: mode.is_some()
                || uid.is_some()
                || gid.is_some()
                || atime.is_some()
                || mtime.is_some(),
        };
        let r = self.committing(|| self.fs.setattr(caller(req), ino.0, fh.map(|f| f.0), change));
        reply!(reply, r, |a| reply.attr(&ttl(&a), &file_attr(&a)))
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        metrics::request(Op::Readlink);
        reply!(reply, self.fs.readlink(ino.0), |t| reply.data(t.as_bytes()))
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        metrics::request(Op::Mkdir);
        reply!(reply, self.fs.mkdir(caller(req), parent.0, name), |a| {
            reply.entry(&ttl(&a), &file_attr(&a), Generation(0))
        })
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        metrics::request(Op::Unlink);
        let r = self.dropping_entries(&[(parent, name)], || {
            self.fs.unlink(caller(req), parent.0, name)
        });
        reply!(reply, r, |()| reply.ok())
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        metrics::request(Op::Rmdir);
        let r = self.dropping_entries(&[(parent, name)], || {
            self.committing(|| self.fs.rmdir(caller(req), parent.0, name))
        });
        reply!(reply, r, |()| reply.ok())
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        metrics::request(Op::Symlink);
        let r = self.committing(|| self.fs.symlink(caller(req), parent.0, link_name, target));
        // A zero lifetime: the next lookup shows the promoted directory.
        reply!(reply, r, |a| reply.entry(
            &Duration::ZERO,
            &file_attr(&a),
            Generation(0)
        ))
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        metrics::request(Op::Rename);
        let r = self.dropping_entries(&[(parent, name), (newparent, newname)], || {
            self.committing(|| {
                self.fs.rename(
                    caller(req),
                    (parent.0, name),
                    (newparent.0, newname),
                    flags.bits(),
                )
            })
        });
        reply!(reply, r, |()| reply.ok())
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        metrics::request(Op::Link);
        reply!(reply, self.fs.link(ino.0, newparent.0, newname), |a| reply
            .entry(&ttl(&a), &file_attr(&a), Generation(0)))
    }

    /// On a mount whose opens the kernel answers, the first OPEN is
    /// declined with ENOSYS: the kernel then stops sending OPEN and RELEASE
    /// for files altogether and keeps their cached pages across opens (as
    /// with FOPEN_KEEP_CACHE). Reads come without a handle and are answered
    /// by content number ([`StreamFs::read_by_inode`]), which is what makes
    /// it correct: an item's or a document's number stands for fixed bytes.
    /// A file served again is then opened, `fstat`ed and read without any
    /// request to the daemon, as on a native filesystem: what nginx does
    /// per request. Only on read-only mounts, where no open can write.
    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        metrics::request(Op::Open);
        if self.reads == Reads::KernelOpens {
            return unsupported!(reply);
        }
        let mode = OpenMode {
            write: flags.acc_mode() != OpenAccMode::O_RDONLY,
            truncate: flags.0 & libc::O_TRUNC != 0,
        };
        let who = if mode.write {
            writing_caller(req)
        } else {
            caller(req)
        };
        let opened = match self.fs.open(who, ino.0, mode) {
            Ok(o) => o,
            Err(e) => return reply.error(failed(e)),
        };
        let mut fl = FopenFlags::empty();
        if opened.direct_io {
            fl |= FopenFlags::FOPEN_DIRECT_IO;
        }
        if !mode.write {
            // A reader's close has nothing to flush: no FLUSH round trip
            // (one of three per nginx request for a small file).
            fl |= FopenFlags::FOPEN_NOFLUSH;
        }
        if let Some(blob) = opened.backing {
            if self.reads == Reads::Passthrough {
                let mut b = self.backing.lock().expect("backing lock");
                let live = b
                    .by_inode
                    .get(&ino.0)
                    .and_then(|(sha, id)| Some((sha == &blob.sha256, id.upgrade()?)));
                let id = match live {
                    Some((true, id)) => Ok(Some(id)),
                    // Older content is still open under this inode: its
                    // backing file holds the wrong bytes, and the kernel
                    // takes neither a second backing file nor an open
                    // without passthrough for the inode (EINVAL) while
                    // that lasts.
                    Some((false, _)) => Ok(None),
                    None => reply.open_backing(&blob.file).map(|id| Some(Arc::new(id))),
                };
                match id {
                    Ok(Some(id)) => {
                        b.by_inode.insert(ino.0, (blob.sha256, Arc::downgrade(&id)));
                        b.by_handle.insert(opened.fh, id.clone());
                        drop(b);
                        reply.opened_passthrough(FileHandle(opened.fh), fl, &id);
                        return;
                    }
                    Ok(None) => {
                        drop(b);
                        let _ = self.fs.release(opened.fh);
                        return reply.error(failed(FsError::Refused {
                            op: "open",
                            path: format!("of inode {}", ino.0),
                            reason: Box::new(FsError::Busy(
                                "its path names new content while its earlier content is still open (a path removed, reaped and inserted again); it opens once those readers close".into(),
                            )),
                        }));
                    }
                    Err(e) => warn!("passthrough refused for inode {}: {e}", ino.0),
                }
            }
            if !self.warned_daemon_reads.swap(true, Ordering::Relaxed) {
                info!("reads of pool blobs are answered by the daemon (no passthrough)");
            }
            // Pool blobs are immutable: pages read through the daemon stay
            // cached across opens (the generation watcher drops them at
            // commits, when a path may have come to name other content).
            // Not with passthrough, where the kernel refuses the flag and
            // the blob's own page cache serves.
            fl |= FopenFlags::FOPEN_KEEP_CACHE;
        }
        reply.opened(FileHandle(opened.fh), fl);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        metrics::request(Op::Read);
        // Handle 0 is never given out: a file the kernel opened itself.
        let r = if fh.0 == 0 {
            self.fs.read_by_inode(ino.0, offset, size)
        } else {
            self.fs.read(fh.0, offset, size)
        };
        reply!(reply, r, |d| reply.data(&d))
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        metrics::request(Op::Write);
        reply!(reply, self.fs.write(fh.0, offset, data), |n| reply
            .written(n))
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        metrics::request(Op::Flush);
        if self.reads == Reads::KernelOpens {
            // Nothing to flush on a read-only mount: ENOSYS stops the
            // FLUSH the kernel sends at every close of a file it opened
            // itself (no FOPEN_NOFLUSH without an OPEN reply).
            return unsupported!(reply);
        }
        let r = self.committing(|| self.fs.flush(fh.0, writing_caller(req)));
        reply!(reply, r, |()| reply.ok())
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        metrics::request(Op::Release);
        {
            let mut b = self.backing.lock().expect("backing lock");
            if let Some(id) = b.by_handle.remove(&fh.0)
                && Arc::strong_count(&id) == 1
            {
                // The inode's last handle with this id: see `Backing`.
                b.by_inode.remove(&ino.0);
            }
        }
        let r = self.committing(|| self.fs.release(fh.0));
        reply!(reply, r, |()| reply.ok())
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        metrics::request(Op::Fsync);
        // Data is fsynced when it enters the pool, at close.
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        metrics::request(Op::Readdir);
        reply!(reply, self.fs.readdir(ino.0, offset, &mut reply), |()| {
            reply.ok()
        })
    }

    /// Declining OPENDIR (ENOSYS) tells the kernel to stop sending
    /// OPENDIR/RELEASEDIR and to cache listings (as with FOPEN_KEEP_CACHE |
    /// FOPEN_CACHE_DIR): two round trips fewer per directory walked, and
    /// none at all for a directory listed again. Cached listings are
    /// dropped by the kernel itself for directories changed through the
    /// mount (create, mkdir, unlink, rmdir, rename, symlink), and by the
    /// generation watcher's inode invalidation at every commit for the rest.
    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        metrics::request(Op::Opendir);
        unsupported!(reply)
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        metrics::request(Op::Readdirplus);
        reply!(
            reply,
            self.fs.readdir_plus(ino.0, offset, &mut reply),
            |()| reply.ok()
        )
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        metrics::request(Op::Forget);
        self.fs.forget(ino.0, nlookup);
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        metrics::request(Op::Access);
        let write = mask.contains(fuser::AccessFlags::W_OK);
        reply!(reply, self.fs.access(caller(req), ino.0, write), |()| reply
            .ok())
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        metrics::request(Op::Mknod);
        reply!(reply, self.fs.mknod(caller(req), parent.0, name), |a| reply
            .entry(&ttl(&a), &file_attr(&a), Generation(0)))
    }

    /// The mount has no extended attributes. ENOSYS (rather than ENODATA
    /// per call) makes the kernel answer every later xattr call itself with
    /// EOPNOTSUPP, which `ls -l`, `cp -a` and `rsync -a` take as "none":
    /// `ls -l` otherwise costs two round trips per file (ACL and security
    /// label probes).
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        metrics::request(Op::Getxattr);
        unsupported!(reply)
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        metrics::request(Op::Listxattr);
        unsupported!(reply)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        metrics::request(Op::Create);
        let r = self.fs.create(writing_caller(req), parent.0, name);
        reply!(reply, r, |Created { attr, opened }| {
            let fl = if opened.direct_io {
                FopenFlags::FOPEN_DIRECT_IO
            } else {
                FopenFlags::empty()
            };
            reply.created(
                &ttl(&attr),
                &file_attr(&attr),
                Generation(0),
                FileHandle(opened.fh),
                fl,
            )
        })
    }
}

/// The kernel's listing reply: full once its buffer is.
impl DirectoryReplier for ReplyDirectory {
    fn add(&mut self, e: &DirEntry) -> bool {
        !ReplyDirectory::add(self, INodeNo(e.ino), e.next_offset, kind(e.kind), &e.name)
    }
}

impl DirectoryPlusReplier for ReplyDirectoryPlus {
    fn add(&mut self, e: &DirEntry, a: &Attr) -> bool {
        !ReplyDirectoryPlus::add(
            self,
            INodeNo(a.ino),
            e.next_offset,
            &e.name,
            &ttl(a),
            &file_attr(a),
            Generation(0),
        )
    }
}
