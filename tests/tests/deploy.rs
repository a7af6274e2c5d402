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

#[test]
fn the_systemd_unit_verifies_and_its_commands_mount_and_unmount() {
    if !can_mount() {
        return;
    }
    let Some(analyze) = installed("systemd-analyze", "systemd") else {
        return;
    };
    let (dir, _, _) = scratch();
    let unit_text = contrib_file("systemd/streamfs@.service");
    // The unit with the binary and the instance's directory moved here;
    // nothing else changes.
    let base = dir.path().join("srv");
    let unit_text = unit_text
        .replace("/usr/local/bin/streamfs", &streamfs().display().to_string())
        .replace("/srv/streamfs/", &format!("{}/", base.display()));
    let unit = dir.path().join("streamfs@test.service");
    std::fs::write(&unit, &unit_text).unwrap();
    let v = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let verr = String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "systemd-analyze verify: {verr}");
    assert!(
        !verr.contains("streamfs@test.service"),
        "systemd-analyze verify complains: {verr}"
    );

    // The service's command lines, as systemd runs them for instance
    // "test" (the lines use no quoting; `-` means failure is ignored).
    let exec = |key: &str| -> Vec<(bool, Vec<String>)> {
        unit_text
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
    };
    assert!(unit_text.contains("Type=notify"));
    let mnt = base.join("test/mnt");
    let _guard = Unmount(mnt.clone());
    for (ignore, words) in exec("ExecStartPre") {
        let st = Command::new(&words[0])
            .args(&words[1..])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ignore || st.success(), "{words:?}");
    }
    let start = exec("ExecStart");
    assert_eq!(start.len(), 1);
    let words = &start[0].1;
    let notify = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let log = dir.path().join("service.log");
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no READY=1: {e}\n{}",
            std::fs::read_to_string(&log).unwrap()
        )
    });
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means served: the store was created and the mount answers.
    assert!(is_mounted(&mnt));
    assert_eq!(names(&mnt), ["daily", "released"]);
    assert!(base.join("test/store/store.toml").is_file());
    assert!(
        child.try_wait().unwrap().is_none(),
        "ExecStart must stay in the foreground"
    );
    // The journal gets the log on stderr.
    assert!(std::fs::read_to_string(&log).unwrap().contains("mounted"));

    for (ignore, words) in exec("ExecStop") {
        let st = Command::new(&words[0]).args(&words[1..]).status().unwrap();
        assert!(ignore || st.success(), "{words:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the service did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(!is_mounted(&mnt));
}
