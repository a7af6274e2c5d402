//! The daemon's metrics, opt-in with `-o metrics=ADDR`, in the Prometheus
//! text format: requests by operation, errors by errno, the latency of the
//! requests that committed, the generation served, kernel cache
//! invalidations, open handles and the daemon's RSS.
//!
//! Counters are process-wide atomics, so counting costs a FUSE request one
//! relaxed add and no lock. The endpoint listens only on a loopback address
//! or a unix socket (made `0600`): it needs no credentials because nothing
//! off the host reaches it, and the socket's mode keeps other local users
//! out.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::fs::StreamFs;

/// The requests counted, by the name Prometheus shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lookup,
    Getattr,
    Setattr,
    Readlink,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Forget,
    Access,
    Mknod,
    Getxattr,
    Listxattr,
    Create,
}

const OPS: [Op; 25] = [
    Op::Lookup,
    Op::Getattr,
    Op::Setattr,
    Op::Readlink,
    Op::Mkdir,
    Op::Unlink,
    Op::Rmdir,
    Op::Symlink,
    Op::Rename,
    Op::Link,
    Op::Open,
    Op::Read,
    Op::Write,
    Op::Flush,
    Op::Release,
    Op::Fsync,
    Op::Opendir,
    Op::Readdir,
    Op::Readdirplus,
    Op::Forget,
    Op::Access,
    Op::Mknod,
    Op::Getxattr,
    Op::Listxattr,
    Op::Create,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Lookup => "lookup",
            Op::Getattr => "getattr",
            Op::Setattr => "setattr",
            Op::Readlink => "readlink",
            Op::Mkdir => "mkdir",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Symlink => "symlink",
            Op::Rename => "rename",
            Op::Link => "link",
            Op::Open => "open",
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Release => "release",
            Op::Fsync => "fsync",
            Op::Opendir => "opendir",
            Op::Readdir => "readdir",
            Op::Readdirplus => "readdirplus",
            Op::Forget => "forget",
            Op::Access => "access",
            Op::Mknod => "mknod",
            Op::Getxattr => "getxattr",
            Op::Listxattr => "listxattr",
            Op::Create => "create",
        }
    }
}

/// Upper bounds (seconds) of the commit latency histogram's buckets.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Errnos are counted in a small table: the ones the mount returns fit.
const ERRNOS: usize = 134;

struct Counters {
    requests: [AtomicU64; OPS.len()],
    errors: [AtomicU64; ERRNOS],
    commit_buckets: [AtomicU64; BUCKETS.len()],
    commit_count: AtomicU64,
    commit_micros: AtomicU64,
    invalidations: AtomicU64,
}

static COUNTERS: Counters = Counters {
    requests: [const { AtomicU64::new(0) }; OPS.len()],
    errors: [const { AtomicU64::new(0) }; ERRNOS],
    commit_buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
    commit_count: AtomicU64::new(0),
    commit_micros: AtomicU64::new(0),
    invalidations: AtomicU64::new(0),
};

/// Counts one request of `op`.
pub fn request(op: Op) {
    let i = OPS
        .iter()
        .position(|o| *o == op)
        .expect("every op is listed");
    COUNTERS.requests[i].fetch_add(1, Ordering::Relaxed);
}

/// Counts one failed request by its errno.
pub fn error(errno: i32) {
    if let Some(c) = usize::try_from(errno)
        .ok()
        .and_then(|e| COUNTERS.errors.get(e))
    {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Records the latency of a request that committed a generation.
pub fn commit(took: Duration) {
    let secs = took.as_secs_f64();
    for (b, c) in BUCKETS.iter().zip(&COUNTERS.commit_buckets) {
        if secs <= *b {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    COUNTERS.commit_count.fetch_add(1, Ordering::Relaxed);
    COUNTERS
        .commit_micros
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
}

/// Counts `n` kernel cache invalidations (entries and inodes).
pub fn invalidations(n: u64) {
    COUNTERS.invalidations.fetch_add(n, Ordering::Relaxed);
}

/// The daemon's resident set, from `/proc/self/statm` (pages of 4 KiB on
/// the machines streamfs runs on; the page size is read from the aux
/// vector by nothing in std, and statm's second field is in pages).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The metrics page for `fs`.
pub fn render(fs: &StreamFs) -> String {
    let mut out = String::new();
    let c = &COUNTERS;
    out.push_str("# HELP streamfs_requests_total FUSE requests answered, by operation.\n");
    out.push_str("# TYPE streamfs_requests_total counter\n");
    for (op, n) in OPS.iter().zip(&c.requests) {
        let _ = writeln!(
            out,
            "streamfs_requests_total{{op=\"{}\"}} {}",
            op.name(),
            n.load(Ordering::Relaxed)
        );
    }
    out.push_str("# HELP streamfs_errors_total Failed FUSE requests, by errno.\n");
    out.push_str("# TYPE streamfs_errors_total counter\n");
    for (e, n) in c.errors.iter().enumerate() {
        let n = n.load(Ordering::Relaxed);
        if n > 0 {
            let name = errno_name(e as i32);
            let _ = writeln!(out, "streamfs_errors_total{{errno=\"{name}\"}} {n}");
        }
    }
    out.push_str(
        "# HELP streamfs_commit_request_seconds Latency of the requests that committed a generation.\n",
    );
    out.push_str("# TYPE streamfs_commit_request_seconds histogram\n");
    for (b, n) in BUCKETS.iter().zip(&c.commit_buckets) {
        let _ = writeln!(
            out,
            "streamfs_commit_request_seconds_bucket{{le=\"{b}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    let count = c.commit_count.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "streamfs_commit_request_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "streamfs_commit_request_seconds_sum {}",
        c.commit_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "streamfs_commit_request_seconds_count {count}");
    let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    gauge(
        &mut out,
        "streamfs_generation",
        "The generation the mount serves.",
        fs.generation(),
    );
    let _ = writeln!(
        out,
        "# HELP streamfs_kernel_invalidations_total Kernel cache entries and inodes invalidated.\n\
         # TYPE streamfs_kernel_invalidations_total counter\n\
         streamfs_kernel_invalidations_total {}",
        c.invalidations.load(Ordering::Relaxed)
    );
    gauge(
        &mut out,
        "streamfs_open_handles",
        "Files open through the mount.",
        fs.open_handles() as u64,
    );
    if let Some(rss) = rss_bytes() {
        gauge(
            &mut out,
            "streamfs_resident_memory_bytes",
            "The daemon's resident set.",
            rss,
        );
    }
    out
}

fn errno_name(e: i32) -> String {
    let known = [
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::EIO, "EIO"),
        (libc::EBADF, "EBADF"),
        (libc::EACCES, "EACCES"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::EXDEV, "EXDEV"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::EFBIG, "EFBIG"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EROFS, "EROFS"),
        (libc::EMLINK, "EMLINK"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::ENODATA, "ENODATA"),
        (libc::ENOTSUP, "ENOTSUP"),
        (libc::ESTALE, "ESTALE"),
        (libc::ERANGE, "ERANGE"),
    ];
    known
        .iter()
        .find(|(n, _)| *n == e)
        .map_or_else(|| e.to_string(), |(_, name)| name.to_string())
}

/// Where the endpoint listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl MetricsAddr {
    /// `127.0.0.1:9101`, `[::1]:9101`, `localhost:9101` or an absolute path
    /// (a unix socket); any other address is refused, so the endpoint is
    /// never reachable from off the host.
    pub fn parse(s: &str) -> Result<MetricsAddr, String> {
        if s.starts_with('/') {
            return Ok(MetricsAddr::Unix(PathBuf::from(s)));
        }
        let s2 = s
            .strip_prefix("localhost:")
            .map(|p| format!("127.0.0.1:{p}"));
        let addr: SocketAddr = s2.as_deref().unwrap_or(s).parse().map_err(|_| {
            format!(
                "metrics={s}: expected 127.0.0.1:PORT, [::1]:PORT, localhost:PORT or /path/to.sock"
            )
        })?;
        let loopback = match addr.ip() {
            IpAddr::V4(ip) => ip.is_loopback(),
            IpAddr::V6(ip) => ip.is_loopback(),
        };
        if !loopback {
            return Err(format!(
                "metrics={s}: the metrics endpoint listens on loopback or a unix socket only (it has no authentication)"
            ));
        }
        Ok(MetricsAddr::Tcp(addr))
    }
}

/// Starts the endpoint's thread: every request gets the page (any path:
/// Prometheus asks for `/metrics`).
pub fn serve(addr: &MetricsAddr, fs: Arc<StreamFs>) -> std::io::Result<()> {
    match addr {
        MetricsAddr::Tcp(a) => {
            let l = TcpListener::bind(a)?;
            info!("metrics on http://{}/metrics", l.local_addr()?);
            spawn(
                move || l.accept().map(|(c, _)| Box::new(c) as Box<dyn Conn>),
                fs,
            )
        }
        MetricsAddr::Unix(p) => {
            let _ = std::fs::remove_file(p);
            let l = UnixListener::bind(p)?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))?;
            info!("metrics on unix socket {}", p.display());
            spawn(
                move || l.accept().map(|(c, _)| Box::new(c) as Box<dyn Conn>),
                fs,
            )
        }
    }
}

trait Conn: std::io::Read + Write + Send {}
impl<T: std::io::Read + Write + Send> Conn for T {}

fn spawn(
    mut accept: impl FnMut() -> std::io::Result<Box<dyn Conn>> + Send + 'static,
    fs: Arc<StreamFs>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            loop {
                match accept() {
                    Ok(c) => {
                        if let Err(e) = answer(c, &fs) {
                            warn!("metrics: {e}");
                        }
                    }
                    Err(e) => {
                        warn!("metrics: accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(())
}

/// Reads the request head (bounded: a client that sends more than 8 KiB
/// of it is answered anyway) and writes the page.
fn answer(mut c: Box<dyn Conn>, fs: &StreamFs) -> std::io::Result<()> {
    {
        let mut r = BufReader::new(std::io::Read::take(&mut c, 8192));
        let mut line = String::new();
        while r.read_line(&mut line)? > 0 && line != "\r\n" && line != "\n" {
            line.clear();
        }
    }
    let body = render(fs);
    write!(
        c,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Lets refusal warnings through at a steady rate: a client in a loop
/// must not flood the journal. Up to `burst` at once, refilled at `per_sec`;
/// what is held back is counted and reported with the next line let through.
pub struct RateLimit {
    state: Mutex<Bucket>,
    burst: f64,
    per_sec: f64,
}

struct Bucket {
    tokens: f64,
    at: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new(burst: u32, per_sec: u32) -> RateLimit {
        RateLimit {
            state: Mutex::new(Bucket {
                tokens: burst as f64,
                at: None,
                suppressed: 0,
            }),
            burst: burst as f64,
            per_sec: per_sec as f64,
        }
    }

    /// Whether a line may be logged `now`; `Some(n)` lets it through with
    /// the number of lines held back since the last one.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut b = self.state.lock().expect("rate limit");
        if let Some(at) = b.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.per_sec;
            b.tokens = (b.tokens + refill).min(self.burst);
        }
        b.at = Some(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Some(std::mem::take(&mut b.suppressed))
        } else {
            b.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_or_a_socket_is_accepted() {
        assert!(matches!(
            MetricsAddr::parse("127.0.0.1:9101"),
            Ok(MetricsAddr::Tcp(_))
        ));
        assert!(matches!(
            MetricsAddr::parse("[::1]:9101"),
            Ok(MetricsAddr::Tcp(_))
        ));
        assert!(matches!(
            MetricsAddr::parse("localhost:0"),
            Ok(MetricsAddr::Tcp(_))
        ));
        assert!(matches!(
            MetricsAddr::parse("/run/streamfs/metrics.sock"),
            Ok(MetricsAddr::Unix(_))
        ));
        for bad in [
            "0.0.0.0:9101",
            "192.0.2.1:9101",
            "[::]:9101",
            "9101",
            "host:1",
        ] {
            let e = MetricsAddr::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn a_loop_of_refusals_is_held_to_the_rate_and_counted() {
        let limit = RateLimit::new(5, 2);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 100 refusals within 1 s: the burst of 5, then 2 more as the
        // bucket refills (one per 500 ms).
        let let_through: Vec<(u64, u64)> = (0..100)
            .filter_map(|i| {
                let ms = i * 10;
                limit.admit(at(ms)).map(|held| (ms, held))
            })
            .collect();
        assert_eq!(let_through.len(), 6, "{let_through:?}");
        assert!(let_through[..5].iter().all(|(_, held)| *held == 0));
        // The line after the quiet spell reports what was held back.
        assert!(let_through[5].1 > 0, "{let_through:?}");
        let held_before: u64 = let_through.iter().map(|(_, h)| h).sum();
        let next = limit.admit(at(10_000)).expect("refilled after 9 s");
        assert_eq!(held_before + next, 100 - 6);
    }
}
