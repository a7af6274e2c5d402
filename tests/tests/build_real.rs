//! `mountctl build` with the builtin builder on a real Debian 12 root
//! (mmdebstrap, cached by its inputs), as root, with real parts: the
//! squashfs holds the tarball's tree (owners, modes, hard links, devices,
//! xattrs) and no kernel; the manifest is dpkg-query's; the kernel and
//! initrd boot under qemu (TCG) into the initramfs; the output inserted into
//! a mounted store served by nginx is mirrored by sstream-mirror with every
//! checksum and signature verified. The same root as an ext4 image in a
//! tarball builds the same tree. Then a kernel package that does not
//! exist fails the kernel step, naming it and the log, leaving no OUT and no
//! mount.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streamfs_tests::build::{
    Scratch, SquashfsMount, bzimage_version, debian_config, describe_tree, named_log,
};
use streamfs_tests::debian::{apt_cache, root_tarball};
use streamfs_tests::mount::{Mount, can_mount};
use streamfs_tests::serve::{Nginx, installed, sha256_hex};
use streamfs_tests::store::{SCENARIO_CONFIG, TestStore, flat_items};
use streamfs_tests::{report, run_in, sstream_venv};

const VERSION: &str = "20261203";
const BASE: &str = "bookworm/amd64/20261203";
const PRODUCTS: &str = "streams/v1/com.ubuntu.maas:candidate:v3:download.json";

fn sh(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names in `tar -t` and `unsquashfs -lls` listings, without `./`,
/// `squashfs-root/` or link targets.
fn tar_names(tarball: &Path) -> BTreeSet<String> {
    sh(Command::new("tar").arg("-tf").arg(tarball))
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn unsquashfs_names(image: &Path) -> BTreeSet<String> {
    sh(Command::new("unsquashfs").arg("-lls").arg(image))
        .lines()
        .filter_map(|l| l.split_once(" squashfs-root/").map(|(_, n)| n))
        .map(|n| n.split(" -> ").next().unwrap().to_string())
        .collect()
}

/// Boots kernel + initrd under qemu (TCG, serial console) until the
/// initramfs runs (`break=top` spawns its shell, which ends at once on a
/// closed stdin, and `panic=-1` then reboots, which `-no-reboot` makes an
/// exit), or 300 s. Returns the console.
fn boot(kernel: &Path, initrd: &Path) -> String {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "768", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 break=top panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qemu-system-x86_64");
    let console = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = Arc::clone(&console);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let text = || String::from_utf8_lossy(&console.lock().unwrap()).into_owned();
    while Instant::now() < deadline
        && child.try_wait().unwrap().is_none()
        && !text().contains("Spawning shell within the initramfs")
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    text()
}

#[test]
fn builtin_builder_makes_a_bootable_debian_image() {
    let Some(tarball) = root_tarball() else {
        return;
    };
    for (prog, pkg) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("sqfstar", "squashfs-tools"),
    ] {
        if installed(prog, pkg).is_none() {
            return;
        }
    }
    let Some(venv) = sstream_venv() else { return };
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = Scratch::new(tmp.path());
    let out = tmp.path().join("out");
    let cache = apt_cache(&tarball);
    let cache_arg = cache.display().to_string();
    let t = Instant::now();
    let o = s.build(
        &debian_config("linux-image-amd64"),
        &["--apt-cache", &cache_arg],
        &[
            "amd64",
            "bookworm",
            VERSION,
            tarball.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let err = o.stderr_text();
    assert_eq!(o.code, Some(0), "{err}");
    report(&format!(
        "builtin build: {:.0}s\n{err}",
        t.elapsed().as_secs_f64()
    ));
    for stage in ["squashfs", "unpack", "manifest", "kernel:linux-image-amd64"] {
        assert!(err.contains(&format!("stage {stage} done in ")), "{err}");
    }
    s.assert_clean();
    let files: BTreeSet<String> = flat_items(&out.join(PRODUCTS))
        .into_iter()
        .map(|i| i["path"].clone())
        .collect();
    let want: BTreeSet<String> = [
        "squashfs",
        "squashfs.manifest",
        "ga-12/generic/boot-kernel",
        "ga-12/generic/boot-initrd",
    ]
    .iter()
    .map(|f| format!("{BASE}/{f}"))
    .collect();
    assert_eq!(files, want);

    // The squashfs: the tarball's tree, entry for entry.
    let image = out.join(BASE).join("squashfs");
    assert_eq!(unsquashfs_names(&image), tar_names(&tarball));
    let reference = tmp.path().join("ref");
    std::fs::create_dir(&reference).unwrap();
    sh(Command::new("tar")
        .args([
            "-x",
            "--numeric-owner",
            "-p",
            "--xattrs",
            "--xattrs-include=*",
        ])
        .arg("-f")
        .arg(&tarball)
        .arg("-C")
        .arg(&reference));
    let want = describe_tree(&reference);
    let sq = SquashfsMount::new(&image, &tmp.path().join("sq"));
    let got = describe_tree(&sq.dir);
    for (k, v) in &want {
        assert_eq!(
            got.get(k),
            Some(v),
            "{k} differs between tarball and squashfs"
        );
    }
    assert_eq!(got.len(), want.len(), "entries only in the squashfs");
    // What the comparison must have covered.
    assert!(got["usr/bin/ping"].contains("xattr security.capability="));
    assert!(got["usr/bin/perl5.36.0"].contains("nlink=2 links-to=usr/bin/perl "));
    assert!(
        got["dev/null"].contains("dev rdev=103"),
        "{}",
        got["dev/null"]
    );
    let kernels: Vec<&String> = got
        .keys()
        .filter(|k| k.starts_with("boot/vmlinuz") || k.starts_with("usr/lib/modules/"))
        .collect();
    assert!(kernels.is_empty(), "a kernel in the squashfs: {kernels:?}");
    drop(sq);

    // The manifest is dpkg-query's on the root.
    let manifest = std::fs::read_to_string(out.join(BASE).join("squashfs.manifest")).unwrap();
    let dpkg = sh(Command::new("dpkg-query")
        .arg(format!("--admindir={}/var/lib/dpkg", reference.display()))
        .arg("--show"));
    assert_eq!(manifest, dpkg);
    assert!(manifest.contains("iputils-ping\t"), "{manifest}");

    // Kernel and initrd boot into the initramfs.
    let kernel = out.join(BASE).join("ga-12/generic/boot-kernel");
    let initrd = out.join(BASE).join("ga-12/generic/boot-initrd");
    let version = bzimage_version(&std::fs::read(&kernel).unwrap()).expect("a bzImage");
    let release = version.split_whitespace().next().unwrap().to_string();
    let t = Instant::now();
    let console = boot(&kernel, &initrd);
    report(&format!("qemu boot: {:.0}s", t.elapsed().as_secs_f64()));
    let tail: String = console
        .chars()
        .rev()
        .take(3000)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    assert!(
        console.contains(&format!("Linux version {release} ")),
        "no banner of {release}: {tail}"
    );
    assert!(
        console.contains("Spawning shell within the initramfs"),
        "the initramfs did not run: {tail}"
    );

    // Inserted into a mounted, signed store, served by nginx, mirrored by
    // sstream-mirror with every checksum and signature checked.
    let store = TestStore::init(Some(SCENARIO_CONFIG));
    store.ok(&["keygen"]);
    let mount = Mount::with_options(&store.root, &["allow_other"]);
    store.ok(&["insert", out.to_str().unwrap(), "candidate"]);
    let index = mount.path().join("candidate/streams/v1/index.sjson");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&index).is_ok_and(|t| t.contains(":boot:12:amd64:ga-12")) {
        assert!(
            Instant::now() < deadline,
            "the insert did not show in the mount"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(nginx) = Nginx::start(mount.path()) else {
        return;
    };
    let mirror = tmp.path().join("mirror");
    let keyring = store.root.join("keys/keyring.gpg");
    let m = run_in(
        tmp.path(),
        &venv.join("bin/sstream-mirror"),
        &[
            "--keyring",
            keyring.to_str().unwrap(),
            &nginx.url("/candidate/streams/v1/index.sjson"),
            mirror.to_str().unwrap(),
        ],
    );
    assert_eq!(m.code, Some(0), "sstream-mirror: {}", m.stderr_text());
    for item in flat_items(&out.join(PRODUCTS)) {
        let bytes = std::fs::read(mirror.join(&item["path"])).unwrap();
        assert_eq!(sha256_hex(&bytes), item["sha256"], "{}", item["path"]);
        assert_eq!(
            bytes,
            std::fs::read(out.join(&item["path"])).unwrap(),
            "{}",
            item["path"]
        );
    }
    drop(nginx);
    mount.unmount();

    // The same root as an ext4 image inside a tarball (meph2's `img-tar`,
    // as old cloud images ship): mounted read-only through a loop device,
    // it gives the same squashfs tree (plus the filesystem's lost+found)
    // and manifest, and leaves no mount or loop device behind.
    let img_dir = tmp.path().join("img");
    std::fs::create_dir(&img_dir).unwrap();
    let img = img_dir.join("debian-12.img");
    sh(Command::new("truncate").args(["-s", "700M"]).arg(&img));
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&reference)
        .arg(&img));
    let img_tar = tmp.path().join("debian-12.tar.gz");
    sh(Command::new("tar")
        .args(["-czS", "-f"])
        .arg(&img_tar)
        .arg("-C")
        .arg(&img_dir)
        .arg("debian-12.img"));
    std::fs::remove_file(&img).unwrap();
    let out3 = tmp.path().join("out3");
    let o = s.build(
        &debian_config("linux-image-amd64"),
        &["--apt-cache", &cache_arg],
        &[
            "amd64",
            "bookworm",
            VERSION,
            img_tar.to_str().unwrap(),
            out3.to_str().unwrap(),
        ],
    );
    let err = o.stderr_text();
    assert_eq!(o.code, Some(0), "{err}");
    for stage in ["image", "squashfs", "unpack", "manifest"] {
        assert!(err.contains(&format!("stage {stage} done in ")), "{err}");
    }
    s.assert_clean();
    let sq = SquashfsMount::new(&out3.join(BASE).join("squashfs"), &tmp.path().join("sq3"));
    let mut got = describe_tree(&sq.dir);
    assert!(got.remove("lost+found").is_some(), "the image's own root");
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "{k} differs between root and image");
    }
    assert_eq!(
        got.len(),
        want.len(),
        "entries only in the image's squashfs"
    );
    drop(sq);
    assert_eq!(
        std::fs::read_to_string(out3.join(BASE).join("squashfs.manifest")).unwrap(),
        dpkg
    );
    let loops = sh(Command::new("losetup").arg("-a"));
    assert!(
        !loops.contains("debian-12.img"),
        "a loop device left: {loops}"
    );

    // A kernel package that does not exist fails the kernel step. The
    // source is the squashfs just built (a squashfs source is read with
    // unsquashfs and copied as the image's squashfs).
    let source = tmp.path().join("debian-12.squashfs");
    std::fs::rename(&image, &source).unwrap();
    let out2 = tmp.path().join("out2");
    let o = s.build(
        &debian_config("linux-image-streamfs-nosuch"),
        &["--apt-cache", &cache_arg],
        &[
            "amd64",
            "bookworm",
            VERSION,
            source.to_str().unwrap(),
            out2.to_str().unwrap(),
        ],
    );
    let err = o.stderr_text();
    assert_eq!(o.code, Some(1), "{err}");
    assert!(err.contains("stage squashfs done in"), "{err}");
    assert!(
        err.contains("builder kernel:linux-image-streamfs-nosuch failed"),
        "{err}"
    );
    assert!(err.contains("Unable to locate package"), "{err}");
    let (_, log) = named_log(&err);
    assert!(log.contains("apt-get -q -y"), "{log}");
    assert!(!out2.exists(), "partial OUT left behind");
    s.assert_clean();
}
