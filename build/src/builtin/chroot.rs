//! The builder's scratch space and its throwaway chroots.
//!
//! A kernel is installed into an overlay of the unpacked root (overlayfs:
//! the root is the lower layer, the changes go to an upper dir in the
//! scratch space), with `/proc`, `/sys` and `/dev` mounted inside, services
//! kept from starting (`policy-rc.d` answering 101). Everything mounted is
//! unmounted when the guard drops, on success, failure or panic; the scratch
//! space is deleted only when nothing is mounted under it any more, so a
//! mount that would not go away never lets a recursive delete reach into
//! the host's `/dev`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::log::Log;
use crate::error::Result;

/// Mount points under `dir` (per /proc/mounts), deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| PathBuf::from(unescape(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    v
}

/// /proc/mounts writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn umount(path: &Path) -> bool {
    let quiet = |args: &[&str]| {
        Command::new("umount")
            .args(args)
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    quiet(&[]) || quiet(&["-l"])
}

/// Unmounts everything under `dir`; true when nothing is left mounted.
pub fn unmount_all(dir: &Path) -> bool {
    for m in mounts_under(dir) {
        umount(&m);
    }
    mounts_under(dir).is_empty()
}

/// A scratch directory (in `$TMPDIR`) removed on drop once nothing is
/// mounted under it.
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn new() -> std::io::Result<WorkDir> {
        let dir = tempfile::Builder::new()
            .prefix("streamfs-build-")
            .tempdir()?;
        Ok(WorkDir { path: dir.keep() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if unmount_all(&self.path) {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            tracing::error!(
                "{}: still mounted after cleanup, left in place: {:?}",
                self.path.display(),
                mounts_under(&self.path)
            );
        }
    }
}

/// A chroot over an overlay of `root`, unmounted on drop.
pub struct Chroot {
    scratch: PathBuf,
    dir: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Chroot {
    /// Mounts an overlay of `lower` at `scratch/merged` (upper and work dirs
    /// in `scratch`), or, when the kernel refuses overlayfs there, copies the
    /// root (`cp -a`, noted in the log). Then `/proc`, `/sys`, `/dev`.
    pub fn new(lower: &Path, scratch: &Path, log: &mut Log, step: &str) -> Result<Chroot> {
        let io = |e: std::io::Error| log_io(scratch, e);
        let dir = scratch.join("merged");
        for d in ["upper", "work", "merged"] {
            std::fs::create_dir_all(scratch.join(d)).map_err(io)?;
        }
        let mut c = Chroot {
            scratch: scratch.to_path_buf(),
            dir: dir.clone(),
            mounts: Vec::new(),
        };
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            scratch.join("upper").display(),
            scratch.join("work").display()
        );
        let overlay = log.run(
            step,
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&dir),
        );
        match overlay {
            Ok(()) => c.mounts.push(dir.clone()),
            Err(e) => {
                log.line(&format!(
                    "# overlayfs refused ({e}); copying the root instead (slower, same result)"
                ));
                log.run(
                    step,
                    Command::new("cp")
                        .args(["-a", "--reflink=auto", "-T"])
                        .arg(lower)
                        .arg(&dir),
                )?;
            }
        }
        for (what, args) in [
            ("proc", &["-t", "proc", "proc"][..]),
            ("sys", &["-t", "sysfs", "sysfs"][..]),
            ("dev", &["--bind", "/dev"][..]),
        ] {
            let at = dir.join(what);
            std::fs::create_dir_all(&at).map_err(|e| log_io(&at, e))?;
            log.run(step, Command::new("mount").args(args).arg(&at))?;
            c.mounts.push(at);
        }
        c.prepare().map_err(|e| log.fail(step, e))?;
        Ok(c)
    }

    /// The chroot's root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Binds a host directory at `inside` (a path in the chroot).
    pub fn bind(&mut self, host: &Path, inside: &str, log: &mut Log, step: &str) -> Result<()> {
        let at = self.dir.join(inside.trim_start_matches('/'));
        std::fs::create_dir_all(&at)
            .map_err(|e| log.fail(step, format!("{}: {e}", at.display())))?;
        log.run(step, Command::new("mount").arg("--bind").arg(host).arg(&at))?;
        self.mounts.push(at);
        Ok(())
    }

    /// Services never start (policy-rc.d), names resolve as on the host.
    fn prepare(&self) -> std::result::Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let policy = self.dir.join("usr/sbin/policy-rc.d");
        let fail = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        if let Some(d) = policy.parent() {
            std::fs::create_dir_all(d).map_err(|e| fail(d, e))?;
        }
        std::fs::write(
            &policy,
            "#!/bin/sh\n# streamfs build: no service starts\nexit 101\n",
        )
        .map_err(|e| fail(&policy, e))?;
        std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| fail(&policy, e))?;
        let resolv = self.dir.join("etc/resolv.conf");
        // Often a symlink into /run in images: replaced by the host's file.
        let _ = std::fs::remove_file(&resolv);
        if let Ok(host) = std::fs::read("/etc/resolv.conf") {
            std::fs::write(&resolv, host).map_err(|e| fail(&resolv, e))?;
        }
        Ok(())
    }

    /// Runs `args` inside the chroot (no stdin, a plain environment).
    pub fn run(&self, log: &mut Log, step: &str, args: &[&str]) -> Result<()> {
        log.run(
            step,
            Command::new("chroot")
                .arg(&self.dir)
                .args(args)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("HOME", "/root")
                .env("LC_ALL", "C")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null()),
        )
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            umount(&m);
        }
        if unmount_all(&self.scratch) {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }
}

fn log_io(p: &Path, e: std::io::Error) -> crate::error::Error {
    crate::error::Error::io(p, e)
}
