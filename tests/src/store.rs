//! Helpers for tests that drive a store through `mountctl`: a scratch store,
//! a digest of a whole directory tree (to prove "byte-identical"), and the
//! flattened items of a products file.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use streamfs_core::streams::{Products, flatten::flatten};

use crate::{Outcome, mountctl_bin, run_in};

/// The store configuration of the maas-images util-scenario: a candidate
/// stream named as meph2-util names it, and a stable stream to promote into.
pub const SCENARIO_CONFIG: &str = r#"grace = "3d"

[[stream]]
name = "candidate"
content_id = "com.ubuntu.maas:candidate:v3:download"
datatype = "image-ids"
product_id = "com.ubuntu.maas.candidate:v3:boot:{version}:{arch}:{subarch+kflavor}"
label = "candidate"
paths = ["{release}/{arch}/{version_name}/{subarch}/{kflavor}/{ftype}",
         "{release}/{arch}/{version_name}/{ftype}"]
[stream.ftype]
"squashfs.manifest" = "manifest"

[[stream]]
name = "stable"
content_id = "com.ubuntu.maas:v3:download"
datatype = "image-ids"
product_id = "com.ubuntu.maas:v3:boot:{version}:{arch}:{subarch+kflavor}"
label = "release"
"#;

/// A store in a temp dir, driven through the `mountctl` binary.
pub struct TestStore {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
}

impl TestStore {
    /// A new store created by `mountctl init` (the default config when
    /// `config` is `None`).
    pub fn init(config: Option<&str>) -> TestStore {
        Self::init_in(tempfile::tempdir().expect("tempdir"), config)
    }

    /// [`TestStore::init`] on tmpfs (`/dev/shm`) when there is one, for
    /// tests of semantics, not durability, that commit often: fsync costs
    /// nothing there.
    pub fn init_on_tmpfs(config: Option<&str>) -> TestStore {
        let shm = Path::new("/dev/shm");
        let tmp = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        };
        Self::init_in(tmp.expect("tempdir"), config)
    }

    fn init_in(tmp: tempfile::TempDir, config: Option<&str>) -> TestStore {
        let root = tmp.path().join("store");
        let mut args = vec![
            "--store".to_string(),
            root.display().to_string(),
            "init".into(),
        ];
        if let Some(c) = config {
            let p = tmp.path().join("store.toml");
            fs::write(&p, c).expect("write config");
            args.push("--config".into());
            args.push(p.display().to_string());
        }
        let s = TestStore { tmp, root };
        let out = s.run_strs(&args);
        assert_eq!(out.code, Some(0), "init failed: {}", out.stderr_text());
        s
    }

    /// Runs `mountctl --store ROOT args…`.
    pub fn mountctl(&self, args: &[&str]) -> Outcome {
        let mut all = vec!["--store".to_string(), self.root.display().to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        self.run_strs(&all)
    }

    fn run_strs(&self, args: &[String]) -> Outcome {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_in(self.tmp.path(), &mountctl_bin(), &refs)
    }

    /// Like `mountctl`, asserting success.
    pub fn ok(&self, args: &[&str]) -> Outcome {
        let out = self.mountctl(args);
        assert_eq!(
            out.code,
            Some(0),
            "mountctl {args:?} failed:\nstdout: {}\nstderr: {}",
            out.stdout_text(),
            out.stderr_text()
        );
        out
    }

    /// The generated products file of a stream at the current generation.
    pub fn products_file(&self, stream: &str) -> PathBuf {
        let v1 = self
            .root
            .join("meta/current")
            .join(stream)
            .join("streams/v1");
        fs::read_dir(&v1)
            .expect("streams/v1")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.ends_with(".json") && n != "index.json"
            })
            .expect("a products file")
    }

    /// The blobs in the pool.
    pub fn blobs(&self) -> Vec<String> {
        let mut out = Vec::new();
        let pool = self.root.join("pool/sha256");
        for d in fs::read_dir(&pool).into_iter().flatten().flatten() {
            for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
                out.push(f.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        out
    }
}

/// A flattened item without `updated` (which differs run to run), as sorted
/// key/value pairs.
pub type Flat = BTreeMap<String, String>;

/// The flattened items of a products file, sorted, `updated` left out.
pub fn flat_items(products_file: &Path) -> Vec<Flat> {
    let bytes =
        fs::read(products_file).unwrap_or_else(|e| panic!("{}: {e}", products_file.display()));
    let p = Products::parse(&products_file.display().to_string(), &bytes)
        .expect("products file parses");
    let mut v: Vec<Flat> = flatten(&p)
        .into_iter()
        .map(|m| {
            m.into_iter()
                .filter(|(k, _)| k != "updated")
                .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .collect();
    v.sort();
    v
}

/// Every file below `dir` (symlinks as their targets) with a digest of its
/// content, except the lock file and the mounts' records in `run/` (their
/// presence is not state).
pub fn tree_digest(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).expect("read_dir").flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.insert(rel, format!("-> {}", fs::read_link(&p).unwrap().display()));
            } else if rel == "run" {
                continue;
            } else if ft.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(root, &p, out);
            } else if rel != "lock" {
                out.insert(rel, hex::encode(Sha256::digest(fs::read(&p).unwrap())));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("JSON")
}

/// Copies a directory tree (what `cp -r` does), for tests that alter a copy
/// of a fixture.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
