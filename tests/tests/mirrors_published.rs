//! Metalinks published with the stream: after a crawl the mount presents
//! `streams/v1/<file>.metalink` beside each document, nginx serving the
//! mount hands them out as `application/metalink+xml`, aria2c follows one,
//! and every commit re-renders them for its new documents. The mirror here
//! also has an rsync URL, so the crawl checks its items with one
//! `rsync --list-only` instead of a HEAD per item.

use std::path::Path;
use std::time::{Duration, Instant};

use streamfs_tests::mirrors::{Scenario, aria2, fill, public_dir, urls, wait_current};
use streamfs_tests::mount::Mount;
use streamfs_tests::serve::{Nginx, Rsyncd, sha256_hex};

const PRODUCTS: &str = "streams/v1/com.ubuntu.maas:candidate:v3:download.json";

/// Waits until `path` in the mount satisfies `ok` (the mount shows a new
/// generation within a second of its commit; 20 s allows for a loaded
/// machine).
fn wait_for(path: &Path, what: &str, ok: impl Fn(Option<String>) -> bool) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).ok();
        if ok(text.clone()) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}: {}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The metalink without its publication date (the one line that differs
/// between two renderings of the same listing).
fn dated_aside(text: &str) -> String {
    text.lines()
        .map(|l| match l.find(" pubdate=\"") {
            Some(i) => {
                let rest = &l[i + 10..];
                format!("{}{}", &l[..i], &rest[rest.find('"').unwrap() + 1..])
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_mount_publishes_metalinks_from_the_last_crawl_of_an_rsync_mirror() {
    let Some(Scenario {
        store: s,
        b2,
        aria2c,
    }) = Scenario::start()
    else {
        return;
    };
    let serve = Mount::with_options(&s.root, &["ro", "allow_other"]);
    let v1 = serve.path().join("candidate/streams/v1");
    let index_ml = v1.join("index.json.metalink");
    let products_ml = v1.join(format!("{}.metalink", PRODUCTS.rsplit('/').next().unwrap()));
    // No mirror, no metalink.
    assert!(!index_ml.exists(), "a metalink without any mirror");

    let web = tempfile::tempdir().unwrap();
    let cur = public_dir(web.path(), "cur");
    fill(serve.path(), &cur, "candidate");
    let Some(mirror) = Nginx::start(&cur) else {
        return;
    };
    let Some(rsyncd) = Rsyncd::start(&cur) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/", mirror.port);
    s.ok(&[
        "mirrors",
        "add",
        "cur",
        &url,
        "--rsync",
        &rsyncd.url(),
        "--location",
        "US",
    ]);
    let out = s
        .ok(&["mirrors", "crawl", "--items", "all", "--timeout", "10"])
        .stdout_text();
    assert!(out.contains("cur: candidate=current"), "{out}");
    // The items were checked by one rsync listing of the mirror's stream.
    let log = rsyncd.log();
    assert!(
        log.contains(&format!("{}/candidate", rsyncd.module)),
        "no rsync listing of the stream: {log}"
    );

    // The crawl's commit reaches the mount: a metalink beside each
    // document, listing the mirror, equal to what `mountctl metalink` says.
    let ml = wait_for(&index_ml, "no index metalink in the mount", |t| {
        t.is_some_and(|t| t.contains(&url))
    })
    .unwrap();
    assert_eq!(
        urls(&ml),
        vec![format!("{url}candidate/streams/v1/index.json")]
    );
    let printed = s
        .ok(&["metalink", "--stream", "candidate", "streams/v1/index.json"])
        .stdout_text();
    assert_eq!(dated_aside(&ml), dated_aside(&printed));
    for doc in std::fs::read_dir(&v1).unwrap() {
        let name = doc.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".metalink") {
            assert!(
                v1.join(format!("{name}.metalink")).is_file(),
                "no metalink for {name}"
            );
        }
    }

    // nginx serving the mount serves it with its media type; aria2c
    // follows the remote metalink to the mirror and verifies the file.
    let Some(origin) = Nginx::start(serve.path()) else {
        return;
    };
    let r = origin.get("/candidate/streams/v1/index.json.metalink");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/metalink+xml"));
    let tmp = tempfile::tempdir().unwrap();
    let (code, log) = aria2(
        &aria2c,
        &[&origin.url("/candidate/streams/v1/index.json.metalink")],
        &tmp.path().join("dl"),
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        std::fs::read(tmp.path().join("dl/index.json")).unwrap(),
        std::fs::read(v1.join("index.json")).unwrap()
    );

    // A commit re-renders them for its new documents: the products file's
    // metalink carries the new hashes and keeps the mirror, whose copy is
    // now the alternate, listed until the next crawl.
    s.ok(&["insert", &b2.display().to_string(), "candidate"]);
    wait_current(serve.path(), &s.root, "candidate");
    let products = std::fs::read(serve.path().join("candidate").join(PRODUCTS)).unwrap();
    let ml = std::fs::read_to_string(&products_ml).unwrap();
    assert!(ml.contains(&sha256_hex(&products)), "{ml}");
    assert!(ml.contains("<mm0:alternates>"), "{ml}");
    assert_eq!(
        urls(&ml),
        vec![format!("{url}candidate/{PRODUCTS}")],
        "{ml}"
    );

    // A disabled mirror leaves the published metalinks at once; with no
    // mirror left to list, none is published.
    s.ok(&["mirrors", "disable", "cur"]);
    wait_for(&index_ml, "the metalink outlived its last mirror", |t| {
        t.is_none()
    });
    s.ok(&["fsck"]);
    drop(origin);
    drop(serve);
}
