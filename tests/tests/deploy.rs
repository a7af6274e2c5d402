//! Deploying the mount: `streamfs` detaching as a daemon, `mount -t
//! fuse.streamfs` and an fstab line through Debian's mount.fuse3, and the
//! systemd unit shipped in contrib/ (verified by systemd-analyze, its
//! command lines run for real).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streamfs_tests::mount::{can_mount, is_mounted};
use streamfs_tests::serve::{contrib_file, installed};
use streamfs_tests::workspace_bin;

fn streamfs() -> PathBuf {
    workspace_bin("streamfs", "streamfs")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The pid of the process whose command line names `arg` (a unique temp
/// path), if one runs.
fn pid_with_arg(arg: &Path) -> Option<u32> {
    let want = arg.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let zombie = stat.rsplit(')').next()?.trim_start().starts_with('Z');
        (!zombie && cmdline.split(|b| *b == 0).any(|a| a == want)).then_some(pid)
    })
}

/// Waits (up to 20 s) for `cond`, panicking with `what()` otherwise.
fn wait_for(mut cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "{}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temp dir others may traverse, with a mount point `mnt` in it.
fn scratch() -> (tempfile::TempDir, PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let store = dir.path().join("store");
    (dir, store, mnt)
}

/// Unmounts `mnt` if a failed test left it mounted.
struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn detached_streamfs_exits_once_the_mount_answers_and_reports_errors() {
    if !can_mount() {
        return;
    }
    let (_dir, store, mnt) = scratch();
    let _guard = Unmount(mnt.clone());
    let log = mnt.with_file_name("streamfs.log");

    // Without --foreground: exit 0 once mounted, the store created, the
    // mount answering at once.
    let out = Command::new(streamfs())
        .arg(&store)
        .arg(&mnt)
        .arg("-o")
        .arg(format!("log={}", log.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "streamfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&mnt));
    assert_eq!(names(&mnt), ["daily", "released"]);
    assert!(store.join("store.toml").is_file());

    // The daemon runs on, detached in its own session; SIGTERM unmounts.
    let pid = pid_with_arg(&mnt).expect("the daemon runs");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], pid.to_string(), "the daemon leads its session");
    // SAFETY: kill(2) on the daemon found above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    wait_for(
        || !is_mounted(&mnt) && pid_with_arg(&mnt).is_none(),
        || "the daemon did not unmount and exit on SIGTERM".into(),
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("mounted"), "{text}");
    wait_for(
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("unmounted")
        },
        || std::fs::read_to_string(&log).unwrap_or_default(),
    );

    // Errors reach the caller's terminal and exit code, nothing mounted.
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(streamfs())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!is_mounted(&mnt), "mounted despite an error");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[
        store.as_os_str(),
        mnt.as_os_str(),
        "-o".as_ref(),
        "allow_other,bogus_opt".as_ref(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown mount option 'bogus_opt'"), "{err}");
    // A store that cannot be read: the error is found by the daemon after
    // the fork and handed back to the waiting parent.
    let broken = mnt.with_file_name("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("store.toml"), "grace = \"soon\"\n").unwrap();
    let (code, err) = run(&[broken.as_os_str(), mnt.as_os_str()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("store.toml") && err.contains("grace"), "{err}");
    assert!(pid_with_arg(&broken).is_none(), "a failed daemon lingers");
}

#[test]
fn mount_t_fuse_streamfs_and_an_fstab_line_mount_and_umount() {
    if !can_mount() {
        return;
    }
    let Some(_) = installed("mount.fuse3", "fuse3") else {
        return;
    };
    let Some(unshare) = installed("unshare", "util-linux") else {
        return;
    };
    let (dir, store, mnt) = scratch();
    // mount(8) runs mount.fuse3, which runs `streamfs STORE MNT -o OPTS`
    // found in the standard PATH. The binary is "installed" in
    // /usr/local/sbin of a private mount namespace, so the host's stays as
    // it is; the mounts live and die in that namespace too.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(streamfs(), bin.join("streamfs")).unwrap();
    let log1 = dir.path().join("mount-t.log");
    let log2 = dir.path().join("fstab.log");
    let fstab = dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# streamfs\n{} {} fuse.streamfs defaults,allow_other,nofail,_netdev,log={} 0 0\n",
            store.display(),
            mnt.display(),
            log2.display()
        ),
    )
    .unwrap();
    let script = r#"
        set -eu
        trap 'umount -l "$MNT" 2>/dev/null || true' EXIT
        mount --bind "$BIN" /usr/local/sbin

        mount -t fuse.streamfs -o allow_other,log="$LOG1" "$STORE" "$MNT"
        echo "1: $(findmnt -n -o FSTYPE,SOURCE "$MNT")"
        echo "1: $(ls "$MNT" | tr '\n' ' ')"
        umount "$MNT"
        if findmnt "$MNT" >/dev/null; then echo "1: still mounted"; exit 1; fi

        mount --fstab "$FSTAB" "$MNT"
        echo "2: $(findmnt -n -o FSTYPE,SOURCE "$MNT")"
        echo "2: $(ls "$MNT/daily/streams/v1" | tr '\n' ' ')"
        # Mounting what fstab lists again does nothing: the mount is known.
        mount --fstab "$FSTAB" -a
        echo "2: $(findmnt -n "$MNT" | wc -l) mount(s)"
        umount "$MNT"
        if findmnt "$MNT" >/dev/null; then echo "2: still mounted"; exit 1; fi

        if mount -t fuse.streamfs -o bogus_opt "$STORE" "$MNT" 2>"$ERR"; then
            echo "3: mounted with a bogus option"; exit 1
        fi
        echo "3: refused"
    "#;
    let err = dir.path().join("err");
    let out = Command::new(unshare)
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("BIN", &bin)
        .env("STORE", &store)
        .env("MNT", &mnt)
        .env("LOG1", &log1)
        .env("FSTAB", &fstab)
        .env("ERR", &err)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = || {
        let r = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "stdout:\n{stdout}\nstderr:\n{}\nlogs:\n{}{}",
            String::from_utf8_lossy(&out.stderr),
            r(&log1),
            r(&log2)
        )
    };
    assert!(out.status.success(), "{}", report());
    let source = store.display().to_string();
    let want = [
        format!("1: fuse.streamfs {source}"),
        "1: daily released ".to_string(),
        format!("2: fuse.streamfs {source}"),
        "2: com.ubuntu.maas:daily:v3:download.json index.json ".to_string(),
        "2: 1 mount(s)".to_string(),
        "3: refused".to_string(),
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, want, "{}", report());
    let e = std::fs::read_to_string(&err).unwrap();
    assert!(e.contains("unknown mount option 'bogus_opt'"), "{e}");
    // Both daemons saw their unmount and exited cleanly.
    for log in [&log1, &log2] {
        wait_for(
            || {
                std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .contains("unmounted")
            },
            report,
        );
    }
    assert!(pid_with_arg(&mnt).is_none(), "a daemon lingers");
    // The fstab line's own option (log=) reached the daemon.
    assert!(std::fs::read_to_string(&log2).unwrap().contains("mounted"));
}

/// A unit file of contrib/systemd with the binary and the instances'
/// directory moved under `base`, nothing else changed, verified by
/// systemd-analyze; run as systemd runs instance "test".
struct Unit {
    name: &'static str,
    text: String,
}

/// A started unit: its ExecStart process and its log (the journal).
struct Running {
    child: std::process::Child,
    log: PathBuf,
}

impl Running {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Unit {
    fn load(name: &'static str, base: &Path, dir: &Path, analyze: &Path) -> Unit {
        let text = contrib_file(&format!("systemd/{name}"))
            .replace("/usr/local/bin/streamfs", &streamfs().display().to_string())
            .replace("/srv/streamfs/", &format!("{}/", base.display()));
        let file = dir.join(name.replace("@.", "@test."));
        std::fs::write(&file, &text).unwrap();
        let v = Command::new(analyze)
            .arg("verify")
            .arg(&file)
            .output()
            .unwrap();
        let verr = String::from_utf8_lossy(&v.stderr);
        assert!(v.status.success(), "systemd-analyze verify {name}: {verr}");
        let instance = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !verr.contains(&instance),
            "systemd-analyze verify complains about {name}: {verr}"
        );
        assert!(text.contains("Type=notify"), "{name}");
        Unit { name, text }
    }

    /// The command lines of `key`, for instance "test" (the lines use no
    /// quoting; `-` means failure is ignored).
    fn exec(&self, key: &str) -> Vec<(bool, Vec<String>)> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| {
                let (ignore, v) = match v.strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, v),
                };
                let words = v
                    .replace("%i", "test")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                (ignore, words)
            })
            .collect()
    }

    fn run_all(&self, key: &str) {
        for (ignore, words) in self.exec(key) {
            let st = Command::new(&words[0])
                .args(&words[1..])
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(ignore || st.success(), "{}: {words:?}", self.name);
        }
    }

    /// ExecStartPre, then ExecStart until it notifies READY=1.
    fn start(&self, dir: &Path) -> Running {
        self.start_with(dir, &[]).0
    }

    /// As [`Unit::start`], with more environment (what systemd passes,
    /// e.g. `WATCHDOG_USEC`); returns the notification socket too.
    fn start_with(&self, dir: &Path, env: &[(&str, String)]) -> (Running, UnixDatagram) {
        self.run_all("ExecStartPre");
        let start = self.exec("ExecStart");
        assert_eq!(start.len(), 1, "{}", self.name);
        let words = &start[0].1;
        let notify = dir.join(format!("{}.notify", self.name));
        let _ = std::fs::remove_file(&notify);
        let sock = UnixDatagram::bind(&notify).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let log = dir.join(format!("{}.log", self.name));
        let child = Command::new(&words[0])
            .args(&words[1..])
            .env("NOTIFY_SOCKET", &notify)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut running = Running { child, log };
        let mut buf = [0u8; 256];
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{}: no READY=1: {e}\n{}", self.name, running.log_text()));
        assert_eq!(&buf[..n], b"READY=1", "{}", self.name);
        assert!(
            running.child.try_wait().unwrap().is_none(),
            "{}: ExecStart must stay in the foreground",
            self.name
        );
        // The journal gets the log on stderr.
        assert!(running.log_text().contains("mounted"), "{}", self.name);
        (running, sock)
    }

    /// ExecStop; the service's process then exits successfully.
    fn stop(&self, mut running: Running) {
        self.run_all("ExecStop");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = running.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "{}: {status}: {}",
            self.name,
            running.log_text()
        );
    }
}

/// The two units a mirror host runs: `streamfs@` (the read-write mount
/// operators copy into) and `streamfs-serve@` (the read-only mount nginx
/// and rsync serve, see contrib/nginx and contrib/rsyncd).
#[test]
fn the_systemd_units_verify_and_their_commands_mount_and_unmount() {
    if !can_mount() {
        return;
    }
    let Some(analyze) = installed("systemd-analyze", "systemd") else {
        return;
    };
    let (dir, _, _) = scratch();
    let base = dir.path().join("srv");
    let main = Unit::load("streamfs@.service", &base, dir.path(), &analyze);
    let serve = Unit::load("streamfs-serve@.service", &base, dir.path(), &analyze);
    let mnt = base.join("test/mnt");
    let served = base.join("test/serve");
    let _guards = (Unmount(mnt.clone()), Unmount(served.clone()));

    let m = main.start(dir.path());
    // Ready means served: the store was created and the mount answers.
    assert!(is_mounted(&mnt));
    assert_eq!(names(&mnt), ["daily", "released"]);
    assert!(base.join("test/store/store.toml").is_file());
    let s = serve.start(dir.path());
    assert!(is_mounted(&served));
    assert_eq!(names(&served), ["daily", "released"]);

    // What operators copy into the read-write mount is served; the served
    // mount takes no writes.
    let rel = "daily/noble/amd64/20250101/ga-24.04/generic/boot-kernel";
    std::fs::create_dir_all(mnt.join(rel).parent().unwrap()).unwrap();
    std::fs::write(mnt.join(rel), b"kernel").unwrap();
    wait_for(
        || std::fs::read(served.join(rel)).is_ok_and(|b| b == b"kernel"),
        || format!("the insert is not served\n{}", s.log_text()),
    );
    let refused = std::fs::write(served.join(rel), b"other").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS), "{refused}");
    assert!(
        s.log_text().contains("opens answered by the kernel"),
        "{}",
        s.log_text()
    );

    serve.stop(s);
    assert!(!is_mounted(&served));
    main.stop(m);
    assert!(!is_mounted(&mnt));
}

/// Receives notifications for `within`; returns those that arrived.
fn notifications(sock: &UnixDatagram, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => return got,
        }
    }
}

/// The state letter of /proc/PID/stat (`T` when stopped).
fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|r| r.trim_start().chars().next())
        .unwrap_or('?')
}

/// The watchdog of `streamfs@.service`, run as systemd runs it (no systemd
/// manager is PID 1 here, so the test is the manager's side of the
/// protocol: it passes `WATCHDOG_USEC` and listens on `NOTIFY_SOCKET`).
/// `WATCHDOG=1` arrives periodically while the mount answers and stops
/// while the daemon is stopped (SIGSTOP: a hung daemon); after the kill
/// systemd then sends, `ExecStopPost` clears the dead mount and the unit
/// starts again.
#[test]
fn the_watchdog_is_notified_only_while_the_mount_answers() {
    if !can_mount() {
        return;
    }
    let Some(analyze) = installed("systemd-analyze", "systemd") else {
        return;
    };
    let (dir, _, _) = scratch();
    let base = dir.path().join("srv");
    let unit = Unit::load("streamfs@.service", &base, dir.path(), &analyze);
    assert!(unit.text.contains("\nWatchdogSec=30\n"), "{}", unit.text);
    let mnt = base.join("test/mnt");
    let _guard = Unmount(mnt.clone());
    // systemd passes WatchdogSec in microseconds; one second here keeps
    // the test short (the daemon notifies at half of it).
    let env = [("WATCHDOG_USEC", "1000000".to_string())];
    let (running, sock) = unit.start_with(dir.path(), &env);
    let pid = running.child.id();

    let got = notifications(&sock, Duration::from_secs(3));
    let beats = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(beats >= 2, "{got:?}\n{}", running.log_text());

    // SAFETY: kill(2) on the daemon this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
    wait_for(
        || proc_state(pid) == 'T',
        || "the daemon did not stop".into(),
    );
    // What was sent before the stop took effect.
    let _ = notifications(&sock, Duration::from_millis(200));
    let got = notifications(&sock, Duration::from_secs(3));
    assert!(got.is_empty(), "notified while stopped: {got:?}");

    // What systemd does at the watchdog timeout: kill, then ExecStopPost.
    // SAFETY: as above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let mut running = running;
    let _ = running.child.wait();
    assert!(is_mounted(&mnt), "a killed daemon leaves its mount");
    // Listing it needs the dead daemon: refused.
    assert!(
        std::fs::read_dir(&mnt)
            .and_then(|mut d| d.next().transpose())
            .is_err()
    );
    unit.run_all("ExecStopPost");
    assert!(!is_mounted(&mnt), "ExecStopPost left the dead mount");

    // Restarted, it serves and notifies again.
    let (running, sock) = unit.start_with(dir.path(), &env);
    assert_eq!(names(&mnt), ["daily", "released"]);
    let got = notifications(&sock, Duration::from_secs(2));
    assert!(got.iter().any(|m| m == "WATCHDOG=1"), "{got:?}");
    unit.stop(running);
    unit.run_all("ExecStopPost");
    assert!(!is_mounted(&mnt));
}
