//! `mountctl node import` and `node images`: raw disk images stored as
//! versions of products in the images stream, content-addressed, listed.

use std::path::Path;
use std::process::{Command, Stdio};

use streamfs_tests::mountctl_bin;
use streamfs_tests::node::{STORE_TOML, files_below, sha256sum};

fn mountctl(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(mountctl_bin())
        .args(args)
        .current_dir(dir)
        .env("STREAMFS_IMAGING_CONF", dir.join("imaging.conf"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("running mountctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_raw_ext4_disk_is_stored_once_and_listed_with_its_versions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("store.toml"), STORE_TOML).unwrap();
    assert_eq!(
        mountctl(d, &["--store", "s", "init", "--config", "store.toml"]).0,
        Some(0)
    );
    // A real file system on a 24 MiB disk: mostly zero chunks.
    let raw = d.join("disk.img");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(24 << 20)
        .unwrap();
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&raw)
        .status();
    assert!(
        mkfs.is_ok_and(|s| s.success()),
        "mkfs.ext4 (e2fsprogs) is needed"
    );
    let sha = sha256sum(&raw);

    let import = |comment: &str| {
        let args = [
            "--store",
            "s",
            "node",
            "import",
            "disk.img",
            "-o",
            "debian-12",
            "-c",
            comment,
        ];
        mountctl(d, &args)
    };
    let (code, out, err) = import("base system");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("sha256 {sha}")),
        "the disk's own sha256 is reported: {out}"
    );
    let (code, _, err) = import("again");
    assert_eq!(code, Some(0), "{err}");

    let (_, out, _) = mountctl(d, &["--store", "s", "node", "images"]);
    assert!(
        out.starts_with("debian-12  newest ") && out.contains("(2 versions), disk 24.0 MiB"),
        "{out}"
    );
    let (_, out, _) = mountctl(d, &["--store", "s", "node", "images", "-l", "deb"]);
    assert_eq!(out.lines().count(), 3, "a header and two versions: {out}");
    assert!(
        out.contains("base system") && out.contains("again"),
        "{out}"
    );
    let (_, out, _) = mountctl(d, &["--store", "s", "node", "images", "-l", "fedora"]);
    assert_eq!(out.lines().count(), 1, "nothing matches: {out}");

    // Two saves of one disk are one blob, smaller than the disk; fsck clean.
    let blobs = files_below(&d.join("s/pool"));
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    assert!(
        std::fs::metadata(&blobs[0]).unwrap().len() < 4 << 20,
        "zero chunks cost nothing"
    );
    let (code, out, err) = mountctl(d, &["--store", "s", "fsck"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("clean"), "{out}");

    // A name that would be a path, and a missing stream, are refused.
    let (code, _, err) = mountctl(
        d,
        &["--store", "s", "node", "import", "disk.img", "-o", "../x"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("image name \"../x\""), "{err}");
    std::fs::write(d.join("imaging.conf"), "[images]\nstream = other\n").unwrap();
    let (code, _, err) = mountctl(d, &["--store", "s", "node", "images"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("other"), "the stream is named: {err}");
}
