//! The mount driven by ordinary tools on a real FUSE mount: `cp -r`, `cat`,
//! `ls -l`, `rm -r`, `ln -s`, and remounting (ARCHITECTURE.md §3).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use streamfs_core::store::Store;
use streamfs_tests::mount::{Mount, build_dir, can_mount, listing, tree_bytes};
use streamfs_tests::store::flat_items;
use streamfs_tests::{missing, mountctl_bin};

const DAILY_PRODUCTS: &str = "com.ubuntu.maas:daily:v3:download.json";

fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(cmd: &str) {
    let (success, err) = sh(cmd);
    assert!(success, "`{cmd}` failed: {err}");
}

/// `mountctl --store STORE ARGS…`, which must succeed.
fn mountctl(store: &Path, args: &[&str]) {
    let out = Command::new(mountctl_bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

fn generated(store: &Path, stream: &str, name: &str) -> PathBuf {
    let s = Store::open(store).unwrap();
    s.snapshot().unwrap().streams_v1(stream).join(name)
}

/// Waits up to 10 s for `done` (the mount shows changes made beside it
/// within a second), else fails saying `what`, with `m`'s log.
fn wait_for(m: &Mount, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}\n{}",
            m.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    store: PathBuf,
}

fn setup() -> Option<Setup> {
    if !can_mount() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    Some(Setup { _dir: dir, store })
}

/// A fresh store, mounted, with a util-scenario build copied into `daily`
/// by `cp -r`: (setup, mount, build, MNT/daily).
fn mounted_with_build(version: &str) -> Option<(Setup, Mount, PathBuf, PathBuf)> {
    let build = build_dir(version)?;
    let s = setup()?;
    let m = Mount::new(&s.store);
    let daily = m.path().join("daily");
    ok(&format!("cp -r {}/. {}", q(&build), q(&daily)));
    Some((s, m, build, daily))
}

#[test]
fn cp_r_of_a_build_equals_mountctl_insert_and_reads_back_the_blobs() {
    let Some((s, m, build, daily)) = mounted_with_build("20250101") else {
        return;
    };

    // The reference: mountctl insert of the same build into another store.
    let other = s._dir.path().join("other");
    let mctl = mountctl_bin();
    let st = Command::new(&mctl)
        .arg("--store")
        .arg(&other)
        .arg("init")
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new(&mctl)
        .arg("--store")
        .arg(&other)
        .arg("insert")
        .arg(&build)
        .arg("daily")
        .status()
        .unwrap();
    assert!(st.success());
    let want = flat_items(&generated(&other, "daily", DAILY_PRODUCTS));
    let got_mount = flat_items(&daily.join("streams/v1").join(DAILY_PRODUCTS));
    let got_store = flat_items(&generated(&s.store, "daily", DAILY_PRODUCTS));
    assert!(!want.is_empty());
    assert_eq!(got_store, want, "{}", m.log_text());
    assert_eq!(got_mount, want);

    // Every item reads back as its pool blob, with its size and mode 0444.
    let store = Store::open(&s.store).unwrap();
    let mut n = 0;
    for item in &want {
        let path = item["path"].as_str();
        let sha = item["sha256"].as_str();
        let in_mount = daily.join(path);
        let meta = std::fs::metadata(&in_mount).unwrap();
        // Flattened values are strings, as sstream-query prints them.
        let size: u64 = item["size"].parse().unwrap();
        assert_eq!(meta.len(), size, "{path}");
        assert_eq!(meta.permissions().mode() & 0o777, 0o444, "{path}");
        let out = Command::new("cat").arg(&in_mount).output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, std::fs::read(store.pool().path(sha)).unwrap());
        assert_eq!(out.stdout, std::fs::read(build.join(path)).unwrap());
        n += 1;
    }
    assert!(n > 10);
    // `ls -l` shows the sizes too.
    let out = Command::new("ls")
        .arg("-l")
        .arg(daily.join("noble/amd64/20250101"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let sq = std::fs::metadata(build.join("noble/amd64/20250101/squashfs"))
        .unwrap()
        .len();
    assert!(
        text.lines()
            .any(|l| l.ends_with(" squashfs") && l.contains(&format!(" {sq} "))),
        "{text}"
    );
    m.unmount();
}

#[test]
fn rm_r_of_a_version_leaves_listings_and_metadata_and_records_orphans() {
    let (Some(b1), Some(b2)) = (build_dir("20250101"), build_dir("20250102")) else {
        return;
    };
    let Some(s) = setup() else { return };
    let m = Mount::new(&s.store);
    let daily = m.path().join("daily");
    ok(&format!("cp -r {}/. {}", q(&b1), q(&daily)));
    ok(&format!("cp -r {}/. {}", q(&b2), q(&daily)));
    let vdir = daily.join("noble/amd64/20250101");
    let squash = std::fs::read(vdir.join("squashfs")).unwrap();
    let files = walkdir_files(&vdir);
    let gen_before = Store::open(&s.store).unwrap().current_generation().unwrap();
    ok(&format!("rm -r {}", q(&vdir)));
    // The removals are committed together (at the rmdir of the version
    // directory), not one generation per file.
    let gens = Store::open(&s.store).unwrap().current_generation().unwrap() - gen_before;
    assert!(
        (1..files / 2).contains(&gens),
        "rm -r of {files} files took {gens} commits\n{}",
        m.log_text()
    );

    let names: Vec<String> = std::fs::read_dir(daily.join("noble/amd64"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["20250102"], "{}", m.log_text());
    let products = std::fs::read_to_string(daily.join("streams/v1").join(DAILY_PRODUCTS)).unwrap();
    assert!(!products.contains("\"20250101\""));
    assert!(products.contains("\"20250102\""));
    let orphans: Value =
        serde_json::from_slice(&std::fs::read(s.store.join("orphans.json")).unwrap()).unwrap();
    assert!(
        !orphans.as_object().unwrap().is_empty(),
        "no orphans recorded"
    );
    // Removed paths stay readable by path until reaped.
    assert_eq!(std::fs::read(vdir.join("squashfs")).unwrap(), squash);
    m.unmount();
}

/// The number of files below `dir`.
fn walkdir_files(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            n += walkdir_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

#[test]
fn ln_s_of_a_daily_version_into_released_promotes_without_new_blobs() {
    let Some((s, m, b1, daily)) = mounted_with_build("20250101") else {
        return;
    };
    let pool_before = tree_bytes(&s.store.join("pool")).len();
    let rel = m.path().join("released/noble/amd64");
    ok(&format!("mkdir -p {}", q(&rel)));
    ok(&format!(
        "ln -s ../../../daily/noble/amd64/20250101 {}",
        q(&rel.join("20250101"))
    ));
    assert_eq!(tree_bytes(&s.store.join("pool")).len(), pool_before);
    // Shown as a directory with the same files.
    let promoted = rel.join("20250101");
    let meta = std::fs::symlink_metadata(&promoted).unwrap();
    assert!(meta.is_dir(), "{meta:?}\n{}", m.log_text());
    assert_eq!(
        std::fs::read(promoted.join("squashfs")).unwrap(),
        std::fs::read(b1.join("noble/amd64/20250101/squashfs")).unwrap()
    );
    let released = flat_items(
        &m.path()
            .join("released/streams/v1/com.ubuntu.maas:stable:v3:download.json"),
    );
    let daily_items = flat_items(&daily.join("streams/v1").join(DAILY_PRODUCTS));
    assert_eq!(released.len(), daily_items.len());
    assert!(released.iter().all(|i| i["label"] == "release"));
    m.unmount();
}

#[test]
fn refused_operations_leave_the_store_byte_identical() {
    let Some((s, m, b1, daily)) = mounted_with_build("20250101") else {
        return;
    };
    let before = tree_bytes(&s.store);
    let src = b1.join("noble/amd64/20250101/squashfs");
    for cmd in [
        format!("cp {} {}", q(&src), q(&daily.join("stray"))),
        format!("cp {} {}", q(&src), q(&daily.join("noble/amd64/x/y/z/w/v"))),
        format!("ln -s /etc/passwd {}", q(&daily.join("noble/amd64/passwd"))),
        format!(
            "ln -s ../../../daily/noble {}",
            q(&m.path().join("released/noble"))
        ),
        format!("mkdir {}", q(&daily.join("streams/v1/sub"))),
        format!(
            "ln {} {}",
            q(&daily.join("noble/amd64/20250101/squashfs")),
            q(&daily.join("noble/amd64/20250101/hard"))
        ),
        format!(
            "sh -c 'echo x >> {}'",
            daily.join("noble/amd64/20250101/squashfs").display()
        ),
        format!(
            "mv {} {}",
            q(&daily.join("noble/amd64/20250101")),
            q(&daily.join("noble/amd64/20250199"))
        ),
    ] {
        let (success, _) = sh(&cmd);
        assert!(!success, "`{cmd}` should have been refused");
    }
    assert_eq!(tree_bytes(&s.store), before, "{}", m.log_text());
    assert!(m.log_text().contains("refused"));
    m.unmount();
}

#[test]
fn remounting_gives_identical_listings_and_metadata() {
    let Some(b1) = build_dir("20250101") else {
        return;
    };
    let Some(s) = setup() else { return };
    let m = Mount::new(&s.store);
    ok(&format!(
        "cp -r {}/. {}",
        q(&b1),
        q(&m.path().join("daily"))
    ));
    let list1 = listing(m.path());
    let meta1 = tree_bytes(&m.path().join("daily/streams"));
    m.unmount();
    let m = Mount::new(&s.store);
    let list2 = listing(m.path());
    let meta2 = tree_bytes(&m.path().join("daily/streams"));
    assert_eq!(list1, list2);
    assert_eq!(meta1, meta2);
    assert!(list1.len() > 20);
    m.unmount();
}

/// `umount MNT` of a healthy mount, after a copy and reads: the daemon
/// exits 0 and logs no warning (fuser's own second unmount used to log
/// `Failed to umount filesystem: Invalid argument` every time).
#[test]
fn umount_of_a_healthy_mount_logs_no_warning() {
    let Some((_s, m, build, daily)) = mounted_with_build("20250101") else {
        return;
    };
    assert_eq!(
        std::fs::read(daily.join("noble/amd64/20250101/squashfs")).unwrap(),
        std::fs::read(build.join("noble/amd64/20250101/squashfs")).unwrap()
    );
    let log = m.umount();
    assert!(log.contains("unmounted"), "{log}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}

#[test]
fn rsync_a_of_a_build_inserts_at_the_renames() {
    let Some(b1) = build_dir("20250101") else {
        return;
    };
    if Command::new("rsync").arg("--version").output().is_err() {
        missing::<()>("rsync not installed");
        return;
    }
    let Some(s) = setup() else { return };
    let m = Mount::new(&s.store);
    let daily = m.path().join("daily");
    ok(&format!("rsync -a {}/ {}/", b1.display(), daily.display()));
    // A second run finds everything in place.
    ok(&format!("rsync -a {}/ {}/", b1.display(), daily.display()));
    let items = flat_items(&daily.join("streams/v1").join(DAILY_PRODUCTS));
    assert_eq!(items.len(), 6 * 4, "{}", m.log_text());
    assert!(!m.log_text().contains("refused"), "{}", m.log_text());
    assert_eq!(
        std::fs::read(daily.join("noble/amd64/20250101/squashfs")).unwrap(),
        std::fs::read(b1.join("noble/amd64/20250101/squashfs")).unwrap()
    );
    m.unmount();
}

/// `{ a; child; b; } > file`: a forked child exits (closing its inherited
/// copy of the descriptor) between two writes of the shell that opened the
/// file. The file is inserted whole at the opener's close, not cut short at
/// the child's.
#[test]
fn a_child_closing_an_inherited_descriptor_does_not_insert_the_file_early() {
    let Some(s) = setup() else { return };
    let m = Mount::new(&s.store);
    let dir = m.path().join("daily/noble/amd64/20250101/ga-24.04/generic");
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = dir.join("boot-kernel");
    ok(&format!(
        "{{ printf first; /bin/true; printf second; }} > {}",
        q(&kernel)
    ));
    assert_eq!(
        std::fs::read(&kernel).unwrap(),
        b"firstsecond",
        "{}",
        m.log_text()
    );
    let products =
        std::fs::read_to_string(m.path().join("daily/streams/v1").join(DAILY_PRODUCTS)).unwrap();
    let items: Vec<_> = flat_items(&m.path().join("daily/streams/v1").join(DAILY_PRODUCTS));
    assert_eq!(items.len(), 1, "{products}");
    assert_eq!(items[0]["size"], "11", "{products}");
    m.unmount();
}

/// Regression: the kernel takes one passthrough backing file per inode, and
/// inode numbers were their paths'. An item removed, reaped and inserted
/// again beside the mount with other content, while a reader still held the
/// old file open, served the old bytes to new opens. The new content is now
/// another inode: new opens read it while the old reader keeps its bytes.
#[test]
fn an_item_inserted_again_with_other_content_never_serves_the_old_bytes() {
    use std::io::Read;
    let Some(s) = setup() else { return };
    let m = Mount::new(&s.store);
    let rel = "noble/amd64/20250101/ga-24.04/generic/boot-kernel";
    let kernel = m.path().join("daily").join(rel);
    std::fs::create_dir_all(kernel.parent().unwrap()).unwrap();
    std::fs::write(&kernel, b"old kernel").unwrap();
    // Opened by a fresh lookup, as a client would after the insert.
    let mut old = std::fs::File::open(m.path().join("daily").join(rel)).unwrap();
    std::fs::remove_file(&kernel).unwrap();
    // Reading the metadata commits the removal.
    let _ = std::fs::read(m.path().join("daily/streams/v1/index.json")).unwrap();
    mountctl(&s.store, &["reap-orphans", "--now"]);
    let build = s._dir.path().join("build");
    std::fs::create_dir_all(build.join(rel).parent().unwrap()).unwrap();
    std::fs::write(build.join(rel), b"new kernel, longer").unwrap();
    mountctl(&s.store, &["insert", build.to_str().unwrap(), "daily"]);
    // The first read that succeeds gives the new bytes.
    let mut read = None;
    wait_for(&m, "the insert shows through the mount", || {
        read = std::fs::read(&kernel).ok();
        read.is_some()
    });
    assert_eq!(
        String::from_utf8_lossy(&read.unwrap()),
        "new kernel, longer",
        "{}",
        m.log_text()
    );
    let mut held = Vec::new();
    old.read_to_end(&mut held).unwrap();
    assert_eq!(held, b"old kernel");
    assert_eq!(old.metadata().unwrap().len(), 10);
    drop(old);
    m.unmount();
}

/// Regression: two builds copied at once each write a products file of the
/// same name into `streams/v1/`. The second `cp`, which had seen no such
/// file, opens it with `O_CREAT|O_EXCL`, and the kernel failed that open
/// with EEXIST because the first writer's document was visible. Each
/// writer's document is merged, and both versions publish once their data
/// arrive.
#[test]
fn two_writers_of_the_same_document_name_each_get_their_own() {
    use std::io::Write;
    let Some(s) = setup() else { return };
    let m = Mount::new(&s.store);
    let daily = m.path().join("daily");
    let doc_path = daily.join("streams/v1/com.example:build:v1:download.json");
    let kernel = |v: &str| format!("noble/amd64/{v}/ga-24.04/generic/boot-kernel");
    let doc = |v: &str| {
        serde_json::json!({
            "format": "products:1.0",
            "content_id": "com.example:build:v1:download",
            "products": {"com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04": {
                "arch": "amd64",
                "versions": {v: {"items": {"boot-kernel": {
                    "ftype": "boot-kernel",
                    // Only the document says this (data alone would
                    // publish the version too).
                    "build_doc": v,
                    "path": kernel(v),
                    "size": v.len(),
                    "sha256": streamfs_tests::serve::sha256_hex(v.as_bytes()),
                }}}},
            }},
        })
        .to_string()
    };
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&doc_path)
    };
    let mut first = create().unwrap();
    let second = create();
    assert!(second.is_ok(), "{second:?}\n{}", m.log_text());
    let mut second = second.unwrap();
    first.write_all(doc("20250101").as_bytes()).unwrap();
    second.write_all(doc("20250102").as_bytes()).unwrap();
    drop(second);
    drop(first);
    for v in ["20250101", "20250102"] {
        let path = daily.join(kernel(v));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, v.as_bytes()).unwrap();
    }
    let merged: std::collections::BTreeSet<(String, String)> =
        flat_items(&daily.join("streams/v1").join(DAILY_PRODUCTS))
            .iter()
            .map(|i| {
                let doc = i.get("build_doc").cloned().unwrap_or_default();
                (i["version_name"].clone(), doc)
            })
            .collect();
    let want = [("20250101", "20250101"), ("20250102", "20250102")];
    assert_eq!(
        merged,
        want.map(|(v, d)| (v.to_string(), d.to_string())).into(),
        "{}",
        m.log_text()
    );
    m.unmount();
}

/// A second, read-only mount of the same store, for serving (README: nginx
/// and rsync read it without the attribute round trip that the kernel
/// forces on a read-write FUSE mount after each read), shows what is
/// inserted and removed through the read-write one, and refuses writes.
#[test]
fn a_read_only_mount_beside_a_read_write_one_follows_its_changes() {
    let Some(s) = setup() else { return };
    let rw = Mount::new(&s.store);
    let ro = Mount::with_options(&s.store, &["ro"]);
    let version = "daily/noble/amd64/20250101";
    let kernel = format!("{version}/ga-24.04/generic/boot-kernel");
    put(&rw, &kernel, b"kernel");
    let index = "daily/streams/v1/index.json";
    wait_for(&ro, "the insert shows through the read-only mount", || {
        std::fs::read(ro.path().join(&kernel)).is_ok_and(|b| b == b"kernel")
            && std::fs::read(ro.path().join(index)).ok()
                == std::fs::read(rw.path().join(index)).ok()
    });
    assert_refused_read_only(&ro, &kernel);
    ok(&format!("rm -r {}", q(&rw.path().join(version))));
    let products = format!("daily/streams/v1/{DAILY_PRODUCTS}");
    wait_for(&ro, "the removal shows through the read-only mount", || {
        !std::fs::read_dir(ro.path().join("daily/noble/amd64"))
            .unwrap()
            .any(|e| e.unwrap().file_name() == "20250101")
            && std::fs::read(ro.path().join(&products)).ok()
                == std::fs::read(rw.path().join(&products)).ok()
    });
    ro.unmount();
    rw.unmount();
}

/// A store on a filesystem mounted read-only (here a read-only bind mount
/// of the store) mounts read-only by itself: what it holds reads back, and
/// a write fails with EROFS at once (the kernel mount itself is `ro`)
/// instead of failing later at its commit.
#[test]
fn a_store_on_a_read_only_filesystem_is_mounted_read_only() {
    let Some(s) = setup() else { return };
    let kernel = "daily/noble/amd64/20250101/ga-24.04/generic/boot-kernel";
    let rw = Mount::new(&s.store);
    put(&rw, kernel, b"kernel");
    rw.unmount();
    let ro_store = s._dir.path().join("ro-store");
    std::fs::create_dir(&ro_store).unwrap();
    let _bind = ReadOnlyBind::new(&s.store, &ro_store);
    let m = Mount::new(&ro_store);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let options = mounts
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&m.path().to_str().unwrap()))
        .map(|f| f[3].to_string())
        .expect("the mount in /proc/mounts");
    assert!(options.split(',').any(|o| o == "ro"), "{options}");
    assert_eq!(std::fs::read(m.path().join(kernel)).unwrap(), b"kernel");
    assert_refused_read_only(&m, kernel);
    assert_refused_read_only(
        &m,
        "daily/noble/amd64/20250101/ga-24.04/generic/boot-initrd",
    );
    m.unmount();
}

/// A read-only bind mount of `from` on `to`, unmounted on drop (also on
/// panic).
struct ReadOnlyBind(PathBuf);

impl ReadOnlyBind {
    fn new(from: &Path, to: &Path) -> ReadOnlyBind {
        ok(&format!("mount --bind {} {}", q(from), q(to)));
        let bind = ReadOnlyBind(to.to_path_buf());
        ok(&format!("mount -o remount,bind,ro {}", q(to)));
        bind
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Writes `data` at `rel` in mount `m`, making its directories: an insert
/// by copy.
fn put(m: &Mount, rel: &str, data: &[u8]) {
    let p = m.path().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Waits until the read-only mount `ro` reads `data` at `rel`.
fn wait_served(ro: &Mount, rel: &str, data: &[u8]) {
    wait_for(
        ro,
        &format!("{rel} shows through the read-only mount"),
        || std::fs::read(ro.path().join(rel)).is_ok_and(|b| b == data),
    );
}

/// A write at `rel` through the read-only mount `ro` fails with EROFS.
fn assert_refused_read_only(ro: &Mount, rel: &str) {
    let refused = std::fs::write(ro.path().join(rel), b"other").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS), "{refused}");
}

/// Drops the kernel's clean page cache, so that what a test reads next
/// comes from the daemon (root only; reported when refused).
fn drop_page_cache() {
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
        streamfs_tests::report(&format!(
            "page cache not dropped ({e}): reads below may come from it"
        ));
    }
}

/// A read-only mount lets the kernel answer opens (no OPEN request, so no
/// handle to keep a generation in): a document opened there before commits
/// still reads as the generation it was opened in, at its size, after its
/// cached pages are dropped and its generation directory is deleted.
#[test]
fn a_document_open_on_the_read_only_mount_keeps_its_generation() {
    use std::io::Read;
    let Some(s) = setup() else { return };
    let rw = Mount::new(&s.store);
    let ro = Mount::with_options(&s.store, &["ro"]);
    let insert = |version: &str| {
        let kernel = format!("daily/noble/amd64/{version}/ga-24.04/generic/boot-kernel");
        put(&rw, &kernel, version.as_bytes());
    };
    insert("20250101");
    let products = format!("daily/streams/v1/{DAILY_PRODUCTS}");
    wait_for(&ro, "the insert shows through the read-only mount", || {
        std::fs::read(ro.path().join(&products)).ok()
            == std::fs::read(rw.path().join(&products)).ok()
    });
    let before = std::fs::read(ro.path().join(&products)).unwrap();
    let mut held = std::fs::File::open(ro.path().join(&products)).unwrap();
    let mut first = [0u8; 1];
    held.read_exact(&mut first).unwrap();
    // Two more commits: the store keeps only the generation before the
    // current one.
    insert("20250102");
    insert("20250103");
    wait_for(&ro, "the commits show through the read-only mount", || {
        std::fs::read(ro.path().join(&products)).ok()
            == std::fs::read(rw.path().join(&products)).ok()
    });
    assert_ne!(std::fs::read(ro.path().join(&products)).unwrap(), before);
    drop_page_cache();
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).unwrap();
    assert_eq!([&first[..], &rest].concat(), before, "{}", ro.log_text());
    assert_eq!(held.metadata().unwrap().len(), before.len() as u64);
    drop(held);
    ro.unmount();
    rw.unmount();
}

/// On a read-only mount the kernel keeps an item's pages across opens, and
/// nothing is asked of the daemon per open: an item removed, reaped and
/// inserted again with other content must still be read with its new bytes
/// by new opens (its number changed, and the watcher drops the kernel's
/// entry for the path), while a reader that had started keeps its bytes.
#[test]
fn the_read_only_mount_serves_an_item_inserted_again_with_its_new_bytes() {
    use std::io::Read;
    let Some(s) = setup() else { return };
    let rw = Mount::new(&s.store);
    let ro = Mount::with_options(&s.store, &["ro"]);
    let rel = "daily/noble/amd64/20250101/ga-24.04/generic/boot-kernel";
    put(&rw, rel, b"old kernel");
    wait_served(&ro, rel, b"old kernel");
    let mut old = std::fs::File::open(ro.path().join(rel)).unwrap();
    let mut first = [0u8; 4];
    old.read_exact(&mut first).unwrap();
    ok(&format!("rm {}", q(&rw.path().join(rel))));
    // Reading the metadata commits the removal.
    let _ = std::fs::read(rw.path().join("daily/streams/v1/index.json")).unwrap();
    mountctl(&s.store, &["reap-orphans", "--now"]);
    wait_for(
        &ro,
        "the reaped item is gone from the read-only mount",
        || !ro.path().join(rel).exists(),
    );
    let build = s._dir.path().join("build");
    let item = build.join(rel.strip_prefix("daily/").unwrap());
    std::fs::create_dir_all(item.parent().unwrap()).unwrap();
    std::fs::write(&item, b"new kernel, longer").unwrap();
    mountctl(&s.store, &["insert", build.to_str().unwrap(), "daily"]);
    let mut read = None;
    wait_for(
        &ro,
        "the new insert shows through the read-only mount",
        || {
            read = std::fs::read(ro.path().join(rel)).ok();
            read.is_some()
        },
    );
    assert_eq!(
        String::from_utf8_lossy(&read.unwrap()),
        "new kernel, longer",
        "{}",
        ro.log_text()
    );
    assert_eq!(std::fs::metadata(ro.path().join(rel)).unwrap().len(), 18);
    let mut rest = Vec::new();
    old.read_to_end(&mut rest).unwrap();
    assert_eq!([&first[..], &rest].concat(), b"old kernel");
    assert_eq!(old.metadata().unwrap().len(), 10);
    drop(old);
    ro.unmount();
    rw.unmount();
}

/// `-o ro,passthrough` keeps FUSE passthrough on a read-only mount (the
/// daemon answers opens), and it still shows what the read-write mount
/// inserts.
#[test]
fn a_read_only_mount_with_passthrough_keeps_its_opens_in_the_daemon() {
    let Some(s) = setup() else { return };
    let rw = Mount::new(&s.store);
    let ro = Mount::with_options(&s.store, &["ro", "passthrough"]);
    let rel = "daily/noble/amd64/20250101/ga-24.04/generic/boot-kernel";
    put(&rw, rel, b"kernel");
    wait_served(&ro, rel, b"kernel");
    let log = ro.log_text();
    assert!(log.contains("FUSE passthrough enabled"), "{log}");
    assert!(!log.contains("opens answered by the kernel"), "{log}");
    assert_refused_read_only(&ro, rel);
    ro.unmount();
    rw.unmount();
}
