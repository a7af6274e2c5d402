//! A mirror host end to end: a signed store mounted with `-o allow_other`,
//! the util-scenario builds copied in with `cp -r`, a second, read-only
//! mount of the store (`-o ro,allow_other`, as contrib/systemd's
//! streamfs-serve@ unit makes) served by nginx (Debian's package, workers as
//! www-data) and rsyncd on loopback, both configured from the files shipped
//! in contrib/, and read by the reference simplestreams clients with every
//! signature and checksum verified.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use streamfs_tests::mount::{Mount, build_dir, can_mount};
use streamfs_tests::serve::{Nginx, Rsyncd, installed, sha256_hex};
use streamfs_tests::store::{Flat, SCENARIO_CONFIG, TestStore, flat_items, read_json};
use streamfs_tests::{run_in, sstream_venv};

const VERSIONS: [&str; 3] = ["20250101", "20250102", "20250103"];
const PRODUCTS: &str = "com.ubuntu.maas:candidate:v3:download.json";

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A signed scenario store (`mountctl keygen`), mounted with allow_other,
/// with every util-scenario build copied into `candidate` by `cp -r`, and
/// mounted read-only for serving.
struct Served {
    store: TestStore,
    keyring: PathBuf,
    mount: Mount,
    serve: Mount,
}

fn served() -> Option<Served> {
    let builds: Vec<PathBuf> = VERSIONS
        .iter()
        .map(|v| build_dir(v))
        .collect::<Option<_>>()?;
    if !can_mount() {
        return None;
    }
    let store = TestStore::init(Some(SCENARIO_CONFIG));
    store.ok(&["keygen"]);
    let keyring = store.root.join("keys/keyring.gpg");
    assert!(keyring.is_file());
    let mount = Mount::with_options(&store.root, &["allow_other"]);
    let cand = mount.path().join("candidate");
    for b in &builds {
        sh(&format!("cp -r '{}'/. '{}'", b.display(), cand.display()));
    }
    let serve = Mount::with_options(&store.root, &["ro", "allow_other"]);
    Some(Served {
        store,
        keyring,
        mount,
        serve,
    })
}

impl Served {
    fn candidate(&self) -> PathBuf {
        self.mount.path().join("candidate")
    }
    fn items(&self) -> Vec<Flat> {
        flat_items(&self.candidate().join("streams/v1").join(PRODUCTS))
    }
}

/// sha256 → the set of item paths, for the items of `version` (or all).
fn paths_by_sha(items: &[Flat], version: Option<&str>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in items {
        if version.is_some_and(|v| i["version_name"] != v) {
            continue;
        }
        out.entry(i["sha256"].clone())
            .or_default()
            .insert(i["path"].clone());
    }
    out
}

/// Every item of every products file under `root/<stream>/streams/v1`
/// matches its sha256 and size; returns how many were checked.
fn check_items_under(root: &Path, stream: &str) -> usize {
    let v1 = root.join(stream).join("streams/v1");
    let mut n = 0;
    for e in std::fs::read_dir(&v1).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") || name == "index.json" {
            continue;
        }
        for item in flat_items(&e.path()) {
            let p = root.join(stream).join(&item["path"]);
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(sha256_hex(&bytes), item["sha256"], "{}", p.display());
            assert_eq!(bytes.len().to_string(), item["size"], "{}", p.display());
            n += 1;
        }
    }
    n
}

#[test]
fn nginx_and_rsyncd_serve_the_mount_to_simplestreams_clients() {
    let Some(venv) = sstream_venv() else { return };
    let Some(gpgv) = installed("gpgv", "gpgv") else {
        return;
    };
    let Some(s) = served() else { return };
    let Some(nginx) = Nginx::start(s.serve.path()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();

    // The workers are not root: the mount is read as www-data. A worker
    // just forked is still root until it drops privileges, so the check
    // waits (up to 10 s) for every worker to have done so.
    // SAFETY: getpwnam with a valid C string; the record is read at once.
    let www_data = unsafe { libc::getpwnam(c"www-data".as_ptr()).as_ref() }
        .map(|pw| pw.pw_uid)
        .expect("the www-data user (made by the nginx package)");
    let workers_dropped_root =
        |uids: &[u32]| !uids.is_empty() && uids.iter().all(|u| *u == www_data);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut uids = nginx.worker_uids();
    while !workers_dropped_root(&uids) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        uids = nginx.worker_uids();
    }
    assert!(
        workers_dropped_root(&uids),
        "nginx workers run as uids {uids:?}"
    );

    // sstream-mirror over HTTP with the store's keyring: every signature
    // and checksum verified, every item fetched.
    let index = nginx.url("/candidate/streams/v1/index.sjson");
    let out = tmp.path().join("mirror");
    let m = run_in(
        tmp.path(),
        &venv.join("bin/sstream-mirror"),
        &[
            "--keyring",
            s.keyring.to_str().unwrap(),
            &index,
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(
        m.code,
        Some(0),
        "sstream-mirror: {}\n{}\nnginx: {}",
        m.stdout_text(),
        m.stderr_text(),
        nginx.error_log()
    );
    let items = s.items();
    assert_eq!(items.len(), 3 * 24, "24 items per build");
    for i in &items {
        let p = out.join(&i["path"]);
        let bytes =
            std::fs::read(&p).unwrap_or_else(|e| panic!("mirror lacks {}: {e}", p.display()));
        assert_eq!(sha256_hex(&bytes), i["sha256"], "{}", p.display());
    }

    // sstream-query on the same URL lists the inserted versions.
    let q = run_in(
        tmp.path(),
        &venv.join("bin/sstream-query"),
        &[
            "--keyring",
            s.keyring.to_str().unwrap(),
            &index,
            "-o",
            "%(version_name)s",
        ],
    );
    assert_eq!(q.code, Some(0), "sstream-query: {}", q.stderr_text());
    let listed: BTreeSet<String> = q.stdout_text().lines().map(str::to_string).collect();
    let want: BTreeSet<String> = VERSIONS.iter().map(|v| v.to_string()).collect();
    assert_eq!(listed, want);

    // The metadata's MIME types, and a browsable tree.
    for (path, mime) in [
        ("/candidate/streams/v1/index.json", "application/json"),
        ("/candidate/streams/v1/index.sjson", "text/plain"),
        (
            "/candidate/streams/v1/index.json.gpg",
            "application/pgp-signature",
        ),
        (
            "/candidate/noble/amd64/20250101/squashfs",
            "application/octet-stream",
        ),
    ] {
        let r = nginx.get(path);
        assert_eq!(r.status, 200, "{path}");
        let ct = r.header("content-type").unwrap_or_default();
        assert!(ct.starts_with(mime), "{path}: content-type {ct}");
    }
    let r = nginx.get("/candidate/noble/amd64/");
    assert_eq!(r.status, 200);
    let page = String::from_utf8_lossy(&r.body);
    for v in VERSIONS {
        assert!(page.contains(&format!("href=\"{v}/\"")), "{page}");
    }

    // rsyncd: the whole mount copied, every item matching its sha256 and
    // the copied metadata still verifying with gpgv.
    let Some(rsyncd) = Rsyncd::start(s.serve.path()) else {
        return;
    };
    let copy = tmp.path().join("rsync");
    let r = Command::new("rsync")
        .arg("-a")
        .arg(rsyncd.url())
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "rsync: {}\n{}",
        String::from_utf8_lossy(&r.stderr),
        rsyncd.log()
    );
    assert_eq!(check_items_under(&copy, "candidate"), items.len());
    assert!(copy.join("stable/streams/v1/index.json").is_file());
    for f in ["index.sjson", &PRODUCTS.replace(".json", ".sjson")] {
        let st = Command::new(&gpgv)
            .arg("--keyring")
            .arg(&s.keyring)
            .arg(copy.join("candidate/streams/v1").join(f))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "gpgv {f}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    s.serve.unmount();
    s.mount.unmount();
}

#[test]
fn rm_r_of_a_version_keeps_its_files_downloadable_until_reaped() {
    let Some(s) = served() else { return };
    let Some(nginx) = Nginx::start(s.serve.path()) else {
        return;
    };
    let before = s.items();
    let gone = paths_by_sha(&before, Some("20250101"));
    let kept = paths_by_sha(&before, Some("20250102"))
        .into_keys()
        .chain(paths_by_sha(&before, Some("20250103")).into_keys())
        .collect::<BTreeSet<_>>();
    // Blobs only 20250101 used become orphans; shared ones stay live.
    let orphaned: BTreeSet<&String> = gone.keys().filter(|sha| !kept.contains(*sha)).collect();
    assert!(!orphaned.is_empty());
    assert!(orphaned.len() < gone.len(), "the builds share some files");

    let vdir = s.candidate().join("noble/amd64/20250101");
    sh(&format!("rm -r '{}'", vdir.display()));

    // Gone at once from listings and from the metadata (mount and HTTP).
    let names: BTreeSet<String> = std::fs::read_dir(s.candidate().join("noble/amd64"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["20250102", "20250103"].map(String::from).into(),
        "{}",
        s.mount.log_text()
    );
    let after = s.items();
    assert!(after.iter().all(|i| i["version_name"] != "20250101"));
    assert_eq!(after.len(), before.len() - 24);
    // The served mount shows the commit within a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let served_meta = nginx.get(&format!("/candidate/streams/v1/{PRODUCTS}"));
        assert_eq!(served_meta.status, 200);
        let doc: Value = serde_json::from_slice(&served_meta.body).unwrap();
        let listing = nginx.get("/candidate/noble/amd64/");
        let listed = String::from_utf8_lossy(&listing.body).contains("20250101");
        let still: Vec<&String> = doc["products"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, p)| p["versions"].get("20250101").is_some())
            .map(|(pid, _)| pid)
            .collect();
        if !listed && still.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still served: listed {listed}, in the metadata of {still:?}\n{}",
            s.serve.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // orphans.json lists exactly the blobs nothing references any more.
    let orphans = read_json(&s.store.root.join("orphans.json"));
    let recorded: BTreeSet<String> = orphans.as_object().unwrap().keys().cloned().collect();
    let want: BTreeSet<String> = orphaned
        .iter()
        .map(|sha| format!("pool/sha256/{}/{sha}", &sha[..2]))
        .collect();
    assert_eq!(recorded, want);

    // Clients holding the old index still download by the old paths.
    for (sha, paths) in &gone {
        for p in paths {
            let r = nginx.get(&format!("/candidate/{p}"));
            assert_eq!(r.status, 200, "{p}: {}", nginx.error_log());
            assert_eq!(&sha256_hex(&r.body), sha, "{p}");
        }
    }

    // Reaped: the orphaned paths answer 404 (once the mount has seen the
    // reaping commit); paths whose blob another version shares still serve.
    s.store.ok(&["reap-orphans", "--now"]);
    for sha in &orphaned {
        assert!(
            !s.store
                .root
                .join(format!("pool/sha256/{}/{sha}", &sha[..2]))
                .exists()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for sha in &orphaned {
        for p in &gone[*sha] {
            loop {
                let r = nginx.get(&format!("/candidate/{p}"));
                if r.status == 404 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{p} still answers {} after reaping",
                    r.status
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let orphans = read_json(&s.store.root.join("orphans.json"));
    assert!(orphans.as_object().unwrap().is_empty(), "{orphans}");
    s.serve.unmount();
    s.mount.unmount();
}
