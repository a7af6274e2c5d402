//! Serving a mount the way a mirror host does: nginx and rsyncd started
//! from the site and module shipped in `contrib/`, on free loopback ports,
//! stopped on drop; a small HTTP client to check what they serve.
//!
//! The running configurations are derived from the shipped files by
//! substituting only the port and paths, so the files users install are the
//! ones tested.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{missing, workspace_root};

/// A file shipped in `contrib/`.
pub fn contrib_file(rel: &str) -> String {
    let p = workspace_root().join("contrib").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The path of `program` when it is installed (PATH, then the sbin
/// directories a non-login root shell may lack), or `None` after a skip.
pub fn installed(program: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .or_else(|| {
            missing(&format!(
                "{program} not installed (apt-get install {package})"
            ))
        })
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits until something accepts connections on `port`, or panics with
/// `log()` (what the server said) after 20 s.
fn wait_for_port(port: u16, child: &mut Child, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited ({st}) before listening:\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening on {port} after 20s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a server: SIGTERM, then SIGKILL if it lingers.
pub(crate) fn stop(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// nginx (the Debian package) serving `root` through
/// `contrib/nginx/streamfs.conf`, master as root, workers as `www-data`.
pub struct Nginx {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

impl Nginx {
    /// Starts nginx with the shipped site, its `listen` lines replaced by
    /// one on a free loopback port and its `root` by `root`; `None` after a
    /// skip when nginx is not installed.
    pub fn start(root: &Path) -> Option<Nginx> {
        let nginx = installed("nginx", "nginx")?;
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let site = site_for(&contrib_file("nginx/streamfs.conf"), port, root);
        let d = dir.path();
        std::fs::write(d.join("streamfs.conf"), site).unwrap();
        // The main configuration Debian's /etc/nginx/nginx.conf would give,
        // with every file the master writes in this temp dir.
        let main = format!(
            "user www-data;\n\
             worker_processes 2;\n\
             daemon off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
               include /etc/nginx/mime.types;\n\
               default_type application/octet-stream;\n\
               access_log {d}/access.log;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               include {d}/streamfs.conf;\n\
             }}\n",
            d = d.display()
        );
        std::fs::write(d.join("nginx.conf"), main).unwrap();
        let mut child = Command::new(nginx)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-p")
            .arg(d)
            .arg("-e")
            .arg(d.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("stderr")).unwrap())
            .spawn()
            .expect("starting nginx");
        let log = || {
            let r = |n: &str| std::fs::read_to_string(d.join(n)).unwrap_or_default();
            format!("{}{}", r("stderr"), r("error.log"))
        };
        wait_for_port(port, &mut child, "nginx", log);
        Some(Nginx { dir, child, port })
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(self.port, path)
    }

    /// The real uids of the master's children (its workers), from /proc.
    pub fn worker_uids(&self) -> Vec<u32> {
        let master = self.child.id().to_string();
        let mut uids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
                continue;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next())
                    .map(str::to_string)
            };
            if field("PPid:").as_deref() == Some(master.as_str())
                && let Some(uid) = field("Uid:").and_then(|u| u.parse().ok())
            {
                uids.push(uid);
            }
        }
        uids
    }

    /// nginx's access log (one line per request).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// nginx's error log.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// The shipped site with its `listen` lines replaced by one on `port` and
/// its `root` by `root`.
pub fn site_for(site: &str, port: u16, root: &Path) -> String {
    let mut out = String::new();
    let mut listened = false;
    let mut rooted = false;
    for line in site.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if t.starts_with("listen ") {
            if !listened {
                out.push_str(&format!("{indent}listen 127.0.0.1:{port};\n"));
                listened = true;
            }
        } else if t.starts_with("root ") {
            out.push_str(&format!("{indent}root {};\n", root.display()));
            rooted = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(listened && rooted, "the site has no listen or root line");
    out
}

/// `rsync --daemon` on a free loopback port, with the module shipped in
/// `contrib/rsyncd/streamfs.conf` pointed at `path`.
pub struct Rsyncd {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    /// The module's name, as the shipped file declares it.
    pub module: String,
}

impl Rsyncd {
    pub fn start(path: &Path) -> Option<Rsyncd> {
        let rsync = installed("rsync", "rsync")?;
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let port = free_port();
        let module_conf = contrib_file("rsyncd/streamfs.conf");
        let mut module = None;
        let mut conf = format!(
            "pid file = {}/rsyncd.pid\nlog file = {}/rsyncd.log\n",
            d.display(),
            d.display()
        );
        for line in module_conf.lines() {
            let t = line.trim();
            if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                module = Some(name.to_string());
            }
            if t.starts_with("path") && t.contains('=') {
                conf.push_str(&format!("    path = {}\n", path.display()));
            } else {
                conf.push_str(line);
                conf.push('\n');
            }
        }
        let module = module.expect("the shipped rsyncd file declares a [module]");
        std::fs::write(d.join("rsyncd.conf"), conf).unwrap();
        let mut child = Command::new(rsync)
            .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--config={}", d.join("rsyncd.conf").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("stderr")).unwrap())
            .spawn()
            .expect("starting rsync --daemon");
        let log = || {
            let r = |n: &str| std::fs::read_to_string(d.join(n)).unwrap_or_default();
            format!("{}{}", r("stderr"), r("rsyncd.log"))
        };
        wait_for_port(port, &mut child, "rsyncd", log);
        Some(Rsyncd {
            dir,
            child,
            port,
            module,
        })
    }

    /// `rsync://127.0.0.1:PORT/MODULE/`.
    pub fn url(&self) -> String {
        format!("rsync://127.0.0.1:{}/{}/", self.port, self.module)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyncd.log")).unwrap_or_default()
    }
}

impl Drop for Rsyncd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// An HTTP response: status, headers (names lower-cased), body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on 127.0.0.1:port (HTTP/1.0, so the body ends at close).
pub fn http_get(port: u16, path: &str) -> HttpResponse {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reading the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP header");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("an HTTP status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
