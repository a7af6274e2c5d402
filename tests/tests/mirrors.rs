//! Mirrors and metalinks with the real clients: three mirrors served by
//! nginx on loopback ports and filled with rsync from the read-only mount
//! (one current, one a generation behind, one down), crawled by
//! `mountctl mirrors crawl`; the metalinks `mountctl metalink` prints are
//! read by aria2c and by ostree.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use streamfs_tests::mirrors::{
    Scenario, aria2, fill, public_dir, set_validity, sh, urls, wait_current,
};
use streamfs_tests::mount::Mount;
use streamfs_tests::serve::{Nginx, free_port, installed, sha256_hex};
use streamfs_tests::store::TestStore;

const PRODUCTS: &str = "streams/v1/com.ubuntu.maas:candidate:v3:download.json";

/// Asserts that aria2c parses the metalink `text` (`-S` lists its files
/// without downloading); `what` names the case in the failure.
fn parses_in_aria2(aria2c: &Path, text: &str, ext: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(format!("guard.{ext}"));
    std::fs::write(&f, text).unwrap();
    let out = Command::new(aria2c)
        .args(["--no-conf", "-S", "-M"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aria2c does not parse the metalink of {what}: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn crawl_marks_mirrors_and_aria2_downloads_through_the_metalink() {
    let Some(Scenario {
        store: s,
        b2,
        aria2c,
    }) = Scenario::start()
    else {
        return;
    };
    let serve = Mount::with_options(&s.root, &["ro"]);
    let web = tempfile::tempdir().unwrap();
    let cur = public_dir(web.path(), "cur");
    let old = public_dir(web.path(), "old");
    fill(serve.path(), &cur, "candidate");
    fill(serve.path(), &old, "candidate");
    let Some(n_cur) = Nginx::start(&cur) else {
        return;
    };
    let Some(n_old) = Nginx::start(&old) else {
        return;
    };
    let down = free_port();
    let url = |p: u16| format!("http://127.0.0.1:{p}/");
    s.ok(&[
        "mirrors",
        "add",
        "cur",
        &url(n_cur.port),
        "--location",
        "US",
        "--preference",
        "100",
    ]);
    s.ok(&[
        "mirrors",
        "add",
        "old",
        &url(n_old.port),
        "--location",
        "DE",
        "--preference",
        "90",
    ]);
    s.ok(&["mirrors", "add", "down", &url(down), "--preference", "80"]);
    s.ok(&[
        "mirrors",
        "add",
        "internal",
        &url(n_cur.port),
        "--preference",
        "100",
        "--private",
    ]);

    // Generation 1 everywhere: every live mirror is current.
    let out = s
        .ok(&["mirrors", "crawl", "-j", "4", "--timeout", "5"])
        .stdout_text();
    assert!(out.contains("cur: candidate=current"), "{out}");
    assert!(out.contains("old: candidate=current"), "{out}");
    assert!(out.contains("down: failed"), "{out}");

    // Generation 2 reaches only `cur`: `old` holds the previous index,
    // an alternate while its validity lasts.
    s.ok(&["insert", &b2.display().to_string(), "candidate"]);
    wait_current(serve.path(), &s.root, "candidate");
    fill(serve.path(), &cur, "candidate");
    let out = s.ok(&["mirrors", "crawl", "--items", "all"]).stdout_text();
    assert!(out.contains("cur: candidate=current"), "{out}");
    assert!(out.contains("old: candidate=alternate"), "{out}");
    assert!(out.contains("down: failed"), "{out}");

    // The products file changed (the index may not have: its `updated`
    // has one-second resolution), so its metalink lists the earlier one.
    let ml = s
        .ok(&["metalink", "--stream", "candidate", PRODUCTS])
        .stdout_text();
    let in_mirror = |p: u16, f: &str| format!("{}candidate/{f}", url(p));
    assert_eq!(
        urls(&ml),
        vec![
            in_mirror(n_cur.port, PRODUCTS),
            in_mirror(n_old.port, PRODUCTS)
        ],
        "{ml}"
    );
    assert!(ml.contains("<mm0:alternates>"), "{ml}");
    assert!(!ml.contains("private"), "{ml}");
    let want_cur = in_mirror(n_cur.port, "streams/v1/index.json");

    // An item of generation 2 only on `cur`.
    let products = std::fs::read_to_string(serve.path().join("candidate").join(PRODUCTS)).unwrap();
    let item = products
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"path\": \""))
        .map(|p| p.trim_end_matches(['"', ',']).to_string())
        .find(|p| p.contains("20250102"))
        .expect("an item of 20250102");
    let ml = s
        .ok(&["metalink", "--stream", "candidate", &item])
        .stdout_text();
    assert_eq!(
        urls(&ml),
        vec![format!("{}candidate/{item}", url(n_cur.port))],
        "{ml}"
    );

    // aria2c downloads the item through the metalink and checks it.
    let tmp = tempfile::tempdir().unwrap();
    let mlf = tmp.path().join("item.metalink");
    std::fs::write(&mlf, &ml).unwrap();
    let dl = tmp.path().join("dl");
    let (code, log) = aria2(&aria2c, &["-M", &mlf.display().to_string()], &dl);
    assert_eq!(code, 0, "{log}");
    let name = Path::new(&item).file_name().unwrap();
    let got = std::fs::read(dl.join(name)).unwrap();
    let want = std::fs::read(serve.path().join("candidate").join(&item)).unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&want));
    // A tampered hash: aria2c's checksum exit code (32).
    let sha = sha256_hex(&want);
    let bad = ml.replace(&sha, &"0".repeat(64));
    let ml512 = bad
        .lines()
        .map(|l| {
            if l.contains("type=\"sha512\"") {
                format!("        <hash type=\"sha512\">{}</hash>", "0".repeat(128))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&mlf, ml512).unwrap();
    let (code, log) = aria2(
        &aria2c,
        &["-M", &mlf.display().to_string()],
        &tmp.path().join("bad"),
    );
    assert_eq!(code, 32, "{log}");

    // A remote metalink (served by nginx beside the index) is followed.
    let ml = s
        .ok(&["metalink", "--stream", "candidate", "streams/v1/index.json"])
        .stdout_text();
    std::fs::write(cur.join("candidate/streams/v1/index.json.metalink"), &ml).unwrap();
    let r = n_cur.get("/candidate/streams/v1/index.json.metalink");
    assert_eq!(r.header("content-type"), Some("application/metalink+xml"));
    let remote = format!(
        "{}candidate/streams/v1/index.json.metalink",
        url(n_cur.port)
    );
    let (code, log) = aria2(&aria2c, &[&remote], &tmp.path().join("remote"));
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        std::fs::read(tmp.path().join("remote/index.json")).unwrap(),
        std::fs::read(serve.path().join("candidate/streams/v1/index.json")).unwrap()
    );

    // Every metalink of this configuration (a private mirror left out,
    // alternates, an item) parses in aria2c, in both formats.
    for f in ["streams/v1/index.json", PRODUCTS, item.as_str()] {
        for (format, ext) in [("3", "metalink"), ("4", "meta4")] {
            let ml = s
                .ok(&["metalink", "--stream", "candidate", "--format", format, f])
                .stdout_text();
            parses_in_aria2(&aria2c, &ml, ext, &format!("{f} (format {format})"));
        }
    }

    // Past its validity the alternate is stale and leaves the metalink; a
    // third failed crawl disables `down`, and `list` says so.
    set_validity(&s, "1s");
    std::thread::sleep(Duration::from_millis(2100));
    let out = s.ok(&["mirrors", "crawl", "--items", "none"]).stdout_text();
    assert!(out.contains("old: candidate=stale"), "{out}");
    let ml = s
        .ok(&["metalink", "--stream", "candidate", "streams/v1/index.json"])
        .stdout_text();
    assert_eq!(urls(&ml), vec![want_cur.clone()], "{ml}");
    let list = s.ok(&["mirrors", "list"]).stdout_text();
    let line = |n: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{n}\t")))
            .unwrap()
            .to_string()
    };
    assert!(
        line("down").contains("disabled by crawl: 3 crawls failed"),
        "{list}"
    );
    assert!(
        line("cur").contains("enabled") && line("cur").contains("candidate=current"),
        "{list}"
    );
    assert!(line("old").contains("candidate=stale"), "{list}");
    // The current copy stays listed however long nothing new is pushed.
    set_validity(&s, "1s");
    s.ok(&["mirrors", "crawl"]);
    let ml = s
        .ok(&["metalink", "--stream", "candidate", "streams/v1/index.json"])
        .stdout_text();
    assert_eq!(urls(&ml), vec![want_cur], "{ml}");
    // RFC 5854 for the same file.
    let ml4 = s
        .ok(&[
            "metalink",
            "--stream",
            "candidate",
            "--format",
            "4",
            "streams/v1/index.json",
        ])
        .stdout_text();
    std::fs::write(tmp.path().join("i.meta4"), &ml4).unwrap();
    let (code, log) = aria2(
        &aria2c,
        &["-M", &tmp.path().join("i.meta4").display().to_string()],
        &tmp.path().join("v4"),
    );
    assert_eq!(code, 0, "{log}\n{ml4}");
    drop(serve);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let s = TestStore::init(None);
    s.ok(&["mirrors", "add", "a", "http://127.0.0.1:9/"]);
    let before = std::fs::read(s.root.join("mirrors.toml")).unwrap();
    for (args, code, what) in [
        (
            vec!["mirrors", "add", "b", "ftp://example.org/"],
            2,
            "ftp://example.org/",
        ),
        (
            vec!["mirrors", "add", "a", "http://127.0.0.1:9/x"],
            2,
            "exists already",
        ),
        (
            vec!["mirrors", "remove", "nope"],
            2,
            "no mirror named 'nope'",
        ),
        (
            vec!["metalink", "--stream", "daily", "streams/v1/nope.json"],
            1,
            "nope.json",
        ),
        (
            vec!["metalink", "--stream", "daily", "../store.toml"],
            2,
            "../store.toml",
        ),
    ] {
        let out = s.mountctl(&args);
        assert_eq!(out.code, Some(code), "{args:?}: {}", out.stderr_text());
        assert!(
            out.stderr_text().contains(what),
            "{args:?}: {}",
            out.stderr_text()
        );
        assert_eq!(std::fs::read(s.root.join("mirrors.toml")).unwrap(), before);
    }
    std::fs::write(
        s.root.join("mirrors.toml"),
        "[[mirror]]\nname = \"a\"\nurl = 7\n",
    )
    .unwrap();
    let bad = std::fs::read(s.root.join("mirrors.toml")).unwrap();
    for args in [
        vec!["mirrors", "list"],
        vec!["mirrors", "crawl"],
        vec!["mirrors", "add", "c", "http://h/"],
    ] {
        let out = s.mountctl(&args);
        assert_eq!(out.code, Some(1), "{args:?}");
        assert!(
            out.stderr_text().contains("mirrors.toml"),
            "{}",
            out.stderr_text()
        );
        assert_eq!(std::fs::read(s.root.join("mirrors.toml")).unwrap(), bad);
    }
    assert!(!s.root.join("mirrors-state.json").exists());
}

/// `ostree …`, asserting success; its stdout.
fn ostree(ostree: &Path, args: &[&str]) -> String {
    let out = Command::new(ostree).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh client repository pulling `ref` through the metalink at `url`.
fn ostree_pull(bin: &Path, dir: &Path, url: &str, r#ref: &str) -> std::process::Output {
    let repo = dir.display().to_string();
    ostree(bin, &["init", "--mode=archive", &format!("--repo={repo}")]);
    ostree(
        bin,
        &[
            "remote",
            "add",
            "--no-gpg-verify",
            &format!("--repo={repo}"),
            "origin",
            &format!("metalink={url}"),
        ],
    );
    Command::new(bin)
        .args(["pull", &format!("--repo={repo}"), "origin", r#ref])
        .output()
        .unwrap()
}

/// Pulls `atomic/x86_64` into a fresh repository `dir` through the metalink
/// at `url`, asserting success; the pulled `/usr/bin/hello`.
fn pulled_hello(bin: &Path, dir: &Path, url: &str) -> String {
    let out = ostree_pull(bin, dir, url, "atomic/x86_64");
    assert!(
        out.status.success(),
        "ostree pull through {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let repo = format!("--repo={}", dir.display());
    ostree(bin, &["cat", &repo, "atomic/x86_64", "/usr/bin/hello"])
}

#[test]
fn ostree_pulls_through_the_summary_metalink_and_falls_back_past_a_stale_mirror() {
    let Some(bin) = installed("ostree", "ostree") else {
        return;
    };
    if installed("rsync", "rsync").is_none() {
        return;
    }
    let s = TestStore::init(None);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = t.join("repo");
    let r = format!("--repo={}", repo.display());
    ostree(&bin, &["init", "--mode=archive", &r]);
    let tree = t.join("tree");
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::write(tree.join("usr/bin/hello"), "generation one\n").unwrap();
    let commit = |subject: &str| {
        ostree(
            &bin,
            &[
                "commit",
                &r,
                "--branch=atomic/x86_64",
                &format!("--subject={subject}"),
                &tree.display().to_string(),
            ],
        );
        ostree(&bin, &["summary", "-u", &r]);
    };
    commit("one");
    // A copy of the repository at its first commit: what a stale mirror holds.
    let web = tempfile::tempdir().unwrap();
    let old = public_dir(web.path(), "old");
    sh(&format!(
        "rsync -a '{}/' '{}/atomic/'",
        repo.display(),
        old.display()
    ));
    std::fs::write(tree.join("usr/bin/hello"), "generation two\n").unwrap();
    commit("two");
    let (m1, m2) = (public_dir(web.path(), "m1"), public_dir(web.path(), "m2"));
    for m in [&m1, &m2] {
        sh(&format!(
            "rsync -a '{}/' '{}/atomic/' && chmod -R a+rX '{}'",
            repo.display(),
            m.display(),
            web.path().display()
        ));
    }
    let Some(n1) = Nginx::start(&m1) else { return };
    let Some(n2) = Nginx::start(&m2) else { return };
    std::fs::write(
        s.root.join("mirrors.toml"),
        format!(
            "[[tree]]\nname = \"atomic\"\ndir = \"{}\"\nfiles = [\"summary\"]\n",
            repo.display()
        ),
    )
    .unwrap();
    s.ok(&[
        "mirrors",
        "add",
        "m1",
        &n1.url("/"),
        "--location",
        "FR",
        "--preference",
        "100",
    ]);
    s.ok(&[
        "mirrors",
        "add",
        "m2",
        &n2.url("/"),
        "--location",
        "DE",
        "--preference",
        "90",
    ]);
    let out = s.ok(&["mirrors", "crawl"]).stdout_text();
    assert!(
        out.contains("m1: atomic=current") && out.contains("m2: atomic=current"),
        "{out}"
    );
    let ml = s
        .ok(&["metalink", "--root", &repo.display().to_string(), "summary"])
        .stdout_text();
    assert_eq!(
        urls(&ml),
        vec![n1.url("/atomic/summary"), n2.url("/atomic/summary")],
        "{ml}"
    );
    // The metalink is served by the first mirror; clients fetch it there.
    std::fs::write(m1.join("summary.metalink"), &ml).unwrap();
    let mlurl = n1.url("/summary.metalink");

    assert_eq!(
        pulled_hello(&bin, &t.join("c1"), &mlurl),
        "generation two\n"
    );

    // The guard: with a private mirror (left out) and one without a
    // location (an empty attribute, which ostree requires), the metalink
    // still parses in ostree (a pull through it succeeds) and in aria2c.
    s.ok(&["mirrors", "add", "hidden", &n2.url("/"), "--private"]);
    s.ok(&[
        "mirrors",
        "add",
        "nowhere",
        &n2.url("/"),
        "--preference",
        "50",
    ]);
    let out = s.ok(&["mirrors", "crawl"]).stdout_text();
    assert!(
        out.contains("hidden: atomic=current") && out.contains("nowhere: atomic=current"),
        "{out}"
    );
    let guard = s
        .ok(&["metalink", "--root", &repo.display().to_string(), "summary"])
        .stdout_text();
    assert_eq!(
        urls(&guard),
        vec![
            n1.url("/atomic/summary"),
            n2.url("/atomic/summary"),
            n2.url("/atomic/summary")
        ],
        "{guard}"
    );
    assert!(guard.contains("location=\"\""), "{guard}");
    std::fs::write(m1.join("guard.metalink"), &guard).unwrap();
    assert_eq!(
        pulled_hello(&bin, &t.join("cg"), &n1.url("/guard.metalink")),
        "generation two\n",
        "{guard}"
    );
    if let Some(aria2c) = installed("aria2c", "aria2") {
        parses_in_aria2(&aria2c, &guard, "metalink", "the summary");
    }

    // m1 falls behind after the crawl: ostree rejects its summary (hash)
    // and takes m2's.
    sh(&format!(
        "rsync -a --checksum --delete '{}/atomic/' '{}/atomic/' && chmod -R a+rX '{}'",
        old.display(),
        m1.display(),
        m1.display()
    ));
    assert_eq!(
        pulled_hello(&bin, &t.join("c2"), &mlurl),
        "generation two\n"
    );

    // Both stale: the pull fails.
    sh(&format!(
        "rsync -a --checksum --delete '{}/atomic/' '{}/atomic/' && chmod -R a+rX '{}'",
        old.display(),
        m2.display(),
        m2.display()
    ));
    let out = ostree_pull(&bin, &t.join("c3"), &mlurl, "atomic/x86_64");
    assert!(!out.status.success(), "pulled from stale mirrors");

    // A crawl now finds both stale and lists neither.
    let out = s.ok(&["mirrors", "crawl"]).stdout_text();
    assert!(
        out.contains("m1: atomic=stale") && out.contains("m2: atomic=stale"),
        "{out}"
    );
    let ml = s
        .ok(&["metalink", "--root", &repo.display().to_string(), "summary"])
        .stdout_text();
    assert!(urls(&ml).is_empty(), "{ml}");
}
