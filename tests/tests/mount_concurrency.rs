//! Concurrency on a real mount: writers inserting new versions by `cp -r`
//! while readers mirror and checksum the tree as a simplestreams client does
//! (issue "The mount", acceptance "Concurrency").
//!
//! Each writer copies builds made from the util-scenario build
//! `build-20250101.d` under new version names, with content of their own (so
//! a blob served under the wrong path would not match its checksum). Half the
//! writers copy data and metadata (`cp -r build/.`), half data only (`cp -r
//! build/noble`, products named by the path templates). Each reader loops:
//! `streams/v1/index.json`, the products file it names, then every item path
//! that products file lists, checking size and sha256 against that products
//! file. The readers read the mount directly; serving it through nginx
//! changes nothing on the mount's side but could be added on top.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};
use streamfs_core::streams::Products;
use streamfs_core::streams::flatten::flatten;
use streamfs_tests::mount::{Mount, build_dir, can_mount};

const WRITERS: usize = 4;
const READERS: usize = 4;
const VERSIONS_PER_WRITER: usize = 3;
/// The version of the fixture build the new versions are made from.
const BASE: &str = "20250101";
/// Filler appended to each `squashfs`, so reads span many pages and take
/// long enough to overlap commits.
const SQUASHFS_FILL: usize = 768 << 10;

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Deterministic bytes that differ per version.
fn filler(version: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(version.as_bytes());
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

/// Writes into `out` a build of `version` made from the fixture build: every
/// data file under `noble/amd64/<version>/` with its content made unique to
/// the version, and (when `with_metadata`) the build's products file and
/// index with version, paths, sizes and sha256 rewritten to match. Returns
/// the data files: stream-relative path → sha256.
fn make_build(
    fixture: &Path,
    version: &str,
    out: &Path,
    with_metadata: bool,
) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let src_root = fixture.join("noble/amd64").join(BASE);
    let mut stack = vec![src_root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let sub = p.strip_prefix(&src_root).unwrap().to_string_lossy();
            let rel = format!("noble/amd64/{version}/{sub}");
            let mut data = std::fs::read(&p).unwrap();
            data.extend_from_slice(format!("version {version}\n").as_bytes());
            if sub == "squashfs" {
                data.extend_from_slice(&filler(version, SQUASHFS_FILL));
            }
            let dst = out.join(&rel);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::write(&dst, &data).unwrap();
            files.insert(rel, sha256_hex(&data));
        }
    }
    if with_metadata {
        let v1 = fixture.join("streams/v1");
        std::fs::create_dir_all(out.join("streams/v1")).unwrap();
        for e in std::fs::read_dir(&v1).unwrap().flatten() {
            let text = std::fs::read_to_string(e.path())
                .unwrap()
                .replace(BASE, version);
            let mut doc: Value = serde_json::from_str(&text).unwrap();
            fix_items(&mut doc, out);
            std::fs::write(
                out.join("streams/v1").join(e.file_name()),
                serde_json::to_vec_pretty(&doc).unwrap(),
            )
            .unwrap();
        }
    }
    files
}

/// Sets `size` and `sha256` of every item (an object with a `path`) to those
/// of the file at that path below `root`.
fn fix_items(v: &mut Value, root: &Path) {
    match v {
        Value::Object(m) => {
            if let Some(path) = m.get("path").and_then(Value::as_str)
                && m.contains_key("sha256")
            {
                let data = std::fs::read(root.join(path)).unwrap();
                m.insert("size".into(), Value::from(data.len()));
                m.insert("sha256".into(), Value::from(sha256_hex(&data)));
                return;
            }
            for x in m.values_mut() {
                fix_items(x, root);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| fix_items(x, root)),
        _ => {}
    }
}

/// What the readers saw.
#[derive(Default)]
struct Tally {
    rounds: AtomicU64,
    /// Rounds started while writers were still copying.
    overlapping: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn error(&self, e: String) {
        let mut errs = self.errors.lock().unwrap();
        if errs.len() < 50 {
            errs.push(e);
        }
    }
}

/// One client pass over the mirror at `root` (a stream directory): the
/// index, each products file it names, each item path listed there.
/// Returns the item paths seen, by version.
fn mirror_once(root: &Path, tally: &Tally) -> BTreeMap<String, BTreeSet<String>> {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let index_path = root.join("streams/v1/index.json");
    let index: Value = match std::fs::read(&index_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            tally.error(format!("{}: {e}", index_path.display()));
            return seen;
        }
    };
    let entries = index["index"].as_object().cloned().unwrap_or_default();
    if entries.is_empty() {
        tally.error(format!("{}: no products files", index_path.display()));
    }
    for (cid, entry) in entries {
        let Some(ppath) = entry["path"].as_str() else {
            tally.error(format!("index entry {cid} has no path"));
            continue;
        };
        let file = root.join(ppath);
        let products = match std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| Products::parse(ppath, &b).map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => {
                tally.error(format!("{}: {e}", file.display()));
                continue;
            }
        };
        for item in flatten(&products) {
            let get = |k: &str| item.get(k).and_then(Value::as_str).map(String::from);
            let (Some(path), Some(sha), Some(size), Some(version)) =
                (get("path"), get("sha256"), get("size"), get("version_name"))
            else {
                continue;
            };
            match std::fs::read(root.join(&path)) {
                Ok(data) => {
                    let got = (data.len().to_string(), sha256_hex(&data));
                    if got != (size.clone(), sha.clone()) {
                        tally.error(format!(
                            "{path}: read {} bytes with sha256 {}, metadata says {size} bytes, {sha}",
                            got.0, got.1
                        ));
                    }
                    tally.items.fetch_add(1, Ordering::Relaxed);
                    tally.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Err(e) => tally.error(format!("{path}: {e}")),
            }
            seen.entry(version).or_default().insert(path);
        }
    }
    seen
}

#[test]
fn writers_inserting_while_readers_mirror_and_checksum() {
    let Some(fixture) = build_dir(BASE) else {
        return;
    };
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new(&dir.path().join("store"));
    let daily = m.path().join("daily");
    // A first version, so readers have a tree from the start and the
    // writers' `cp -r` find the directories above their versions.
    let st = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", fixture.display()))
        .arg(&daily)
        .status()
        .unwrap();
    assert!(st.success(), "{}", m.log_text());

    // The builds, made before the clock starts: (writer, version, dir, files).
    let mut builds: Vec<(usize, String, PathBuf, BTreeMap<String, String>)> = Vec::new();
    for w in 0..WRITERS {
        for v in 0..VERSIONS_PER_WRITER {
            let version = format!("2030{:02}{:02}", w + 1, v + 1);
            let out = dir.path().join(format!("build-{version}.d"));
            let files = make_build(&fixture, &version, &out, w % 2 == 0);
            builds.push((w, version, out, files));
        }
    }

    let tally = Arc::new(Tally::default());
    let writing = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (tally, writing, daily) = (tally.clone(), writing.clone(), daily.clone());
            std::thread::spawn(move || {
                // At least one full pass after the writers are done.
                loop {
                    let last = !writing.load(Ordering::SeqCst);
                    mirror_once(&daily, &tally);
                    tally.rounds.fetch_add(1, Ordering::Relaxed);
                    if !last {
                        tally.overlapping.fetch_add(1, Ordering::Relaxed);
                    }
                    if last {
                        break;
                    }
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let mine: Vec<(String, PathBuf)> = builds
                .iter()
                .filter(|b| b.0 == w)
                .map(|b| (b.1.clone(), b.2.clone()))
                .collect();
            let daily = daily.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for (version, build) in mine {
                    // Data and metadata, or data only.
                    let src = if w % 2 == 0 {
                        format!("{}/.", build.display())
                    } else {
                        build.join("noble").display().to_string()
                    };
                    let out = Command::new("cp")
                        .arg("-r")
                        .arg(&src)
                        .arg(&daily)
                        .output()
                        .unwrap();
                    if !out.status.success() {
                        failures.push(format!(
                            "writer {w}: cp -r {src} (version {version}): {}",
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for w in writers {
        failures.extend(w.join().unwrap());
    }
    writing.store(false, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    let log = m.log_text();
    assert!(failures.is_empty(), "{failures:#?}\n{log}");
    let errors = tally.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "readers saw: {errors:#?}\n{log}");
    assert!(!log.contains("refused"), "{log}");

    // Every inserted version is published with every one of its files, as
    // a client sees it now.
    let final_tally = Tally::default();
    let seen = mirror_once(&daily, &final_tally);
    assert!(final_tally.errors.lock().unwrap().is_empty());
    for (_, version, _, files) in &builds {
        let want: BTreeSet<String> = files.keys().cloned().collect();
        assert_eq!(seen.get(version), Some(&want), "version {version}\n{log}");
    }
    let rounds = tally.rounds.load(Ordering::Relaxed);
    let overlapping = tally.overlapping.load(Ordering::Relaxed);
    let items = tally.items.load(Ordering::Relaxed);
    let bytes = tally.bytes.load(Ordering::Relaxed);
    let generation = Command::new("readlink")
        .arg(m.store().join("meta/current"))
        .output()
        .unwrap();
    eprintln!(
        "concurrency: {WRITERS} writers inserted {} versions ({} files); {READERS} readers \
         made {rounds} rounds ({overlapping} during the inserts), checked {items} items, {bytes} bytes; store at {}",
        builds.len(),
        builds.iter().map(|b| b.3.len()).sum::<usize>(),
        String::from_utf8_lossy(&generation.stdout).trim()
    );
    // Otherwise nothing ran concurrently and the test proved nothing.
    assert!(overlapping > 0, "no reader round overlapped the inserts");
    m.unmount();

    // The store is consistent afterwards.
    let fsck = Command::new(streamfs_tests::mountctl_bin())
        .arg("--store")
        .arg(dir.path().join("store"))
        .arg("fsck")
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "fsck after the concurrent inserts:\n{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}
