//! Real mounts for the end-to-end tests: a [`Mount`] guard runs `streamfs`
//! on a fresh mount point and never leaves the mount behind, even when the
//! test panics.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{fixtures_dir, missing, workspace_bin};

/// A meph2-build output of the util scenario (`build-20250101.d`, …).
pub fn build_dir(version: &str) -> Option<PathBuf> {
    let d = fixtures_dir()?
        .join("maas-images/golden/util-scenario/builds")
        .join(format!("build-{version}.d"));
    if d.is_dir() {
        Some(d)
    } else {
        missing(&format!("{} missing", d.display()))
    }
}

/// Mounting needs root and /dev/fuse.
pub fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !Path::new("/dev/fuse").exists() {
        return missing::<()>("mount tests need root and /dev/fuse").is_some();
    }
    true
}

/// Whether `mnt` is a mount point now (per /proc/mounts).
pub fn is_mounted(mnt: &Path) -> bool {
    let m = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let want = mnt.to_string_lossy();
    m.lines()
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_ref()))
}

/// A running `streamfs STORE MNT`. Dropping it unmounts (`umount`, then
/// `umount -l` if busy) and reaps the daemon.
pub struct Mount {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Mount {
    /// Mounts `store` (created when absent) on a new mount point.
    pub fn new(store: &Path) -> Mount {
        Self::with_args(store, &[])
    }

    /// Mounts `store` with `-o OPTIONS` (e.g. `allow_other`).
    pub fn with_options(store: &Path, options: &[&str]) -> Mount {
        if options.is_empty() {
            return Self::with_args(store, &[]);
        }
        Self::with_args(store, &["-o", &options.join(",")])
    }

    /// Mounts with extra `streamfs` arguments (`-o allow_other`, …). The
    /// mount point's directory is world-searchable, so that other users
    /// reach the mount when it lets them.
    pub fn with_args(store: &Path, args: &[&str]) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod mount point's directory");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mount point");
        let log = dir.path().join("streamfs.log");
        let child = Command::new(workspace_bin("streamfs", "streamfs"))
            .arg(store)
            .arg(&mnt)
            .args(args)
            .arg("--foreground")
            // STREAMFS_TEST_LOG sets the daemons' log filter (e.g. debug).
            .env(
                "RUST_LOG",
                std::env::var("STREAMFS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawning streamfs");
        let mut m = Mount {
            _dir: dir,
            mnt,
            store: store.to_path_buf(),
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&m.mnt) {
            if let Some(st) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("streamfs exited ({st}) before mounting:\n{}", m.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "streamfs did not mount within 20s:\n{}",
                m.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    pub fn path(&self) -> &Path {
        &self.mnt
    }

    pub fn store(&self) -> &Path {
        &self.store
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Unmounts cleanly through the daemon's SIGTERM handler and checks it
    /// exits 0.
    pub fn unmount(mut self) {
        let child = self.child.as_ref().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        self.await_exit("SIGTERM");
    }

    /// Unmounts as a user does, `umount MNT`; checks the daemon then exits
    /// 0 and returns its log.
    pub fn umount(mut self) -> String {
        let out = Command::new("umount")
            .arg(&self.mnt)
            .output()
            .expect("umount");
        assert!(
            out.status.success(),
            "umount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.await_exit("umount");
        self.log_text()
    }

    fn await_exit(&mut self, after: &str) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "streamfs did not exit after {after}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "streamfs exited with {status}:\n{}",
            self.log_text()
        );
        assert!(!is_mounted(&self.mnt), "still mounted after {after}");
    }
}

impl Mount {
    /// SIGKILLs the daemon (a crash: no unmount, no cleanup) and clears the
    /// dead mount it leaves (`Transport endpoint is not connected`) with a
    /// lazy unmount, as an operator would before mounting again.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
        assert!(!is_mounted(&self.mnt), "dead mount left behind");
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let ok = Command::new("umount")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            }
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Creates (or truncates) a file, writes `data` and closes it, returning
/// the `close` result too: the mount inserts at `close`, and `std::fs::write`
/// ignores what `close` says.
pub fn write_closed(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::io::IntoRawFd;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    // SAFETY: a descriptor we own, closed once and not used afterwards.
    if unsafe { libc::close(f.into_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Every file under `root` with its bytes (symlinks as their target):
/// compares stores byte for byte.
pub fn tree_bytes(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(rel, t.to_string_lossy().as_bytes().to_vec());
            } else if ft.is_dir() {
                out.insert(format!("{rel}/"), vec![]);
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A listing of a mounted tree: path → (is_dir, size, mode, inode).
pub fn listing(root: &Path) -> BTreeMap<String, (bool, u64, u32, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (bool, u64, u32, u64)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let is_dir = m.is_dir();
            out.insert(
                rel,
                (is_dir, if is_dir { 0 } else { m.len() }, m.mode(), m.ino()),
            );
            if is_dir {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}
