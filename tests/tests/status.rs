//! `mountctl status` on a store that two real mounts serve (the read-write
//! one operators copy into, the read-only one nginx serves), signing with a
//! key made by gpg that expires in ten days: the figures follow what a user
//! does through the mount (cp, a second copy of the same data, rm, the
//! daemon's reaping), each mount reports the generation it shows, and the
//! key's expiry is warned about.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use streamfs_tests::mount::{Mount, can_mount, write_closed};
use streamfs_tests::store::TestStore;
use streamfs_tests::{in_path, missing};

const CONFIG_HEAD: &str = "grace = \"4s\"\n";

/// A gpg-made ed25519 signing key expiring in 10 days, exported armored and
/// unprotected; returns (key file, fingerprint).
fn gpg_key(dir: &Path) -> Option<(std::path::PathBuf, String)> {
    let gpg = in_path("gpg").or_else(|| missing("gpg not installed (apt-get install gnupg)"))?;
    let home = dir.join("g");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    // Output through files, not pipes: the gpg-agent gpg starts inherits
    // them and would keep a pipe open after gpg exits.
    let (out, err) = (dir.join("gpg.out"), dir.join("gpg.err"));
    let run = |args: &[&str]| {
        let status = Command::new(&gpg)
            .arg("--homedir")
            .arg(&home)
            .args(["--batch", "--passphrase", "", "--pinentry-mode", "loopback"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "gpg {args:?}: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::fs::read(&out).unwrap()
    };
    run(&[
        "--quick-gen-key",
        "status test <status@example.invalid>",
        "ed25519",
        "sign",
        "10d",
    ]);
    let listing = String::from_utf8(run(&["--with-colons", "--list-secret-keys"])).unwrap();
    let fpr = listing
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|l| l.split(':').find(|f| f.len() == 40))
        .expect("a fingerprint")
        .to_string();
    let key = dir.join("k.asc");
    std::fs::write(&key, run(&["--armor", "--export-secret-keys"])).unwrap();
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "all"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    Some((key, fpr))
}

fn status(s: &TestStore) -> Value {
    let out = s.mountctl(&["status", "--json"]);
    // The expiring key is a warning: exit 1, on stderr.
    assert_eq!(out.code, Some(1), "{}", out.stderr_text());
    assert!(
        // 9 or 10 whole days left, by when in the day the key was made.
        ["expires in 9 day(s)", "expires in 10 day(s)"]
            .iter()
            .any(|w| out.stderr_text().contains(w)),
        "{}",
        out.stderr_text()
    );
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

fn stream<'a>(st: &'a Value, name: &str) -> &'a Value {
    st["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stream {name} in {st:#}"))
}

/// The generation each mount shows, by mount point.
fn mount_generations(st: &Value) -> Vec<(String, bool, Option<u64>)> {
    let mut v: Vec<_> = st["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountpoint"].as_str().unwrap().to_string(),
                m["read_only"].as_bool().unwrap(),
                m["generation"].as_u64(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Polls `status` until `cond` holds (the read-only mount picks commits up
/// within a second, the reaper within its interval after the grace).
fn wait_status(s: &TestStore, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status(s);
        if cond(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "{what}: {st:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn status_follows_inserts_copies_removals_and_reaping_through_real_mounts() {
    if !can_mount() {
        return;
    }
    let keydir = tempfile::tempdir().unwrap();
    let Some((key, fpr)) = gpg_key(keydir.path()) else {
        return;
    };
    let default = std::fs::read_to_string(
        streamfs_tests::workspace_root().join("core/src/store/default-store.toml"),
    )
    .unwrap();
    let config = default
        .replacen("grace = \"3d\"", CONFIG_HEAD.trim_end(), 1)
        .replacen(
            "# key = \"keys/signing.asc\"",
            &format!("key = \"{}\"", key.display()),
            1,
        );
    let s = TestStore::init(Some(&config));

    let st = status(&s);
    let g0 = st["generation"].as_u64().unwrap();
    assert_eq!(stream(&st, "daily")["items"], 0);
    assert_eq!(st["pool"]["blobs"], 0);
    assert_eq!(st["mounts"], serde_json::json!([]));
    assert_eq!(st["signing"]["fingerprint"], fpr.as_str());
    let created = st["signing"]["created"].as_i64().unwrap();
    assert_eq!(
        st["signing"]["expires"].as_i64(),
        Some(created + 10 * 86400)
    );
    assert_eq!(st["warnings"].as_array().unwrap().len(), 1, "{st:#}");

    let rw = Mount::new(&s.root);
    let ro = Mount::with_options(&s.root, &["ro"]);
    let (rw_path, ro_path) = (
        rw.path().display().to_string(),
        ro.path().display().to_string(),
    );
    let st = wait_status(&s, "both mounts report generation g0", |st| {
        mount_generations(st)
            == [
                (rw_path.clone(), false, Some(g0)),
                (ro_path.clone(), true, Some(g0)),
            ]
            .into_iter()
            .sorted_vec()
    });
    assert!(st["mounts"][0]["pid"].as_u64().is_some(), "{st:#}");

    // Three files copied in; two have the same bytes (one blob).
    let v = "daily/noble/amd64/20250101/ga-24.04";
    let kernel = vec![b'k'; 1000];
    for (rel, data) in [
        (format!("{v}/generic/boot-kernel"), &kernel),
        (format!("{v}/lowlatency/boot-kernel"), &kernel),
        (format!("{v}/generic/boot-initrd"), &vec![b'i'; 300]),
    ] {
        let p = rw.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_closed(&p, data).unwrap();
    }
    let st = wait_status(&s, "both mounts show the inserts", |st| {
        let g = st["generation"].as_u64().unwrap();
        g > g0
            && mount_generations(st)
                .iter()
                .all(|(_, _, mg)| *mg == Some(g))
    });
    let g1 = st["generation"].as_u64().unwrap();
    let daily = stream(&st, "daily");
    assert_eq!(daily["items"], 3, "{st:#}");
    assert_eq!(daily["versions"], 2, "{st:#}");
    assert_eq!(daily["bytes"], 2300);
    assert_eq!(stream(&st, "released")["items"], 0);
    assert_eq!(st["pool"]["blobs"], 2);
    assert_eq!(st["pool"]["bytes"], 1300);
    assert_eq!(st["pool"]["logical_bytes"], 2300);
    assert_eq!(st["pool"]["dedup_saved_bytes"], 1000);
    assert_eq!(st["orphans"]["count"], 0);
    assert!(st["orphans"]["next_reap_due"].is_null());

    // Served by the read-only mount.
    let served = std::fs::read(ro.path().join(format!("{v}/lowlatency/boot-kernel"))).unwrap();
    assert_eq!(served, kernel);

    // The initrd removed: an orphan, due for reaping after the grace.
    let before_rm = crate_now();
    std::fs::remove_file(rw.path().join(format!("{v}/generic/boot-initrd"))).unwrap();
    let st = wait_status(&s, "the removal is an orphan", |st| {
        st["orphans"]["count"] == 1
    });
    assert!(st["generation"].as_u64().unwrap() > g1);
    assert_eq!(stream(&st, "daily")["items"], 2);
    assert_eq!(st["orphans"]["bytes"], 300);
    let oldest = st["orphans"]["oldest"].as_i64().unwrap();
    assert!(oldest >= before_rm - 1, "{st:#}");
    assert_eq!(st["orphans"]["next_reap_due"].as_i64(), Some(oldest + 4));
    assert_eq!(st["pool"]["blobs"], 2, "kept until reaped");

    // The daemon reaps it after the grace; the mounts follow.
    let st = wait_status(&s, "the orphan is reaped", |st| {
        let g = st["generation"].as_u64();
        st["orphans"]["count"] == 0
            && st["pool"]["blobs"] == 1
            && mount_generations(st).iter().all(|(_, _, mg)| *mg == g)
    });
    assert_eq!(st["pool"]["bytes"], 1000);
    assert_eq!(st["pool"]["dedup_saved_bytes"], 1000);

    // The text form says the same for a person.
    let out = s.mountctl(&["status"]);
    let text = out.stdout_text();
    assert!(
        text.contains(&format!("generation  {}", st["generation"])),
        "{text}"
    );
    assert!(text.contains("daily        2 product(s)"), "{text}");
    assert!(text.contains("1000 B saved"), "{text}");
    assert!(text.contains(&fpr), "{text}");
    assert!(
        text.contains(&format!("{ro_path} (ro, generation")),
        "{text}"
    );

    rw.unmount();
    ro.unmount();
    let st = status(&s);
    assert_eq!(st["mounts"], serde_json::json!([]));
    assert_eq!(
        std::fs::read_dir(s.root.join("run")).unwrap().count(),
        0,
        "the daemons' records are left behind"
    );
}

fn crate_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

trait SortedVec<T> {
    fn sorted_vec(self) -> Vec<T>;
}

impl<T: Ord, I: Iterator<Item = T>> SortedVec<T> for I {
    fn sorted_vec(self) -> Vec<T> {
        let mut v: Vec<T> = self.collect();
        v.sort();
        v
    }
}
