//! Hostile input end to end: products files built to escape, confuse or
//! exhaust the store, names the kernel lets through, symlinks out of the
//! mount or the build, and writers racing on one path — through `mountctl
//! insert` and through the mount where both apply. Each gets its documented
//! error (exit 1 and a message naming what was wrong; at the mount, the
//! errno), and the store is byte-identical afterwards.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use streamfs_tests::mount::{Mount, build_dir, can_mount};
use streamfs_tests::store::{TestStore, copy_tree, flat_items, tree_digest};

const DAILY_CID: &str = "com.ubuntu.maas:daily:v3:download";
const BUILD_PRODUCTS: &str = "streams/v1/com.ubuntu.maas:candidate:v3:download.json";

/// A default store holding build 20250101 in `daily`.
fn store_with_a_build() -> Option<TestStore> {
    let b1 = build_dir("20250101")?;
    let s = TestStore::init(None);
    s.ok(&["insert", b1.to_str().unwrap(), "daily"]);
    Some(s)
}

/// A products document with one item at `path` (size and sha256 given).
fn doc_with_item(path: &str, size: Value) -> String {
    json!({
        "format": "products:1.0",
        "content_id": DAILY_CID,
        "products": {"com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04": {
            "versions": {"20250301": {"items": {"squashfs": {
                "ftype": "squashfs", "path": path, "sha256": "a".repeat(64), "size": size
            }}}}
        }}
    })
    .to_string()
}

/// (what, document, what mountctl's message must contain)
fn hostile_documents() -> Vec<(&'static str, Vec<u8>, Vec<String>)> {
    let mut million = String::from(r#"{"format":"products:1.0","products":{"#);
    for i in 0..999_999 {
        million.push_str(&format!("\"p{i}\":{{}},"));
    }
    million.push_str(r#""p999999":{"versions":{"1":{"items":{"i":{"path":"../../x"}}}}}}}"#);
    let deep = format!(
        r#"{{"format":"products:1.0","products":{{"p":{{"x":{}{}}}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let dup = doc_with_item("noble/amd64/20250301/squashfs", json!(3)).replacen(
        r#""ftype":"squashfs","#,
        r#""ftype":"squashfs","path":"noble/amd64/20250301/other","#,
        1,
    );
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (
            "a ../ path",
            doc_with_item("noble/../../../etc/passwd", json!(3)).into_bytes(),
            s(&["item squashfs", "'..' component"]),
        ),
        (
            "an absolute path",
            doc_with_item("/etc/passwd", json!(3)).into_bytes(),
            s(&["item squashfs", "absolute path"]),
        ),
        (
            "a NUL byte in a path",
            doc_with_item("noble/amd64/20250301/squash\0fs", json!(3)).into_bytes(),
            s(&["item squashfs", "NUL byte"]),
        ),
        (
            "a raw NUL byte",
            doc_with_item("noble/amd64/20250301/squashfs", json!(3))
                .replace("squashfs\"", "squash\0fs\"")
                .into_bytes(),
            s(&["invalid JSON", "control character"]),
        ),
        (
            "a path component of 256 bytes",
            doc_with_item(
                &format!("noble/amd64/20250301/{}", "s".repeat(256)),
                json!(3),
            )
            .into_bytes(),
            s(&["item squashfs", "longer than 255 bytes"]),
        ),
        (
            "a million products, the last one bad",
            million.into_bytes(),
            s(&["product p999999 version 1 item i", "'..' component"]),
        ),
        (
            "nesting 100,000 deep",
            deep.into_bytes(),
            s(&["invalid JSON", "recursion limit exceeded"]),
        ),
        (
            "a duplicate key",
            dup.into_bytes(),
            s(&["invalid JSON", "duplicate key \"path\""]),
        ),
        (
            "a size beyond any float",
            doc_with_item("noble/amd64/20250301/squashfs", json!(0))
                .replace("\"size\":0", "\"size\":1e400")
                .into_bytes(),
            s(&["invalid JSON", "number out of range"]),
        ),
        (
            "a size of 2^64",
            doc_with_item("noble/amd64/20250301/squashfs", json!(0))
                .replace("\"size\":0", "\"size\":18446744073709551616")
                .into_bytes(),
            s(&["item squashfs", "size must be a non-negative integer"]),
        ),
        (
            "a negative size",
            doc_with_item("noble/amd64/20250301/squashfs", json!(-1)).into_bytes(),
            s(&["item squashfs", "size must be a non-negative integer"]),
        ),
    ]
}

fn stderr_of(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("running a command");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hostile_products_files_are_refused_by_mountctl_and_the_mount_alike() {
    let Some(s) = store_with_a_build() else {
        return;
    };
    if !can_mount() {
        return;
    }
    let m = Mount::new(&s.root);
    let v1 = m.path().join("daily/streams/v1");
    let before = tree_digest(&s.root);
    for (i, (what, doc, expect)) in hostile_documents().into_iter().enumerate() {
        let dir = s.tmp.path().join(format!("hostile-{i}/streams/v1"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hostile.json");
        std::fs::write(&file, &doc).unwrap();

        let t = Instant::now();
        let out = s.mountctl(&["insert", file.to_str().unwrap(), "daily"]);
        let err = out.stderr_text();
        assert_eq!(out.code, Some(1), "{what}: mountctl insert: {err}");
        for e in &expect {
            assert!(
                err.contains(e.as_str()),
                "{what}: message lacks {e:?}: {err}"
            );
        }
        let mountctl_secs = t.elapsed().as_secs_f64();

        // The same document written into the mount: refused at close.
        let t = Instant::now();
        let (ok, err) = stderr_of(Command::new("cp").arg(&file).arg(v1.join("hostile.json")));
        assert!(!ok, "{what}: cp into the mount succeeded");
        assert!(err.contains("Invalid argument"), "{what}: cp: {err}");
        eprintln!(
            "{what} ({} bytes): mountctl insert refused it in {mountctl_secs:.2}s, the mount in {:.2}s",
            doc.len(),
            t.elapsed().as_secs_f64()
        );
        assert_eq!(
            tree_digest(&s.root),
            before,
            "{what} changed the store\n{}",
            m.log_text()
        );
    }
    assert!(m.log_text().contains("refused metadata insert"));
    m.unmount();
}

#[test]
fn hostile_names_and_symlinks_through_the_mount_get_their_errno() {
    let Some(s) = store_with_a_build() else {
        return;
    };
    if !can_mount() {
        return;
    }
    let m = Mount::new(&s.root);
    let vdir = m.path().join("daily/noble/amd64/20250101");
    let released = m.path().join("released/noble/amd64");
    assert!(
        Command::new("mkdir")
            .arg("-p")
            .arg(&released)
            .status()
            .unwrap()
            .success()
    );
    let src = vdir.join("squashfs");
    let before = tree_digest(&s.root);
    let long = vdir.join("n".repeat(256));
    let mut non_utf8 = vdir.as_os_str().as_bytes().to_vec();
    non_utf8.extend_from_slice(b"/squash\xfffs");
    let non_utf8 = PathBuf::from(OsStr::from_bytes(&non_utf8));
    let escaping_abs = m.path().join("daily/../../../etc");
    let cases: Vec<(&str, Command, &str)> = vec![
        (
            "cp to a 256-byte name",
            cp(&src, &long),
            "File name too long",
        ),
        (
            "mkdir of a 256-byte name",
            cmd("mkdir", &[&long]),
            "File name too long",
        ),
        (
            "stat of a 256-byte name",
            cmd("stat", &[&long]),
            "File name too long",
        ),
        (
            "cp to a non-UTF-8 name",
            cp(&src, &non_utf8),
            "Invalid argument",
        ),
        (
            "mkdir of a non-UTF-8 name",
            cmd("mkdir", &[&non_utf8]),
            "Invalid argument",
        ),
        (
            "stat of a non-UTF-8 name",
            cmd("stat", &[&non_utf8]),
            "No such file or directory",
        ),
        (
            "ln -s /etc/passwd",
            cmd(
                "ln",
                &[
                    Path::new("-s"),
                    Path::new("/etc/passwd"),
                    &released.join("20250101"),
                ],
            ),
            "Operation not permitted",
        ),
        (
            "ln -s climbing out of the mount",
            cmd(
                "ln",
                &[
                    Path::new("-s"),
                    Path::new("../../../../../../../../etc"),
                    &released.join("20250101"),
                ],
            ),
            "Operation not permitted",
        ),
        (
            "ln -s to an absolute path through the mount point and out",
            cmd(
                "ln",
                &[Path::new("-s"), &escaping_abs, &released.join("20250101")],
            ),
            "Operation not permitted",
        ),
        (
            "ln -s through /proc",
            cmd(
                "ln",
                &[
                    Path::new("-s"),
                    Path::new("/proc/self/root/etc"),
                    &released.join("20250101"),
                ],
            ),
            "Operation not permitted",
        ),
    ];
    for (what, mut c, expect) in cases {
        let (ok, err) = stderr_of(&mut c);
        assert!(!ok, "{what} succeeded");
        assert!(err.contains(expect), "{what}: expected {expect:?}: {err}");
    }
    assert_eq!(tree_digest(&s.root), before, "{}", m.log_text());
    m.unmount();
}

fn cmd(program: &str, args: &[&Path]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

fn cp(from: &Path, to: &Path) -> Command {
    cmd("cp", &[from, to])
}

#[test]
fn build_directories_that_reach_outside_themselves_are_refused() {
    let Some(s) = store_with_a_build() else {
        return;
    };
    let Some(b2) = build_dir("20250102") else {
        return;
    };
    let before = tree_digest(&s.root);
    let outside = s.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let refused = |build: &Path, expect: &[&str]| {
        let out = s.mountctl(&["insert", build.to_str().unwrap(), "daily"]);
        let err = out.stderr_text();
        assert_eq!(out.code, Some(1), "{}: {err}", build.display());
        for e in expect {
            assert!(err.contains(e), "message lacks {e:?}: {err}");
        }
        assert_eq!(tree_digest(&s.root), before, "{}", build.display());
    };

    // With metadata: the squashfs it declares is a symlink to a file
    // outside the build (with the declared content, so only the
    // containment check stands in the way).
    let with_meta = s.tmp.path().join("with-meta");
    copy_tree(&b2, &with_meta);
    let sq = with_meta.join("noble/amd64/20250102/squashfs");
    std::fs::rename(&sq, outside.join("squashfs")).unwrap();
    std::os::unix::fs::symlink(outside.join("squashfs"), &sq).unwrap();
    refused(&with_meta, &["item squashfs", "leads outside"]);

    // Without metadata: the same symlink, placed by the path templates.
    let data_only = s.tmp.path().join("data-only");
    copy_tree(&with_meta, &data_only);
    std::fs::remove_dir_all(data_only.join("streams")).unwrap();
    let sq = data_only.join("noble/amd64/20250102/squashfs");
    std::fs::remove_file(&sq).unwrap();
    std::os::unix::fs::symlink("../../../../outside/squashfs", &sq).unwrap();
    refused(&data_only, &["leads outside"]);

    // A file name that is not UTF-8.
    std::fs::remove_file(&sq).unwrap();
    std::fs::copy(outside.join("squashfs"), &sq).unwrap();
    let mut bad = data_only
        .join("noble/amd64/20250102")
        .into_os_string()
        .into_vec();
    bad.extend_from_slice(b"/squash\xfffs");
    std::fs::write(OsStr::from_bytes(&bad), b"x").unwrap();
    refused(&data_only, &["squash", "not valid UTF-8"]);
}

use std::os::unix::ffi::OsStringExt;

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[test]
fn two_writers_racing_on_one_path_through_the_mount_publish_one_of_them_whole() {
    let Some(s) = store_with_a_build() else {
        return;
    };
    if !can_mount() {
        return;
    }
    let m = Mount::new(&s.root);
    let daily = m.path().join("daily");
    let rounds = 12;
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..rounds {
        let dir = daily.join(format!("noble/amd64/202603{round:02}/ga-24.04/generic"));
        assert!(
            Command::new("mkdir")
                .arg("-p")
                .arg(&dir)
                .status()
                .unwrap()
                .success()
        );
        let target = dir.join("boot-kernel");
        let data: Vec<Vec<u8>> = (0..2)
            .map(|w| {
                format!("kernel {round} from writer {w}\n")
                    .repeat(20_000)
                    .into_bytes()
            })
            .collect();
        let children: Vec<_> = data
            .iter()
            .enumerate()
            .map(|(w, d)| {
                let src = s.tmp.path().join(format!("w{w}"));
                std::fs::write(&src, d).unwrap();
                Command::new("sh")
                    .arg("-c")
                    .arg("cat \"$1\" > \"$2\"")
                    .arg("sh")
                    .arg(&src)
                    .arg(&target)
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let results: Vec<(bool, String)> = children
            .into_iter()
            .map(|c| {
                let o = c.wait_with_output().unwrap();
                (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .collect();
        let winners: Vec<usize> = (0..2).filter(|&w| results[w].0).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {results:?}\n{}",
            m.log_text()
        );
        let loser = &results[1 - winners[0]].1;
        let why = [
            "File exists",
            "Device or resource busy",
            "Operation not permitted",
        ]
        .into_iter()
        .find(|e| loser.contains(e))
        .unwrap_or_else(|| panic!("round {round}: the loser's error: {loser}"));
        *outcomes.entry(why.to_string()).or_default() += 1;
        // The winner's bytes, whole, under the sha256 the metadata declares.
        let want = &data[winners[0]];
        assert_eq!(&std::fs::read(&target).unwrap(), want, "round {round}");
        let items = flat_items(&daily.join("streams/v1").join(format!("{DAILY_CID}.json")));
        let rel = target.strip_prefix(&daily).unwrap().to_str().unwrap();
        let item = items.iter().find(|i| i["path"] == rel).expect("published");
        assert_eq!(item["sha256"], sha256_hex(want), "round {round}");
    }
    eprintln!("{rounds} races through the mount: the loser got {outcomes:?}");
    let out = s.mountctl(&["fsck"]);
    assert_eq!(out.code, Some(0), "fsck: {}", out.stderr_text());
    m.unmount();
}

#[test]
fn two_mountctl_inserts_racing_on_one_version_publish_one_of_them_whole() {
    let Some(s) = store_with_a_build() else {
        return;
    };
    let Some(b2) = build_dir("20250102") else {
        return;
    };
    // Build B: the same version with another boot-kernel, declared as such.
    let other = s.tmp.path().join("other");
    copy_tree(&b2, &other);
    let kernel_rel = "noble/amd64/20250102/ga-24.04/generic/boot-kernel";
    let kernel_b = b"another kernel\n".repeat(1000);
    std::fs::write(other.join(kernel_rel), &kernel_b).unwrap();
    let pfile = other.join(BUILD_PRODUCTS);
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&pfile).unwrap()).unwrap();
    let mut edited = 0;
    for p in doc["products"].as_object_mut().unwrap().values_mut() {
        for v in p["versions"].as_object_mut().unwrap().values_mut() {
            for i in v["items"].as_object_mut().unwrap().values_mut() {
                if i["path"] == kernel_rel {
                    i["sha256"] = sha256_hex(&kernel_b).into();
                    i["size"] = kernel_b.len().into();
                    edited += 1;
                }
            }
        }
    }
    assert_eq!(edited, 1);
    std::fs::write(&pfile, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let kernel_a = std::fs::read(b2.join(kernel_rel)).unwrap();

    let spawn = |build: &Path| {
        Command::new(streamfs_tests::mountctl_bin())
            .arg("--store")
            .arg(&s.root)
            .args(["insert"])
            .arg(build)
            .arg("daily")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(&b2), spawn(&other));
    for (name, c) in [("A", a), ("B", b)] {
        let o = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        // Inserts are additive: the later one finds the version present and
        // keeps it; or it finds the store locked, and says so.
        assert!(
            o.status.success() || err.contains("store is locked by another writer"),
            "insert of build {name}: {err}"
        );
    }
    let items = flat_items(&s.products_file("daily"));
    let kernels: Vec<&String> = items
        .iter()
        .filter(|i| i["path"] == kernel_rel)
        .map(|i| &i["sha256"])
        .collect();
    assert_eq!(kernels.len(), 1, "{kernels:?}");
    let published = kernels[0];
    assert!(
        *published == sha256_hex(&kernel_a) || *published == sha256_hex(&kernel_b),
        "{published}"
    );
    // Whichever won, the version is whole: every item's blob has its sha256.
    let out = s.mountctl(&["fsck"]);
    assert_eq!(out.code, Some(0), "fsck: {}", out.stderr_text());
    eprintln!(
        "racing mountctl inserts: build {} won",
        if *published == sha256_hex(&kernel_a) {
            "A"
        } else {
            "B"
        }
    );
}
