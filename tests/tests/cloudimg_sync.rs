//! `mountctl cloudimg-sync` against the fixture cloud-images source
//! (`maas-images/golden/util-scenario/fake-cloudimg-source-products.json`)
//! served by nginx on 127.0.0.1, with the shipped fake builder behind a
//! wrapper that records each call: only what the target lacks is built, a
//! re-run builds nothing, `--rebuild` makes the `.1` version, `force`
//! builds every wanted serial, and a bad payload or argument loses nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use streamfs_tests::serve::Nginx;
use streamfs_tests::{Outcome, fixtures_dir, mountctl_bin, run_in};

const SOURCE: &str = "streams/v1/com.ubuntu.cloud:candidate:download.json";
const OUT_PRODUCTS: &str = "streams/v1/com.ubuntu.maas:candidate:v3:download.json";

struct Scenario {
    dir: tempfile::TempDir,
    config: PathBuf,
    nginx: Nginx,
    /// A mirror whose 20250105 image is not what the products file says.
    bad_nginx: Nginx,
}

impl Scenario {
    fn start() -> Option<Scenario> {
        let fx = fixtures_dir()?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let products =
            fx.join("maas-images/golden/util-scenario/fake-cloudimg-source-products.json");
        let good = dir.path().join("mirror");
        let bad = dir.path().join("bad-mirror");
        for (root, tamper) in [(&good, false), (&bad, true)] {
            std::fs::create_dir_all(root.join("streams/v1")).unwrap();
            std::fs::copy(&products, root.join(SOURCE)).unwrap();
            write_payloads(&products, root, tamper);
        }
        let nginx = Nginx::start(&good)?;
        let bad_nginx = Nginx::start(&bad)?;
        let s = Scenario {
            config: fx.join("maas-images/upstream/conf/meph-v3.yaml"),
            dir,
            nginx,
            bad_nginx,
        };
        // The builder: the shipped fake, recording each call.
        let wrapper = s.path("builder.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\nexec {} fake-builder \"$@\"\n",
                s.path("calls").display(),
                mountctl_bin().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(s.mountctl(&["init"]).code, Some(0));
        Some(s)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn mountctl(&self, args: &[&str]) -> Outcome {
        let store = self.path("store");
        let mut all = vec!["--store", store.to_str().unwrap()];
        all.extend_from_slice(args);
        run_in(self.dir.path(), &mountctl_bin(), &all)
    }

    /// `cloudimg-sync` from `nginx` for amd64 with the recording builder.
    fn sync_from(&self, nginx: &Nginx, out: &str, extra: &[&str]) -> Outcome {
        // Options first, then OUT, then the item filters.
        let (filters, extra): (Vec<&str>, Vec<&str>) = extra
            .iter()
            .partition(|a| !a.starts_with("--") && a.contains('='));
        let config = self.config.display().to_string();
        let builder = self.path("builder.sh").display().to_string();
        let source = nginx.url(&format!("/{SOURCE}"));
        let cache = self.path("cache").display().to_string();
        let logs = self.path("logs").display().to_string();
        let mut args = vec![
            "cloudimg-sync",
            "--config",
            &config,
            "--builder",
            &builder,
            "--source",
            &source,
            "--arches",
            "amd64",
            "--cache",
            &cache,
            "--log-dir",
            &logs,
        ];
        args.extend_from_slice(&extra);
        args.push(out);
        args.extend_from_slice(&filters);
        let o = self.mountctl(&args);
        eprintln!(
            "cloudimg-sync {extra:?} {out}: exit {:?}\n{}{}",
            o.code,
            o.stdout_text(),
            o.stderr_text()
        );
        o
    }

    fn sync(&self, out: &str, extra: &[&str]) -> Outcome {
        self.sync_from(&self.nginx, out, extra)
    }

    /// Versions the builder was called for, in order.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("calls"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                // meph2's argv names the version in its output paths:
                // `--manifest=OUT/RELEASE/ARCH/VERSION/squashfs.manifest`.
                let manifest = l
                    .split_whitespace()
                    .find_map(|a| a.strip_prefix("--manifest="))
                    .unwrap_or_else(|| panic!("no --manifest in the builder's argv: {l}"));
                let parts: Vec<&str> = manifest.rsplit('/').collect();
                parts[1].to_string()
            })
            .collect()
    }

    /// The versions of the store's `daily` stream, sorted and deduplicated.
    fn stream_versions(&self) -> Vec<String> {
        let o = self.mountctl(&["query", "daily", "-o", "%(version_name)s"]);
        assert_eq!(o.code, Some(0), "{}", o.stderr_text());
        let mut v: Vec<String> = o.stdout_text().lines().map(str::to_string).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Each item of the source products file as a file under `root` with the
/// bytes its sha256 says ("cloudimg SERIAL\n"); `tamper` flips the 20250105
/// payload so it no longer matches.
fn write_payloads(products: &Path, root: &Path, tamper: bool) {
    let doc: Value = serde_json::from_slice(&std::fs::read(products).unwrap()).unwrap();
    for p in doc["products"].as_object().unwrap().values() {
        for (serial, v) in p["versions"].as_object().unwrap() {
            for item in v["items"].as_object().unwrap().values() {
                let data = format!("cloudimg {serial}\n");
                assert_eq!(
                    hex::encode(Sha256::digest(data.as_bytes())),
                    item["sha256"].as_str().unwrap(),
                    "the fixture's payload for {serial} is no longer 'cloudimg SERIAL\\n'"
                );
                let data = if tamper && serial == "20250105" {
                    data.replace('5', "6")
                } else {
                    data
                };
                let f = root.join(item["path"].as_str().unwrap());
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(f, data).unwrap();
            }
        }
    }
}

fn out_versions(out: &Path) -> Vec<String> {
    let doc: Value =
        serde_json::from_slice(&std::fs::read(out.join(OUT_PRODUCTS)).unwrap()).unwrap();
    let mut v: Vec<String> = doc["products"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p["versions"].as_object().unwrap().keys().cloned())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn builds_what_the_target_lacks_then_nothing_rebuilds_and_forces() {
    let Some(s) = Scenario::start() else { return };

    // The store's stream starts with the older serial only.
    let o = s.sync("out1", &["--insert", "daily", "version_name=20250103"]);
    assert_eq!(o.code, Some(0));
    assert_eq!(s.calls(), ["20250103"]);
    assert_eq!(s.stream_versions(), ["20250103"]);

    // The two newest serials are wanted; only the one the stream lacks is
    // built and inserted. OUT has the stream's versions and the new one.
    let o = s.sync("out2", &["--insert", "daily", "--max", "2"]);
    assert_eq!(o.code, Some(0));
    assert_eq!(s.calls(), ["20250103", "20250105"]);
    assert_eq!(s.stream_versions(), ["20250103", "20250105"]);
    let out2 = s.path("out2");
    assert_eq!(out_versions(&out2), ["20250103", "20250105"]);
    assert!(out2.join("noble/amd64/20250105/squashfs").is_file());
    assert!(
        !out2.join("noble/amd64/20250103").exists(),
        "data only for the new versions"
    );

    // Nothing new: no builder, no new generation.
    let before = s.mountctl(&["status"]).stdout_text();
    let o = s.sync("out3", &["--insert", "daily", "--max", "2"]);
    assert_eq!(o.code, Some(0));
    assert!(
        o.stdout_text().contains("everything is up to date"),
        "{}",
        o.stdout_text()
    );
    assert_eq!(
        s.calls().len(),
        2,
        "a re-run with nothing new ran the builder"
    );
    assert_eq!(s.mountctl(&["status"]).stdout_text(), before);

    // --rebuild: the newest serial again, as version .1, from the cache.
    let o = s.sync(
        "out4",
        &["--insert", "daily", "--rebuild", "20250105:20250105.1"],
    );
    assert_eq!(o.code, Some(0));
    assert!(
        o.stderr_text().contains("in the cache"),
        "{}",
        o.stderr_text()
    );
    assert_eq!(s.calls().last().map(String::as_str), Some("20250105.1"));
    assert_eq!(s.stream_versions(), ["20250103", "20250105", "20250105.1"]);

    // force: an empty target, every wanted serial built.
    let o = s.sync("out5", &["--target", "force", "--max", "2"]);
    assert_eq!(o.code, Some(0));
    assert_eq!(out_versions(&s.path("out5")), ["20250103", "20250105"]);
    assert_eq!(s.calls().len(), 5);
}

#[test]
fn a_bad_payload_or_argument_changes_nothing() {
    let Some(s) = Scenario::start() else { return };
    let o = s.sync_from(&s.bad_nginx, "out", &["--insert", "daily"]);
    assert_eq!(o.code, Some(1));
    let err = o.stderr_text();
    assert!(err.contains("20250105") && err.contains("sha256"), "{err}");
    assert!(!s.path("out").exists(), "a failed sync left OUT behind");
    assert!(s.calls().is_empty(), "the builder ran on unverified data");
    assert!(s.stream_versions().is_empty());

    let o = s.sync("out", &["--rebuild", "20250105"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr_text());
    assert!(
        o.stderr_text().contains("SERIAL:VERSION"),
        "{}",
        o.stderr_text()
    );
    let o = s.sync("out", &["--target", "nosuch-stream"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr_text());
    assert!(
        o.stderr_text().contains("nosuch-stream"),
        "{}",
        o.stderr_text()
    );
    assert!(!s.path("out").exists());
}
