//! The mount's opt-in metrics endpoint (`-o metrics=ADDR`), scraped as
//! Prometheus would while a test inserts, reads and is refused: the
//! counters move with what the mount did. An address off the host is
//! refused before anything is mounted.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use streamfs_tests::mount::{Mount, can_mount};
use streamfs_tests::workspace_bin;

/// One scrape: every sample line as `name{labels}` -> value.
fn scrape(sock: &Path) -> BTreeMap<String, f64> {
    let mut c = UnixStream::connect(sock).expect("connecting to the metrics socket");
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse().unwrap_or_else(|_| panic!("{l}")))
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[test]
fn metrics_follow_what_the_mount_inserts_reads_and_refuses() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let sock = dir.path().join("metrics.sock");
    let m = Mount::with_options(&store, &[&format!("metrics={}", sock.display())]);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is for its owner only");
    let before = scrape(&sock);

    let kernel = m
        .path()
        .join("daily/noble/amd64/20250101/ga-24.04/generic/boot-kernel");
    std::fs::create_dir_all(kernel.parent().unwrap()).unwrap();
    std::fs::write(&kernel, b"kernel").unwrap();
    assert_eq!(std::fs::read(&kernel).unwrap(), b"kernel");
    // No template explains this path: refused with EACCES.
    let refused = std::fs::write(m.path().join("daily/stray-file"), b"x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EACCES), "{refused}");

    let after = scrape(&sock);
    for op in ["lookup", "create", "write", "release", "mkdir"] {
        let k = format!("streamfs_requests_total{{op=\"{op}\"}}");
        assert!(get(&after, &k) > get(&before, &k), "{k} did not move");
    }
    assert!(
        get(&after, "streamfs_errors_total{errno=\"EACCES\"}")
            > get(&before, "streamfs_errors_total{errno=\"EACCES\"}")
    );
    assert!(get(&after, "streamfs_generation") > get(&before, "streamfs_generation"));
    let commits = "streamfs_commit_request_seconds_count";
    assert!(
        get(&after, commits) > get(&before, commits),
        "no commit counted"
    );
    assert_eq!(
        get(
            &after,
            "streamfs_commit_request_seconds_bucket{le=\"+Inf\"}"
        ),
        get(&after, commits)
    );
    assert!(get(&after, "streamfs_resident_memory_bytes") > 1e6);
    assert!(!m.log_text().contains("more refusals not logged"));
    m.unmount();
}

#[test]
fn a_metrics_address_off_the_host_is_refused_before_mounting() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = std::process::Command::new(workspace_bin("streamfs", "streamfs"))
        .arg(dir.path().join("store"))
        .arg(&mnt)
        .args(["-o", "metrics=0.0.0.0:9101", "--foreground"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics=0.0.0.0:9101") && err.contains("loopback"),
        "{err}"
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(mnt.to_str().unwrap()), "mounted anyway");
}
