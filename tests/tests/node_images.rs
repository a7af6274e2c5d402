//! `mountctl node import` and `node images`: raw disk images stored as
//! versions of products in the images stream, content-addressed, listed.

use std::path::Path;
use std::process::{Command, Stdio};

use streamfs_tests::mount::{Mount, can_mount};
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

#[test]
fn an_image_alias_is_a_symlink_in_the_mount_and_ln_s_and_rm_edit_it() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("store.toml"), STORE_TOML).unwrap();
    let ok = |args: &[&str]| {
        let (code, out, err) = mountctl(d, args);
        assert_eq!(code, Some(0), "mountctl {args:?}: {out}{err}");
        out
    };
    ok(&["--store", "s", "init", "--config", "store.toml"]);
    std::fs::write(d.join("disk.img"), vec![5u8; 3 << 20]).unwrap();
    ok(&[
        "--store",
        "s",
        "node",
        "import",
        "disk.img",
        "-o",
        "debian-12",
    ]);

    let out = ok(&["--store", "s", "node", "alias", "debian", "debian-12"]);
    assert_eq!(out.trim(), "debian -> debian-12");
    let out = ok(&["--store", "s", "node", "images"]);
    assert!(
        out.starts_with("debian-12 (aliases debian)  newest "),
        "{out}"
    );
    // An alias may not take an image's name; a missing alias is named.
    let (code, _, err) = mountctl(d, &["--store", "s", "node", "alias", "debian-12", "debian"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("debian-12 is a product"), "{err}");
    let (code, _, err) = mountctl(d, &["--store", "s", "node", "alias", "-d", "nope"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no alias nope"), "{err}");

    let m = Mount::new(&d.join("s"));
    let images = m.path().join("images");
    let link = images.join("debian");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("debian-12"));
    let mut names: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["debian", "debian-12", "streams"]);
    // Through the link, the image's versions and bytes.
    let through = files_below(&link);
    let direct = files_below(&images.join("debian-12"));
    assert_eq!(through.len(), 1, "{through:?}");
    assert_eq!(
        std::fs::read(&through[0]).unwrap(),
        std::fs::read(&direct[0]).unwrap()
    );
    // What a simplestreams client reads: the product's aliases attribute.
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(images.join("streams/v1/org.streamfs:node-images.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc["products"]["debian-12"]["aliases"], "debian");

    // ln -s beside the image's directory makes an alias; rm drops it.
    std::os::unix::fs::symlink("debian-12", images.join("stable")).unwrap();
    assert_eq!(
        std::fs::read_link(images.join("stable")).unwrap(),
        Path::new("debian-12")
    );
    let out = ok(&["--store", "s", "node", "images", "-l"]);
    assert!(out.contains(" debian,stable "), "{out}");
    std::fs::remove_file(images.join("stable")).unwrap();
    assert!(std::fs::symlink_metadata(images.join("stable")).is_err());
    let out = ok(&["--store", "s", "node", "images"]);
    assert!(
        out.starts_with("debian-12 (aliases debian)  newest "),
        "{out}"
    );
    // A link within the stream naming no image's directory is refused.
    let e = std::os::unix::fs::symlink("nowhere", images.join("x")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    drop(m);
    let out = ok(&["--store", "s", "fsck"]);
    assert!(out.contains("clean"), "{out}");
}
