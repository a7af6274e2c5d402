//! The mount started by root with `-o allow_other` (ARCHITECTURE.md §3): every user
//! reads everything; only root and the store's owner write. A real
//! unprivileged user (`nobody`, through `setpriv`) tries every write
//! operation through the mount and `mountctl` beside it, gets `EACCES`
//! (hard links: `EPERM`, refused to everyone), and the store stays
//! byte-identical; a non-root user owning the store inserts through the mount.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use streamfs_tests::mount::{Mount, build_dir, can_mount};
use streamfs_tests::store::{TestStore, flat_items, tree_digest};
use streamfs_tests::{missing, mountctl_bin};

/// `nobody` on Debian.
const NOBODY: u32 = 65534;
/// The store's owner: a plain uid, no account needed with setpriv.
const OWNER: u32 = 4242;

const DAILY_PRODUCTS: &str = "com.ubuntu.maas:daily:v3:download.json";

/// Runs `sh -c cmd` as `uid` (same gid, no supplementary groups):
/// (success, stderr).
fn as_user(uid: u32, cmd: &str) -> (bool, String) {
    let out = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .args(["sh", "-c", cmd])
        .stdin(Stdio::null())
        .output()
        .expect("running setpriv");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn as_root(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

fn have_setpriv() -> bool {
    Command::new("setpriv").arg("--version").output().is_ok()
        || missing::<()>("setpriv (util-linux) not installed").is_some()
}

#[test]
fn others_read_everything_and_every_write_they_try_is_refused_with_eacces() {
    let (Some(b1), Some(b2)) = (build_dir("20250101"), build_dir("20250102")) else {
        return;
    };
    if !can_mount() || !have_setpriv() {
        return;
    }
    // A store owned by OWNER, mounted by root for everyone.
    let s = TestStore::init(None);
    std::fs::set_permissions(s.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    as_root(&format!("chown -R {OWNER}:{OWNER} {}", q(&s.root)));
    let m = Mount::with_args(&s.root, &["-o", "allow_other"]);
    let daily = m.path().join("daily");
    let v1 = daily.join("noble/amd64/20250101");
    as_root(&format!("cp -r {}/. {}", q(&b1), q(&daily)));
    // Root leaves an empty directory and a promotion target for the refusals.
    let spare = daily.join("noble/amd64/20250105");
    let rel_dir = m.path().join("released/noble/amd64");
    as_root(&format!("mkdir {} && mkdir -p {}", q(&spare), q(&rel_dir)));

    // nobody reads every item, with the sha256 the metadata declares.
    let items = flat_items(&daily.join("streams/v1").join(DAILY_PRODUCTS));
    assert_eq!(items.len(), 24, "{}", m.log_text());
    let mut want = BTreeMap::new();
    for i in &items {
        want.insert(i["path"].clone(), i["sha256"].clone());
    }
    let out = Command::new("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . -type f ! -path './streams/*' -exec sha256sum {} +")
        .arg("sh")
        .arg(&daily)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (sum, path) = l.split_once("  ./").unwrap();
            (path.to_string(), sum.to_string())
        })
        .collect();
    assert_eq!(got, want, "what nobody reads");
    let (ok, err) = as_user(
        NOBODY,
        &format!(
            "cat {} {} >/dev/null && ls -lR {} >/dev/null",
            q(&daily.join("streams/v1/index.json")),
            q(&daily.join("streams/v1").join(DAILY_PRODUCTS)),
            q(m.path())
        ),
    );
    assert!(ok, "nobody cannot read the metadata: {err}");

    // Every write nobody tries: refused, with strerror(EACCES) or EPERM.
    let before = tree_digest(&s.root);
    let sq = v1.join("squashfs");
    let products_src = b2.join("streams/v1/com.ubuntu.maas:candidate:v3:download.json");
    let denied = "Permission denied";
    let cases: Vec<(String, &str)> = vec![
        // create / cp: new files, whole builds, over a published item
        (format!("cp -r {}/. {}", q(&b2), q(&daily)), denied),
        (
            format!(
                "cp {} {}",
                q(&b2.join("noble/amd64/20250102/squashfs")),
                q(&spare.join("squashfs"))
            ),
            denied,
        ),
        (
            format!(
                "cp {} {}",
                q(&b2.join("noble/amd64/20250102/squashfs")),
                q(&sq)
            ),
            denied,
        ),
        (format!("echo x >> {}", q(&sq)), denied),
        // mkdir, rm, rmdir
        (
            format!("mkdir {}", q(&daily.join("noble/amd64/20250109"))),
            denied,
        ),
        (format!("rm -f {}", q(&sq)), denied),
        (format!("rm -rf {}", q(&v1)), denied),
        (format!("rmdir {}", q(&spare)), denied),
        // ln -s promote, rename
        (
            format!(
                "ln -s ../../../daily/noble/amd64/20250101 {}",
                q(&rel_dir.join("20250101"))
            ),
            denied,
        ),
        (
            format!("mv {} {}", q(&v1), q(&daily.join("noble/amd64/20250199"))),
            denied,
        ),
        // truncate: by open(O_TRUNC), and by truncate(2) on the path
        (format!("truncate -s 0 {}", q(&sq)), denied),
        (
            format!(
                "python3 -c 'import os,sys; os.truncate(sys.argv[1], 0)' {}",
                q(&sq)
            ),
            denied,
        ),
        // attribute changes, which change nothing for the owner
        (format!("chmod 644 {}", q(&sq)), denied),
        (format!("chown {NOBODY} {}", q(&sq)), denied),
        (format!("touch {}", q(&sq)), denied),
        (format!("mkfifo {}", q(&spare.join("fifo"))), denied),
        // metadata: a build's products file, and over the generated index
        (
            format!("cp {} {}", q(&products_src), q(&daily.join("streams/v1/"))),
            denied,
        ),
        (
            format!(
                "cp {} {}",
                q(&products_src),
                q(&daily.join("streams/v1/index.json"))
            ),
            denied,
        ),
        // a hard link is refused to everyone
        (
            format!("ln {} {}", q(&sq), q(&spare.join("hard"))),
            "Operation not permitted",
        ),
        // `test -w` answers what a write would
        (format!("test -w {}", q(&sq)), ""),
        (format!("test -w {}", q(&daily)), ""),
    ];
    for (cmd, expect) in &cases {
        let (ok, err) = as_user(NOBODY, cmd);
        assert!(!ok, "nobody: `{cmd}` succeeded");
        assert!(err.contains(expect), "nobody: `{cmd}`: {err}");
    }
    // mountctl beside the mount: the store is not nobody's to lock.
    let bin = s.tmp.path().join("mountctl");
    std::fs::copy(mountctl_bin(), &bin).unwrap();
    let (ok, err) = as_user(
        NOBODY,
        &format!("{} --store {} insert {} daily", q(&bin), q(&s.root), q(&b2)),
    );
    assert!(
        !ok && err.contains(denied),
        "nobody: mountctl insert: {err}"
    );
    assert_eq!(tree_digest(&s.root), before, "{}", m.log_text());
    let log = m.log_text();
    assert!(
        log.contains(&format!(
            "uid {NOBODY} is neither root nor the store's owner"
        )),
        "{log}"
    );

    // The store's owner, not root, inserts through the mount.
    let (ok, err) = as_user(OWNER, &format!("cp -r {}/. {}", q(&b2), q(&daily)));
    assert!(ok, "the owner's cp -r failed: {err}\n{}", m.log_text());
    let (ok, err) = as_user(OWNER, &format!("test -w {}", q(&daily)));
    assert!(ok, "the owner: test -w: {err}");
    let after = flat_items(&daily.join("streams/v1").join(DAILY_PRODUCTS));
    assert_eq!(after.len(), 48, "{}", m.log_text());
    assert!(after.iter().any(|i| i["version_name"] == "20250102"));
    m.unmount();
}
