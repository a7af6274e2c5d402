//! The mount's life once its process is set up (see `main.rs`): open the
//! store, mount it, start the threads that follow it (generation watcher,
//! reaper, signals, readiness, watchdog), serve until unmounted, then
//! commit the removals still pending.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use fuser::{Config, MountOption};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use streamfs::caches::KernelCaches;
use streamfs::daemon::{self, Readiness};
use streamfs::fs::StreamFs;
use streamfs::fuse::{FuseFs, Reads};
use streamfs::options::MountOpts;
use streamfs::reaper;
use streamfs_core::store::Store;
use tracing::{info, warn};

/// Mounts the store at `store_path` on `mountpoint` and serves it until it
/// is unmounted; `readiness` is told once the mount answers.
pub fn run(
    store_path: &Path,
    mountpoint: &Path,
    opts: MountOpts,
    passthrough: bool,
    readiness: &mut Readiness,
) -> Result<()> {
    let store = Store::open_or_init(store_path)
        .with_context(|| format!("opening store {}", store_path.display()))?;
    if !mountpoint.exists() {
        std::fs::create_dir_all(mountpoint)
            .with_context(|| format!("creating mount point {}", mountpoint.display()))?;
        info!("created mount point {}", mountpoint.display());
    }
    let mountpoint = std::fs::canonicalize(mountpoint)
        .with_context(|| format!("mount point {}", mountpoint.display()))?;
    let fs = Arc::new(
        StreamFs::new(store, Some(mountpoint.clone()))
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("reading the store")?,
    );
    if !opts.ignored.is_empty() {
        info!(
            "mount options ignored (they concern mount(8), not the mount): {}",
            opts.ignored.join(",")
        );
    }
    raise_open_file_limit();
    if let Some(addr) = &opts.metrics {
        streamfs::metrics::serve(addr, fs.clone())
            .with_context(|| format!("starting the metrics endpoint ({addr:?})"))?;
    }
    let mut cfg = Config::default();
    if fs.read_only() {
        warn!(
            "store {} is on a read-only filesystem: mounted read-only (reads work; inserting, promoting and removing fail with EROFS)",
            fs.store().root().display()
        );
        cfg.mount_options.push(MountOption::RO);
    }
    // The store as the mount's source, so `findmnt`, `mount -a` and
    // /proc/mounts name it (fuser 0.18 splits a name with commas: those
    // fall back to "streamfs").
    let fsname = opts.fsname.clone().unwrap_or_else(|| {
        let s = fs.store().root().display().to_string();
        if s.contains([',', ' ', '\t', '\n']) {
            "streamfs".to_string()
        } else {
            s
        }
    });
    cfg.mount_options.push(MountOption::FSName(fsname));
    // fuser 0.18's own mount(2) drops `Subtype`; handed to the kernel as
    // an option, it makes the type `fuse.streamfs`, which `findmnt -t`,
    // `mount -a` and `umount -t` match against fstab.
    cfg.mount_options
        .push(MountOption::CUSTOM("subtype=streamfs".into()));
    // A read-only mount, made to be served by nginx and rsync, lets the
    // kernel answer opens (see `FuseFs::open`) unless told otherwise.
    let read_only = fs.read_only() || opts.kernel.contains(&MountOption::RO);
    let reads = if read_only && !opts.passthrough {
        Reads::KernelOpens
    } else if passthrough {
        Reads::Passthrough
    } else {
        Reads::Daemon
    };
    cfg.mount_options.extend(opts.kernel);
    cfg.acl = opts.acl;
    // Two workers: a slow commit (fsync) does not stall every read.
    cfg.n_threads = Some(2);
    let before = daemon::device_of(&mountpoint)?;
    let caches = Arc::new(KernelCaches::default());
    let session = fuser::Session::new(
        FuseFs::new(fs.clone(), reads, caches.clone()),
        &mountpoint,
        &cfg,
    )
    .with_context(|| format!("mounting on {}", mountpoint.display()))?;
    info!(
        "mounted {} on {} (generation {})",
        fs.store().root().display(),
        mountpoint.display(),
        fs.generation()
    );

    caches.attach(session.notifier());
    let record = daemon::GenerationRecord::new(fs.store().root(), &mountpoint);
    spawn_generation_watch(fs.clone(), caches, record)?;
    spawn_reaper(fs.clone())?;

    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let sig_handle = signals.handle();
    let mnt = mountpoint.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                info!("signal {sig}: unmounting {}", mnt.display());
                unmount(&mnt);
            }
        })?;

    // The session serves on this thread; another one waits until the mount
    // point answers, then lets the caller go.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mnt = mountpoint.clone();
    std::thread::Builder::new()
        .name("readiness".into())
        .spawn(move || {
            let r = daemon::wait_until_served(&mnt, before, Duration::from_secs(60));
            let _ = ready_tx.send(r);
        })?;
    let serve = session.spawn()?;
    // The device of this mount, once it answers: what the mount point shows
    // while it is still this mount (see `serve_until_unmounted`).
    let mut served = None;
    match ready_rx.recv() {
        Ok(Ok(())) => {
            served = daemon::device_of(&mountpoint).ok();
            readiness.ready();
            if let Some(every) = streamfs::watchdog::interval_from_env() {
                streamfs::watchdog::spawn(mountpoint.clone(), every)?;
            }
        }
        Ok(Err(e)) => {
            unmount(&mountpoint);
            let _ = serve_until_unmounted(serve, &mountpoint, None);
            return Err(e);
        }
        Err(_) => {}
    }
    let r = serve_until_unmounted(serve, &mountpoint, served)?;
    sig_handle.close();
    daemon::GenerationRecord::clear(fs.store().root());
    // Removals acknowledged in the last moments are committed, not lost.
    if let Err(e) = fs.flush_removals() {
        warn!("committing removals at unmount: {e}");
    }
    r.context("serving the mount")?;
    info!("unmounted {}", mountpoint.display());
    Ok(())
}

/// Drops the kernel's caches when the generation moves: commits made
/// beside the mount (mountctl, the reaper), and the cached pages of files
/// after the mount's own commits, which a request handler must not drop
/// itself (see [`streamfs::caches`]).
fn spawn_generation_watch(
    fs: Arc<StreamFs>,
    caches: Arc<KernelCaches>,
    mut record: daemon::GenerationRecord,
) -> Result<()> {
    std::thread::Builder::new()
        .name("generation-watch".into())
        .spawn(move || {
            let mut last = fs.refresh();
            record.show(last);
            loop {
                // Woken at once by the mount's own commits; polls the store
                // for the others.
                let g = fs.wait_for_change(last, Duration::from_millis(200));
                fs.flush_removals_older_than(streamfs::fs::REMOVAL_WINDOW);
                if g == last {
                    continue;
                }
                last = g;
                caches.drop_all(&fs);
                record.show(g);
            }
        })?;
    Ok(())
}

/// Reaps orphans older than the store's grace while mounted (see
/// [`reaper`] for the interval).
fn spawn_reaper(fs: Arc<StreamFs>) -> Result<()> {
    let every = reaper::interval(fs.store().config().grace);
    info!(
        "orphans older than {}s are reaped; checked every {}s",
        fs.store().config().grace.as_secs(),
        every.as_secs()
    );
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                if reaper::reap_due(fs.store()) > 0 {
                    fs.refresh();
                }
            }
        })?;
    Ok(())
}

/// Waits until the session ends (the file system was unmounted: `umount
/// MNT`, or [`unmount`] on a signal) and returns how it ended.
///
/// The daemon, not fuser, unmounts: fuser's session handle unmounts again
/// when it is dropped, and after a normal `umount MNT` the kernel answers
/// that second attempt with EINVAL, which fuser logs as a warning on every
/// clean unmount. So the handle is not dropped (what it holds, a descriptor
/// of `/dev/fuse` whose connection has ended, goes with the process).
/// A session that ended normally was unmounted: the mount point may
/// already show another mount (`mount -a` right after `umount`), which must
/// not be touched. One that failed while the mount point still shows this
/// mount (`served`, its device), or a dead one, is unmounted here.
fn serve_until_unmounted(
    mut serve: fuser::BackgroundSession,
    mountpoint: &Path,
    served: Option<u64>,
) -> Result<std::io::Result<()>> {
    let session = std::mem::replace(&mut serve.guard, std::thread::spawn(|| Ok(())));
    let r = session
        .join()
        .map_err(|_| anyhow::anyhow!("the session thread panicked"));
    std::mem::forget(serve);
    let failed = !matches!(r, Ok(Ok(())));
    // Still this mount, or a dead one (its stat fails: not connected).
    let still_ours =
        served.is_some_and(|d| daemon::device_of(mountpoint).map_or(true, |now| now == d));
    if failed && still_ours {
        unmount(mountpoint);
    }
    r
}

/// Unmounts; a busy mount is detached lazily (fuser 0.18 as root fails with
/// EBUSY there), and the session ends once its last user lets go.
fn unmount(mnt: &Path) {
    let Ok(c) = std::ffi::CString::new(mnt.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: a valid NUL-terminated path; umount2 reads nothing else.
    let rc = unsafe { libc::umount2(c.as_ptr(), 0) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        warn!("unmounting {}: {e}; detaching lazily", mnt.display());
        // SAFETY: as above.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            warn!(
                "lazy unmount of {}: {}",
                mnt.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Every open file of the mount is a descriptor of the daemon's (its pool
/// blob), and a web server caching descriptors (nginx's `open_file_cache`)
/// keeps thousands open: the soft limit on open files (often 1024) is
/// raised to the hard one, as the limit is meant to be used.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let soft = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            tracing::debug!("open files limit raised from {soft} to {}", lim.rlim_max);
        }
    }
}
