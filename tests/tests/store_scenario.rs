//! The maas-images util-scenario (fixtures/maas-images/golden/util-scenario)
//! replayed with mountctl: insert, re-insert, clean-md, promote,
//! find-orphans and reap-orphans give what meph2-util gave.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use streamfs_tests::fixtures_dir;
use streamfs_tests::store::{
    SCENARIO_CONFIG, TestStore, copy_tree, flat_items, read_json, tree_digest,
};

fn scenario() -> Option<PathBuf> {
    Some(fixtures_dir()?.join("maas-images/golden/util-scenario"))
}

fn build(sc: &std::path::Path, v: &str) -> String {
    sc.join(format!("builds/build-{v}.d")).display().to_string()
}

/// Golden products files compare with `updated` left out (it is the time
/// they were made).
fn golden(sc: &std::path::Path, name: &str) -> Vec<streamfs_tests::store::Flat> {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = tmp.path().join("streams/v1");
    fs::create_dir_all(&v1).unwrap();
    fs::copy(sc.join(name), v1.join("p.json")).unwrap();
    flat_items(&v1.join("p.json"))
}

#[test]
fn insert_clean_md_promote_and_orphans_match_meph2_util() {
    let Some(sc) = scenario() else { return };
    let s = TestStore::init(Some(SCENARIO_CONFIG));

    for v in ["20250101", "20250102", "20250103"] {
        let out = s.ok(&["insert", &build(&sc, v), "candidate"]);
        assert!(
            out.stdout_text().contains("6 version(s) added"),
            "{}",
            out.stdout_text()
        );
        assert_eq!(
            flat_items(&s.products_file("candidate")),
            golden(&sc, &format!("cand-after-insert-{v}.json")),
            "candidate after inserting {v}"
        );
    }

    // Re-inserting an existing version changes nothing at all.
    let before = tree_digest(&s.root);
    let out = s.ok(&["insert", &build(&sc, "20250102"), "candidate"]);
    assert!(
        out.stdout_text().contains("nothing to add"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(tree_digest(&s.root), before, "re-insert changed the store");

    s.ok(&["clean-md", "2", "candidate"]);
    assert_eq!(
        flat_items(&s.products_file("candidate")),
        golden(&sc, "cand-after-clean-md-2.json")
    );

    let blobs_before_promote = s.blobs();
    s.ok(&["promote", "candidate", "stable", "20250103"]);
    s.ok(&[
        "promote",
        "-l",
        "rc",
        "candidate",
        "stable",
        "20250102",
        "product_name~:ga-24.04$",
    ]);
    assert_eq!(
        flat_items(&s.products_file("stable")),
        golden(
            &sc,
            "stable-after-promote-20250103-release-then-20250102-rc.json"
        )
    );
    assert_eq!(s.blobs(), blobs_before_promote, "promote copied data");
    let index = read_json(&s.root.join("meta/current/stable/streams/v1/index.json"));
    let golden_index = read_json(&sc.join("stable-index.json"));
    assert_eq!(
        index["index"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        golden_index["index"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>()
    );
    let cid = "com.ubuntu.maas:v3:download";
    assert_eq!(
        index["index"][cid]["products"],
        golden_index["index"][cid]["products"]
    );
    assert_eq!(
        index["index"][cid]["path"],
        golden_index["index"][cid]["path"]
    );

    // find-orphans lists exactly the blobs no remaining version uses.
    let used: BTreeSet<String> = ["candidate", "stable"]
        .iter()
        .flat_map(|st| flat_items(&s.products_file(st)))
        .filter_map(|i| i.get("sha256").cloned())
        .collect();
    let expect: BTreeSet<String> = s
        .blobs()
        .into_iter()
        .filter(|b| !used.contains(b))
        .collect();
    assert!(
        !expect.is_empty(),
        "clean-md left no orphan: the scenario lost its point"
    );
    s.ok(&["find-orphans"]);
    let orphans = read_json(&s.root.join("orphans.json"));
    let listed: BTreeSet<String> = orphans
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(listed, expect);
    for k in orphans.as_object().unwrap().keys() {
        assert!(k.starts_with("pool/sha256/"), "orphans.json key {k}");
    }

    // Young orphans survive --older 1d; --now reaps them.
    s.ok(&["reap-orphans", "--older", "1d"]);
    for b in &expect {
        assert!(s.blobs().contains(b), "{b} reaped too early");
    }
    s.ok(&["reap-orphans", "--now"]);
    let left: BTreeSet<String> = s.blobs().into_iter().collect();
    assert!(expect.is_disjoint(&left), "orphans left after --now");
    assert!(used.is_subset(&left), "a used blob was reaped");
    let out = s.ok(&["fsck"]);
    assert!(out.stdout_text().contains("clean"), "{}", out.stdout_text());
}

#[test]
fn dry_runs_change_nothing() {
    let Some(sc) = scenario() else { return };
    let s = TestStore::init(Some(SCENARIO_CONFIG));
    s.ok(&["insert", &build(&sc, "20250101"), "candidate"]);
    s.ok(&["insert", &build(&sc, "20250102"), "candidate"]);
    let before = tree_digest(&s.root);
    let out = s.ok(&["insert", "-n", &build(&sc, "20250103"), "candidate"]);
    assert!(
        out.stdout_text().contains("would add"),
        "{}",
        out.stdout_text()
    );
    s.ok(&["clean-md", "-n", "1", "candidate"]);
    s.ok(&["promote", "-n", "candidate", "stable", "20250102"]);
    s.ok(&["reap-orphans", "-n", "--now"]);
    assert_eq!(tree_digest(&s.root), before);
}

#[test]
fn default_config_names_kernels_as_meph2_build_and_shares_the_squashfs() {
    let Some(sc) = scenario() else { return };
    let s = TestStore::init(None);
    // Only the data files: the products come from the path templates.
    let data = s.tmp.path().join("data");
    let src = sc.join("builds/build-20250101.d/noble");
    copy_tree(&src, &data.join("noble"));
    s.ok(&["insert", &data.display().to_string(), "daily"]);
    let items = flat_items(&s.products_file("daily"));
    let products: BTreeSet<&str> = items.iter().map(|i| i["product_name"].as_str()).collect();
    let expected: BTreeSet<String> = flat_items(
        &sc.join("builds/build-20250101.d/streams/v1/com.ubuntu.maas:candidate:v3:download.json"),
    )
    .iter()
    .map(|i| i["product_name"].replace(".candidate:", ".daily:"))
    .collect();
    assert_eq!(products, expected.iter().map(String::as_str).collect());
    assert!(products.contains("com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04-lowlatency"));
    for p in &products {
        let names: BTreeSet<&str> = items
            .iter()
            .filter(|i| i["product_name"] == *p)
            .map(|i| i["item_name"].as_str())
            .collect();
        assert_eq!(
            names,
            BTreeSet::from(["boot-initrd", "boot-kernel", "manifest", "squashfs"]),
            "{p}"
        );
    }
    let low = items
        .iter()
        .find(|i| {
            i["product_name"].ends_with(":ga-24.04-lowlatency") && i["item_name"] == "boot-kernel"
        })
        .unwrap();
    assert_eq!(
        low["path"],
        "noble/amd64/20250101/ga-24.04/lowlatency/boot-kernel"
    );
    assert_eq!(low["kflavor"], "lowlatency");
    assert_eq!(low["release_title"], "24.04 LTS");
    assert_eq!(low["label"], "daily");
}
