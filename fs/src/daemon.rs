//! Running as a daemon: detaching from the caller once the mount answers,
//! telling systemd it is ready, and where the logs go.
//!
//! `mount(8)` (through `mount.fuse3`) and scripts wait for `streamfs` to
//! exit and read its exit code, so detaching must not report success
//! before the mount serves requests: the process forks before it starts
//! any thread, the child mounts, checks that the mount point answers, and
//! only then tells the parent, through a pipe, to exit 0. Any error before
//! that reaches the parent through the same pipe, which prints it and exits
//! 1; a child that dies without a word closes the pipe, which fails the
//! parent too.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The child's end of the pipe to the waiting parent; `None` in the
/// foreground, where there is nobody to tell.
pub struct Readiness {
    pipe: Option<File>,
}

impl Readiness {
    /// Nobody waits: the foreground.
    pub fn foreground() -> Readiness {
        Readiness { pipe: None }
    }

    /// Tells the parent (if any) to exit 0, and systemd (if it started us
    /// with `Type=notify`) that the service is up.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"ok\n");
        }
        notify_systemd("READY=1");
    }

    /// Tells the parent (if any) why the mount failed; it prints this and
    /// exits 1.
    pub fn failed(&mut self, why: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(why.as_bytes());
        }
    }
}

/// Forks. The parent waits for the child's word and exits with it (this
/// function never returns there); the child becomes a session leader with
/// its standard streams on /dev/null and its working directory at `/`, and
/// gets the [`Readiness`] to report with.
///
/// Must run before any thread is started: only the calling thread survives
/// a fork.
pub fn detach() -> Result<Readiness> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating the readiness pipe");
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (see above); both sides only use
    // async-signal-safe calls or fresh state afterwards.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("forking the daemon"),
        0 => {
            drop(rd);
            // SAFETY: setsid has no preconditions; failure (already a
            // group leader) is harmless.
            unsafe { libc::setsid() };
            redirect_stdio()?;
            std::env::set_current_dir("/").context("changing to /")?;
            Ok(Readiness {
                pipe: Some(File::from(wr)),
            })
        }
        child => {
            drop(wr);
            let mut word = String::new();
            let _ = File::from(rd).read_to_string(&mut word);
            if word == "ok\n" {
                std::process::exit(0);
            }
            let why = if word.is_empty() {
                let mut status = 0;
                // SAFETY: `child` is our child; `status` is a valid int.
                unsafe { libc::waitpid(child, &mut status, 0) };
                format!("the daemon exited before mounting (wait status {status})")
            } else {
                word
            };
            eprintln!("streamfs: {}", why.trim_end());
            std::process::exit(1);
        }
    }
}

fn redirect_stdio() -> Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    for fd in 0..=2 {
        // SAFETY: both descriptors are open; dup2 replaces `fd` atomically.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) } < 0 {
            return Err(std::io::Error::last_os_error()).context("redirecting stdio");
        }
    }
    Ok(())
}

/// Sends `state` to systemd's notification socket when systemd gave one
/// (`Type=notify` units); does nothing otherwise.
pub fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name),
        None => SocketAddr::from_pathname(Path::new(&path)),
    };
    let sent = addr.and_then(|a| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &a)
    });
    if let Err(e) = sent {
        tracing::warn!("notifying systemd ({}): {e}", path.to_string_lossy());
    }
}

/// The device of `path`, to see when a mount appears on it.
pub fn device_of(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("mount point {}", path.display()))?
        .dev())
}

/// Waits until `mountpoint` shows a filesystem other than the one it had
/// (`before`) and answers a `stat`, i.e. until the session serves requests.
pub fn wait_until_served(mountpoint: &Path, before: u64, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(m) = std::fs::metadata(mountpoint)
            && m.dev() != before
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not answer within {}s of mounting",
                mountpoint.display(),
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Where the logs go.
#[derive(Debug, Clone)]
pub enum LogTo {
    Stderr,
    File(PathBuf),
    /// The system log (`/dev/log`: journald or a syslog daemon), facility
    /// daemon, identity `streamfs`.
    Syslog,
}

/// Sets up `tracing` for `to`; `RUST_LOG` sets the level (info by default).
pub fn init_logging(to: &LogTo) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter());
    match to {
        LogTo::Stderr => builder.with_writer(std::io::stderr).init(),
        LogTo::File(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init()
        }
        LogTo::Syslog => {
            // SAFETY: the identity is a static C string, as openlog keeps
            // the pointer.
            unsafe { libc::openlog(c"streamfs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
            // syslog stamps the time and carries the level as the priority.
            builder
                .with_ansi(false)
                .without_time()
                .with_level(false)
                .with_writer(syslog::Syslog)
                .init()
        }
    }
    Ok(())
}

mod syslog {
    //! A `tracing` writer that hands each formatted event to `syslog(3)`
    //! at the priority of its level.

    use std::io::Write;

    use tracing::{Level, Metadata};
    use tracing_subscriber::fmt::MakeWriter;

    pub struct Syslog;

    pub struct Line {
        priority: libc::c_int,
        buf: Vec<u8>,
    }

    impl Write for Line {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.buf.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Drop for Line {
        fn drop(&mut self) {
            let text = String::from_utf8_lossy(&self.buf);
            for line in text.lines().filter(|l| !l.is_empty()) {
                let Ok(c) = std::ffi::CString::new(line.replace('\0', " ")) else {
                    continue;
                };
                // SAFETY: a constant "%s" format with one valid C string.
                unsafe { libc::syslog(self.priority, c"%s".as_ptr(), c.as_ptr()) };
            }
        }
    }

    impl<'a> MakeWriter<'a> for Syslog {
        type Writer = Line;
        fn make_writer(&'a self) -> Line {
            Line {
                priority: libc::LOG_INFO,
                buf: Vec::new(),
            }
        }
        fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
            let priority = match *meta.level() {
                Level::ERROR => libc::LOG_ERR,
                Level::WARN => libc::LOG_WARNING,
                Level::INFO => libc::LOG_INFO,
                _ => libc::LOG_DEBUG,
            };
            Line {
                priority,
                buf: Vec::new(),
            }
        }
    }
}

/// The record of the generation this mount shows, kept in the store's
/// `run/` directory for `mountctl status` (see
/// `streamfs_core::status::MountRecord`); [`GenerationRecord::clear`]
/// removes it at unmount.
pub struct GenerationRecord {
    store_root: PathBuf,
    mountpoint: PathBuf,
    failed: bool,
}

impl GenerationRecord {
    /// Clears the records of daemons that were killed, then starts ours.
    pub fn new(store_root: &Path, mountpoint: &Path) -> GenerationRecord {
        streamfs_core::status::MountRecord::remove_dead(store_root);
        GenerationRecord {
            store_root: store_root.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
            failed: false,
        }
    }

    /// Records that the mount now shows `generation`. A store on a
    /// read-only filesystem cannot hold the record: said once, then the
    /// mount shows as "generation unknown".
    pub fn show(&mut self, generation: u64) {
        let rec = streamfs_core::status::MountRecord {
            pid: std::process::id(),
            mountpoint: self.mountpoint.clone(),
            generation,
        };
        if let Err(e) = rec.save(&self.store_root)
            && !self.failed
        {
            self.failed = true;
            tracing::info!("mountctl status will not know this mount's generation: {e}");
        }
    }

    /// Removes this process' record (the mount is gone).
    pub fn clear(store_root: &Path) {
        streamfs_core::status::MountRecord::remove(store_root, std::process::id());
    }
}

/// Turns transparent huge pages off for this process. The daemon's memory
/// is many small allocations that live long (the view) beside short-lived
/// large ones (a commit's copy of the state); with huge pages, every 2 MiB
/// region that keeps one live object stays resident whole, and the
/// daemon's memory while serving a 40,000-item stream grew by about
/// 20 MB (BENCHMARKS.md). Best effort: a kernel without the setting keeps
/// its default.
pub fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        tracing::debug!(
            "transparent huge pages left on: {}",
            std::io::Error::last_os_error()
        );
    }
}
