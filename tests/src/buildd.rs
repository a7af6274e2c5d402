//! The build service under test: a store, a `streamfs-buildd serve` on a
//! free loopback port over SQLite or a PostgreSQL cluster the test starts
//! (and removes), workers running a small test builder, and `curl` as the
//! HTTP client a user would reach for. Everything is killed on drop.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mount::build_dir;
use crate::serve::free_port;
use crate::store::{SCENARIO_CONFIG, TestStore};
use crate::{missing, workspace_bin};

/// The builder for the tests that need a slow, failing, large or counted
/// build (kill -9 mid-build, lost workers, cancel, cancel during intake, 200
/// builds each run once); every other test runs `mountctl build --builder
/// fake`. It has `mountctl build`'s command line (`ARCH RELEASE VERSION
/// SOURCE OUT`) and its stage lines on stderr, prints log lines on stdout,
/// leaves a child in its process group (to prove a cancel kills the group),
/// then writes the util-scenario build of 20250101 renamed to VERSION and
/// ARCH. SOURCE picks the behaviour: `ok`, `slow` (1 s a step), `slow:S`,
/// `big` (its squashfs is 512 MiB, so the server's intake takes a while),
/// `quickfail` (fails without pauses). Each
/// run appends its VERSION to `runs` in the test's directory.
const TEST_BUILDER: &str = r#"#!/bin/sh
set -eu
arch=$1 release=$2 version=$3 source=$4 out=$5
step=0.1
case "$source" in slow) step=1 ;; slow:*) step=${source#slow:} ;; big|quickfail) step=0 ;; esac
echo "$version" >> "$BUILDD_TEST_DIR/runs"
echo "$$" >> "$BUILDD_TEST_DIR/pids"
sleep 1000 >/dev/null 2>&1 &
echo "$!" >> "$BUILDD_TEST_DIR/pids"
echo "$!" > "$BUILDD_TEST_DIR/child-$version"
echo "stage builder started" >&2
for i in 1 2 3 4; do
    echo "stage builder $((i * 20))%" >&2
    echo "log line $i"
    [ "$step" = 0 ] || sleep "$step"
done
if [ "$source" = quickfail ]; then
    echo "stage builder failed in 0.00s: failing on purpose" >&2
    exit 3
fi
mkdir -p "$out/$release/$arch/$version" "$out/streams/v1"
cp -r "$BUILDD_TEST_FIXTURE/noble/amd64/20250101/." "$out/$release/$arch/$version/"
for f in "$BUILDD_TEST_FIXTURE"/streams/v1/*.json; do
    sed "s/20250101/$version/g; s/amd64/$arch/g" "$f" > "$out/streams/v1/$(basename "$f")"
done
if [ "$source" = big ]; then
    sq="$out/$release/$arch/$version/squashfs"
    yes squashfs | head -c 536870912 > "$sq"
    sha=$(sha256sum "$sq" | cut -d' ' -f1)
    sed -i "s/5c88b2977d0b5eedce2477ac74bcacc12c4e56ad4edf254bb3f61b870ad71e57/$sha/; s/\"size\": 36\$/\"size\": 536870912/" "$out"/streams/v1/*.json
fi
echo "stage builder done in 0.40s" >&2
"#;

/// What a worker runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Builder {
    /// `mountctl build --builder fake` with meph2's v3 config from the
    /// fixtures: the real build command and stage lines, fake images.
    Fake,
    /// [`TEST_BUILDER`]: slow, failing, large or counted builds.
    Test,
    /// `mountctl build` with the builtin builder, its packages from the apt
    /// cache `apt_cache` (see [`crate::debian::apt_cache`]); the build
    /// config comes with each job.
    Builtin { apt_cache: PathBuf },
}

/// The `streamfs-buildd` binary ([`workspace_bin`]).
pub fn buildd_bin() -> PathBuf {
    workspace_bin("streamfs-buildd", "streamfs-buildd")
}

/// A PostgreSQL 15 cluster of Debian's `postgresql` package, run as the
/// `postgres` user on 127.0.0.1 on a free port, in a temp dir; stopped and
/// removed on drop.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    databases: std::cell::Cell<u32>,
}

impl Postgres {
    pub fn start() -> Option<Postgres> {
        let bin = fs::read_dir("/usr/lib/postgresql").ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").is_file())
                .max()
        });
        let Some(bin) = bin else {
            return missing("PostgreSQL not installed (apt-get install postgresql)");
        };
        let dir = PathBuf::from(format!(
            "/tmp/streamfs-buildd-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        fs::create_dir_all(&dir).expect("pg dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod pg dir");
        let port = free_port();
        let pg = Postgres {
            dir,
            bin,
            port,
            databases: Default::default(),
        };
        pg.as_postgres(&[
            "initdb",
            "-D",
            &pg.data(),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        pg.as_postgres(&[
            "pg_ctl",
            "-D",
            &pg.data(),
            "-l",
            &format!("{}/log", pg.dir.display()),
            "-w",
            "-o",
            &format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                pg.dir.display()
            ),
            "start",
        ]);
        Some(pg)
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir.display())
    }

    fn as_postgres(&self, args: &[&str]) {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(args[0]))
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .expect("runuser");
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new empty database's URL.
    pub fn new_database(&self) -> String {
        let n = self.databases.get() + 1;
        self.databases.set(n);
        let name = format!("buildd{n}");
        self.as_postgres(&[
            "createdb",
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            &name,
        ]);
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A server process.
pub struct Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn stop(&mut self) {
        crate::serve::stop(&mut self.child);
    }
    /// Waits until the server's log contains `text` (panics after `secs`).
    pub fn wait_log(&self, text: &str, secs: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.log_text().contains(text) {
            assert!(Instant::now() < deadline, "{what}: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    /// A server crash: SIGKILL, nothing flushed or finished.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A worker process; `kill9` simulates a dead host.
pub struct Worker {
    child: Child,
    pub id: String,
}

impl Worker {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        crate::serve::stop(&mut self.child);
    }
}

/// A store, its database, tokens, and the servers and workers of a test.
pub struct Service {
    pub store: TestStore,
    pub db: String,
    pub submit_token: PathBuf,
    pub worker_token: PathBuf,
    dir: PathBuf,
    builder: PathBuf,
    fixture: PathBuf,
    meph2_config: PathBuf,
    pub lease: f64,
    pub extra_args: Vec<String>,
    /// Environment of the servers started from now on.
    pub server_env: Vec<(String, String)>,
}

impl Service {
    /// A fresh store with the util-scenario's `candidate` stream; `db` is a
    /// PostgreSQL URL, or `None` for the default SQLite file in the store.
    pub fn new(db: Option<String>) -> Option<Service> {
        let fixture = build_dir("20250101")?;
        let meph2_config = crate::fixtures_dir()?.join("maas-images/upstream/conf/meph-v3.yaml");
        let store = TestStore::init(Some(SCENARIO_CONFIG));
        let dir = store.tmp.path().to_path_buf();
        let builder = dir.join("test-builder");
        fs::write(&builder, TEST_BUILDER).expect("write builder");
        fs::set_permissions(&builder, fs::Permissions::from_mode(0o755)).expect("chmod builder");
        let db = db.unwrap_or_else(|| format!("sqlite:{}", store.root.join("builds.db").display()));
        let mut s = Service {
            store,
            db,
            submit_token: dir.join("submit.token"),
            worker_token: dir.join("worker.token"),
            dir,
            builder,
            fixture,
            meph2_config,
            lease: 2.0,
            extra_args: Vec::new(),
            server_env: Vec::new(),
        };
        for (role, file) in [
            ("submit", s.submit_token.clone()),
            ("worker", s.worker_token.clone()),
        ] {
            let out = s.buildd(&["token", "create", "--role", role]);
            fs::write(&file, out.trim()).expect("write token");
        }
        s.extra_args.clear();
        Some(s)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `streamfs-buildd ARGS --store S --db D` to completion; its stdout.
    pub fn buildd(&self, args: &[&str]) -> String {
        let out = Command::new(buildd_bin())
            .args(args)
            .arg("--store")
            .arg(&self.store.root)
            .arg("--db")
            .arg(&self.db)
            .stdin(Stdio::null())
            .output()
            .expect("run streamfs-buildd");
        assert!(
            out.status.success(),
            "streamfs-buildd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a server (on `port`, or a free one) and waits until it answers.
    pub fn serve_on(&self, port: Option<u16>) -> Server {
        let port = port.unwrap_or_else(free_port);
        let log = self.dir.join(format!("server-{port}.log"));
        let mut cmd = Command::new(buildd_bin());
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--store")
            .arg(&self.store.root)
            .arg("--db")
            .arg(&self.db)
            .args(["--lease", &self.lease.to_string()])
            .args(&self.extra_args)
            .envs(self.server_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("server log"));
        let child = cmd.spawn().expect("start streamfs-buildd serve");
        let mut server = Server { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = server.child.try_wait() {
                panic!("server exited ({st}):\n{}", server.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "server not listening:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn serve(&self) -> Server {
        self.serve_on(None)
    }

    /// Starts a worker of `arch` named `id` against `server`, running
    /// `mountctl build --builder fake`.
    pub fn worker(&self, server: &Server, arch: &str, id: &str) -> Worker {
        self.worker_with(server, arch, id, Builder::Fake)
    }

    /// Starts a worker running `builder`.
    pub fn worker_with(&self, server: &Server, arch: &str, id: &str, builder: Builder) -> Worker {
        let build_cmd = match builder {
            Builder::Fake => format!("{} build --builder fake", crate::mountctl_bin().display()),
            Builder::Test => self.builder.display().to_string(),
            Builder::Builtin { apt_cache } => format!(
                "{} build --apt-cache {}",
                crate::mountctl_bin().display(),
                apt_cache.display()
            ),
        };
        let work = self.dir.join(format!("work-{id}"));
        let log = self.dir.join(format!("worker-{id}.log"));
        let child = Command::new(buildd_bin())
            .args([
                "worker",
                "--server",
                &server.url(),
                "--arch",
                arch,
                "--id",
                id,
            ])
            .arg("--token-file")
            .arg(&self.worker_token)
            .arg("--build-cmd")
            .arg(build_cmd)
            .arg("--work-dir")
            .arg(&work)
            .env("BUILDD_TEST_DIR", &self.dir)
            .env("BUILDD_TEST_FIXTURE", &self.fixture)
            .env("STREAMFS_MEPH2_CONFIG", &self.meph2_config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("worker log"))
            .spawn()
            .expect("start worker");
        Worker {
            child,
            id: id.to_string(),
        }
    }

    /// `mountctl builds ARGS` against `server` with the submit token.
    pub fn builds(&self, server: &Server, args: &[&str]) -> crate::Outcome {
        let mut all = vec!["builds", "--server"];
        let url = server.url();
        all.push(&url);
        let tf = self.submit_token.display().to_string();
        all.extend(["--token-file", &tf]);
        all.extend(args);
        self.store.mountctl(&all)
    }

    /// Submits a noble build through `mountctl builds submit`; the new
    /// build's id.
    pub fn submit(&self, server: &Server, arch: &str, version: &str, source: &str) -> i64 {
        self.submit_with(server, arch, "noble", version, source, &[])
    }

    /// Submits a build of `release` with more `builds submit` options
    /// (`--config F`).
    pub fn submit_with(
        &self,
        server: &Server,
        arch: &str,
        release: &str,
        version: &str,
        source: &str,
        extra: &[&str],
    ) -> i64 {
        let mut args = vec![
            "submit",
            "--arch",
            arch,
            "--release",
            release,
            "--version-name",
            version,
            "--source",
            source,
            "--stream",
            "candidate",
        ];
        args.extend_from_slice(extra);
        let out = self.builds(server, &args);
        assert_eq!(out.code, Some(0), "submit failed: {}", out.stderr_text());
        out.stdout_text()
            .trim()
            .parse()
            .expect("submit prints the id")
    }

    /// The pid of the child the builder of `version` left in its group.
    pub fn builder_child(&self, version: &str) -> Option<i32> {
        fs::read_to_string(self.dir.join(format!("child-{version}")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Builders orphaned by a killed worker.
        for pid in fs::read_to_string(self.dir.join("pids"))
            .unwrap_or_default()
            .lines()
        {
            if let Ok(p) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) on a pid our builders recorded.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }
}

/// `curl -sS` with a bearer token: (HTTP status, body).
pub fn curl(token: Option<&str>, method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, "-o", "-", "-w", "\n%{http_code}", url]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Polls a build until `pred` holds for it (or panics after `secs`).
pub fn wait_build(
    s: &Service,
    server: &Server,
    id: i64,
    secs: u64,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let token = fs::read_to_string(&s.submit_token).expect("token");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, body) = curl(
            Some(token.trim()),
            "GET",
            &format!("{}/api/v1/builds/{id}", server.url()),
            None,
        );
        if code == 200 {
            let v: Value = serde_json::from_str(&body).expect("build JSON");
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "build {id} never {what}: {v}\nserver log:\n{}",
                server.log_text()
            );
        } else {
            assert!(Instant::now() < deadline, "build {id}: HTTP {code} {body}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True while process `pid` exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
        .unwrap_or(false)
}
