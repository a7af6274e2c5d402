//! Retention through a running mount: a stream's `keep = N` applies to
//! builds copied in with `cp -r`, and the daemon itself reaps orphans once
//! they are older than the store's `grace`, without `mountctl`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use streamfs_tests::mount::{Mount, build_dir, can_mount};
use streamfs_tests::store::{SCENARIO_CONFIG, TestStore, flat_items, read_json};

const PRODUCTS: &str = "com.ubuntu.maas:candidate:v3:download.json";

fn cp_r(build: &Path, dest: &Path) {
    cp(&["-r"], build, dest)
}

/// `cp FLAGS… SRC/. DEST`.
fn cp(flags: &[&str], build: &Path, dest: &Path) {
    let out = Command::new("cp")
        .args(flags)
        .arg(format!("{}/.", build.display()))
        .arg(dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cp -r: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The versions the mount's generated metadata lists.
fn versions(m: &Mount) -> BTreeSet<String> {
    flat_items(&m.path().join("candidate/streams/v1").join(PRODUCTS))
        .into_iter()
        .map(|i| i["version_name"].clone())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn keep_applies_to_builds_copied_into_the_mount() {
    let (Some(b1), Some(b2), Some(b3)) = (
        build_dir("20250101"),
        build_dir("20250102"),
        build_dir("20250103"),
    ) else {
        return;
    };
    if !can_mount() {
        return;
    }
    let config = SCENARIO_CONFIG.replacen(
        "label = \"candidate\"\n",
        "label = \"candidate\"\nkeep = 1\n",
        1,
    );
    assert!(config.contains("keep = 1"));
    let s = TestStore::init(Some(&config));
    let m = Mount::new(&s.root);
    let cand = m.path().join("candidate");
    let listed = || -> BTreeSet<String> {
        std::fs::read_dir(cand.join("noble/amd64"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };

    cp_r(&b1, &cand);
    assert_eq!(versions(&m), set(&["20250101"]));
    let per_version = flat_items(&cand.join("streams/v1").join(PRODUCTS)).len();
    // The second build retires the first, from listings and metadata.
    cp_r(&b2, &cand);
    assert_eq!(versions(&m), set(&["20250102"]), "{}", m.log_text());
    assert_eq!(listed(), set(&["20250102"]));

    // The third build's metadata first: its versions are pending, and the
    // published version stays until they are complete…
    cp_r(&b3.join("streams"), &cand.join("streams"));
    assert_eq!(versions(&m), set(&["20250102"]), "{}", m.log_text());
    // …then its data (`-n`: the kernels it shares with 20250102 are in
    // place already): the new version is published, the old one retired.
    cp(&["-r", "-n"], &b3.join("noble"), &cand.join("noble"));
    assert_eq!(versions(&m), set(&["20250103"]), "{}", m.log_text());
    assert_eq!(listed(), set(&["20250103"]));
    let items = flat_items(&cand.join("streams/v1").join(PRODUCTS));
    assert_eq!(items.len(), per_version);
    // What only the retired versions used is recorded as orphaned.
    let orphans = read_json(&s.root.join("orphans.json"));
    assert!(!orphans.as_object().unwrap().is_empty(), "{orphans}");
    // The same retention as `mountctl insert` of the three builds.
    let other = TestStore::init(Some(&config));
    for b in [&b1, &b2, &b3] {
        other.ok(&["insert", b.to_str().unwrap(), "candidate"]);
    }
    assert_eq!(flat_items(&other.products_file("candidate")), items);
    m.unmount();
}

#[test]
fn the_daemon_reaps_orphans_older_than_the_grace() {
    let (Some(b1), Some(b2)) = (build_dir("20250101"), build_dir("20250102")) else {
        return;
    };
    if !can_mount() {
        return;
    }
    let config = SCENARIO_CONFIG.replacen("grace = \"3d\"", "grace = \"2s\"", 1);
    assert!(config.contains("grace = \"2s\""));
    let s = TestStore::init(Some(&config));
    let m = Mount::new(&s.root);
    let cand = m.path().join("candidate");
    cp_r(&b1, &cand);
    cp_r(&b2, &cand);
    let blobs_before = s.blobs();

    let vdir = cand.join("noble/amd64/20250101");
    let squashfs = std::fs::read(vdir.join("squashfs")).unwrap();
    let st = Command::new("rm").arg("-r").arg(&vdir).status().unwrap();
    assert!(st.success());
    let orphans = read_json(&s.root.join("orphans.json"));
    let orphaned: Vec<String> = orphans.as_object().unwrap().keys().cloned().collect();
    assert!(!orphaned.is_empty());
    // Right after the removal the old path still reads.
    assert_eq!(std::fs::read(vdir.join("squashfs")).unwrap(), squashfs);

    // Nothing but the running daemon reaps them. `rm` is answered before
    // its removals are committed (they go in batches), so on a loaded
    // machine a last batch may orphan more after `rm` returned: every
    // orphan ever listed must go.
    let mut orphaned: BTreeSet<String> = orphaned.into_iter().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = read_json(&s.root.join("orphans.json"));
        let listed = listed.as_object().unwrap();
        orphaned.extend(listed.keys().cloned());
        if listed.is_empty() && orphaned.iter().all(|p| !s.root.join(p).exists()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphans not reaped within 60s of a 2s grace:\n{}",
            m.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(s.blobs().len(), blobs_before.len() - orphaned.len());
    assert!(m.log_text().contains("reaped"), "{}", m.log_text());
    // Live data stays: the other version reads in full.
    for i in flat_items(&cand.join("streams/v1").join(PRODUCTS)) {
        assert!(cand.join(&i["path"]).is_file(), "{}", i["path"]);
    }
    // The reaped path is gone from the mount once the daemon has moved on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(vdir.join("squashfs")).is_ok() {
        assert!(Instant::now() < deadline, "a reaped path still resolves");
        std::thread::sleep(Duration::from_millis(100));
    }
    m.unmount();
}
