//! The order in which a build's files reach the mount never changes the
//! insert: `cp -r` and `rsync -a` write the data before the products file
//! (so the path templates name the products first), `tar -x` and
//! `install -D` write whatever order they are given. Every order is forced
//! explicitly (never left to readdir), by each tool, under two stream
//! configs: the issue's candidate stream, whose template product ids (and
//! content id) equal the build's, and the default `store.toml`'s daily
//! stream, whose ids differ. Each result must equal `mountctl insert` of
//! the same build into a stream of the same config, item for item, every
//! attribute included.
//!
//! One store (on tmpfs: the test is about semantics, and commits often)
//! and one mount hold every stream: a fresh stream per order.

use std::fs;
use std::path::Path;
use std::process::Command;

use streamfs_core::store::config::DEFAULT_CONFIG;
use streamfs_tests::mount::{Mount, build_dir, can_mount};
use streamfs_tests::store::{Flat, TestStore, flat_items};
use streamfs_tests::{in_path, missing};

/// Ways a build reaches a stream directory of the mount; each forces one
/// order of its files.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// `cp -r` of the data tree, then of `streams/`.
    CpDataFirst,
    /// `cp -r` of `streams/`, then of the data tree.
    CpMetadataFirst,
    /// `rsync -a BUILD/ DEST/`: rsync sorts names, `noble` < `streams`.
    RsyncWhole,
    /// `rsync -a` of `streams/`, then of the data tree.
    RsyncMetadataFirst,
    /// Plain `tar -x` of an archive holding the data first.
    TarDataFirst,
    /// Plain `tar -x` of an archive holding the metadata first.
    TarMetadataFirst,
    /// `install -D` file by file: half the data, the metadata, the rest.
    InstallInterleaved,
}

const ORDERS: [Order; 7] = [
    Order::CpDataFirst,
    Order::CpMetadataFirst,
    Order::RsyncWhole,
    Order::RsyncMetadataFirst,
    Order::TarDataFirst,
    Order::TarMetadataFirst,
    Order::InstallInterleaved,
];

/// The two configs: (tag, the stanza of one stream named `{name}`). The
/// first stream of each group is the reference (`mountctl insert`), then
/// one per order, then one for the conflict test.
const GROUPS: [&str; 2] = ["candidate", "default"];

fn streams(tag: &str) -> Vec<String> {
    std::iter::once(format!("{tag}-ref"))
        .chain((0..ORDERS.len()).map(|i| format!("{tag}-{i}")))
        .chain(std::iter::once(format!("{tag}-conflict")))
        .collect()
}

/// The default `store.toml` (daily, released) with copies of its daily
/// stream (they inherit its paths, ftypes and release tables, as released
/// does), then the issue's candidate stream, verbatim but for its name,
/// the first copy giving the templates the others inherit.
fn config() -> String {
    let mut c = DEFAULT_CONFIG.to_string();
    for name in streams("default") {
        c += &format!(
            r#"
[[stream]]
name = "{name}"
content_id = "com.ubuntu.maas:daily:v3:download"
datatype = "image-downloads"
product_id = "com.ubuntu.maas.daily:v3:boot:{{version}}:{{arch}}:{{subarch+kflavor}}"
label = "daily"
"#
        );
    }
    for (i, name) in streams("candidate").into_iter().enumerate() {
        c += &format!(
            r#"
[[stream]]
name = "{name}"
content_id = "com.ubuntu.maas:candidate:v3:download"
datatype = "image-downloads"
product_id = "com.ubuntu.maas.candidate:v3:boot:{{version}}:{{arch}}:{{subarch+kflavor}}"
label = "candidate"
"#
        );
        if i == 0 {
            c += r#"paths = ["{release}/{arch}/{version_name}/{subarch}/{kflavor}/{ftype}", "{release}/{arch}/{version_name}/{ftype}"]
[stream.ftype]
"squashfs.manifest" = "manifest"
[stream.release.noble]
version = "24.04"
"#;
        }
    }
    c
}

fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(cmd: &str, m: &Mount) {
    let (success, err) = sh(cmd);
    assert!(success, "`{cmd}` failed: {err}\n{}", m.log_text());
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// The build's files, relative to it, sorted: (data, metadata).
fn files(build: &Path) -> (Vec<String>, Vec<String>) {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut all = Vec::new();
    walk(build, build, &mut all);
    all.sort();
    all.into_iter().partition(|f| !f.starts_with("streams/"))
}

fn copy(order: Order, build: &Path, dest: &Path, scratch: &Path, m: &Mount) {
    let (b, d) = (q(build), q(dest));
    match order {
        Order::CpDataFirst => ok(
            &format!("cp -r {b}/noble {d}/ && cp -r {b}/streams {d}/"),
            m,
        ),
        Order::CpMetadataFirst => ok(
            &format!("cp -r {b}/streams {d}/ && cp -r {b}/noble {d}/"),
            m,
        ),
        Order::RsyncWhole => ok(&format!("rsync -a {b}/ {d}/"), m),
        Order::RsyncMetadataFirst => ok(
            &format!("rsync -a {b}/streams {d}/ && rsync -a {b}/noble {d}/"),
            m,
        ),
        Order::TarDataFirst | Order::TarMetadataFirst => {
            let members = match order {
                Order::TarDataFirst => ["noble", "streams"],
                _ => ["streams", "noble"],
            };
            let tar = scratch.join(format!("{order:?}.tar"));
            ok(
                &format!("tar -cf {} -C {b} {} {}", q(&tar), members[0], members[1]),
                m,
            );
            // The archive lists its members in the order given.
            let listed = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
            let first = String::from_utf8_lossy(&listed.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            assert!(first.starts_with(members[0]), "{first}");
            ok(&format!("tar -xf {} -C {d}", q(&tar)), m);
        }
        Order::InstallInterleaved => {
            let (data, meta) = files(build);
            let (early, late) = data.split_at(data.len() / 2);
            for f in early.iter().chain(&meta).chain(late) {
                ok(
                    &format!(
                        "install -D -m 0644 {} {}",
                        q(&build.join(f)),
                        q(&dest.join(f))
                    ),
                    m,
                );
            }
        }
    }
}

fn items(store: &TestStore, stream: &str) -> Vec<Flat> {
    flat_items(&store.products_file(stream))
}

fn tools_present() -> bool {
    for tool in ["rsync", "tar", "install"] {
        if in_path(tool).is_none() {
            missing::<()>(&format!("{tool} not installed"));
            return false;
        }
    }
    true
}

/// The build and a fresh store of [`config`]; `None` (after saying why)
/// when the fixtures, FUSE or a tool are missing.
fn prepared() -> Option<(std::path::PathBuf, TestStore)> {
    let build = build_dir("20250101")?;
    if !can_mount() || !tools_present() {
        return None;
    }
    Some((build, TestStore::init_on_tmpfs(Some(&config()))))
}

#[test]
fn every_copy_order_equals_mountctl_insert_under_both_configs() {
    let Some((build, store)) = prepared() else {
        return;
    };
    let b = build.display().to_string();
    for tag in GROUPS {
        store.ok(&["insert", &b, &format!("{tag}-ref")]);
    }
    let scratch = store.tmp.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    let m = Mount::new(&store.root);
    for tag in GROUPS {
        let reference = items(&store, &format!("{tag}-ref"));
        // The declared attributes that templates alone cannot give: without
        // them the comparison below could not tell the orders apart.
        for key in ["krel", "kpackage", "subarches", "release_title", "os"] {
            assert!(
                reference.iter().any(|i| i.contains_key(key)),
                "{tag}: reference lacks {key}"
            );
        }
        assert!(
            reference
                .iter()
                .any(|i| i.get("ftype").map(String::as_str) == Some("manifest"))
        );
        for (n, order) in ORDERS.iter().enumerate() {
            let stream = format!("{tag}-{n}");
            copy(*order, &build, &m.path().join(&stream), &scratch, &m);
            let got = items(&store, &stream);
            assert_eq!(
                got,
                reference,
                "{tag} config, {order:?}: the stream differs from mountctl insert\n{}",
                m.log_text()
            );
        }
    }
    m.unmount();
}

#[test]
fn a_declaration_contradicting_copied_data_is_refused_and_changes_nothing() {
    let Some((build, store)) = prepared() else {
        return;
    };
    let m = Mount::new(&store.root);
    let (data, meta) = files(&build);
    let products = meta
        .iter()
        .find(|f| !f.ends_with("index.json"))
        .expect("a products file");
    let kernel = data.iter().find(|f| f.ends_with("boot-kernel")).unwrap();
    for tag in GROUPS {
        let stream = format!("{tag}-conflict");
        let dest = m.path().join(&stream);
        // The kernel arrives first, with other content than declared.
        let target = dest.join(kernel);
        ok(&format!("mkdir -p {}", q(target.parent().unwrap())), &m);
        fs::write(&target, b"not the declared kernel").unwrap();
        let before = items(&store, &stream);
        let (copied, err) = sh(&format!(
            "install -D -m 0644 {} {}",
            q(&build.join(products)),
            q(&dest.join(products))
        ));
        assert!(
            !copied,
            "{tag}: the contradicting products file was accepted"
        );
        assert!(err.contains("Operation not permitted"), "{tag}: {err}");
        assert_eq!(
            items(&store, &stream),
            before,
            "{tag}: a refused declaration changed the stream"
        );
        assert!(
            m.log_text().contains("already holds other content"),
            "{}",
            m.log_text()
        );
    }
    m.unmount();
}
