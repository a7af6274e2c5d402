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

use std::path::PathBuf;

use clap::Parser;
use streamfs::daemon::{self, LogTo, Readiness};
use streamfs::options::MountOpts;
use tracing::error;

mod run;

/// A commit of a large stream builds and drops a whole state's worth of
/// small strings and maps; with glibc's allocator the daemon's memory kept
/// growing with commits (fragmented arenas are not given back), with
/// mimalloc it stays near one commit's working set (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    daemon::no_huge_pages();
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
    if let Err(e) = run::run(&store, &mountpoint, opts, passthrough, &mut readiness) {
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
