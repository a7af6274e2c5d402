//! `mountctl sync` under faults, against a generated mirror served by real
//! nginx on 127.0.0.1, seen through a small cutting/throttling proxy (also
//! on 127.0.0.1, in this test) that counts every byte it forwards:
//!
//! - transfers cut mid-file resume with `Range`, within a run and across
//!   runs, and fetch at most 1.1x the data in total;
//! - `SIGKILL` at seeded random points leaves a clean `fsck`, and a re-run
//!   completes with the items of a clean sync;
//! - a mounted store shows the versions as they are committed;
//! - a redirect to a non-http scheme, md5-only and sha512-only items, a
//!   wrong md5, a filesystem too small for the downloads.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use md5::Md5;
use serde_json::{Value, json};
use sha2::{Digest, Sha512};
use streamfs_tests::mount::{Mount, can_mount, is_mounted};
use streamfs_tests::serve::{Nginx, sha256_hex};
use streamfs_tests::store::{TestStore, flat_items};
use streamfs_tests::{mountctl_bin, report};

const CID: &str = "com.example:download";

/// Deterministic incompressible bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Which checksums a generated item declares.
#[derive(Clone, Copy, PartialEq)]
enum Sums {
    Sha256,
    Md5Only,
    Sha512Only,
    WrongMd5,
}

/// One generated item: product `p`, version `v`, a file of `len` bytes.
struct Spec {
    product: String,
    version: String,
    file: String,
    len: usize,
    sums: Sums,
}

fn spec(p: usize, v: usize, len: usize) -> Spec {
    Spec {
        product: format!("p{p}"),
        version: format!("2026010{v}"),
        file: "disk.img".into(),
        len,
        sums: Sums::Sha256,
    }
}

/// A mirror root under a world-readable temp dir (nginx's workers run as
/// www-data), served by nginx.
struct Mirror {
    _tmp: tempfile::TempDir,
    nginx: Nginx,
    /// (path, sha256) of every item.
    items: BTreeSet<(String, String)>,
}

fn mirror(specs: &[Spec]) -> Option<Mirror> {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("mirror");
    let mut products = serde_json::Map::new();
    let mut items = BTreeSet::new();
    for (i, s) in specs.iter().enumerate() {
        let path = format!("{}/{}/{}", s.product, s.version, s.file);
        let bytes = data(s.len, i as u64 + 1);
        let f = root.join(&path);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, &bytes).unwrap();
        let mut item = json!({"ftype": s.file, "path": path, "size": s.len});
        match s.sums {
            Sums::Sha256 => item["sha256"] = sha256_hex(&bytes).into(),
            Sums::Md5Only => item["md5"] = hex::encode(Md5::digest(&bytes)).into(),
            Sums::Sha512Only => item["sha512"] = hex::encode(Sha512::digest(&bytes)).into(),
            Sums::WrongMd5 => item["md5"] = hex::encode(Md5::digest(b"other")).into(),
        }
        items.insert((path, sha256_hex(&bytes)));
        let p = products
            .entry(format!("com.example:{}", s.product))
            .or_insert_with(|| json!({"arch": "amd64", "versions": {}}));
        let v = p["versions"]
            .as_object_mut()
            .unwrap()
            .entry(s.version.clone())
            .or_insert_with(|| json!({"items": {}}));
        v["items"][s.file.as_str()] = item;
    }
    let doc = json!({
        "format": "products:1.0",
        "content_id": CID,
        "datatype": "image-downloads",
        "updated": "Thu, 03 Dec 2026 00:00:00 +0000",
        "products": products,
    });
    let v1 = root.join("streams/v1");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::write(v1.join("download.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    let index = json!({"format": "index:1.0", "updated": doc["updated"], "index": {CID: {
        "format": "products:1.0", "datatype": "image-downloads", "path": "streams/v1/download.json",
        "updated": doc["updated"], "products": doc["products"].as_object().unwrap().keys().collect::<Vec<_>>(),
    }}});
    std::fs::write(v1.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let nginx = Nginx::start(&root)?;
    Some(Mirror {
        _tmp: tmp,
        nginx,
        items,
    })
}

/// What the proxy does to the responses it forwards.
#[derive(Default)]
struct Rules {
    /// Cut a response after this many bytes…
    cut_after: u64,
    /// …this many more times.
    cuts: usize,
    /// Bytes per second per connection (0: unlimited).
    rate: u64,
    /// Answer requests for this path with a redirect to that URL.
    redirect: Option<(String, String)>,
}

#[derive(Default)]
struct Seen {
    /// Bytes of responses (head and body) forwarded to the client.
    bytes: u64,
    /// `Range` headers of the requests.
    ranges: Vec<String>,
}

/// An HTTP/1.1 proxy in front of nginx on 127.0.0.1, one request per
/// connection (`Connection: close` both ways), stopped on drop.
struct Proxy {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16, rules: Rules) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let rules = Arc::new(Mutex::new(rules));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (rules.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (r, s) = (r.clone(), s.clone());
                        std::thread::spawn(move || {
                            let _ = serve_one(c, upstream, &r, &s);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { port, seen, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_one(
    mut c: TcpStream,
    upstream: u16,
    rules: &Mutex<Rules>,
    seen: &Mutex<Seen>,
) -> std::io::Result<()> {
    c.set_nonblocking(false)?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut b)? == 0 {
            return Ok(());
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("range:") {
            seen.lock().unwrap().ranges.push(line.to_string());
        }
        if line.is_empty() || lower.starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
        if i == 0 {
            out.push_str("Connection: close\r\n");
        }
    }
    out.push_str("\r\n");
    let (cut_after, rate) = {
        let r = rules.lock().unwrap();
        if let Some((from, to)) = &r.redirect
            && *from == path
        {
            let resp = format!(
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return c.write_all(resp.as_bytes());
        }
        (if r.cuts > 0 { r.cut_after } else { 0 }, r.rate)
    };
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(out.as_bytes())?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut n = n as u64;
        let cut = cut_after > 0 && sent + n >= cut_after;
        if cut {
            n = cut_after - sent;
        }
        c.write_all(&buf[..n as usize])?;
        sent += n;
        seen.lock().unwrap().bytes += n;
        if cut {
            let mut r = rules.lock().unwrap();
            r.cuts = r.cuts.saturating_sub(1);
            let _ = c.shutdown(Shutdown::Both);
            return Ok(());
        }
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(())
}

fn sync_args(url: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["sync", "-q", "-U", "--content-id", CID]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a.push(url.to_string());
    a.push("daily".into());
    a
}

fn sync(store: &TestStore, url: &str, extra: &[&str]) -> streamfs_tests::Outcome {
    let a = sync_args(url, extra);
    store.mountctl(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

/// (path, sha256) of the stream's items.
fn stored(products: &Path) -> BTreeSet<(String, String)> {
    flat_items(products)
        .into_iter()
        .map(|f| (f["path"].clone(), f["sha256"].clone()))
        .collect()
}

fn generation(store: &TestStore) -> PathBuf {
    std::fs::read_link(store.root.join("meta/current")).unwrap()
}

#[test]
fn cut_transfers_resume_with_range_within_a_run_and_across_runs() {
    const LEN: usize = 8 << 20;
    let Some(m) = mirror(&[spec(1, 1, LEN)]) else {
        return;
    };
    // Every attempt of the first run (1 + 4 retries) is cut after 1 MiB:
    // the run fails with 5 MiB in its partial; the next one finishes it.
    let proxy = Proxy::start(
        m.nginx.port,
        Rules {
            cut_after: 1 << 20,
            cuts: 5,
            ..Rules::default()
        },
    );
    let store = TestStore::init(None);
    let first = sync(&store, &proxy.url(), &[]);
    assert_eq!(first.code, Some(1), "{}", first.stdout_text());
    assert!(
        first.stderr_text().contains("p1/20260101/disk.img"),
        "{}",
        first.stderr_text()
    );
    assert!(store.blobs().is_empty());
    let second = sync(&store, &proxy.url(), &[]);
    assert_eq!(second.code, Some(0), "{}", second.stderr_text());
    assert_eq!(stored(&store.products_file("daily")), m.items);
    let seen = proxy.seen.lock().unwrap();
    // Each attempt after the first continued where the last one stopped:
    // 1 MiB further each time, less the response head the proxy counted.
    let starts: Vec<u64> = seen
        .ranges
        .iter()
        .map(|r| {
            let v = r.split_once(':').unwrap().1.trim();
            v.strip_prefix("bytes=")
                .unwrap()
                .strip_suffix('-')
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(starts.len(), 5, "{:?}", seen.ranges);
    let mut last = 0;
    for s in &starts {
        let step = s - last;
        assert!((1 << 20) - 1024 < step && step < 1 << 20, "{starts:?}");
        last = *s;
    }
    report(&format!(
        "resume: {} bytes forwarded for {LEN} bytes of data ({:.3}x)",
        seen.bytes,
        seen.bytes as f64 / LEN as f64
    ));
    assert!(seen.bytes as f64 <= 1.1 * LEN as f64, "{}", seen.bytes);
    let fsck = store.mountctl(&["fsck"]);
    assert_eq!(fsck.code, Some(0), "{}", fsck.stdout_text());
}

/// Six one-version products of 1 MiB each: at 512 KiB/s per connection a
/// sync takes a few seconds, long enough to be killed or watched.
fn six_versions() -> Vec<Spec> {
    (1..=6).map(|p| spec(p, 1, 1 << 20)).collect()
}

/// A `mountctl sync` run as a child process.
fn spawn_sync(store: &TestStore, url: &str, extra: &[&str]) -> std::process::Child {
    Command::new(mountctl_bin())
        .arg("--store")
        .arg(&store.root)
        .args(sync_args(url, extra))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning mountctl sync")
}

#[test]
fn sigkill_at_random_points_leaves_a_clean_fsck_and_a_rerun_completes() {
    let Some(m) = mirror(&six_versions()) else {
        return;
    };
    let proxy = Proxy::start(
        m.nginx.port,
        Rules {
            rate: 512 << 10,
            ..Rules::default()
        },
    );
    let store = TestStore::init(None);
    // Seeded kill points within the ~3 s a whole sync takes here.
    let mut x: u64 = 0x5eed_1234;
    let mut points = Vec::new();
    for _ in 0..5 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        points.push(50 + (x >> 33) % 2500);
    }
    let mut killed = 0;
    for ms in &points {
        let mut child = spawn_sync(&store, &proxy.url(), &[]);
        std::thread::sleep(Duration::from_millis(*ms));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let fsck = store.mountctl(&["fsck"]);
        assert_eq!(
            fsck.code,
            Some(0),
            "after a kill at {ms} ms: {}{}",
            fsck.stdout_text(),
            fsck.stderr_text()
        );
    }
    report(&format!(
        "sigkill: kill points {points:?} ms, {killed} run(s) killed mid-sync"
    ));
    assert!(killed >= 3, "only {killed} of the runs were still running");
    let last = sync(&store, &proxy.url(), &[]);
    assert_eq!(last.code, Some(0), "{}", last.stderr_text());
    assert_eq!(stored(&store.products_file("daily")), m.items);
    // Nothing was fetched twice in full: the resumed runs together moved
    // little more than the data.
    let data: u64 = 6 << 20;
    let bytes = proxy.seen.lock().unwrap().bytes;
    report(&format!(
        "sigkill: {bytes} bytes forwarded for {data} bytes of data"
    ));
    assert!(bytes as f64 <= 1.1 * data as f64, "{bytes}");
    let fsck = store.mountctl(&["fsck"]);
    assert_eq!(fsck.code, Some(0), "{}", fsck.stdout_text());
}

/// The number of versions the mount's products file of `daily` lists.
fn mounted_versions(mnt: &Path) -> usize {
    let v1 = mnt.join("daily/streams/v1");
    let Ok(rd) = std::fs::read_dir(&v1) else {
        return 0;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with(".json") && n != "index.json" {
            let Ok(bytes) = std::fs::read(e.path()) else {
                return 0;
            };
            let doc: Value = serde_json::from_slice(&bytes).unwrap();
            return doc["products"].as_object().map_or(0, |ps| {
                ps.values()
                    .map(|p| p["versions"].as_object().map_or(0, |v| v.len()))
                    .sum()
            });
        }
    }
    0
}

#[test]
fn a_mounted_store_shows_versions_as_they_are_committed() {
    if !can_mount() {
        return;
    }
    let Some(m) = mirror(&six_versions()) else {
        return;
    };
    // One download at a time, 1 MiB/s: a version completes about every
    // second, and the sync commits at most once a second.
    let proxy = Proxy::start(
        m.nginx.port,
        Rules {
            rate: 1 << 20,
            ..Rules::default()
        },
    );
    let store = TestStore::init(None);
    let mount = Mount::new(&store.root);
    let mut child = spawn_sync(&store, &proxy.url(), &["-j", "1"]);
    let mut seen = BTreeSet::new();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        seen.insert(mounted_versions(mount.path()));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    // After the command returns the mount has every version within 1 s.
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut n = mounted_versions(mount.path());
    while n != 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        n = mounted_versions(mount.path());
    }
    assert_eq!(n, 6, "the mount lists {n} versions 1 s after the sync");
    report(&format!(
        "mount: version counts seen during the sync: {seen:?}"
    ));
    assert!(
        seen.iter().any(|&n| n > 0 && n < 6),
        "no partial version list seen during the sync: {seen:?}"
    );
    // What the mount serves is what upstream has.
    for (path, sha) in &m.items {
        let bytes = std::fs::read(mount.path().join("daily").join(path)).unwrap();
        assert_eq!(&sha256_hex(&bytes), sha, "{path}");
    }
    assert!(is_mounted(mount.path()));
    mount.unmount();
}

#[test]
fn a_redirect_to_a_non_http_scheme_is_refused() {
    let Some(m) = mirror(&[spec(1, 1, 4096)]) else {
        return;
    };
    for to in ["ftp://127.0.0.1/p1/20260101/disk.img", "file:///etc/passwd"] {
        let proxy = Proxy::start(
            m.nginx.port,
            Rules {
                redirect: Some(("/p1/20260101/disk.img".into(), to.into())),
                ..Rules::default()
            },
        );
        let store = TestStore::init(None);
        let before = generation(&store);
        let out = sync(&store, &proxy.url(), &[]);
        assert_eq!(out.code, Some(1), "{to}: {}", out.stdout_text());
        let err = out.stderr_text();
        assert!(
            err.contains("redirect to a non-http(s) URL refused") && err.contains(to),
            "{to}: {err}"
        );
        assert!(err.contains("p1/20260101/disk.img"), "{to}: {err}");
        assert_eq!(generation(&store), before);
        assert!(store.blobs().is_empty());
    }
}

#[test]
fn md5_only_and_sha512_only_items_are_verified_and_stored_under_their_sha256() {
    let mut a = spec(1, 1, 300_000);
    a.sums = Sums::Md5Only;
    let mut b = spec(2, 1, 200_000);
    b.sums = Sums::Sha512Only;
    let Some(m) = mirror(&[a, b]) else {
        return;
    };
    let store = TestStore::init(None);
    let out = sync(&store, &m.nginx.url("/"), &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr_text());
    assert_eq!(stored(&store.products_file("daily")), m.items);
    let blobs: BTreeSet<String> = store.blobs().into_iter().collect();
    for (path, sha) in &m.items {
        assert!(blobs.contains(sha), "{path}");
    }
    // The checksum upstream declared stays beside the sha256.
    let flat = flat_items(&store.products_file("daily"));
    assert!(flat.iter().any(|f| f.contains_key("md5")));
    assert!(flat.iter().any(|f| f.contains_key("sha512")));
    let fsck = store.mountctl(&["fsck"]);
    assert_eq!(fsck.code, Some(0), "{}", fsck.stdout_text());

    // A wrong md5 is refused: nothing published, nothing in the pool.
    let mut c = spec(3, 1, 100_000);
    c.sums = Sums::WrongMd5;
    let Some(m) = mirror(&[c]) else {
        return;
    };
    let store = TestStore::init(None);
    let before = generation(&store);
    let out = sync(&store, &m.nginx.url("/"), &[]);
    assert_eq!(out.code, Some(1), "{}", out.stdout_text());
    let err = out.stderr_text();
    assert!(
        err.contains("md5 mismatch") && err.contains("p3/20260101/disk.img"),
        "{err}"
    );
    assert_eq!(generation(&store), before);
    assert!(store.blobs().is_empty());
}

#[test]
fn a_store_without_room_for_the_downloads_is_refused_before_any_download() {
    if !can_mount() {
        return;
    }
    let Some(m) = mirror(&[spec(1, 1, 6 << 20), spec(2, 1, 6 << 20)]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let fs = tmp.path().join("fs");
    std::fs::create_dir(&fs).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&fs)
        .status()
        .unwrap();
    assert!(st.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(fs.clone());
    let root = fs.join("store");
    let run = |args: &[&str]| {
        let mut all = vec!["--store", root.to_str().unwrap()];
        all.extend_from_slice(args);
        streamfs_tests::run_in(tmp.path(), &mountctl_bin(), &all)
    };
    assert_eq!(run(&["init"]).code, Some(0));
    let url = m.nginx.url("/");
    let a = sync_args(&url, &[]);
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, Some(1), "{}", out.stdout_text());
    let err = out.stderr_text();
    assert!(
        err.contains("not enough space")
            && err.contains(&format!("need {} bytes", 12 << 20))
            && err.contains("bytes are free"),
        "{err}"
    );
    let partial = root.join("tmp/partial");
    assert!(
        !partial.exists() || std::fs::read_dir(&partial).unwrap().next().is_none(),
        "a download started"
    );
    // With a filter that fits, the sync goes through.
    let mut a = sync_args(&url, &[]);
    a.push("product_name=com.example:p1".into());
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, Some(0), "{}", out.stderr_text());
}

/// Two syncs of one store at once (downloads run outside the writer lock)
/// never share a partial download: the second waits for the first's claim
/// on each blob and then takes it from the pool. Both succeed, nothing is
/// fetched twice, and `fsck` is clean.
#[test]
fn two_syncs_at_once_download_each_blob_once() {
    let Some(m) = mirror(&six_versions()) else {
        return;
    };
    let proxy = Proxy::start(
        m.nginx.port,
        Rules {
            rate: 1 << 20,
            ..Rules::default()
        },
    );
    let store = TestStore::init(None);
    let mut a = spawn_sync(&store, &proxy.url(), &[]);
    let mut b = spawn_sync(&store, &proxy.url(), &[]);
    assert!(a.wait().unwrap().success(), "the first sync failed");
    assert!(b.wait().unwrap().success(), "the second sync failed");
    assert_eq!(stored(&store.products_file("daily")), m.items);
    let data: u64 = 6 << 20;
    let bytes = proxy.seen.lock().unwrap().bytes;
    report(&format!(
        "two syncs: {bytes} bytes forwarded for {data} bytes of data"
    ));
    assert!(bytes as f64 <= 1.1 * data as f64, "{bytes}");
    let fsck = store.mountctl(&["fsck"]);
    assert_eq!(fsck.code, Some(0), "{}", fsck.stdout_text());
}
