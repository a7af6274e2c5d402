//! `mountctl sync` against real nginx on 127.0.0.1 serving a fixture mirror
//! (`simplestreams/signed-minimal`, signed, with its keyring), with the real
//! `sstream-mirror` as the reference: the same items arrive, signatures and
//! checksums are enforced, a failed item leaves only its version out, and an
//! up-to-date stream re-syncs without a download or a new generation.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use streamfs_tests::serve::{Nginx, sha256_hex};
use streamfs_tests::store::{TestStore, copy_tree, flat_items};
use streamfs_tests::{fixtures_dir, missing, run_in, sstream_venv};

const CID: &str = "com.example:download";

/// A served copy of signed-minimal (nginx's workers run as www-data, so
/// the tree and its parents are world-readable).
struct Served {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    keyring: PathBuf,
    nginx: Nginx,
}

fn served() -> Option<Served> {
    let fx = fixtures_dir()?.join("simplestreams/signed-minimal");
    if !fx.is_dir() {
        return missing(&format!("{}", fx.display()));
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("mirror");
    copy_tree(&fx, &root);
    let keyring = root.join("test-keyring.gpg");
    let nginx = Nginx::start(&root)?;
    Some(Served {
        _tmp: tmp,
        root,
        keyring,
        nginx,
    })
}

impl Served {
    fn url(&self) -> String {
        self.nginx.url("/")
    }
}

fn sync(store: &TestStore, args: &[&str]) -> streamfs_tests::Outcome {
    let mut all = vec!["sync", "-q", "--content-id", CID];
    all.extend_from_slice(args);
    store.mountctl(&all)
}

/// (path, sha256) of every item a products file lists.
fn items(products: &Path) -> BTreeSet<(String, String)> {
    flat_items(products)
        .into_iter()
        .map(|f| (f["path"].clone(), f["sha256"].clone()))
        .collect()
}

fn generation(store: &TestStore) -> String {
    std::fs::read_link(store.root.join("meta/current"))
        .unwrap()
        .display()
        .to_string()
}

/// A sync of an up-to-date stream: no download, no new generation, and
/// the store checks clean.
fn resync_changes_nothing(store: &TestStore, args: &[&str]) {
    let g = generation(store);
    let again = sync(store, args);
    assert_eq!(again.code, Some(0), "{}", again.stderr_text());
    assert!(
        again
            .stdout_text()
            .contains("added 0 version(s), removed 0; 0 blob(s) downloaded"),
        "{}",
        again.stdout_text()
    );
    assert_eq!(generation(store), g);
    let fsck = store.mountctl(&["fsck"]);
    assert_eq!(fsck.code, Some(0), "{}", fsck.stdout_text());
}

#[test]
fn a_signed_mirror_syncs_like_sstream_mirror_and_resyncs_without_a_download() {
    let Some(s) = served() else { return };
    let Some(venv) = sstream_venv() else { return };
    let store = TestStore::init(None);
    let keyring = s.keyring.display().to_string();
    let out = sync(&store, &["--keyring", &keyring, &s.url(), "daily"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr_text());
    let summary = out.stdout_text();
    assert!(summary.contains("added 1 version(s)"), "{summary}");
    let ours = items(&store.products_file("daily"));
    assert!(!ours.is_empty());

    // The reference client on the same served tree.
    let dest = store.tmp.path().join("sstream-out");
    let r = run_in(
        store.tmp.path(),
        &venv.join("bin/sstream-mirror"),
        &["--keyring", &keyring, &s.url(), &dest.display().to_string()],
    );
    assert_eq!(r.code, Some(0), "sstream-mirror: {}", r.stderr_text());
    let mut theirs = BTreeSet::new();
    for (path, _) in &ours {
        let bytes = std::fs::read(dest.join(path)).expect("sstream-mirror wrote the item");
        theirs.insert((path.clone(), sha256_hex(&bytes)));
    }
    assert_eq!(ours, theirs);
    // Every blob is the served file's bytes.
    for (path, sha) in &ours {
        assert_eq!(&sha256_hex(&std::fs::read(s.root.join(path)).unwrap()), sha);
        assert!(
            store
                .root
                .join(format!("pool/sha256/{}/{sha}", &sha[..2]))
                .is_file()
        );
    }

    resync_changes_nothing(&store, &["--keyring", &keyring, &s.url(), "daily"]);
}

#[test]
fn a_dry_run_lists_the_downloads_and_changes_nothing() {
    let Some(s) = served() else { return };
    let store = TestStore::init(None);
    let before = generation(&store);
    let keyring = s.keyring.display().to_string();
    let out = sync(&store, &["-n", "--keyring", &keyring, &s.url(), "daily"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr_text());
    let text = out.stdout_text();
    assert!(
        text.contains("would download product1/20150915/text.txt"),
        "{text}"
    );
    assert!(
        text.contains(&s.nginx.url("/product1/20150915/root.img")),
        "{text}"
    );
    assert!(
        text.contains("daily: would add 1 version(s), would remove 0; 2 blob(s) to download"),
        "{text}"
    );
    assert!(!text.contains(" removed "), "{text}");
    assert_eq!(generation(&store), before);
    assert!(store.blobs().is_empty());
}

#[test]
fn a_tampered_signed_index_is_refused_and_nothing_changes() {
    let Some(s) = served() else { return };
    let idx = s.root.join("streams/v1/index.sjson");
    let text = std::fs::read_to_string(&idx).unwrap();
    std::fs::write(&idx, text.replace("product1", "product2")).unwrap();
    let store = TestStore::init(None);
    let before = generation(&store);
    let keyring = s.keyring.display().to_string();
    let out = sync(&store, &["--keyring", &keyring, &s.url(), "daily"]);
    assert_eq!(out.code, Some(1), "{}", out.stdout_text());
    assert!(
        out.stderr_text().contains("index.sjson"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(generation(&store), before);
    assert!(store.blobs().is_empty());
}

#[test]
fn a_flipped_byte_or_a_missing_item_leaves_the_version_out_and_exits_1() {
    let Some(s) = served() else { return };
    let keyring = s.keyring.display().to_string();
    for fault in ["flip", "404"] {
        let store = TestStore::init(None);
        let before = generation(&store);
        let f = s.root.join("product1/20150915/root.img");
        let orig = std::fs::read(&f).unwrap();
        if fault == "flip" {
            let mut b = orig.clone();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            std::fs::write(&f, b).unwrap();
        } else {
            std::fs::remove_file(&f).unwrap();
        }
        let out = sync(&store, &["--keyring", &keyring, &s.url(), "daily"]);
        std::fs::write(&f, &orig).unwrap();
        assert_eq!(out.code, Some(1), "{fault}: {}", out.stdout_text());
        let err = out.stderr_text();
        assert!(
            err.contains("com.example:product1 version 20150915") && err.contains("root.img"),
            "{fault}: {err}"
        );
        let want = if fault == "flip" { "mismatch" } else { "404" };
        assert!(err.contains(want), "{fault}: {err}");
        assert_eq!(generation(&store), before, "{fault}");
        // The file that was good is kept in the pool for the re-run; the
        // bad one is nowhere.
        let bad = sha256_hex(&orig);
        assert!(!store.blobs().contains(&bad), "{fault}");
        // A re-run once upstream is fixed completes.
        let again = sync(&store, &["--keyring", &keyring, &s.url(), "daily"]);
        assert_eq!(again.code, Some(0), "{fault}: {}", again.stderr_text());
        assert!(store.blobs().contains(&bad), "{fault}");
    }
}

#[test]
fn unsafe_paths_and_absurd_sizes_are_refused_before_anything_is_written() {
    let Some(s) = served() else { return };
    let p = s.root.join("streams/v1/download.json");
    let orig = std::fs::read_to_string(&p).unwrap();
    // Only the unsigned file is altered: the signed one (read first) goes.
    std::fs::remove_file(s.root.join("streams/v1/download.sjson")).unwrap();
    let long = format!("product1/{}", "x".repeat(300));
    let cases = [
        ("\"product1/20150915/text.txt\"", "\"../../etc/passwd\""),
        ("\"product1/20150915/text.txt\"", "\"/etc/passwd\""),
        ("\"product1/20150915/text.txt\"", &*format!("\"{long}\"")),
    ];
    for (from, to) in cases {
        assert!(orig.contains(from));
        std::fs::write(&p, orig.replace(from, to)).unwrap();
        let store = TestStore::init(None);
        let out = sync(
            &store,
            &["-U", &s.nginx.url("/streams/v1/download.json"), "daily"],
        );
        assert_eq!(out.code, Some(1), "{to}: {}", out.stdout_text());
        assert!(store.blobs().is_empty(), "{to}");
        assert!(
            !store.root.join("tmp/partial").exists()
                || std::fs::read_dir(store.root.join("tmp/partial"))
                    .unwrap()
                    .next()
                    .is_none()
        );
    }
    // A size of 10^15 bytes.
    let doc: serde_json::Value = serde_json::from_str(&orig).unwrap();
    let mut doc = doc;
    for v in doc["products"].as_object_mut().unwrap().values_mut() {
        for ver in v["versions"].as_object_mut().unwrap().values_mut() {
            for i in ver["items"].as_object_mut().unwrap().values_mut() {
                i["size"] = serde_json::json!(1_000_000_000_000_000u64);
            }
        }
    }
    std::fs::write(&p, serde_json::to_vec(&doc).unwrap()).unwrap();
    let store = TestStore::init(None);
    let before = generation(&store);
    let out = sync(
        &store,
        &["-U", &s.nginx.url("/streams/v1/download.json"), "daily"],
    );
    assert_eq!(out.code, Some(1), "{}", out.stdout_text());
    assert!(
        out.stderr_text().contains("1000000000000000"),
        "{}",
        out.stderr_text()
    );
    assert!(store.blobs().is_empty());
    assert_eq!(generation(&store), before);
    std::fs::write(&p, orig).unwrap();
}

/// A generated stream of 40,000 items (10,000 versions of 100 products)
/// whose items share 64 distinct contents, served by nginx: each content is
/// downloaded once, every item is published, and a re-sync downloads
/// nothing and makes no new generation.
#[test]
fn a_40000_item_stream_downloads_each_content_once_and_resyncs_without_a_download() {
    use std::fmt::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("mirror");
    let v1 = root.join("streams/v1");
    std::fs::create_dir_all(&v1).unwrap();
    let contents: Vec<Vec<u8>> = (0..64)
        .map(|k| format!("content {k}\n").repeat(k + 1).into_bytes())
        .collect();
    let firsts = root.join("contents");
    std::fs::create_dir_all(&firsts).unwrap();
    for (k, c) in contents.iter().enumerate() {
        std::fs::write(firsts.join(k.to_string()), c).unwrap();
    }
    let mut want = BTreeSet::new();
    let mut products = String::new();
    for p in 0..100 {
        let _ = write!(
            products,
            "{}\"com.example:p{p:03}\": {{\"arch\": \"amd64\", \"os\": \"ubuntu\", \"versions\": {{",
            if p > 0 { ", " } else { "" }
        );
        for v in 0..100 {
            let _ = write!(
                products,
                "{}\"2025{v:04}\": {{\"items\": {{",
                if v > 0 { ", " } else { "" }
            );
            for i in 0..4 {
                let k = (p * 7 + v * 3 + i) % contents.len();
                let path = format!("p{p:03}/2025{v:04}/f{i}");
                let file = root.join(&path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::hard_link(firsts.join(k.to_string()), &file).unwrap();
                let sha = sha256_hex(&contents[k]);
                let _ = write!(
                    products,
                    "{}\"f{i}\": {{\"ftype\": \"f{i}\", \"path\": \"{path}\", \"sha256\": \"{sha}\", \"size\": {}}}",
                    if i > 0 { ", " } else { "" },
                    contents[k].len()
                );
                want.insert((path, sha));
            }
            products.push_str("}}");
        }
        products.push_str("}}");
    }
    let updated = "Mon, 07 Dec 2026 00:00:00 +0000";
    std::fs::write(
        v1.join("products.json"),
        format!(
            "{{\"format\": \"products:1.0\", \"content_id\": \"{CID}\", \"datatype\": \"image-downloads\", \"updated\": \"{updated}\", \"products\": {{{products}}}}}"
        ),
    )
    .unwrap();
    std::fs::write(
        v1.join("index.json"),
        format!(
            "{{\"format\": \"index:1.0\", \"updated\": \"{updated}\", \"index\": {{\"{CID}\": {{\"path\": \"streams/v1/products.json\", \"format\": \"products:1.0\", \"datatype\": \"image-downloads\", \"updated\": \"{updated}\", \"products\": []}}}}}}"
        ),
    )
    .unwrap();
    let Some(nginx) = Nginx::start(&root) else {
        return;
    };
    let store = TestStore::init(None);
    let out = sync(&store, &["-U", &nginx.url("/"), "daily"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr_text());
    let summary = out.stdout_text();
    assert!(
        summary.contains("added 10000 version(s)") && summary.contains("64 blob(s) downloaded"),
        "{summary}"
    );
    assert_eq!(items(&store.products_file("daily")), want);

    resync_changes_nothing(&store, &["-U", &nginx.url("/"), "daily"]);
}
