//! `streamfs STORE MOUNTPOINT [-o OPTS] [--foreground] [--no-passthrough]`
//!
//! Mounts the store (creating it with the default configuration when absent)
//! and serves it until SIGINT or SIGTERM, then unmounts. It always stays in
//! the foreground for now (`--foreground` is accepted for scripts that pass
//! it); run it under systemd or with `&` to detach.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use fuser::{Config, MountOption, SessionACL};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use streamfs::fs::StreamFs;
use streamfs::fuse::FuseFs;
use streamfs_core::store::Store;
use tracing::{info, warn};

#[derive(Parser)]
#[command(
    version,
    about = "Mount a streamfs store: simplestreams streams as directories"
)]
struct Args {
    /// The store directory (created with the default store.toml if absent).
    store: PathBuf,
    /// Where to mount it.
    mountpoint: PathBuf,
    /// Mount options, comma-separated: allow_other, allow_root, ro, and any
    /// option the kernel's fuse filesystem accepts.
    #[arg(short = 'o', value_delimiter = ',')]
    options: Vec<String>,
    /// Stay in the foreground (the only mode for now).
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Answer every read in the daemon instead of FUSE passthrough.
    #[arg(long)]
    no_passthrough: bool,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("streamfs: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let store = Store::open_or_init(&args.store)
        .with_context(|| format!("opening store {}", args.store.display()))?;
    let mountpoint = std::fs::canonicalize(&args.mountpoint)
        .with_context(|| format!("mount point {}", args.mountpoint.display()))?;
    let fs = Arc::new(
        StreamFs::new(store, Some(mountpoint.clone()))
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("reading the store")?,
    );
    let mut cfg = Config::default();
    if fs.read_only() {
        warn!(
            "store {} is on a read-only filesystem: mounted read-only (reads work; inserting, promoting and removing fail with EROFS)",
            args.store.display()
        );
        cfg.mount_options.push(MountOption::RO);
    }
    cfg.mount_options
        .push(MountOption::FSName("streamfs".into()));
    cfg.mount_options
        .push(MountOption::Subtype("streamfs".into()));
    for o in &args.options {
        match o.as_str() {
            "" => {}
            "allow_other" => cfg.acl = SessionACL::All,
            "allow_root" => cfg.acl = SessionACL::RootAndOwner,
            "ro" => cfg.mount_options.push(MountOption::RO),
            "auto_unmount" => {
                bail!("auto_unmount is not supported: streamfs unmounts on SIGINT/SIGTERM")
            }
            other => cfg
                .mount_options
                .push(MountOption::CUSTOM(other.to_string())),
        }
    }
    // Two workers: a slow commit (fsync) does not stall every read.
    cfg.n_threads = Some(2);
    let session = fuser::Session::new(
        FuseFs::new(fs.clone(), !args.no_passthrough),
        &mountpoint,
        &cfg,
    )
    .with_context(|| format!("mounting on {}", mountpoint.display()))?;
    info!(
        "mounted {} on {} (generation {})",
        args.store.display(),
        mountpoint.display(),
        fs.generation()
    );

    // Invalidate the kernel's caches when a commit made beside the mount
    // (mountctl) moves the generation. Done from this thread, never from a
    // request handler, where the kernel may hold the locks it needs.
    let notifier = session.notifier();
    let watch_fs = fs.clone();
    std::thread::Builder::new()
        .name("generation-watch".into())
        .spawn(move || {
            let mut last = watch_fs.refresh();
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let g = watch_fs.refresh();
                if g == last {
                    continue;
                }
                last = g;
                for (ino, _) in watch_fs.known_inodes() {
                    let _ = notifier.inval_inode(fuser::INodeNo(ino), 0, 0);
                }
            }
        })?;

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
    let r = session.run();
    sig_handle.close();
    r.context("serving the mount")?;
    info!("unmounted {}", mountpoint.display());
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
