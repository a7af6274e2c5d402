//! `streamfs STORE MOUNTPOINT [-o OPTS] [--foreground] [--no-passthrough]`
//!
//! Mounts the store (creating it with the default configuration when
//! absent) and serves it until SIGINT or SIGTERM, or until it is unmounted
//! (`umount MOUNTPOINT`). Without `--foreground` it detaches once the mount
//! answers and logs to the system log (or to `-o log=FILE`); the exit code
//! then says whether the mount came up, which is what `mount(8)` relies on
//! when it runs `streamfs STORE MNT -o …` for a `fuse.streamfs` fstab line.
//! While mounted, it picks up commits made beside it and reaps orphans older
//! than the store's grace.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use fuser::{Config, MountOption};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use streamfs::caches::KernelCaches;
use streamfs::daemon::{self, LogTo, Readiness};
use streamfs::fs::StreamFs;
use streamfs::fuse::FuseFs;
use streamfs::options::MountOpts;
use streamfs::reaper;
use streamfs_core::store::Store;
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(
    version,
    about = "Mount a streamfs store: simplestreams streams as directories"
)]
struct Args {
    /// The store directory (created with the default store.toml if absent).
    store: PathBuf,
    /// Where to mount it (created if absent).
    mountpoint: PathBuf,
    /// Mount options, comma-separated: allow_other, allow_root,
    /// default_permissions, ro/rw, nodev, nosuid, noexec, noatime, …;
    /// log=FILE, no_passthrough, passthrough (read-only mounts: keep FUSE
    /// passthrough rather than opens answered by the kernel); mount(8)'s own (defaults, nofail, _netdev,
    /// x-systemd.*) are ignored; anything else is refused.
    #[arg(short = 'o', value_delimiter = ',')]
    options: Vec<String>,
    /// Stay in the foreground and log to stderr (for systemd and terminals);
    /// otherwise detach once the mount answers and log to syslog.
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Answer every read in the daemon instead of FUSE passthrough.
    #[arg(long)]
    no_passthrough: bool,
    /// Log to this file instead of stderr or syslog (same as -o log=FILE).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    // Everything that can be refused without touching the store is checked
    // before detaching, so the caller sees it on its terminal.
    let opts = match MountOpts::parse(&args.options) {
        Ok(o) => o,
        Err(e) => fail(&e.to_string()),
    };
    // The daemon works from `/`: relative paths are resolved first.
    let (store, mountpoint) = match (
        std::path::absolute(&args.store),
        std::path::absolute(&args.mountpoint),
    ) {
        (Ok(s), Ok(m)) => (s, m),
        (Err(e), _) | (_, Err(e)) => fail(&format!("resolving the paths: {e}")),
    };
    let log_file = args.log.clone().or_else(|| opts.log.clone());
    let log_file = match log_file.map(|f| std::path::absolute(&f)).transpose() {
        Ok(f) => f,
        Err(e) => fail(&format!("log file: {e}")),
    };
    let (log, mut readiness) = if args.foreground {
        (
            log_file.map_or(LogTo::Stderr, LogTo::File),
            Readiness::foreground(),
        )
    } else {
        // Only the child returns.
        match daemon::detach() {
            Ok(r) => (log_file.map_or(LogTo::Syslog, LogTo::File), r),
            Err(e) => fail(&format!("{e:#}")),
        }
    };
    if let Err(e) = daemon::init_logging(&log) {
        readiness.failed(&format!("{e:#}"));
        fail(&format!("{e:#}"));
    }
    let passthrough = !(args.no_passthrough || opts.no_passthrough);
    if let Err(e) = run(&store, &mountpoint, opts, passthrough, &mut readiness) {
        error!("{e:#}");
        readiness.failed(&format!("{e:#}"));
        // Detached, stderr is /dev/null: the parent printed it already.
        eprintln!("streamfs: {e:#}");
        std::process::exit(1);
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("streamfs: {msg}");
    std::process::exit(1);
}

fn run(
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
    let kernel_opens = read_only && !opts.passthrough;
    cfg.mount_options.extend(opts.kernel);
    cfg.acl = opts.acl;
    // Two workers: a slow commit (fsync) does not stall every read.
    cfg.n_threads = Some(2);
    let before = daemon::device_of(&mountpoint)?;
    let caches = Arc::new(KernelCaches::default());
    let session = fuser::Session::new(
        FuseFs::new(fs.clone(), passthrough, kernel_opens, caches.clone()),
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
    let serve = std::thread::Builder::new()
        .name("session".into())
        .spawn(move || session.run())?;
    match ready_rx.recv() {
        Ok(Ok(())) => {
            readiness.ready();
            if let Some(every) = streamfs::watchdog::interval_from_env() {
                streamfs::watchdog::spawn(mountpoint.clone(), every)?;
            }
        }
        Ok(Err(e)) => {
            unmount(&mountpoint);
            let _ = serve.join();
            return Err(e);
        }
        Err(_) => {}
    }
    let r = serve
        .join()
        .map_err(|_| anyhow::anyhow!("the session thread panicked"))?;
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
