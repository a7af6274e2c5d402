//! The order in which a build's files reach the mount never changes the
//! insert (issue: `cp -r` and `rsync -a` write the data before the products
//! file, so the path templates name the products first). Every order is
//! forced explicitly, by several tools, under two stream configs: one whose
//! template product ids equal the build's declared ids, one whose ids
//! differ. Each result must equal `mountctl insert` of the same build, item
//! for item, every attribute included.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    /// `tar -x` of an archive holding the data first.
    TarDataFirst,
    /// `tar -x` of an archive holding the metadata first.
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

/// Template ids equal to the build's declared ids
/// (`com.ubuntu.maas.candidate:v3:boot:…`), as in the issue's store.toml.
const SAME_IDS: &str =
    r#"product_id = "com.ubuntu.maas.candidate:v3:boot:{version}:{arch}:{subarch+kflavor}""#;
/// Template ids that differ from the declared ones (the default store's).
const OTHER_IDS: &str =
    r#"product_id = "com.ubuntu.maas.daily:v3:boot:{version}:{arch}:{subarch+kflavor}""#;

/// A config with one stream per (config, order) and a reference stream per
/// config; the first stream carries the templates the others inherit.
fn config() -> String {
    let mut c = String::from("grace = \"3d\"\n");
    let mut first = true;
    for (tag, ids) in [("same", SAME_IDS), ("other", OTHER_IDS)] {
        let names = std::iter::once(format!("{tag}-ref"))
            .chain((0..ORDERS.len()).map(|i| format!("{tag}-{i}")))
            .chain(std::iter::once(format!("{tag}-conflict")));
        for name in names {
            c += &format!(
                "\n[[stream]]\nname = \"{name}\"\ncontent_id = \"org.example:{name}\"\n\
                 datatype = \"image-downloads\"\n{ids}\nlabel = \"candidate\"\n"
            );
            if first {
                first = false;
                c += r#"paths = ["{release}/{arch}/{version_name}/{subarch}/{kflavor}/{ftype}",
         "{release}/{arch}/{version_name}/{ftype}"]
[stream.ftype]
"squashfs.manifest" = "manifest"
[stream.release.noble]
version = "24.04"
"#;
            }
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

fn ok(cmd: &str) {
    let (success, err) = sh(cmd);
    assert!(success, "`{cmd}` failed: {err}");
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// The build's files, relative to it, sorted; data files and metadata apart.
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

fn copy(order: Order, build: &Path, dest: &Path, scratch: &Path) {
    let (b, d) = (q(build), q(dest));
    match order {
        Order::CpDataFirst => ok(&format!("cp -r {b}/noble {d}/ && cp -r {b}/streams {d}/")),
        Order::CpMetadataFirst => ok(&format!("cp -r {b}/streams {d}/ && cp -r {b}/noble {d}/")),
        Order::RsyncWhole => ok(&format!("rsync -a {b}/ {d}/")),
        Order::RsyncMetadataFirst => ok(&format!(
            "rsync -a {b}/streams {d}/ && rsync -a {b}/noble {d}/"
        )),
        Order::TarDataFirst | Order::TarMetadataFirst => {
            let members = match order {
                Order::TarDataFirst => "noble streams",
                _ => "streams noble",
            };
            let tar = scratch.join(format!("{order:?}.tar"));
            ok(&format!("tar -cf {} -C {b} {members}", q(&tar)));
            // The archive lists its members in the order given.
            let listed = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
            let first = String::from_utf8_lossy(&listed.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            assert!(
                first.starts_with(members.split(' ').next().unwrap()),
                "{first}"
            );
            // --overwrite: the mount's generated streams/v1/index.json
            // cannot be unlinked, which plain `tar -x` tries first.
            ok(&format!("tar --overwrite -xf {} -C {d}", q(&tar)));
        }
        Order::InstallInterleaved => {
            let (data, meta) = files(build);
            let (early, late) = data.split_at(data.len() / 2);
            for f in early.iter().chain(&meta).chain(late) {
                ok(&format!(
                    "install -D -m 0644 {} {}",
                    q(&build.join(f)),
                    q(&dest.join(f))
                ));
            }
        }
    }
}

/// Flattened items without the stream's own content id (each stream of
/// the test has its own).
fn items(store: &TestStore, stream: &str) -> Vec<Flat> {
    let mut v = flat_items(&store.products_file(stream));
    for i in &mut v {
        i.remove("content_id");
    }
    v
}

#[test]
fn every_copy_order_equals_mountctl_insert_under_both_configs() {
    let Some(build) = build_dir("20250101") else {
        return;
    };
    if !can_mount() {
        return;
    }
    if in_path("rsync").is_none() {
        missing::<()>("rsync not installed");
        return;
    }
    let store = TestStore::init(Some(&config()));
    let b = build.display().to_string();
    for tag in ["same", "other"] {
        store.ok(&["insert", &b, &format!("{tag}-ref")]);
    }
    let scratch: PathBuf = store.tmp.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    let m = Mount::new(&store.root);
    for tag in ["same", "other"] {
        let reference = items(&store, &format!("{tag}-ref"));
        // The declared attributes that templates alone cannot give: without
        // them the comparison below could not tell the two apart.
        for key in ["krel", "kpackage", "subarches", "release_title"] {
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
            copy(*order, &build, &m.path().join(&stream), &scratch);
            let got = items(&store, &stream);
            assert_eq!(
                got,
                reference,
                "{tag} ids, {order:?}: the stream differs from mountctl insert\n{}",
                m.log_text()
            );
        }
    }
    m.unmount();
}

#[test]
fn a_declaration_contradicting_published_data_is_refused_in_any_order() {
    let Some(build) = build_dir("20250101") else {
        return;
    };
    if !can_mount() {
        return;
    }
    let store = TestStore::init(Some(&config()));
    let m = Mount::new(&store.root);
    let (data, meta) = files(&build);
    let products = meta
        .iter()
        .find(|f| !f.ends_with("index.json"))
        .expect("a products file");
    for tag in ["same", "other"] {
        let dest = m.path().join(format!("{tag}-conflict"));
        // The kernel arrives first with other content than declared.
        let kernel = data.iter().find(|f| f.ends_with("boot-kernel")).unwrap();
        let target = dest.join(kernel);
        ok(&format!("mkdir -p {}", q(target.parent().unwrap())));
        fs::write(&target, b"not the declared kernel").unwrap();
        let before = items(&store, &format!("{tag}-conflict"));
        let (copied, err) = sh(&format!(
            "install -D -m 0644 {} {}",
            q(&build.join(products)),
            q(&dest.join(products))
        ));
        assert!(
            !copied,
            "{tag}: the contradicting products file was accepted"
        );
        assert!(!err.is_empty());
        assert_eq!(
            items(&store, &format!("{tag}-conflict")),
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
