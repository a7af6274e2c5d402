//! Bad input: each case fails with exit 1 and a message naming what was
//! wrong, and leaves the store byte-identical.

use std::fs;
use std::path::{Path, PathBuf};

use streamfs_tests::fixtures_dir;
use streamfs_tests::store::{SCENARIO_CONFIG, TestStore, copy_tree, tree_digest};

/// A copy of a util-scenario build that a case may then damage.
fn build_copy(s: &TestStore, v: &str) -> Option<PathBuf> {
    let src = fixtures_dir()?.join(format!(
        "maas-images/golden/util-scenario/builds/build-{v}.d"
    ));
    let dst = s.tmp.path().join(format!("build-{v}.d"));
    copy_tree(&src, &dst);
    Some(dst)
}

const PRODUCTS: &str = "streams/v1/com.ubuntu.maas:candidate:v3:download.json";

/// Runs `args` on a store that already holds build 20250101, expecting
/// exit 1, a message containing every one of `expect`, and no change.
fn refused(s: &TestStore, args: &[&str], expect: &[&str]) {
    let before = tree_digest(&s.root);
    let out = s.mountctl(args);
    let err = out.stderr_text();
    assert_eq!(
        out.code,
        Some(1),
        "mountctl {args:?}: expected exit 1, got {:?}; stderr: {err}",
        out.code
    );
    for e in expect {
        assert!(
            err.contains(e),
            "mountctl {args:?}: message lacks {e:?}: {err}"
        );
    }
    assert_eq!(
        tree_digest(&s.root),
        before,
        "mountctl {args:?} changed the store"
    );
}

fn store_with_first_build() -> Option<(TestStore, PathBuf)> {
    let s = TestStore::init(Some(SCENARIO_CONFIG));
    let b1 = build_copy(&s, "20250101")?;
    s.ok(&["insert", &b1.display().to_string(), "candidate"]);
    let b2 = build_copy(&s, "20250102")?;
    Some((s, b2))
}

fn edit_products(build: &Path, f: impl FnOnce(String) -> String) {
    let p = build.join(PRODUCTS);
    let text = fs::read_to_string(&p).unwrap();
    fs::write(&p, f(text)).unwrap();
}

#[test]
fn a_path_with_dotdot_is_rejected_naming_the_item() {
    let Some((s, b)) = store_with_first_build() else {
        return;
    };
    edit_products(&b, |t| {
        t.replace("\"noble/amd64/20250102/squashfs\"", "\"../../etc/passwd\"")
    });
    refused(
        &s,
        &["insert", b.to_str().unwrap(), "candidate"],
        &[PRODUCTS, "item squashfs", "'..'"],
    );
    edit_products(&b, |t| t.replace("\"../../etc/passwd\"", "\"/etc/passwd\""));
    refused(
        &s,
        &["insert", b.to_str().unwrap(), "candidate"],
        &["absolute path"],
    );
}

#[test]
fn invalid_json_is_rejected_naming_the_file() {
    let Some((s, b)) = store_with_first_build() else {
        return;
    };
    edit_products(&b, |t| t[..t.len() / 2].to_string());
    refused(
        &s,
        &["insert", b.to_str().unwrap(), "candidate"],
        &[PRODUCTS, "invalid JSON"],
    );
}

#[test]
fn data_that_differs_from_its_metadata_is_rejected() {
    let Some((s, b)) = store_with_first_build() else {
        return;
    };
    // Same size, other bytes: a sha256 mismatch.
    let f = b.join("noble/amd64/20250102/squashfs");
    let mut data = fs::read(&f).unwrap();
    data[0] ^= 1;
    fs::write(&f, &data).unwrap();
    refused(
        &s,
        &["insert", b.to_str().unwrap(), "candidate"],
        &["sha256 mismatch", "item squashfs", "20250102"],
    );
    // One byte more: a size mismatch.
    data.push(b'x');
    fs::write(&f, &data).unwrap();
    refused(
        &s,
        &["insert", b.to_str().unwrap(), "candidate"],
        &["size mismatch", "squashfs"],
    );
}

#[test]
fn a_missing_data_file_is_rejected() {
    let Some((s, b)) = store_with_first_build() else {
        return;
    };
    fs::remove_file(b.join("noble/amd64/20250102/ga-24.04/generic/boot-kernel")).unwrap();
    refused(
        &s,
        &["insert", b.to_str().unwrap(), "candidate"],
        &[
            "data file missing",
            "ga-24.04/generic/boot-kernel",
            "item boot-kernel",
        ],
    );
}

#[test]
fn unknown_streams_and_bad_durations_are_rejected() {
    let Some((s, b)) = store_with_first_build() else {
        return;
    };
    refused(
        &s,
        &["insert", b.to_str().unwrap(), "nosuch"],
        &["unknown stream 'nosuch'"],
    );
    refused(
        &s,
        &["promote", "candidate", "nosuch", "20250101"],
        &["unknown stream 'nosuch'"],
    );
    refused(
        &s,
        &["reap-orphans", "--older", "3x"],
        &["invalid duration '3x'"],
    );
    refused(
        &s,
        &["promote", "candidate", "stable", "19990101"],
        &["no version 19990101"],
    );
    refused(
        &s,
        &["insert", "/nonexistent/build.d", "candidate"],
        &["/nonexistent/build.d"],
    );
}

#[test]
fn malformed_command_lines_exit_2() {
    let s = TestStore::init(Some(SCENARIO_CONFIG));
    let before = tree_digest(&s.root);
    for args in [
        &["insert"][..],
        &["clean-md", "two", "candidate"],
        &["no-such-command"],
    ] {
        let out = s.mountctl(args);
        assert_eq!(
            out.code,
            Some(2),
            "mountctl {args:?}: {}",
            out.stderr_text()
        );
    }
    assert_eq!(tree_digest(&s.root), before);
}
