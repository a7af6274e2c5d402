//! Helpers of the `mountctl build` tests with the builtin builder: a meph2
//! config for the Debian test root, running a build with its own scratch
//! directory ($TMPDIR) so stray mounts can be looked for there, and a
//! description of a directory tree (owners, modes, devices, hard links,
//! xattrs, contents) to compare a squashfs with its tarball.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::{Outcome, mountctl_bin};

/// A meph2 config with one Debian 12 release whose kernel row installs
/// `kpkg`, named as the util-scenario's candidate stream.
pub fn debian_config(kpkg: &str) -> String {
    format!(
        "releases:\n\
         \x20- version: \"12\"\n\
         \x20  release: bookworm\n\
         \x20  kernels:\n\
         \x20   - [bookworm, amd64, ga-12, generic, {kpkg}, [generic, ga-12]]\n\
         squashfs: True\n\
         root_image: False\n\
         enable_di: False\n\
         content_id: com.ubuntu.maas:candidate:v3:download\n\
         product_id_pre: com.ubuntu.maas.candidate:v3:boot\n\
         kname: '%(subarch)s'\n"
    )
}

/// A build's scratch space: `dir/scratch` is the builder's $TMPDIR.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(dir: &Path) -> Scratch {
        std::fs::create_dir_all(dir.join("scratch")).unwrap();
        Scratch {
            dir: dir.to_path_buf(),
        }
    }

    /// Runs `mountctl build --config CONFIG --log-dir DIR/logs ARGS…`
    /// with `TMPDIR=DIR/scratch`.
    pub fn build(&self, config: &str, extra: &[&str], args: &[&str]) -> Outcome {
        let cfg = self.dir.join("meph2.yaml");
        std::fs::write(&cfg, config).unwrap();
        let out = Command::new(mountctl_bin())
            .arg("build")
            .arg("--config")
            .arg(&cfg)
            .arg("--log-dir")
            .arg(self.dir.join("logs"))
            .args(extra)
            .args(args)
            .env("TMPDIR", self.dir.join("scratch"))
            .env_remove("RUST_LOG")
            .env_remove("MAAS_CLOUDIMG2EPH2")
            .stdin(Stdio::null())
            .output()
            .expect("running mountctl build");
        Outcome {
            stdout: out.stdout,
            stderr: out.stderr,
            code: out.status.code(),
        }
    }

    /// Asserts the builder left nothing behind: no mount under this
    /// directory (per /proc/mounts), an empty scratch directory.
    pub fn assert_clean(&self) {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let dir = self.dir.to_string_lossy();
        let stray: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(dir.as_ref()))
            .collect();
        assert!(stray.is_empty(), "stray mounts: {stray:#?}");
        let left: Vec<PathBuf> = std::fs::read_dir(self.dir.join("scratch"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "scratch left behind: {left:?}");
    }
}

/// The log a failed build names (`(log: PATH)`), with its text.
pub fn named_log(stderr: &str) -> (PathBuf, String) {
    let log: PathBuf = stderr
        .split("(log: ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no log named: {stderr}"));
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    (log, text)
}

/// Extended attributes of `p` (not following symlinks), name → value.
pub fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: c is a valid C string and the buffer is writable for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let mut out = BTreeMap::new();
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let cname = CString::new(name).unwrap();
        let mut val = vec![0u8; 65536];
        // SAFETY: valid C strings, buffer writable for its length.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        if m >= 0 {
            val.truncate(m as usize);
            out.insert(String::from_utf8_lossy(name).into_owned(), val);
        }
    }
    out
}

/// Every entry under `root` as one line: type, mode, owner, size (files),
/// device numbers, link target, mtime, xattrs, content hash, and the first
/// path of its hard-link group.
pub fn describe_tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(
        root: &Path,
        dir: &Path,
        inodes: &mut BTreeMap<(u64, u64), String>,
        out: &mut BTreeMap<String, String>,
    ) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let mut d = format!(
                "mode={:o} uid={} gid={} mtime={}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime()
            );
            if ft.is_file() {
                let group = inodes
                    .entry((m.dev(), m.ino()))
                    .or_insert_with(|| rel.clone());
                let sha = hex::encode(Sha256::digest(std::fs::read(&p).unwrap()));
                d += &format!(
                    " file size={} nlink={} links-to={group} sha256={sha}",
                    m.len(),
                    m.nlink()
                );
            } else if ft.is_symlink() {
                d += &format!(" symlink -> {}", std::fs::read_link(&p).unwrap().display());
            } else if ft.is_char_device() || ft.is_block_device() {
                d += &format!(" dev rdev={:x}", m.rdev());
            } else if ft.is_dir() {
                d += " dir";
            } else {
                d += " other";
            }
            for (k, v) in xattrs(&p) {
                d += &format!(" xattr {k}={}", hex::encode(v));
            }
            out.insert(rel, d);
            if ft.is_dir() {
                walk(root, &p, inodes, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut BTreeMap::new(), &mut out);
    out
}

/// A squashfs mounted read-only (loop) for reading; unmounted on drop.
pub struct SquashfsMount {
    pub dir: PathBuf,
}

impl SquashfsMount {
    pub fn new(image: &Path, dir: &Path) -> SquashfsMount {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "squashfs", "-o", "loop,ro"])
            .arg(image)
            .arg(dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount -t squashfs {}", image.display());
        SquashfsMount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for SquashfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// The version string a bzImage carries in its setup header (`6.1.0-28-amd64
/// (debian-kernel@…) #1 SMP …`), whose first word the booting kernel prints
/// after "Linux version".
pub fn bzimage_version(kernel: &[u8]) -> Option<String> {
    if kernel.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let off = u16::from_le_bytes([kernel[0x20e], kernel[0x20f]]) as usize + 0x200;
    let s = kernel.get(off..)?;
    let end = s.iter().position(|b| *b == 0)?;
    Some(String::from_utf8_lossy(&s[..end]).into_owned())
}
