//! Helpers of the mirror tests: mirror roots nginx can serve, filled with
//! rsync from a mount, and the metalink clients.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::mount::{build_dir, can_mount};
use crate::serve::installed;
use crate::store::{SCENARIO_CONFIG, TestStore};

/// What the mirror tests start from: the scenario store with its first
/// build inserted, the second build to insert later, and aria2c.
pub struct Scenario {
    pub store: TestStore,
    pub b2: PathBuf,
    pub aria2c: PathBuf,
}

impl Scenario {
    /// `None` after a printed skip when a fixture, a tool or FUSE is missing.
    pub fn start() -> Option<Scenario> {
        let (Some(b1), Some(b2)) = (build_dir("20250101"), build_dir("20250102")) else {
            return None;
        };
        let aria2c = installed("aria2c", "aria2")?;
        installed("rsync", "rsync")?;
        if !can_mount() {
            return None;
        }
        let store = TestStore::init(Some(SCENARIO_CONFIG));
        store.ok(&["insert", &b1.display().to_string(), "candidate"]);
        Some(Scenario { store, b2, aria2c })
    }
}

pub fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A directory nginx's workers (www-data) can read.
pub fn public_dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir_all(&d).unwrap();
    for p in [parent, d.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    d
}

/// Waits until the mount shows the store's current generation of `stream`:
/// every file of its `streams/v1` (the index alone may be seen new before a
/// products file is).
pub fn wait_current(mnt: &Path, store: &Path, stream: &str) {
    let v1 = |root: &Path| root.join(stream).join("streams/v1");
    let want: Vec<(std::ffi::OsString, Vec<u8>)> =
        std::fs::read_dir(v1(&store.join("meta/current")))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), std::fs::read(e.path()).unwrap())
            })
            .collect();
    assert!(!want.is_empty(), "no streams/v1 files in the store");
    let deadline = Instant::now() + Duration::from_secs(20);
    while want
        .iter()
        .any(|(f, b)| std::fs::read(v1(mnt).join(f)).ok().as_ref() != Some(b))
    {
        assert!(Instant::now() < deadline, "the mount did not reload");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `rsync -a --checksum --delete` of the mount's stream into a mirror root
/// (by checksum: files of two generations may share size and mtime second).
pub fn fill(mnt: &Path, mirror: &Path, stream: &str) {
    sh(&format!(
        "rsync -a --checksum --delete '{}/{stream}/' '{}/{stream}/' && chmod -R a+rX '{}'",
        mnt.display(),
        mirror.display(),
        mirror.display()
    ));
}

pub fn set_validity(store: &TestStore, v: &str) {
    let p = store.root.join("mirrors.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let re: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("alternate_validity") {
                format!("alternate_validity = \"{v}\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&p, re.join("\n") + "\n").unwrap();
}

pub fn urls(metalink: &str) -> Vec<String> {
    metalink
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let s = l.strip_prefix("<url ")?;
            Some(s[s.find('>')? + 1..s.find("</url>")?].to_string())
        })
        .collect()
}

/// aria2c downloads `file` through the metalink into `dir`; its exit code.
pub fn aria2(aria2c: &Path, metalink_arg: &[&str], dir: &Path) -> (i32, String) {
    let out = Command::new(aria2c)
        .args([
            "--no-conf",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--allow-overwrite=true",
        ])
        .arg("-d")
        .arg(dir)
        .args(metalink_arg)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
