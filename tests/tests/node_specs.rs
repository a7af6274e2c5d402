//! `mountctl node resolve` against rhubarbe's own outputs
//! (`imaging/rhubarbe-nodespec-vectors.json`), and the settings and exit
//! codes a user sees.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use streamfs_tests::{fixtures_dir, mountctl_bin};

/// `mountctl node ARGS…` with settings from `conf` only, in `dir`.
fn node(
    dir: &Path,
    conf: &Path,
    nodes_env: Option<&str>,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(mountctl_bin());
    cmd.arg("node")
        .args(args)
        .current_dir(dir)
        .env("STREAMFS_IMAGING_CONF", conf)
        .env("STREAMFS_HOSTNAME", "gw")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    match nodes_env {
        Some(n) => cmd.env("NODES", n),
        None => cmd.env_remove("NODES"),
    };
    let out = cmd.output().expect("running mountctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_rhubarbe_nodespec_vector_resolves_the_same() {
    let Some(fx) = fixtures_dir() else { return };
    let text = std::fs::read_to_string(fx.join("imaging/rhubarbe-nodespec-vectors.json")).unwrap();
    let vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, v) in vectors.iter().enumerate() {
        let args: Vec<&str> = v["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let scope = v["all_scope"].as_str().unwrap_or("1-37");
        let conf = dir.path().join(format!("v{i}.conf"));
        std::fs::write(
            &conf,
            format!("[testbed]\nregularname = fit\nrebootname = reboot\nall_scope = {scope}\n"),
        )
        .unwrap();
        let mut cli = vec!["resolve"];
        cli.extend(&args);
        let (code, out, err) = node(dir.path(), &conf, None, &cli);
        if let Some(e) = v["error"].as_str() {
            if code != Some(2) || !err.contains(e) {
                failures.push(format!(
                    "{args:?}: expected exit 2 with {e:?}, got {code:?} {out:?} {err:?}"
                ));
            }
            continue;
        }
        let want: Vec<String> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| format!("fit{:02}", n.as_u64().unwrap()))
            .collect();
        if code != Some(0) || out != want.join(" ") {
            failures.push(format!(
                "{args:?}: expected {want:?}, got {code:?} {out:?} {err:?}"
            ));
        }
        if let Some(names) = v["names"].as_array() {
            let names: Vec<&str> = names.iter().map(|n| n.as_str().unwrap()).collect();
            assert_eq!(
                names.join(" "),
                want.join(" "),
                "vector {i} is self-consistent"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors differ:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn nodes_come_from_the_environment_and_a_bad_setting_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("imaging.conf");
    std::fs::write(&conf, "[testbed]\nall_scope = 1-4\nall_scope.gw = 1-3\n").unwrap();
    let (code, out, _) = node(dir.path(), &conf, Some("2 5-6"), &["resolve"]);
    assert_eq!((code, out.as_str()), (Some(0), "fit02 fit05 fit06"));
    let (code, out, _) = node(dir.path(), &conf, None, &["resolve", "-a", "~2"]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "fit01 fit03"),
        "the host's all_scope"
    );
    let (code, _, err) = node(dir.path(), &conf, None, &["resolve"]);
    assert_eq!(code, Some(2), "no node at all: {err}");
    assert!(err.contains("NODES"), "{err}");

    // `node config` shows each effective key and where it came from.
    let (code, out, _) = node(dir.path(), &conf, None, &["config"]);
    assert_eq!(code, Some(0));
    let line = out
        .lines()
        .find(|l| l.starts_with("[testbed] all_scope ="))
        .unwrap();
    assert!(
        line.contains("= 1-3") && line.contains(&format!("{}:3", conf.display())),
        "{line}"
    );
    assert!(
        out.contains("[pxelinux] loader = streamfs-loader    # (built-in default)"),
        "{out}"
    );

    std::fs::write(&conf, "[nodes]\nkey_file = '/etc/k'\n").unwrap();
    let (code, _, err) = node(dir.path(), &conf, None, &["resolve", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2: [nodes] key_file: quoted value",
            conf.display()
        )),
        "{err}"
    );
}
