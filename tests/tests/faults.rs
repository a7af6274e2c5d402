//! Faults below the mount (ARCHITECTURE.md §2, §3): a full disk during inserts, a
//! store on a read-only filesystem, a corrupted blob. Each test injects the
//! fault for real (a small tmpfs, a read-only bind mount, a flipped bit in
//! the pool) and checks what a user would: the errno the writer gets, what
//! is published, what `mountctl fsck` says, and that the mount keeps working.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use streamfs_tests::mount::{Mount, can_mount, is_mounted, write_closed};
use streamfs_tests::run_in;
use streamfs_tests::store::{TestStore, flat_items};

const DAILY_PRODUCTS: &str = "daily/streams/v1/com.ubuntu.maas:daily:v3:download.json";

/// A filesystem mounted for one test (a tmpfs, a bind mount), unmounted on
/// drop, also when the test panics.
struct FsMount {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl FsMount {
    fn new(args: &[&str]) -> FsMount {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        fs::create_dir(&path).unwrap();
        let st = Command::new("mount")
            .args(args)
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success(), "mount {args:?} failed");
        FsMount { _dir: dir, path }
    }
}

impl Drop for FsMount {
    fn drop(&mut self) {
        if is_mounted(&self.path) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

fn kernel(version: &str) -> String {
    format!("noble/amd64/{version}/ga-24.04/generic/boot-kernel")
}

/// Writes `data` at a new file in the mount and closes it; the errno of
/// the first failing call (open, write or close), if any.
fn insert(mnt: &Path, rel: &str, data: &[u8]) -> Result<(), i32> {
    let path = mnt.join("daily").join(rel);
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(-1);
    fs::create_dir_all(path.parent().unwrap()).map_err(errno)?;
    write_closed(&path, data).map_err(errno)
}

fn published(mnt: &Path) -> Vec<String> {
    flat_items(&mnt.join(DAILY_PRODUCTS))
        .into_iter()
        .map(|i| i["path"].clone())
        .collect()
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn fsck(store: &Path) -> (bool, String) {
    let s = store.display().to_string();
    let out = run_in(
        store.parent().unwrap(),
        &streamfs_tests::mountctl_bin(),
        &["--store", &s, "fsck"],
    );
    (
        out.code == Some(0),
        format!("{}{}", out.stdout_text(), out.stderr_text()),
    )
}

fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: zeroed statvfs is valid; path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail * st.f_frsize
}

#[test]
fn a_full_disk_gives_the_writer_enospc_publishes_nothing_partial_and_passes() {
    if !can_mount() {
        return;
    }
    let disk = FsMount::new(&["-t", "tmpfs", "-o", "size=24m", "tmpfs"]);
    let store = disk.path.join("store");
    let m = Mount::new(&store);
    let mnt = m.path().to_path_buf();
    insert(&mnt, &kernel("20250101"), &data(4096, 1)).expect("insert with room");

    // Fill the disk beside the store, leaving about 1.25 MiB.
    let filler = disk.path.join("filler");
    let room = free_bytes(&disk.path);
    fs::write(&filler, vec![0u8; (room - (5 << 18)) as usize]).unwrap();
    let before = published(&mnt);

    // A file far bigger than the room, then sizes around the boundary (some
    // fit, some fail while writing, some at the commit).
    let (mut faults, mut fitted) = (0, 0);
    let mut sizes = vec![8 << 20];
    sizes.extend((0..16).map(|k| (900 << 10) + k * (25 << 10)));
    for (i, len) in sizes.into_iter().enumerate() {
        let version = format!("2025{:04}", 200 + i);
        let bytes = data(len, i as u8);
        match insert(&mnt, &kernel(&version), &bytes) {
            Err(e) => {
                assert_eq!(e, libc::ENOSPC, "{len} bytes: errno {e}\n{}", m.log_text());
                faults += 1;
                assert!(
                    !published(&mnt).contains(&kernel(&version)),
                    "{version} published after ENOSPC"
                );
            }
            Ok(()) => {
                fitted += 1;
                assert!(published(&mnt).contains(&kernel(&version)));
                let back = fs::read(mnt.join("daily").join(kernel(&version))).unwrap();
                assert!(back == bytes, "{version} reads back wrong");
            }
        }
        let (clean, report) = fsck(&store);
        assert!(clean, "fsck after {len} bytes: {report}");
    }
    assert!(faults >= 2, "only {faults} inserts hit ENOSPC");
    // Nothing partial: every failure left the earlier items as they were,
    // and no staging file stays behind.
    assert!(before.iter().all(|p| published(&mnt).contains(p)));
    assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), 0);

    // Space freed: the mount works again, without a restart.
    fs::remove_file(&filler).unwrap();
    let big = data(8 << 20, 99);
    insert(&mnt, &kernel("20250999"), &big).expect("insert after freeing space");
    assert_eq!(
        fs::read(mnt.join("daily").join(kernel("20250999"))).unwrap(),
        big
    );
    let (clean, report) = fsck(&store);
    assert!(clean, "{report}");
    streamfs_tests::report(&format!(
        "full disk: {faults} inserts refused with ENOSPC, {fitted} fitted, fsck clean after each"
    ));
    m.unmount();
}

#[test]
fn a_store_on_a_read_only_filesystem_mounts_read_only_and_refuses_writes_with_erofs() {
    if !can_mount() {
        return;
    }
    let s = TestStore::init(None);
    let build = s.tmp.path().join("build");
    let k = build.join(kernel("20250101"));
    fs::create_dir_all(k.parent().unwrap()).unwrap();
    fs::write(&k, b"kernel").unwrap();
    s.ok(&["insert", &build.display().to_string(), "daily"]);
    let before = streamfs_tests::store::tree_digest(&s.root);

    let ro = FsMount::new(&["--bind", &s.root.display().to_string()]);
    let st = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&ro.path)
        .status()
        .unwrap();
    assert!(st.success());
    let m = Mount::new(&ro.path);
    let mnt = m.path().to_path_buf();
    assert!(
        m.log_text()
            .contains("read-only filesystem: mounted read-only"),
        "{}",
        m.log_text()
    );
    assert!(
        fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .any(|l| l.contains(&*mnt.to_string_lossy()) && l.contains(" ro,")),
        "not mounted ro"
    );
    // Reads work.
    assert_eq!(
        fs::read(mnt.join("daily").join(kernel("20250101"))).unwrap(),
        b"kernel"
    );
    assert_eq!(published(&mnt), [kernel("20250101")]);
    // Every write fails with EROFS.
    let erofs = |r: std::io::Result<()>, what: &str| {
        assert_eq!(
            r.err().and_then(|e| e.raw_os_error()),
            Some(libc::EROFS),
            "{what}"
        );
    };
    assert_eq!(
        insert(&mnt, &kernel("20250102"), b"x"),
        Err(libc::EROFS),
        "insert"
    );
    erofs(fs::create_dir(mnt.join("daily/noble/arm64")), "mkdir");
    erofs(
        fs::remove_file(mnt.join("daily").join(kernel("20250101"))),
        "rm",
    );
    erofs(
        std::os::unix::fs::symlink(
            "../../../released/noble/amd64/20250101",
            mnt.join("daily/noble/amd64/20250102"),
        ),
        "ln -s",
    );
    m.unmount();
    drop(ro);
    assert_eq!(streamfs_tests::store::tree_digest(&s.root), before);
}

/// Flips one bit of a blob in the pool (as root, through its read-only
/// mode).
fn flip_bit(blob: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(blob)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x10;
    f.write_all_at(&b, offset).unwrap();
}

#[test]
fn a_corrupted_blob_is_reported_by_fsck_and_reads_fail_with_eio() {
    if !can_mount() {
        return;
    }
    let s = TestStore::init(None);
    let m = Mount::new(&s.root);
    let mnt = m.path().to_path_buf();
    let bytes = data(3 << 20, 7);
    insert(&mnt, &kernel("20250101"), &bytes).unwrap();
    let item = mnt.join("daily").join(kernel("20250101"));
    assert_eq!(fs::read(&item).unwrap(), bytes);
    let sha = hex::encode(Sha256::digest(&bytes));
    let blob = s.root.join("pool/sha256").join(&sha[..2]).join(&sha);

    // A flipped bit after the blob was verified: its ctime moved, so the
    // next open hashes it again and refuses.
    flip_bit(&blob, 1 << 20);
    let e = fs::read(&item).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(m.log_text().contains("corrupt blob"), "{}", m.log_text());
    let out = s.mountctl(&["fsck"]);
    assert_eq!(out.code, Some(1), "{}", out.stdout_text());
    let report = format!("{}{}", out.stdout_text(), out.stderr_text());
    assert!(
        report.contains("corrupt blob") && report.contains(&sha),
        "{report}"
    );

    // After a remount too (nothing verified yet), and for a blob inserted
    // beside the mount and damaged before its first read.
    m.unmount();
    let build = s.tmp.path().join("build");
    let k2 = build.join(kernel("20250102"));
    fs::create_dir_all(k2.parent().unwrap()).unwrap();
    let bytes2 = data(1 << 20, 8);
    fs::write(&k2, &bytes2).unwrap();
    s.ok(&["insert", &build.display().to_string(), "daily"]);
    let sha2 = hex::encode(Sha256::digest(&bytes2));
    flip_bit(&s.root.join("pool/sha256").join(&sha2[..2]).join(&sha2), 5);
    let m = Mount::new(&s.root);
    for v in ["20250101", "20250102"] {
        let e = fs::read(m.path().join("daily").join(kernel(v))).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{v}: {e}");
    }
    let out = s.mountctl(&["fsck"]);
    let report = format!("{}{}", out.stdout_text(), out.stderr_text());
    assert!(
        out.code == Some(1) && report.contains(&sha) && report.contains(&sha2),
        "{report}"
    );
    // Undamaged blobs still read.
    let k3 = kernel("20250103");
    insert(m.path(), &k3, b"fine").unwrap();
    assert_eq!(fs::read(m.path().join("daily").join(&k3)).unwrap(), b"fine");
    streamfs_tests::report(
        "corrupt blobs: 2 bit flips injected, both reported by fsck and refused with EIO",
    );
    m.unmount();
}
