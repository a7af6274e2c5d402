//! The builtin builder on bad input, as root: a truncated tarball, a source
//! it does not read or an image it cannot mount, an unknown release or arch, a chroot step that fails,
//! a user who is not root.
//! Each exits 1 (2 for usage), names what failed and the log, leaves no
//! partial OUT, and no mount or scratch directory behind. (A kernel package
//! that does not exist is in build_real.rs: it needs the Debian root.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use streamfs_tests::build::{Scratch, debian_config, named_log};
use streamfs_tests::missing;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A tiny root tarball (`-root.tar.xz`): a package database with no
/// package, no apt, and 2 MiB of incompressible data so a truncated copy
/// still starts with whole tar headers.
fn tiny_root(dir: &Path) -> PathBuf {
    let root = dir.join("tiny");
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), b"").unwrap();
    std::fs::write(root.join("etc/hostname"), b"tiny\n").unwrap();
    let mut noise = std::fs::File::create(root.join("etc/noise")).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = Vec::with_capacity(2 << 20);
    while buf.len() < 2 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    noise.write_all(&buf).unwrap();
    let tarball = dir.join("tiny-root.tar.xz");
    let st = Command::new("tar")
        .arg("-cJf")
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    tarball
}

/// Asserts a failed build: exit `code`, stderr containing every `want`,
/// no OUT, nothing left mounted or in the scratch directory.
fn assert_failed(s: &Scratch, o: &streamfs_tests::Outcome, code: i32, want: &[&str], out: &Path) {
    let err = o.stderr_text();
    assert_eq!(o.code, Some(code), "{err}");
    for w in want {
        assert!(err.contains(w), "stderr lacks {w:?}: {err}");
    }
    assert!(!out.exists(), "partial OUT left behind: {err}");
    s.assert_clean();
}

#[test]
fn bad_input_fails_cleanly() {
    if !is_root() {
        missing::<()>("the builtin builder's bad-input tests need root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = Scratch::new(tmp.path());
    let out = tmp.path().join("out");
    let cfg = debian_config("linux-image-amd64");
    let tarball = tiny_root(tmp.path());
    let outs = out.to_str().unwrap();
    let build = |src: &Path| {
        s.build(
            &cfg,
            &[],
            &["amd64", "bookworm", "1", src.to_str().unwrap(), outs],
        )
    };

    // A truncated tarball: unpacking fails on xz's error, and the squashfs
    // made beside it is stopped.
    let bytes = std::fs::read(&tarball).unwrap();
    let truncated = tmp.path().join("truncated-root.tar.xz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let o = build(&truncated);
    assert_failed(
        &s,
        &o,
        1,
        &[
            "stage squashfs failed",
            "stage unpack failed",
            "builder unpack failed",
            "xz -dc",
            "(log: ",
        ],
        &out,
    );
    let (_, log) = named_log(&o.stderr_text());
    assert!(log.contains("Unexpected end of input"), "{log}");

    // An ext4 image whose file system is broken (a superblock magic and
    // nothing else): the image step fails at its mount, naming it, and
    // leaves no mount behind; and a source that is nothing.
    let img = tmp.path().join("disk.img");
    let mut b = vec![0u8; 8192];
    b[1080..1082].copy_from_slice(&[0x53, 0xef]);
    std::fs::write(&img, &b).unwrap();
    let o = build(&img);
    assert_failed(
        &s,
        &o,
        1,
        &[
            "builder image failed",
            "mount -t ext4 -o loop,ro,noload",
            "(log: ",
        ],
        &out,
    );
    let junk = tmp.path().join("junk-root.tar.xz");
    std::fs::write(&junk, b"not a tarball").unwrap();
    let o = build(&junk);
    assert_failed(
        &s,
        &o,
        1,
        &["builder source failed", "unknown content"],
        &out,
    );

    // Unknown release or arch: usage errors naming them.
    for (args, what) in [
        (["amd64", "nosuch", "1"], "release 'nosuch'"),
        (["sparc", "bookworm", "1"], "arch 'sparc'"),
    ] {
        let mut a: Vec<&str> = args.to_vec();
        a.extend([tarball.to_str().unwrap(), outs]);
        let o = s.build(&cfg, &[], &a);
        assert_failed(&s, &o, 2, &[what], &out);
    }

    // Not root: refused before anything is written.
    use std::os::unix::fs::PermissionsExt;
    let open = tmp.path().join("nobody");
    std::fs::create_dir(&open).unwrap();
    for d in [tmp.path(), open.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let cfg_file = open.join("meph2.yaml");
    std::fs::write(&cfg_file, &cfg).unwrap();
    let nobody_out = open.join("out");
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(streamfs_tests::mountctl_bin())
        .arg("build")
        .arg("--config")
        .arg(&cfg_file)
        .arg("--log-dir")
        .arg(open.join("logs"))
        .args(["amd64", "bookworm", "1"])
        .arg(&tarball)
        .arg(&nobody_out)
        .env("TMPDIR", &open)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("must run as root"), "{err}");
    assert!(!nobody_out.exists(), "{err}");

    // A chroot step that fails (this root has no apt-get): the kernel
    // step fails after its overlay and /proc, /sys, /dev were mounted; all
    // are gone afterwards.
    let o = build(&tarball);
    assert_failed(
        &s,
        &o,
        1,
        &[
            "stage unpack done in",
            "stage manifest done in",
            "builder kernel:linux-image-amd64 failed",
            "apt-get",
            "(log: ",
        ],
        &out,
    );
    let (_, log) = named_log(&o.stderr_text());
    assert!(log.contains("mount -t overlay"), "{log}");
    assert!(log.contains("mount --bind /dev"), "{log}");
}
