//! `mountctl sync` of the upstream fixture trees (`simplestreams/maas`,
//! `simplestreams/cloud-images`) against the reference `sstream-mirror` on
//! the same tree served by nginx, with the same filters and `--max`: the
//! same (path, sha256) items. Then the synced stream, served back through a
//! read-only mount and nginx, answers `sstream-query` as upstream does.
//!
//! The fixtures are real metadata without their payloads (the images are
//! gigabytes). Each products file is rewritten to describe payloads the
//! test generates (a few hundred bytes per item, content derived from the
//! path): only `size`, `sha256`, `md5` and `sha512` of items change, every
//! other attribute is upstream's. The rewritten files are served unsigned
//! (`-U`); the signed path is covered by `signed-minimal` in `sync.rs`.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use md5::Md5;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use streamfs_tests::mount::{Mount, can_mount};
use streamfs_tests::serve::{Nginx, sha256_hex};
use streamfs_tests::store::{TestStore, copy_tree, flat_items};
use streamfs_tests::{fixtures_dir, missing, report, run_in, sstream_venv};

const CONFIG: &str = r#"grace = "3d"

[[stream]]
name = "maas"
content_id = "com.ubuntu.maas:stable:v3:download"
datatype = "image-ids"
product_id = "com.ubuntu.maas:v3:boot:{version}:{arch}:{subarch}"
label = "release"

[[stream]]
name = "cloud"
content_id = "com.ubuntu.cloud:released:download"
datatype = "image-downloads"
product_id = "com.ubuntu.cloud:server:{version}:{arch}"
label = "release"
"#;

/// The payload of the item at `path`: 200 to 1223 bytes derived from it.
fn payload(path: &str) -> Vec<u8> {
    let seed = Sha256::digest(path.as_bytes());
    let len = 200 + (usize::from(seed[0]) << 2 | usize::from(seed[1] & 3));
    seed.iter().copied().cycle().take(len).collect()
}

/// Rewrites every item of `doc` to describe its generated payload, and
/// writes the payload under `root`.
fn rewrite(doc: &mut Value, root: &Path) -> usize {
    let mut n = 0;
    for p in doc["products"].as_object_mut().unwrap().values_mut() {
        for v in p["versions"].as_object_mut().unwrap().values_mut() {
            for i in v["items"].as_object_mut().unwrap().values_mut() {
                let path = i["path"].as_str().unwrap().to_string();
                let bytes = payload(&path);
                let f = root.join(&path);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(&f, &bytes).unwrap();
                i["size"] = bytes.len().into();
                i["sha256"] = sha256_hex(&bytes).into();
                if i.get("md5").is_some() {
                    i["md5"] = hex::encode(Md5::digest(&bytes)).into();
                }
                if i.get("sha512").is_some() {
                    i["sha512"] = hex::encode(Sha512::digest(&bytes)).into();
                }
                n += 1;
            }
        }
    }
    n
}

struct Upstream {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    nginx: Nginx,
}

/// A served copy of fixture `name` whose products file `products` (under
/// `streams/v1/`) describes generated payloads.
fn upstream(name: &str, products: &str) -> Option<Upstream> {
    let fx = fixtures_dir()?.join("simplestreams").join(name);
    if !fx.is_dir() {
        return missing(&format!("{} missing", fx.display()));
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("mirror");
    copy_tree(&fx, &root);
    let pf = root.join("streams/v1").join(products);
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&pf).unwrap()).unwrap();
    let n = rewrite(&mut doc, &root);
    report(&format!("{name}: {n} payloads generated"));
    std::fs::write(&pf, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let nginx = Nginx::start(&root)?;
    Some(Upstream {
        _tmp: tmp,
        root,
        nginx,
    })
}

/// (path, sha256) of the items sstream-mirror wrote under `dir`.
fn files(dir: &Path) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            // Its metadata and its own bookkeeping (`.data/`).
            if rel == "streams" || rel == ".data" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert((rel, sha256_hex(&std::fs::read(&p).unwrap())));
            }
        }
    }
    out
}

const FORMAT: &str = "%(product_name)s %(version_name)s %(item_name)s %(path)s %(sha256)s %(size)s";

/// One fixture tree: sync with `filters` and `--max max` into `stream`,
/// the same with sstream-mirror, compare; then sstream-query both.
fn same_as_sstream(name: &str, products: &str, stream: &str, source: &str, filters: &[&str]) {
    let Some(venv) = sstream_venv() else { return };
    if !can_mount() {
        return;
    }
    let Some(up) = upstream(name, products) else {
        return;
    };
    let max = "2";
    let store = TestStore::init(Some(CONFIG));
    let src = up.nginx.url(source);
    let mut args = vec!["sync", "-q", "-U", "--max", max, &src, stream];
    args.extend_from_slice(filters);
    let out = store.mountctl(&args);
    assert_eq!(out.code, Some(0), "{name}: {}", out.stderr_text());
    let ours: BTreeSet<(String, String)> = flat_items(&store.products_file(stream))
        .into_iter()
        .map(|f| (f["path"].clone(), f["sha256"].clone()))
        .collect();
    assert!(!ours.is_empty(), "{name}: nothing synced");

    let dest = store.tmp.path().join("sstream-out");
    let dest_s = dest.display().to_string();
    let path = format!("streams/v1/{products}");
    let root_url = up.nginx.url("/");
    let mut a = vec!["--max", max, "--path", &path, &root_url, &dest_s];
    a.extend_from_slice(filters);
    let r = run_in(store.tmp.path(), &venv.join("bin/sstream-mirror"), &a);
    assert_eq!(
        r.code,
        Some(0),
        "{name}: sstream-mirror: {}",
        r.stderr_text()
    );
    let theirs = files(&dest);
    report(&format!(
        "{name}: {} items synced, {} by sstream-mirror",
        ours.len(),
        theirs.len()
    ));
    assert_eq!(ours, theirs, "{name}");

    // Served back: read-only mount, nginx, sstream-query.
    let serve = Mount::with_options(&store.root, &["ro", "allow_other"]);
    let Some(web) = Nginx::start(serve.path()) else {
        return;
    };
    let query = |url: &str| {
        let mut a = vec!["--max", max, "-o", FORMAT, url];
        a.extend_from_slice(filters);
        let q = run_in(store.tmp.path(), &venv.join("bin/sstream-query"), &a);
        assert_eq!(
            q.code,
            Some(0),
            "{name}: sstream-query {url}: {}",
            q.stderr_text()
        );
        q.stdout_text()
            .lines()
            .map(str::to_string)
            .collect::<BTreeSet<_>>()
    };
    let mirrored = query(&web.url(&format!("/{stream}/streams/v1/index.json")));
    let upstream = query(&up.nginx.url(&format!("/streams/v1/{products}")));
    assert!(!upstream.is_empty(), "{name}");
    assert_eq!(mirrored, upstream, "{name}");
    drop(web);
    serve.unmount();
    let _ = up.root;
}

#[test]
fn the_maas_tree_syncs_like_sstream_mirror_and_queries_like_upstream() {
    same_as_sstream(
        "maas",
        "com.ubuntu.maas:stable:v3:download.json",
        "maas",
        "/streams/v1/index.json",
        &["arch=amd64"],
    );
}

#[test]
fn a_filtered_cloud_images_subset_syncs_like_sstream_mirror_and_queries_like_upstream() {
    same_as_sstream(
        "cloud-images",
        "com.ubuntu.cloud:released:download.json",
        "cloud",
        "/streams/v1/com.ubuntu.cloud:released:download.json",
        &["arch=amd64", "release~^(jammy|noble)$"],
    );
}
