//! Crash safety of mountctl's commits: SIGKILL at many points of insert,
//! promote and clean-md, each followed by `mountctl fsck`, which must find
//! the store clean (metadata parses, every published item has its blob,
//! every blob matches its name), and by the next operation, which must work.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streamfs_tests::mountctl_bin;
use streamfs_tests::store::{TestStore, flat_items};

/// A data-only build (laid out by the default path templates) of one
/// version, big enough that copying it takes a while.
fn make_build(dir: &Path, version: &str, seed: u8) {
    let v = dir.join("noble/amd64").join(version);
    let mut data = vec![0u8; 6 << 20];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i as u32)
            .wrapping_mul(2_654_435_761)
            .rotate_left(seed as u32 % 31) as u8
            ^ seed;
    }
    fs::create_dir_all(&v).unwrap();
    fs::write(v.join("squashfs"), &data).unwrap();
    fs::write(v.join("squashfs.manifest"), format!("manifest {version}\n")).unwrap();
    for flavor in ["generic", "lowlatency"] {
        for sub in ["ga-24.04", "hwe-24.04"] {
            let d = v.join(sub).join(flavor);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("boot-kernel"), &data[..(1 << 20) + seed as usize]).unwrap();
            fs::write(
                d.join("boot-initrd"),
                format!("initrd {version} {sub} {flavor}\n"),
            )
            .unwrap();
        }
    }
}

/// Runs mountctl and SIGKILLs it after `delay` (if still running).
/// Returns whether it was killed before finishing.
fn run_and_kill(store: &Path, args: &[&str], delay: Duration) -> bool {
    let mut child = Command::new(mountctl_bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let killed = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    killed
}

fn timed(s: &TestStore, args: &[&str]) -> Duration {
    let t = Instant::now();
    s.ok(args);
    t.elapsed()
}

fn assert_clean(s: &TestStore, after: &str) {
    let out = s.mountctl(&["fsck"]);
    assert_eq!(
        out.code,
        Some(0),
        "fsck after {after}: {}{}",
        out.stdout_text(),
        out.stderr_text()
    );
}

#[test]
fn sigkill_during_insert_promote_and_clean_md_never_corrupts_the_store() {
    let s = TestStore::init(None);
    let rounds: u32 = std::env::var("STREAMFS_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let root = s.root.clone();
    let builds = s.tmp.path().join("builds");
    let (mut kills, mut points) = (0u32, 0u32);
    let mut full = [Duration::from_millis(400); 3];
    for round in 0..rounds {
        let version = format!("2025{:04}", round + 1);
        let b = builds.join(&version);
        make_build(&b, &version, round as u8);
        let b = b.to_str().unwrap().to_string();
        // Three kill points per operation and round, spread over the time
        // the operation takes when it runs to the end.
        let ops: [Vec<&str>; 3] = [
            vec!["insert", &b, "daily"],
            vec!["promote", "daily", "released", &version],
            vec!["clean-md", "3", "daily"],
        ];
        for (i, op) in ops.iter().enumerate() {
            // Fraction of the full run at which to kill, varied by round.
            for k in 0..3u32 {
                let frac = ((round * 37 + k * 53) % 100) as f64 / 100.0;
                let delay = full[i].mul_f64(frac);
                points += 1;
                if run_and_kill(&root, op, delay) {
                    kills += 1;
                }
                assert_clean(&s, &format!("killing {op:?} after {delay:?}"));
            }
            // Then the operation completes: the store is still usable. Its
            // duration spreads the next round's kill points.
            full[i] = timed(&s, op).max(Duration::from_millis(20));
        }
        assert_clean(&s, &format!("round {round}"));
        let versions: std::collections::BTreeSet<String> = flat_items(&s.products_file("daily"))
            .into_iter()
            .map(|i| i["version_name"].clone())
            .collect();
        assert_eq!(
            versions.len(),
            (round as usize + 1).min(3),
            "daily versions after round {round}: {versions:?}"
        );
        let released = flat_items(&s.products_file("released"));
        assert!(
            released.iter().any(|i| i["version_name"] == version),
            "{version} not promoted"
        );
    }
    println!(
        "crash safety: {points} kill points, {kills} killed mid-operation, fsck clean after each"
    );
    assert!(
        kills >= rounds,
        "too few operations were interrupted ({kills}): the test lost its point"
    );
}
