//! Crash safety: SIGKILL of `mountctl` at many points of insert, promote
//! and clean-md, and of the `streamfs` daemon at random points of a random
//! workload on the mount. After each, `mountctl fsck` must find the store
//! clean (metadata parses, every published item has its blob, every blob
//! matches its name), and the next operation must work; after a daemon
//! crash, the remounted store must also hold every acknowledged insert and
//! nothing unacknowledged, with good signatures.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use streamfs_tests::mount::{Mount, can_mount, write_closed};
use streamfs_tests::store::{TestStore, flat_items};
use streamfs_tests::{in_path, missing, mountctl_bin};

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
    streamfs_tests::report(&format!(
        "crash safety: {points} kill points, {kills} killed mid-operation, fsck clean after each"
    ));
    assert!(
        kills >= rounds,
        "too few operations were interrupted ({kills}): the test lost its point"
    );
}

// ------------------------------------------------------------------------
// The daemon: SIGKILL at random points of a random workload on the mount.

/// What the workload did, as its writer saw it.
#[derive(Clone, Debug)]
enum Event {
    /// A file whose `close` (or rename) returned 0: stream, path, sha256.
    Inserted(usize, String, String),
    /// An `rm` that returned 0.
    Removed(usize, String),
    /// An `ln -s` promotion that returned 0: the daily path it took along.
    Promoted(String),
    /// A products file whose `close` returned 0 declared this daily path
    /// with this sha256: once its data is in the pool the version may be
    /// published, even if the data's own `close` never returned.
    Declared(String, String),
}

#[derive(Default)]
struct Journal {
    acked: Vec<Event>,
    /// The step under way when the daemon died: it may or may not have
    /// taken effect, but only whole.
    in_flight: Option<Event>,
}

const STREAM_NAMES: [&str; 2] = ["daily", "released"];
const PRODUCTS_FILES: [&str; 2] = [
    "com.ubuntu.maas:daily:v3:download.json",
    "com.ubuntu.maas:stable:v3:download.json",
];

/// A small deterministic generator (xorshift), seeded per run and printed,
/// so a failing run can be replayed with `STREAMFS_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn kernel_path(n: u64) -> String {
    format!("noble/amd64/2026{n:05}/ga-24.04/generic/boot-kernel")
}

fn data_for(n: u64, rng: &mut Rng) -> Vec<u8> {
    // Mostly small; now and then a few MiB, so kills land mid-write too.
    let len = if rng.below(8) == 0 {
        (1 << 20) + rng.below(2 << 20)
    } else {
        512 + rng.below(32 << 10)
    } as usize;
    let mut d = format!("kernel {n}\n").into_bytes();
    d.resize(len, (n % 251) as u8);
    d
}

fn sha_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The writer's view of the store.
#[derive(Default)]
struct Workload {
    next: u64,
    /// Daily paths inserted and not removed, oldest first.
    live: Vec<String>,
    /// Daily paths promoted to released and not removed there.
    promoted: Vec<String>,
    /// Every path ever promoted: a version removed from released stays
    /// readable there (so its name is taken) until reaped.
    ever_promoted: std::collections::BTreeSet<String>,
}

/// One step of the workload on the mount at `mnt`; the journal says what
/// is under way and what was acknowledged.
fn workload_step(
    mnt: &Path,
    rng: &mut Rng,
    w: &mut Workload,
    journal: &std::sync::Mutex<Journal>,
) -> std::io::Result<()> {
    let Workload {
        next,
        live,
        promoted,
        ever_promoted,
    } = w;
    let set = |e: Option<Event>| journal.lock().unwrap().in_flight = e;
    let roll = rng.below(10);
    let (event, result) = if roll < 5 || live.len() < 2 {
        // Insert by copy, by rsync-style rename, or metadata then data.
        *next += 1;
        let n = *next;
        let path = kernel_path(n);
        let data = data_for(n, rng);
        let ev = Event::Inserted(0, path.clone(), sha_hex(&data));
        set(Some(ev.clone()));
        let full = mnt.join("daily").join(&path);
        let r = fs::create_dir_all(full.parent().unwrap()).and_then(|()| match roll % 3 {
            0 => {
                let staging = full.with_file_name(".boot-kernel.Ab12Cd");
                write_closed(&staging, &data)?;
                fs::rename(&staging, &full)
            }
            1 => {
                let doc = serde_json::json!({
                    "format": "products:1.0",
                    "content_id": "com.ubuntu.maas:daily:v3:download",
                    "products": {"com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04": {
                        "arch": "amd64", "release": "noble", "subarch": "ga-24.04",
                        "kflavor": "generic", "label": "daily",
                        "versions": {format!("2026{n:05}"): {"items": {"boot-kernel": {
                            "ftype": "boot-kernel", "path": path,
                            "sha256": sha_hex(&data), "size": data.len()}}}}}}
                });
                write_closed(
                    &mnt.join("daily/streams/v1/build.json"),
                    doc.to_string().as_bytes(),
                )?;
                journal
                    .lock()
                    .unwrap()
                    .acked
                    .push(Event::Declared(path.clone(), sha_hex(&data)));
                write_closed(&full, &data)
            }
            _ => write_closed(&full, &data),
        });
        if r.is_ok() {
            live.push(path);
        }
        (ev, r)
    } else if roll < 8 {
        // Promote a live daily version.
        let path = live[rng.below(live.len() as u64) as usize].clone();
        if !ever_promoted.insert(path.clone()) {
            return Ok(());
        }
        let ev = Event::Promoted(path.clone());
        set(Some(ev.clone()));
        let vdir = Path::new(&path).ancestors().nth(3).unwrap().to_path_buf();
        let link = mnt.join("released").join(&vdir);
        let r = fs::create_dir_all(link.parent().unwrap()).and_then(|()| {
            std::os::unix::fs::symlink(Path::new("../../../daily").join(&vdir), &link)
        });
        if r.is_ok() {
            promoted.push(path);
        }
        (ev, r)
    } else {
        // Remove the oldest item (keeps the store small), of daily or of
        // released.
        let s = usize::from(!promoted.is_empty() && rng.below(2) == 0);
        let path = if s == 0 {
            live[0].clone()
        } else {
            promoted[0].clone()
        };
        let ev = Event::Removed(s, path.clone());
        set(Some(ev.clone()));
        let r = fs::remove_file(mnt.join(STREAM_NAMES[s]).join(&path));
        if r.is_ok() {
            if s == 0 {
                live.remove(0);
            } else {
                promoted.remove(0);
            }
        }
        (ev, r)
    };
    // A failed step stays under way: the daemon may have done it and died
    // before replying.
    if result.is_ok() {
        let mut j = journal.lock().unwrap();
        j.in_flight = None;
        j.acked.push(event);
    }
    result
}

/// What must be published after the acknowledged events: stream → path →
/// sha256.
/// Paths whose last acknowledged event is a removal, with the sha256 they
/// had before it. The mount commits removals in batches (`rm -r` of a
/// version is one commit, see `StreamFs::flush_removals`), so a removal
/// acknowledged in the last moments before a crash may not have reached the
/// store, as an `unlink` not yet synced on a disk filesystem: such a path
/// may still be published, with its old content, and nothing else.
fn removed_last(acked: &[Event]) -> [BTreeMap<String, String>; 2] {
    let mut live: [BTreeMap<String, String>; 2] = Default::default();
    let mut removed: [BTreeMap<String, String>; 2] = Default::default();
    for e in acked {
        match e {
            Event::Inserted(s, p, sha) => {
                live[*s].insert(p.clone(), sha.clone());
                removed[*s].remove(p);
            }
            Event::Removed(s, p) => {
                if let Some(sha) = live[*s].remove(p) {
                    removed[*s].insert(p.clone(), sha);
                }
            }
            Event::Promoted(p) => {
                if let Some(sha) = live[0].get(p).cloned() {
                    live[1].insert(p.clone(), sha);
                    removed[1].remove(p);
                }
            }
            Event::Declared(..) => {}
        }
    }
    removed
}

fn expected(acked: &[Event]) -> [BTreeMap<String, String>; 2] {
    let mut out: [BTreeMap<String, String>; 2] = Default::default();
    for e in acked {
        match e {
            Event::Inserted(s, p, sha) => {
                out[*s].insert(p.clone(), sha.clone());
            }
            Event::Removed(s, p) => {
                out[*s].remove(p);
            }
            Event::Promoted(p) => {
                let sha = out[0].get(p).cloned().expect("promoted a live path");
                out[1].insert(p.clone(), sha);
            }
            Event::Declared(..) => {}
        }
    }
    out
}

/// Published items of each stream as the mount serves them: path → sha256.
fn published(mnt: &Path) -> [BTreeMap<String, String>; 2] {
    let mut out: [BTreeMap<String, String>; 2] = Default::default();
    for s in 0..2 {
        let file = mnt
            .join(STREAM_NAMES[s])
            .join("streams/v1")
            .join(PRODUCTS_FILES[s]);
        for item in flat_items(&file) {
            out[s].insert(item["path"].clone(), item["sha256"].clone());
        }
    }
    out
}

#[test]
fn sigkill_of_the_daemon_at_random_points_loses_nothing_acknowledged() {
    if !can_mount() {
        return;
    }
    let Some(gpgv) =
        in_path("gpgv").or_else(|| missing("gpgv not installed (apt-get install gpgv)"))
    else {
        return;
    };
    let points: u32 = std::env::var("STREAMFS_DAEMON_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("STREAMFS_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    streamfs_tests::report(&format!(
        "daemon crash safety: seed {seed} (STREAMFS_CRASH_SEED to replay)"
    ));
    let s = TestStore::init(None);
    s.ok(&["keygen"]);
    let keyring = s.root.join("keys/keyring.gpg");
    let mut rng = Rng(seed);
    let journal = std::sync::Arc::new(std::sync::Mutex::new(Journal::default()));
    let mut w = Workload::default();
    let (mut mid_step, mut steps) = (0u32, 0u64);
    let mut lost_removal_count = 0u32;
    for point in 0..points {
        let m = Mount::new(&s.root);
        let mnt = m.path().to_path_buf();
        let killed = std::sync::Arc::new(AtomicBool::new(false));
        let delay = Duration::from_millis(rng.below(400));
        let pid = m.pid().expect("running");
        let k = killed.clone();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            k.store(true, Ordering::SeqCst);
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        });
        // The writer runs until the daemon's death stops it.
        let mut wrng = Rng(rng.next() | 1);
        loop {
            steps += 1;
            if let Err(e) = workload_step(&mnt, &mut wrng, &mut w, &journal) {
                assert!(
                    killed.load(Ordering::SeqCst),
                    "step failed while the daemon ran: {e}\n{}",
                    m.log_text()
                );
                break;
            }
            if killed.load(Ordering::SeqCst) {
                break;
            }
        }
        killer.join().unwrap();
        let log = m.log_text();
        m.kill();

        // The writer may have raced the kill: the step under way is the only
        // one whose effect is open.
        let (acked, in_flight) = {
            let mut j = journal.lock().unwrap();
            (j.acked.clone(), j.in_flight.take())
        };
        if in_flight.is_some() {
            mid_step += 1;
        }
        let out = s.mountctl(&["fsck"]);
        assert_eq!(
            out.code,
            Some(0),
            "kill point {point}: fsck: {}{}\n{log}",
            out.stdout_text(),
            out.stderr_text()
        );
        let m = Mount::new(&s.root);
        let got = published(m.path());
        let want = expected(&acked);
        let lost_removals = removed_last(&acked);
        let mut maybe = want.clone();
        if let Some(e) = &in_flight {
            maybe = expected(&[acked.clone(), vec![e.clone()]].concat());
        }
        for st in 0..2 {
            for (p, sha) in &got[st] {
                // Published: acknowledged or the step under way, and whole.
                let declared = st == 0
                    && acked
                        .iter()
                        .any(|e| matches!(e, Event::Declared(dp, ds) if dp == p && ds == sha));
                let ok = want[st].get(p) == Some(sha)
                    || maybe[st].get(p) == Some(sha)
                    || declared
                    || lost_removals[st].get(p) == Some(sha);
                assert!(
                    ok,
                    "kill point {point}: {}/{p} is published but was never acknowledged ({in_flight:?})\n{log}",
                    STREAM_NAMES[st]
                );
                let bytes = fs::read(m.path().join(STREAM_NAMES[st]).join(p)).unwrap();
                assert_eq!(&sha_hex(&bytes), sha, "kill point {point}: {p} reads wrong");
            }
            for (p, sha) in &want[st] {
                let open = in_flight.as_ref().is_some_and(|e| match e {
                    Event::Removed(s2, p2) => *s2 == st && p2 == p,
                    _ => false,
                });
                assert!(
                    got[st].get(p) == Some(sha) || open,
                    "kill point {point}: {}/{p} was acknowledged but is not published\n{log}",
                    STREAM_NAMES[st]
                );
            }
            // Metadata parses (above) and its signatures verify with gpgv.
            let v1 = m.path().join(STREAM_NAMES[st]).join("streams/v1");
            let products = v1.join(PRODUCTS_FILES[st]);
            let sproducts = products.with_extension("sjson");
            for files in [
                vec![v1.join("index.sjson")],
                vec![v1.join("index.json.gpg"), v1.join("index.json")],
                vec![sproducts],
                vec![products.with_extension("json.gpg"), products.clone()],
            ] {
                let out = Command::new(&gpgv)
                    .arg("--keyring")
                    .arg(&keyring)
                    .args(&files)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "kill point {point}: gpgv {files:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        // The step under way counts as done when it took effect, so the
        // writer's view of the store follows what the store holds.
        if let Some(e) = in_flight {
            let took = match &e {
                Event::Inserted(st, p, sha) => got[*st].get(p) == Some(sha),
                Event::Removed(st, p) => !got[*st].contains_key(p),
                Event::Promoted(p) => got[1].contains_key(p),
                Event::Declared(..) => false,
            };
            if took {
                journal.lock().unwrap().acked.push(e.clone());
            }
            match e {
                Event::Inserted(_, p, _) if took => w.live.push(p),
                Event::Removed(0, p) if took => w.live.retain(|x| *x != p),
                Event::Removed(_, p) if took => w.promoted.retain(|x| *x != p),
                Event::Promoted(p) if took => w.promoted.push(p),
                _ => {}
            }
        }
        // A removal the crash undid: the path is back, for the writer too.
        for (st, lost) in lost_removals.iter().enumerate() {
            for (p, sha) in lost {
                if got[st].get(p) == Some(sha) && !want[st].contains_key(p) {
                    lost_removal_count += 1;
                    journal
                        .lock()
                        .unwrap()
                        .acked
                        .push(Event::Inserted(st, p.clone(), sha.clone()));
                    if st == 0 {
                        w.live.push(p.clone());
                    } else {
                        w.promoted.push(p.clone());
                    }
                }
            }
        }
        m.unmount();
        s.ok(&["reap-orphans", "--now"]);
    }
    streamfs_tests::report(&format!(
        "daemon crash safety: {points} kill points survived ({mid_step} with a step under way, {steps} workload steps, {} acknowledged, {lost_removal_count} batched removals undone by the kill)",
        journal.lock().unwrap().acked.len()
    ));
    assert!(
        mid_step >= points / 4,
        "too few kills interrupted a step ({mid_step})"
    );
}
