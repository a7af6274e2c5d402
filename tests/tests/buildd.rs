//! The build service's behaviour suite, run on SQLite (the default, a file
//! in the store) and on a real PostgreSQL cluster the test starts: submit
//! and watch with `curl -N`, the artifacts in the store, a worker killed
//! with SIGKILL mid-build, a build losing its worker N times, cancel
//! reaching the builder's process group, per-arch routing, a server restart
//! mid-queue, a server killed in an artifact commit, listing pages, bad
//! tokens, bodies and parameters, webhooks surviving a server crash, email
//! to an SMTP sink.
//! Workers run `mountctl build --builder fake` except where a test needs a
//! slow, failing, large or counted build (the test builder, named there).
//! One build is real: the builtin builder on the Debian root that
//! `build_real.rs` uses (cached under ~/.cache/streamfs by its inputs),
//! submitted with its config, its artifacts committed into the store.

/// The source image of the fake builds (the fake builder does not read it).
const SOURCE: &str = "/srv/images/noble-server-cloudimg.squashfs";

use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use streamfs_tests::buildd::{Builder, Postgres, Service, alive, curl, wait_build};
use streamfs_tests::store::flat_items;

/// Whether the stream `candidate` of the service's store lists `version`.
fn has_version(s: &Service, version: &str) -> bool {
    let v1 = s.store.root.join("meta/current/candidate/streams/v1");
    if !v1.join("index.json").is_file() {
        return false;
    }
    flat_items(&s.store.products_file("candidate"))
        .iter()
        .any(|i| i.get("version_name").map(String::as_str) == Some(version))
}

fn state_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |b| b["state"] == s
}

fn token(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .expect("token")
        .trim()
        .to_string()
}

/// Submit, follow the events with `curl -N` until the build ends, and find
/// its version in the stream.
fn submit_and_watch(s: &Service) {
    let server = s.serve();
    let _w = s.worker(&server, "amd64", "w-amd64");
    let id = s.submit(&server, "amd64", "20250201", SOURCE);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-N", "--max-time", "60", "-H"])
        .arg(format!("Authorization: Bearer {}", token(&s.submit_token)))
        .arg(format!("{}/api/v1/builds/{id}/events", server.url()))
        .output()
        .expect("curl -N");
    let text = String::from_utf8_lossy(&out.stdout);
    let percents: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|d| d["percent"].as_i64())
        .collect();
    assert!(percents.len() >= 3, "too few progress events: {text}");
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "progress not rising: {percents:?}"
    );
    // `mountctl build`'s stages, each shown, and the builder's own log.
    for stage in ["builder", "publish", "metadata"] {
        assert!(
            text.contains(&format!(r#""stage":"{stage}""#)),
            "no progress of stage {stage}: {text}"
        );
    }
    assert_eq!(percents.last(), Some(&100), "{text}");
    assert!(
        text.contains("event: log") && text.contains("stage metadata done in"),
        "no log lines: {text}"
    );
    assert!(text.contains("fake-builder"), "no builder log: {text}");
    let last_state = text
        .lines()
        .rfind(|l| l.starts_with("data: {") && l.contains("\"state\""))
        .unwrap_or_default();
    assert!(
        last_state.contains("succeeded"),
        "events did not end succeeded: {text}"
    );
    let b = wait_build(s, &server, id, 10, "succeeded", state_is("succeeded"));
    assert_eq!(b["percent"], 100);
    assert!(
        b["artifacts"]["versions"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{b}"
    );
    assert!(
        has_version(s, "20250201"),
        "version 20250201 not in the stream"
    );
    // nginx serving a read-only mount of the store serves the new items,
    // and sstream-query lists the version.
    served_by_nginx(s, "20250201");
    // The log endpoint and `mountctl builds logs` agree.
    let logs = s.builds(&server, &["logs", &id.to_string()]);
    assert_eq!(logs.code, Some(0));
    assert!(
        logs.stdout_text().contains("stage builder started"),
        "{}",
        logs.stdout_text()
    );
    // Resuming after the first event skips it.
    let resumed = std::process::Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--max-time",
            "20",
            "-H",
            "Last-Event-ID: 1",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {}", token(&s.submit_token)))
        .arg(format!("{}/api/v1/builds/{id}/events", server.url()))
        .output()
        .expect("curl -N");
    let resumed = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        !resumed.contains("id: 1\n") && resumed.contains("succeeded"),
        "{resumed}"
    );
}

/// A read-only mount of the service's store served by nginx: the items of
/// `version` are there with their sha256 and `sstream-query` lists it.
fn served_by_nginx(s: &Service, version: &str) {
    use streamfs_tests::mount::{Mount, can_mount};
    use streamfs_tests::serve::{Nginx, sha256_hex};
    let Some(venv) = streamfs_tests::sstream_venv() else {
        return;
    };
    if !can_mount() {
        return;
    }
    let mount = Mount::with_options(&s.store.root, &["ro", "allow_other"]);
    let Some(nginx) = Nginx::start(mount.path()) else {
        return;
    };
    let items: Vec<_> = flat_items(&s.store.products_file("candidate"))
        .into_iter()
        .filter(|i| i.get("version_name").map(String::as_str) == Some(version))
        .collect();
    assert!(!items.is_empty());
    for i in &items {
        let r = nginx.get(&format!("/candidate/{}", i["path"]));
        assert_eq!(r.status, 200, "{}: {}", i["path"], nginx.error_log());
        assert_eq!(sha256_hex(&r.body), i["sha256"], "{}", i["path"]);
    }
    let dir = s.dir();
    let q = streamfs_tests::run_in(
        dir,
        &venv.join("bin/sstream-query"),
        &[
            &nginx.url("/candidate/streams/v1/index.json"),
            "-o",
            "%(version_name)s",
        ],
    );
    assert_eq!(q.code, Some(0), "sstream-query: {}", q.stderr_text());
    assert!(
        q.stdout_text().lines().any(|l| l == version),
        "sstream-query does not list {version}: {}",
        q.stdout_text()
    );
}

/// 401 without or with a wrong token or a worker token on the submit API;
/// 400 for malformed bodies; 413 for an oversized one.
fn bad_requests(s: &Service) {
    let server = s.serve();
    let url = format!("{}/api/v1/builds", server.url());
    let good = r#"{"arch":"amd64","release":"noble","source":"ok","stream":"candidate"}"#;
    assert_eq!(curl(None, "POST", &url, Some(good)).0, 401);
    assert_eq!(curl(Some("not-a-token"), "POST", &url, Some(good)).0, 401);
    assert_eq!(
        curl(Some(&token(&s.worker_token)), "POST", &url, Some(good)).0,
        401
    );
    assert_eq!(
        curl(
            Some(&token(&s.submit_token)),
            "POST",
            &format!("{}/api/worker/claim", server.url()),
            Some("{}")
        )
        .0,
        401
    );
    let t = token(&s.submit_token);
    for (body, what) in [
        ("{not json", "request body"),
        (r#"{"arch":"amd64"}"#, "missing field"),
        (
            r#"{"arch":"../x","release":"noble","source":"ok","stream":"candidate"}"#,
            "arch",
        ),
        (
            r#"{"arch":"amd64","release":"noble","source":"ok","stream":"nope"}"#,
            "no such stream",
        ),
        (
            r#"{"arch":"amd64","release":"noble","source":"ok","stream":"candidate","extra":1}"#,
            "unknown field",
        ),
    ] {
        let (code, text) = curl(Some(&t), "POST", &url, Some(body));
        assert_eq!(code, 400, "{body}: {text}");
        assert!(text.contains(what), "{body}: {text}");
    }
    let huge = format!(
        r#"{{"arch":"amd64","release":"noble","stream":"candidate","source":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    let f = s.dir().join("huge.json");
    std::fs::write(&f, huge).expect("write");
    let (code, _) = curl(Some(&t), "POST", &url, Some(&format!("@{}", f.display())));
    assert_eq!(code, 413);
    let (code, list) = curl(Some(&t), "GET", &url, None);
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&list).expect("json")["builds"],
        serde_json::json!([])
    );
    let (code, text) = curl(
        Some(&t),
        "GET",
        &format!("{}/api/openapi.json", server.url()),
        None,
    );
    assert_eq!(code, 200);
    let openapi: Value = serde_json::from_str(&text).expect("openapi");
    let listing = &openapi["paths"]["/api/v1/builds"]["get"];
    assert!(
        listing["parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "before")),
        "{listing}"
    );
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("before=0", "before"),
        ("before=-3", "before"),
        ("before=x", "before"),
        ("limit=5&before=1.5", "before"),
    ] {
        let (code, text) = curl(Some(&t), "GET", &format!("{url}?{query}"), None);
        assert_eq!(code, 400, "{query}: {text}");
        let msg = serde_json::from_str::<Value>(&text).expect("error JSON")["error"].clone();
        assert!(
            msg.as_str().is_some_and(|m| m.starts_with(param)),
            "{query}: {text}"
        );
    }
    paging(s, &server, &url);
}

/// Listing pages: 23 builds (two arches) read 5 at a time by the `next`
/// cursor, through the API and `mountctl builds list --all`, come out each
/// exactly once, newest first; a filtered listing pages within its arch.
fn paging(s: &Service, server: &streamfs_tests::buildd::Server, url: &str) {
    let t = token(&s.submit_token);
    let mut ids: Vec<(i64, &str)> = (0..23)
        .map(|i| {
            let arch = if i % 3 == 0 { "arm64" } else { "amd64" };
            let body = format!(
                r#"{{"arch":"{arch}","release":"noble","version":"202509{i:02}","source":"ok","stream":"candidate"}}"#
            );
            let (code, text) = curl(Some(&t), "POST", url, Some(&body));
            assert_eq!(code, 201, "{text}");
            let v: Value = serde_json::from_str(&text).expect("id JSON");
            (v["id"].as_i64().expect("id"), arch)
        })
        .collect();
    ids.reverse();
    let pages = |query: &str| {
        let (mut got, mut pages, mut before) = (Vec::new(), 0, None::<i64>);
        loop {
            let cursor = before.map(|b| format!("&before={b}")).unwrap_or_default();
            let (code, text) = curl(Some(&t), "GET", &format!("{url}?{query}{cursor}"), None);
            assert_eq!(code, 200, "{text}");
            let v: Value = serde_json::from_str(&text).expect("page JSON");
            let page = v["builds"].as_array().expect("builds");
            assert!(page.len() <= 5, "{query}: a page of {}", page.len());
            got.extend(page.iter().map(|b| b["id"].as_i64().expect("id")));
            pages += 1;
            match v["next"].as_i64() {
                Some(n) => before = Some(n),
                None => break (got, pages),
            }
        }
    };
    let (all, n) = pages("limit=5");
    assert_eq!(all, ids.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    assert_eq!(n, 5, "23 builds in pages of 5");
    let (arm, _) = pages("limit=5&arch=arm64");
    let want: Vec<i64> = ids
        .iter()
        .filter(|(_, a)| *a == "arm64")
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(arm, want);
    // The default page is 100: all 23, and no next page.
    let (code, text) = curl(Some(&t), "GET", url, None);
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&text).expect("list JSON");
    assert_eq!(v["builds"].as_array().map(Vec::len), Some(23));
    assert!(v["next"].is_null(), "{}", v["next"]);
    // The CLI: one page says how to go on; --all follows the cursor.
    let one = s.builds(server, &["list", "--limit", "5"]);
    assert_eq!(one.code, Some(0), "{}", one.stderr_text());
    assert_eq!(
        one.stdout_text().lines().count(),
        6,
        "{}",
        one.stdout_text()
    );
    assert!(
        one.stderr_text()
            .contains(&format!("--before {}", ids[4].0)),
        "{}",
        one.stderr_text()
    );
    let every = s.builds(server, &["list", "--limit", "5", "--all", "--json"]);
    assert_eq!(every.code, Some(0), "{}", every.stderr_text());
    let v: Value = serde_json::from_str(&every.stdout_text()).expect("list --json");
    let got: Vec<i64> = v["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .map(|b| b["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(got, all);
    let older = s.builds(
        server,
        &["list", "--before", &ids[20].0.to_string(), "--json"],
    );
    let v: Value = serde_json::from_str(&older.stdout_text()).expect("list --json");
    assert_eq!(v["builds"].as_array().map(Vec::len), Some(2));
    let bad = s.builds(server, &["list", "--limit", "5000"]);
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr_text().contains("limit"), "{}", bad.stderr_text());
}

/// A worker killed with SIGKILL mid-build: after its lease the build is
/// re-queued and another worker finishes it.
fn worker_killed(s: &Service) {
    let server = s.serve();
    // The test builder: slow enough to be killed mid-build.
    let mut a = s.worker_with(&server, "amd64", "doomed", Builder::Test);
    let id = s.submit(&server, "amd64", "20250202", "slow");
    wait_build(s, &server, id, 30, "running on doomed", |b| {
        b["state"] == "running" && b["worker"] == "doomed"
    });
    a.kill9();
    let _b = s.worker_with(&server, "amd64", "rescuer", Builder::Test);
    let b = wait_build(s, &server, id, 60, "succeeded", state_is("succeeded"));
    assert_eq!(b["worker"], "rescuer");
    assert_eq!(b["losses"], 1);
}

/// A build whose worker dies each time it runs it fails after
/// `--max-losses` times, with that reason.
fn lost_workers(s: &mut Service) {
    s.lease = 1.0;
    s.extra_args = vec!["--max-losses".into(), "2".into()];
    let server = s.serve();
    // The test builder: slow, so each worker dies mid-build.
    let id = s.submit(&server, "amd64", "20250204", "slow:5");
    for n in 1..=2 {
        let name = format!("doomed{n}");
        let mut w = s.worker_with(&server, "amd64", &name, Builder::Test);
        wait_build(s, &server, id, 30, "running on its worker", |b| {
            b["state"] == "running" && b["worker"] == name.as_str()
        });
        w.kill9();
    }
    let b = wait_build(s, &server, id, 30, "failed", state_is("failed"));
    assert_eq!(b["reason"], "lost its worker 2 times", "{b}");
    assert_eq!(b["losses"], 2, "{b}");
    assert!(!has_version(s, "20250204"));
    s.extra_args.clear();
}

/// Cancel reaches the worker: the builder's process group is killed and
/// nothing reaches the store.
fn cancel(s: &Service) {
    let server = s.serve();
    // The test builder: slow, and it leaves a child in its process group.
    let _w = s.worker_with(&server, "amd64", "w1", Builder::Test);
    let id = s.submit(&server, "amd64", "20250203", "slow:30");
    wait_build(s, &server, id, 30, "running", |b| {
        b["state"] == "running" && b["percent"].as_i64() > Some(0)
    });
    let child = s
        .builder_child("20250203")
        .expect("the builder recorded its child");
    assert!(alive(child));
    let out = s.builds(&server, &["cancel", &id.to_string()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr_text());
    wait_build(s, &server, id, 5, "canceled", state_is("canceled"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while alive(child) {
        assert!(
            std::time::Instant::now() < deadline,
            "the builder's child {child} survived the cancel"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !has_version(s, "20250203"),
        "a canceled build reached the store"
    );
    // A canceled build can be retried as a new one.
    let out = s.builds(&server, &["retry", &id.to_string()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr_text());
    let again: i64 = out.stdout_text().trim().parse().expect("new id");
    assert_ne!(again, id);
    let out = s.builds(&server, &["cancel", &again.to_string()]);
    assert_eq!(out.code, Some(0));
}

/// amd64 builds go only to the amd64 worker, arm64 ones only to arm64.
fn arch_routing(s: &Service) {
    let server = s.serve();
    let _a = s.worker(&server, "amd64", "r-amd64");
    let _b = s.worker(&server, "arm64", "r-arm64");
    let ids: Vec<(i64, &str)> = (0..6)
        .map(|i| {
            let arch = if i % 2 == 0 { "amd64" } else { "arm64" };
            (
                s.submit(&server, arch, &format!("2025030{i}"), SOURCE),
                arch,
            )
        })
        .collect();
    for (id, arch) in ids {
        let b = wait_build(s, &server, id, 60, "succeeded", state_is("succeeded"));
        assert_eq!(b["worker"], format!("r-{arch}"), "{b}");
    }
    let out = s.builds(&server, &["list", "--arch", "arm64"]);
    assert_eq!(
        out.stdout_text().lines().count(),
        4,
        "{}",
        out.stdout_text()
    );
}

/// Builds queued while the server is down and up again all run.
fn restart(s: &Service) {
    let mut server = s.serve();
    let port = server.port;
    let ids: Vec<i64> = (0..3)
        .map(|i| s.submit(&server, "amd64", &format!("2025040{i}"), SOURCE))
        .collect();
    server.stop();
    let server = s.serve_on(Some(port));
    let _w = s.worker(&server, "amd64", "after-restart");
    for id in ids {
        wait_build(s, &server, id, 60, "succeeded", state_is("succeeded"));
    }
}

/// A server killed with SIGKILL in a build's artifact commit (the
/// server's test-only `STREAMFS_BUILDD_TEST_STOP` holds it there): killed
/// before the store commit, the restarted server finds nothing of the build
/// in the stream and queues it again; the worker runs it again, and the
/// server is killed right after that commit landed; the next server finds
/// the version in the stream with the artifacts' sha256 and marks the build
/// succeeded. Nothing is inserted twice.
fn server_killed_in_commit(s: &mut Service) {
    let stop_at = |s: &mut Service, point: &str| {
        s.server_env = vec![("STREAMFS_BUILDD_TEST_STOP".into(), point.into())];
    };
    stop_at(s, "before-commit");
    let mut server = s.serve();
    let port = server.port;
    let _w = s.worker(&server, "amd64", "committer");
    let id = s.submit(&server, "amd64", "20250901", SOURCE);
    server.wait_log(
        &format!("test stop: build {id} before-commit"),
        60,
        "the build never reached its commit",
    );
    server.kill9();
    assert!(!has_version(s, "20250901"));
    stop_at(s, "after-commit");
    let mut server = s.serve_on(Some(port));
    server.wait_log(
        &format!("test stop: build {id} after-commit"),
        60,
        "the build was not queued again and committed",
    );
    server.kill9();
    assert!(has_version(s, "20250901"), "the second commit did not land");
    s.server_env.clear();
    let server = s.serve_on(Some(port));
    let b = wait_build(s, &server, id, 30, "succeeded", state_is("succeeded"));
    assert_eq!(b["losses"], 1, "{b}");
    assert!(
        b["artifacts"]["versions"].as_array().is_some_and(|v| v
            .iter()
            .any(|v| v.as_str().is_some_and(|v| v.ends_with(" 20250901")))),
        "{b}"
    );
    let (_, events) = curl(
        Some(&token(&s.submit_token)),
        "GET",
        &format!("{}/api/v1/builds/{id}/events", server.url()),
        None,
    );
    assert!(
        events.contains("the commit did not land: queued again"),
        "{events}"
    );
    assert!(events.contains("found them in the stream"), "{events}");
    let items: Vec<_> = flat_items(&s.store.products_file("candidate"))
        .into_iter()
        .filter(|i| i.get("version_name").map(String::as_str) == Some("20250901"))
        .collect();
    assert!(!items.is_empty());
    assert!(
        !s.store
            .root
            .join("buildd/jobs")
            .join(id.to_string())
            .exists(),
        "the build's intake directory stayed"
    );
}

/// A named case of the suite, run on a fresh service.
type Case = (&'static str, fn(&mut Service));

fn suite(db: impl Fn() -> Option<String>) {
    let cases: [Case; 10] = [
        ("submit and watch", |s| submit_and_watch(s)),
        ("bad requests", |s| bad_requests(s)),
        ("worker killed", |s| worker_killed(s)),
        ("lost its worker N times", lost_workers),
        ("cancel", |s| cancel(s)),
        ("arch routing", |s| arch_routing(s)),
        ("restart", |s| restart(s)),
        ("webhook", webhook),
        ("webhook outbox across a crash", webhook_outbox),
        ("server killed in the commit", server_killed_in_commit),
    ];
    for (name, case) in cases {
        let Some(mut s) = Service::new(db()) else {
            return;
        };
        eprintln!("case: {name}");
        let t0 = std::time::Instant::now();
        case(&mut s);
        eprintln!("case: {name}: {:.1} s", t0.elapsed().as_secs_f64());
    }
}

#[test]
fn behaviour_on_sqlite() {
    suite(|| None);
}

#[test]
fn behaviour_on_postgres() {
    let Some(pg) = Postgres::start() else { return };
    suite(|| Some(pg.new_database()));
}

/// Two servers sharing one PostgreSQL database, four workers split between
/// them, 200 queued builds: each is run exactly once and none is lost.
#[test]
fn many_builds_two_servers_on_postgres() {
    let Some(pg) = Postgres::start() else { return };
    let Some(s) = Service::new(Some(pg.new_database())) else {
        return;
    };
    let servers = [s.serve(), s.serve()];
    let t = token(&s.submit_token);
    let versions: Vec<String> = (0..200).map(|i| format!("2025070{i:03}")).collect();
    for (i, v) in versions.iter().enumerate() {
        let body = format!(
            r#"{{"arch":"amd64","release":"noble","version":"{v}","source":"quickfail","stream":"candidate"}}"#
        );
        let url = format!("{}/api/v1/builds", servers[i % 2].url());
        let (code, text) = curl(Some(&t), "POST", &url, Some(&body));
        assert_eq!(code, 201, "{text}");
    }
    // The test builder: it records each run, and fails at once.
    let _workers: Vec<_> = (0..4)
        .map(|i| s.worker_with(&servers[i % 2], "amd64", &format!("many{i}"), Builder::Test))
        .collect();
    let list = format!("{}/api/v1/builds?arch=amd64&limit=1000", servers[0].url());
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let builds = loop {
        let (code, text) = curl(Some(&t), "GET", &list, None);
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("list JSON");
        let builds = v["builds"].as_array().expect("builds").clone();
        assert_eq!(builds.len(), 200);
        if builds.iter().all(|b| b["state"] == "failed") {
            break builds;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all builds ended: {:?}",
            builds.iter().map(|b| &b["state"]).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(builds.iter().all(|b| b["losses"] == 0), "a build was lost");
    let workers: std::collections::BTreeSet<_> =
        builds.iter().filter_map(|b| b["worker"].as_str()).collect();
    assert!(workers.len() > 1, "one worker ran everything: {workers:?}");
    let runs = std::fs::read_to_string(s.dir().join("runs")).expect("runs");
    let mut runs: Vec<&str> = runs.lines().collect();
    runs.sort_unstable();
    assert_eq!(runs, versions, "each build run exactly once");
}

/// HMAC-SHA256 (RFC 2104), to check the webhook's signature independently
/// of the server's code.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize(),
    )
}

/// A webhook receiver on 127.0.0.1: records each request's signature
/// header and body, answers 200.
fn webhook_receiver() -> (u16, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    webhook_receiver_with(Arc::new(AtomicIsize::new(0)))
}

/// A webhook receiver on a port of its own, held for its whole life so no
/// concurrent test can take it. `mode` decides each answer when the request
/// arrives: negative hangs up unanswered and unrecorded (a receiver that is
/// down), a positive count answers 503 (recorded) and counts down, zero
/// answers 200.
fn webhook_receiver_with(
    mode: Arc<AtomicIsize>,
) -> (u16, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            if mode.load(Ordering::SeqCst) < 0 {
                drop(conn);
                continue;
            }
            let mut r = BufReader::new(conn.try_clone().expect("clone"));
            let (mut sig, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("x-streamfs-signature:") {
                    sig = v.trim().to_string();
                } else if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let refused = mode
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |m| {
                    (m > 0).then_some(m - 1)
                })
                .is_ok();
            let status = if refused {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = (&conn).write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
            if tx.send((sig, body)).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

/// Servers started from now on POST to a webhook on `port` signed with `key`.
fn use_webhook(s: &mut Service, port: u16, key: &str) {
    let secret = s.dir().join("hook.secret");
    std::fs::write(&secret, key).expect("write secret");
    s.extra_args = vec![
        "--webhook".into(),
        format!("http://127.0.0.1:{port}/hook"),
        "--webhook-secret-file".into(),
        secret.display().to_string(),
    ];
}

/// An SMTP sink on 127.0.0.1, on a port of its own held for its whole
/// life: it speaks just enough SMTP for one mail per session (220, EHLO or
/// HELO 250, MAIL and RCPT 250, DATA 354, "." 250, QUIT 221) and sends each
/// mail's text (headers and body) on the channel. The first `refuse`
/// sessions get a 451 to their MAIL (a mail server that cannot take mail
/// now), so the mail must be retried.
fn smtp_sink(refuse: usize) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().flatten().enumerate() {
            let mut w = conn.try_clone().expect("clone");
            let mut r = BufReader::new(conn);
            let mut say = |text: &str| w.write_all(format!("{text}\r\n").as_bytes());
            let _ = say("220 sink ESMTP");
            let (mut data, mut mail) = (false, String::new());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end_matches(['\r', '\n']);
                if data {
                    if line == "." {
                        data = false;
                        let _ = say("250 2.0.0 queued");
                        if tx.send(std::mem::take(&mut mail)).is_err() {
                            return;
                        }
                    } else {
                        mail.push_str(line.strip_prefix('.').unwrap_or(line));
                        mail.push('\n');
                    }
                    continue;
                }
                let verb = line.get(..4).unwrap_or(line).to_ascii_uppercase();
                let _ = match verb.as_str() {
                    "MAIL" if n < refuse => say("451 4.3.0 try again later"),
                    "DATA" => {
                        data = true;
                        say("354 end with <CRLF>.<CRLF>")
                    }
                    "QUIT" => {
                        let _ = say("221 bye");
                        break;
                    }
                    _ => say("250 ok"),
                };
            }
        }
    });
    (port, rx)
}

/// Each terminal state (succeeded, failed, canceled) reaches the webhook
/// once, signed with the shared secret, and is mailed once through an SMTP
/// server that refuses the first mail (retried through the outbox).
fn webhook(s: &mut Service) {
    let (port, rx) = webhook_receiver();
    use_webhook(s, port, "s3cret-hook-key\n");
    let (smtp, mails) = smtp_sink(1);
    s.extra_args.extend(
        [
            "--smtp",
            &format!("127.0.0.1:{smtp}"),
            "--smtp-from",
            "buildd@example.org",
            "--smtp-to",
            "builds@example.org",
            "--smtp-to",
            "ops@example.org",
        ]
        .map(String::from),
    );
    let server = s.serve();
    let _w = s.worker(&server, "amd64", "hooked");
    let ok = s.submit(&server, "amd64", "20250501", SOURCE);
    // `mountctl build` refuses a release meph2's config lacks.
    let bad = s.submit_with(&server, "amd64", "nosuch", "20250502", SOURCE, &[]);
    let gone = s.submit(&server, "arm64", "20250503", SOURCE);
    assert_eq!(
        s.builds(&server, &["cancel", &gone.to_string()]).code,
        Some(0)
    );
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 3 {
        let (sig, body) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a webhook call");
        assert_eq!(
            sig,
            format!("sha256={}", hmac_sha256(b"s3cret-hook-key", &body)),
            "bad signature"
        );
        let v: Value = serde_json::from_slice(&body).expect("webhook JSON");
        assert!(
            seen.insert(
                v["id"].as_i64().expect("id"),
                v["state"].as_str().expect("state").to_string()
            )
            .is_none()
        );
    }
    assert_eq!(seen[&ok], "succeeded");
    assert_eq!(seen[&bad], "failed");
    assert_eq!(seen[&gone], "canceled");
    let failed = wait_build(s, &server, bad, 5, "failed", state_is("failed"));
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("release 'nosuch' is not in")),
        "{failed}"
    );
    let mut mailed = std::collections::BTreeMap::new();
    while mailed.len() < 3 {
        let mail = mails
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("a mail: {}", server.log_text()));
        let subject = mail
            .lines()
            .find_map(|l| l.strip_prefix("Subject: streamfs build "))
            .unwrap_or_else(|| panic!("no subject naming the build: {mail}"));
        let (id, state) = subject.split_once(' ').expect("id and state");
        let id: i64 = id.parse().expect("build id");
        assert!(
            mail.contains("builds@example.org") && mail.contains("ops@example.org"),
            "{mail}"
        );
        assert!(mail.contains(&format!("Build {id} {state}.")), "{mail}");
        assert!(
            mailed.insert(id, state.to_string()).is_none(),
            "mailed twice: {mail}"
        );
        if id == bad {
            assert!(mail.contains("release 'nosuch'"), "no reason: {mail}");
        }
    }
    assert_eq!(mailed, seen, "one mail per terminal state");
    assert!(
        server.log_text().contains("email for build"),
        "the refused mail was not logged as retried"
    );
    s.extra_args.clear();
}

/// A webhook that cannot be delivered (nothing listens, then a 503) is
/// kept in the outbox across a server killed with SIGKILL and delivered
/// once the receiver accepts it.
fn webhook_outbox(s: &mut Service) {
    // The receiver is down (hangs up) until the server has been killed.
    let mode = Arc::new(AtomicIsize::new(-1));
    let (port, rx) = webhook_receiver_with(mode.clone());
    use_webhook(s, port, "outbox-key");
    let mut server = s.serve();
    let w = s.worker(&server, "amd64", "outbox");
    let id = s.submit(&server, "amd64", "20250511", SOURCE);
    wait_build(s, &server, id, 60, "succeeded", state_is("succeeded"));
    server.wait_log(
        &format!("webhook for build {id}"),
        20,
        "no failed delivery logged",
    );
    drop(w);
    server.kill9();
    // Up again, refusing the first call with a 503.
    mode.store(1, Ordering::SeqCst);
    let server = s.serve_on(Some(server.port));
    let mut states = Vec::new();
    for _ in 0..2 {
        let (sig, body) = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no webhook call: {}", server.log_text()));
        assert_eq!(sig, format!("sha256={}", hmac_sha256(b"outbox-key", &body)));
        let v: Value = serde_json::from_slice(&body).expect("webhook JSON");
        assert_eq!(v["id"], id);
        states.push(v["state"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(states, ["succeeded", "succeeded"]);
    // Delivered: not sent again.
    assert!(rx.recv_timeout(Duration::from_secs(3)).is_err());
    s.extra_args.clear();
}

/// The web page in headless Chromium: the token and the form filled in and
/// submitted as a user would, the build page's state, progress bar and log
/// followed until done; the screenshot is kept in target/buildd-web.png.
/// Then more than a page of builds: the older ones come with the button.
#[test]
fn web_page_in_chromium() {
    let Some(s) = Service::new(None) else { return };
    let server = s.serve();
    let _w = s.worker(&server, "amd64", "web");
    let Some(mut browser) = streamfs_tests::chromium::Chromium::open(&format!("{}/", server.url()))
    else {
        return;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // The page target may still show about:blank when first attached.
    while browser
        .eval(r#"document.readyState == "complete" && !!document.getElementById("submit")"#)
        != true
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the page never loaded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = token(&s.submit_token);
    browser.eval(&format!(
        r#"(() => {{
            const tok = document.getElementById("token");
            tok.value = "{t}"; tok.dispatchEvent(new Event("change"));
            const f = document.getElementById("submit");
            f.arch.value = "amd64"; f.release.value = "noble"; f.version.value = "20250601";
            f.source.value = "/srv/images/noble.squashfs"; f.stream.value = "candidate";
            f.querySelector("button").click();
            return true;
        }})()"#
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = browser.eval(r#"document.getElementById("bstate").textContent"#);
        if state == "succeeded" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the build page shows {state}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        browser.eval(r#"document.getElementById("bprog").value"#),
        100
    );
    let log = browser.eval(r#"document.getElementById("log").textContent"#);
    assert!(
        log.as_str()
            .is_some_and(|l| l.contains("stage metadata done in")),
        "{log}"
    );
    // The list shows it done too (it refreshes every second).
    std::thread::sleep(Duration::from_millis(1500));
    let rows = browser.eval(r#"document.getElementById("rows").textContent"#);
    assert!(
        rows.as_str()
            .is_some_and(|r| r.contains("20250601") && r.contains("succeeded")),
        "{rows}"
    );
    assert!(has_version(&s, "20250601"));
    let shot = streamfs_tests::workspace_root().join("target/buildd-web.png");
    browser.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());
    // More than a page of builds (queued for an arch no worker has): the
    // list shows the newest 100, and "older builds" loads the rest.
    for i in 0..101 {
        let body = format!(
            r#"{{"arch":"s390x","release":"noble","version":"2025{i:04}","source":"ok","stream":"candidate"}}"#
        );
        let (code, text) = curl(
            Some(&t),
            "POST",
            &format!("{}/api/v1/builds", server.url()),
            Some(&body),
        );
        assert_eq!(code, 201, "{text}");
    }
    let rows = r#"document.getElementById("rows").children.length"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while browser.eval(r#"!document.getElementById("older").hidden"#) != true {
        assert!(
            std::time::Instant::now() < deadline,
            "no older-builds button; rows: {}",
            browser.eval(rows)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(browser.eval(rows), 100);
    browser.eval(r#"document.getElementById("older").click(), true"#);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while browser.eval(rows) != 102 {
        assert!(
            std::time::Instant::now() < deadline,
            "older builds not listed: {} rows",
            browser.eval(rows)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let all = browser.eval(r#"document.getElementById("rows").textContent"#);
    assert!(
        all.as_str()
            .is_some_and(|r| r.contains("20250601") && r.contains("20250000")),
        "{all}"
    );
    assert_eq!(
        browser.eval(r#"document.getElementById("older").hidden"#),
        true,
        "the last page still offers older builds"
    );
}

/// A cancel that comes while the server takes in a build's artifacts (a
/// 512 MiB squashfs being staged into the pool) wins: the build ends
/// canceled, its version never reaches the stream, and no byte of it stays
/// in the store (pool or the service's own directory).
#[test]
fn cancel_during_intake() {
    let Some(s) = Service::new(None) else { return };
    let server = s.serve();
    // The test builder: a large output, so the intake takes a while.
    let _w = s.worker_with(&server, "amd64", "big", Builder::Test);
    let id = s.submit(&server, "amd64", "20250801", "big");
    let t = token(&s.submit_token);
    let url = format!("{}/api/v1/builds/{id}", server.url());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, body) = curl(Some(&t), "GET", &url, None);
        let b: Value = serde_json::from_str(&body).expect("build JSON");
        if b["stage"] == "intake" {
            break;
        }
        assert!(b["state"] == "queued" || b["state"] == "running", "{b}");
        assert!(std::time::Instant::now() < deadline, "never in intake: {b}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = s.builds(&server, &["cancel", &id.to_string()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr_text());
    server.wait_log(
        &format!("build {id}: canceled during its intake"),
        60,
        "the intake never ended",
    );
    let jobs = s.store.root.join("buildd/jobs").join(id.to_string());
    assert!(
        !jobs.exists(),
        "the build's intake directory stayed: {:?}\n{}",
        std::fs::read_dir(&jobs).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>()),
        server.log_text()
    );
    let b = wait_build(&s, &server, id, 5, "canceled", state_is("canceled"));
    assert!(b["artifacts"]["versions"].is_null(), "{b}");
    assert!(
        !has_version(&s, "20250801"),
        "a canceled build reached the store"
    );
    fn large_files(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => large_files(&p, out),
                Ok(t) if t.is_file() && e.metadata().is_ok_and(|m| m.len() >= 1 << 29) => {
                    out.push(p)
                }
                _ => {}
            }
        }
    }
    let mut left = Vec::new();
    large_files(&s.store.root, &mut left);
    assert!(
        left.is_empty(),
        "the canceled build's data stayed: {left:?}"
    );
}

/// A real build through the service: a worker running the builtin builder
/// on the cached Debian 12 root, the job carrying its build config; the
/// build succeeds and its artifacts are in the store, each blob verified by
/// `fsck`, the squashfs equal to what the build's log reports.
#[test]
fn a_real_build_through_the_service() {
    let Some(tarball) = streamfs_tests::debian::root_tarball() else {
        return;
    };
    if streamfs_tests::serve::installed("sqfstar", "squashfs-tools").is_none()
        || !streamfs_tests::mount::can_mount()
    {
        return;
    }
    let Some(s) = Service::new(None) else { return };
    let cache = streamfs_tests::debian::apt_cache(&tarball);
    let config = s.dir().join("debian.yaml");
    std::fs::write(
        &config,
        streamfs_tests::build::debian_config("linux-image-amd64"),
    )
    .unwrap();
    let server = s.serve();
    let _w = s.worker_with(
        &server,
        "amd64",
        "w-real",
        Builder::Builtin { apt_cache: cache },
    );
    let id = s.submit_with(
        &server,
        "amd64",
        "bookworm",
        "20261204",
        tarball.to_str().unwrap(),
        &["--config", config.to_str().unwrap()],
    );
    let t = std::time::Instant::now();
    let done = wait_build(&s, &server, id, 900, "ended", |v| {
        matches!(
            v["state"].as_str(),
            Some("succeeded" | "failed" | "canceled")
        )
    });
    assert_eq!(done["state"], "succeeded", "{done}\n{}", server.log_text());
    streamfs_tests::report(&format!(
        "real build through the service: {:.0} s",
        t.elapsed().as_secs_f64()
    ));
    let v1 = s.store.root.join("meta/current/candidate/streams/v1");
    let products = v1.join("com.ubuntu.maas:candidate:v3:download.json");
    let paths: std::collections::BTreeSet<String> = flat_items(&products)
        .into_iter()
        .filter_map(|i| i.get("path").cloned())
        .filter(|p| p.starts_with("bookworm/"))
        .collect();
    let want: std::collections::BTreeSet<String> = [
        "squashfs",
        "squashfs.manifest",
        "ga-12/generic/boot-kernel",
        "ga-12/generic/boot-initrd",
    ]
    .iter()
    .map(|f| format!("bookworm/amd64/20261204/{f}"))
    .collect();
    assert_eq!(paths, want, "{done}");
    let fsck = s.store.mountctl(&["fsck"]);
    assert_eq!(fsck.code, Some(0), "{}", fsck.stderr_text());
}

/// An SMTP server offering STARTTLS and AUTH PLAIN, with a certificate for
/// 127.0.0.1 (Python's `ssl`, so the suite needs no TLS
/// server of its own). It prints one JSON line per mail: whether the
/// session was encrypted when the mail came, the credentials given, the
/// mail's text.
const STARTTLS_SINK: &str = r#"
import base64, json, socket, ssl, sys
cert, key = sys.argv[1:3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
print(srv.getsockname()[1], flush=True)
while True:
    conn, _ = srv.accept()
    f = conn.makefile("rwb")
    def say(t):
        f.write(t.encode() + b"\r\n"); f.flush()
    say("220 sink ESMTP")
    tls, auth, data, mail = False, None, False, []
    try:
        while True:
            line = f.readline()
            if not line:
                break
            line = line.decode().rstrip("\r\n")
            if data:
                if line == ".":
                    data = False
                    print(json.dumps({"tls": tls, "auth": auth, "mail": "\n".join(mail)}), flush=True)
                    mail = []
                    say("250 queued")
                else:
                    mail.append(line)
                continue
            verb = line[:4].upper()
            if verb == "EHLO":
                say("250-sink")
                say("250 AUTH PLAIN" if tls else "250 STARTTLS")
            elif verb == "STAR":
                say("220 go ahead")
                conn = ctx.wrap_socket(conn, server_side=True)
                f = conn.makefile("rwb")
                tls = True
            elif verb == "AUTH":
                auth = base64.b64decode(line.split()[2]).decode().split("\0")[1:]
                say("235 ok")
            elif verb == "DATA":
                data = True
                say("354 go on")
            elif verb == "QUIT":
                say("221 bye")
                break
            else:
                say("250 ok")
    except (ssl.SSLError, OSError):
        pass
    conn.close()
"#;

/// Mail over STARTTLS with credentials: with `--smtp-ca` naming the CA that
/// signed the relay's certificate the mail goes, encrypted, after AUTH; without it
/// the certificate is refused (nothing sent in clear, the refusal logged,
/// the mail retried).
#[test]
fn mail_goes_over_starttls_with_credentials() {
    use std::io::BufRead;
    let Some(mut s) = Service::new(None) else {
        return;
    };
    let dir = s.dir().to_path_buf();
    // A site CA, and the relay's certificate for 127.0.0.1 signed by it.
    let (ca, cert, key) = (
        dir.join("smtp-ca.pem"),
        dir.join("smtp-cert.pem"),
        dir.join("smtp-key.pem"),
    );
    let ext = dir.join("smtp-ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let st = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl {args:?}");
    };
    let new_key = ["-newkey", "rsa:2048", "-nodes"];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "1",
                "-subj",
                "/CN=streamfs test CA",
            ][..],
            &new_key[..],
            &["-keyout", "smtp-ca.key", "-out", "smtp-ca.pem"][..],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-subj", "/CN=127.0.0.1"][..],
            &new_key[..],
            &["-keyout", "smtp-key.pem", "-out", "smtp.csr"][..],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "smtp.csr",
        "-CA",
        "smtp-ca.pem",
        "-CAkey",
        "smtp-ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "smtp-ext.cnf",
        "-out",
        "smtp-cert.pem",
    ]);
    let script = dir.join("smtp-sink.py");
    std::fs::write(&script, STARTTLS_SINK).unwrap();
    let mut sink = std::process::Command::new("python3")
        .arg(&script)
        .arg(&cert)
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut lines = std::io::BufReader::new(sink.stdout.take().unwrap()).lines();
    let _sink = Kill(sink);
    let port = lines.next().unwrap().unwrap();
    let (tx, mails) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if tx
                .send(serde_json::from_str(&l).expect("sink JSON"))
                .is_err()
            {
                return;
            }
        }
    });
    let ca_file = ca.clone();
    let creds = dir.join("smtp-auth");
    std::fs::write(&creds, "mailer\ns3cret pass\n").unwrap();
    let args = |ca: bool| {
        let mut a = vec![
            "--smtp".to_string(),
            format!("127.0.0.1:{port}"),
            "--smtp-from".into(),
            "buildd@example.org".into(),
            "--smtp-to".into(),
            "builds@example.org".into(),
            "--smtp-starttls".into(),
            "--smtp-auth-file".into(),
            creds.display().to_string(),
        ];
        if ca {
            a.extend(["--smtp-ca".into(), ca_file.display().to_string()]);
        }
        a
    };

    // The webpki roots alone: the relay's certificate is refused.
    s.extra_args = args(false);
    let mut server = s.serve();
    let w = s.worker(&server, "amd64", "mailer");
    let first = s.submit(&server, "amd64", "20250801", SOURCE);
    wait_build(&s, &server, first, 60, "succeeded", state_is("succeeded"));
    server.wait_log(
        &format!("email for build {first} (attempt 1)"),
        30,
        "the refused mail",
    );
    let log = server.log_text();
    assert!(
        log.contains("certificate"),
        "refused for another reason: {log}"
    );
    assert!(
        mails.try_recv().is_err(),
        "a mail went without a trusted certificate"
    );
    server.stop();
    drop(w);

    // With the certificate trusted: encrypted, authenticated, delivered
    // (the first build's mail too, from the outbox).
    s.extra_args = args(true);
    let server = s.serve();
    let _w = s.worker(&server, "amd64", "mailer");
    let second = s.submit(&server, "amd64", "20250802", SOURCE);
    let mut got = std::collections::BTreeSet::new();
    while got.len() < 2 {
        let m = mails
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|_| panic!("no mail: {}", server.log_text()));
        assert_eq!(m["tls"], true, "{m}");
        assert_eq!(
            m["auth"],
            serde_json::json!(["mailer", "s3cret pass"]),
            "{m}"
        );
        let text = m["mail"].as_str().unwrap();
        let id = [first, second]
            .into_iter()
            .find(|id| text.contains(&format!("Subject: streamfs build {id} succeeded")))
            .unwrap_or_else(|| panic!("not one of the builds: {text}"));
        got.insert(id);
    }
}
