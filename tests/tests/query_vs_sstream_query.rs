//! `mountctl query` against the reference client: for the same source,
//! filters, `--max` and output format, both must print the same bytes on
//! stdout (and on stderr, where sstream-query reports missing format keys).
//!
//! Needs the fixtures (`STREAMFS_FIXTURES`) and the python-simplestreams venv
//! (`STREAMFS_SSTREAM_VENV`); see `streamfs_tests` for how their absence is
//! handled.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use streamfs_tests::{Outcome, fixtures_dir, missing, mountctl_bin, run_in, sstream_venv};

struct Tools {
    fixtures: PathBuf,
    venv: PathBuf,
    mountctl: PathBuf,
}

fn tools() -> Option<Tools> {
    let fixtures = fixtures_dir()?;
    let venv = sstream_venv()?;
    Some(Tools {
        fixtures,
        venv,
        mountctl: mountctl_bin(),
    })
}

impl Tools {
    fn sstream_query(&self, dir: &Path, args: &[&str]) -> Outcome {
        run_in(dir, &self.venv.join("bin/sstream-query"), args)
    }

    fn mountctl_query(&self, dir: &Path, args: &[&str]) -> Outcome {
        let mut all = vec!["query"];
        all.extend_from_slice(args);
        run_in(dir, &self.mountctl, &all)
    }

    /// Runs both in `dir`; both must succeed with identical stdout, and
    /// identical stderr unless `stdout_only`.
    fn compare_in(&self, dir: &Path, args: &[&str], stdout_only: bool) -> Outcome {
        let theirs = self.sstream_query(dir, args);
        assert_eq!(
            theirs.code,
            Some(0),
            "sstream-query {args:?} failed in {}:\n{}",
            dir.display(),
            theirs.stderr_text()
        );
        let ours = self.mountctl_query(dir, args);
        assert_eq!(
            ours.code,
            Some(0),
            "mountctl query {args:?} failed in {}:\n{}",
            dir.display(),
            ours.stderr_text()
        );
        assert_same("stdout", args, &theirs.stdout, &ours.stdout);
        if !stdout_only {
            assert_same("stderr", args, &theirs.stderr, &ours.stderr);
        }
        ours
    }

    fn compare(&self, args: &[&str]) -> Outcome {
        self.compare_in(&self.fixtures.join("simplestreams"), args, false)
    }
}

/// Byte equality, reported by the first differing line.
fn assert_same(what: &str, args: &[&str], theirs: &[u8], ours: &[u8]) {
    if theirs == ours {
        return;
    }
    let (t, o) = (
        String::from_utf8_lossy(theirs),
        String::from_utf8_lossy(ours),
    );
    let (tl, ol): (Vec<&str>, Vec<&str>) = (t.split('\n').collect(), o.split('\n').collect());
    let n = tl.iter().zip(&ol).take_while(|(a, b)| a == b).count();
    panic!(
        "{what} differs for {args:?} at line {} (sstream-query {} lines, mountctl {} lines):\n  sstream-query: {:?}\n  mountctl:      {:?}",
        n + 1,
        tl.len(),
        ol.len(),
        tl.get(n).unwrap_or(&"<end>"),
        ol.get(n).unwrap_or(&"<end>"),
    );
}

/// The option sets every source is queried with (filters before options:
/// sstream-query's argparse takes no positional after an option): every output mode,
/// `--max`, each filter operator, and keys missing from some or all items
/// (in filters and in formats, the latter reported on stderr).
const COMBOS: &[&[&str]] = &[
    &[],
    &["--json"],
    &["--pretty"],
    &["--max", "1"],
    &[
        "--max=2",
        "-o",
        "%(product_name)s %(version_name)s %(item_name)s %(size)s",
    ],
    &["arch=amd64", "--max", "1", "--json"],
    &["arch!=amd64", "item_name!~^boot"],
    &["product_name~:2[0-4]|cirros|chr|p1", "--max=1", "--pretty"],
    &["nokey=", "-o", "%(version_name)s %(item_url)s"],
    &["nokey!="],
    &["nokey!=", "--json"],
];

/// Sources as sstream-query takes them, relative to fixtures/simplestreams.
const FIXTURE_SOURCES: &[&str] = &[
    "maas/streams/v1/index.json",
    "maas/streams/v1/com.ubuntu.maas:stable:v3:download.json",
    "cirros/streams/v1/index.json",
    "incus/streams/v1/index.json",
    "aliases/streams/v1/p.json",
    "cloud-images/streams/v1/com.ubuntu.cloud:released:download.json",
    "signed-minimal/streams/v1/index.json",
];

#[test]
fn fixture_streams_print_the_same_as_sstream_query() {
    let Some(t) = tools() else { return };
    for source in FIXTURE_SOURCES {
        for combo in COMBOS {
            let mut args = vec![*source];
            args.extend_from_slice(combo);
            t.compare(&args);
        }
    }
}

#[test]
fn absolute_sources_give_absolute_item_urls() {
    let Some(t) = tools() else { return };
    let source = t.fixtures.join("simplestreams/incus/streams/v1/index.json");
    let out = t.compare(&[source.to_str().unwrap(), "-o", "%(item_url)s"]);
    let first = out
        .stdout_text()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        first.starts_with(&format!(
            "{}/images/",
            t.fixtures.join("simplestreams/incus").display()
        )),
        "{first}"
    );
}

#[test]
fn richer_filters_and_formats_on_cloud_images() {
    let Some(t) = tools() else { return };
    let src = "cloud-images/streams/v1/com.ubuntu.cloud:released:download.json";
    for combo in [
        &["release=noble", "arch=amd64", "ftype=disk1.img"][..],
        &["release~^(?!xenial)", "supported=True", "--max=2"],
        &[
            "version_name~^2024",
            "ftype!=tar.gz",
            "-o",
            "%%%(md5)s %(sha256).12s|%(size)10s|%(ftype)-8s|",
        ],
        &["-o", "%s %(item_name)r %(pubname)a"],
        &["--max", "-1", "-o", "%(product_name)s %(version_name)s"],
        &["--max", "0"],
        &["label = release", "item_name ~ ^disk"],
    ] {
        let mut args = vec![src];
        args.extend_from_slice(combo);
        t.compare(&args);
    }
}

#[test]
fn missing_format_keys_are_reported_on_stderr_like_sstream_query() {
    let Some(t) = tools() else { return };
    let out = t.compare(&[
        "maas/streams/v1/index.json",
        "-o",
        "%(product_name)s %(kflavor)s",
        "--max",
        "1",
    ]);
    let err = out.stderr_text();
    assert!(
        err.contains("output format failed. Missing kflavor\nitem: {"),
        "{err}"
    );
    assert!(!out.stdout.is_empty());
}

#[test]
fn maas_images_golden_products_print_the_same() {
    let Some(t) = tools() else { return };
    let golden = t.fixtures.join("maas-images/golden");
    // meph2-build outputs are mirror roots already.
    for build in [
        "meph2-build-v3-noble-amd64-20250101",
        "meph2-build-v3-trusty-amd64-20160101",
        "meph2-build-v3-focal-armhf-20250101",
        "meph2-build-v3-focal-arm64-20250101",
        "meph2-build-v2-xenial-amd64-20160101-disable-di",
    ] {
        for combo in [
            &[][..],
            &["--json"],
            &["subarch~hwe", "--max=1", "--pretty"],
        ] {
            let mut args = vec!["streams/v1/index.json"];
            args.extend_from_slice(combo);
            t.compare_in(&golden.join(build), &args, false);
        }
    }
    // The meph2-util results are bare products files: query them from a
    // scratch mirror that holds them under streams/v1/.
    let scratch = tempfile::tempdir().unwrap();
    let v1 = scratch.path().join("streams/v1");
    std::fs::create_dir_all(&v1).unwrap();
    let scenario = golden.join("util-scenario");
    for name in [
        "cand-after-insert-20250101.json",
        "cand-after-insert-20250103.json",
        "cand-after-clean-md-2.json",
        "stable-after-promote-20250103-release-then-20250102-rc.json",
        "fake-cloudimg-source-products.json",
    ] {
        std::fs::copy(scenario.join(name), v1.join(name)).unwrap();
        let source = format!("streams/v1/{name}");
        for combo in [
            &[][..],
            &["--json", "--max", "1"],
            &["label=rc", "-o", "%(version_name)s %(item_url)s"],
        ] {
            let mut args = vec![source.as_str()];
            args.extend_from_slice(combo);
            t.compare_in(scratch.path(), &args, false);
        }
    }
}

/// The benchmark's generator, also the test's: one definition of the
/// synthetic stream.
fn generate_stream(t: &Tools, dir: &Path, items: usize) {
    let script = streamfs_tests::workspace_root().join("contrib/bench/gen_stream.py");
    let out = run_in(
        dir,
        &t.venv.join("bin/python3"),
        &[script.to_str().unwrap(), ".", &items.to_string()],
    );
    assert_eq!(out.code, Some(0), "gen_stream.py: {}", out.stderr_text());
}

#[test]
fn a_generated_stream_of_40000_items_prints_the_same() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    generate_stream(&t, dir.path(), 40_000);
    let out = t.compare_in(dir.path(), &["streams/v1/index.json"], false);
    assert_eq!(out.stdout_text().lines().count(), 40_002);
    for combo in [
        &["--json"][..],
        &["arch=arm64", "--pretty"],
        &["release~^(jammy|noble)$", "ftype!=manifest", "--max", "3"],
        &[
            "note~.",
            "-o",
            "%(product_name)s %(version_name)s %(item_url)s %(endpoint)s",
        ],
    ] {
        let mut args = vec!["streams/v1/index.json"];
        args.extend_from_slice(combo);
        t.compare_in(dir.path(), &args, false);
    }
}

/// A static file server on a loopback port, stopped on drop.
struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(python: &Path, dir: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let server = Server(
        Command::new(python)
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        port,
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("http.server did not start on port {port}");
}

#[test]
fn http_sources_print_the_same() {
    let Some(t) = tools() else { return };
    let server = serve(
        &t.venv.join("bin/python3"),
        &t.fixtures.join("simplestreams"),
    );
    let base = format!("http://127.0.0.1:{}", server.1);
    for source in ["maas/streams/v1/index.json", "cirros/streams/v1/index.json"] {
        let url = format!("{base}/{source}");
        t.compare(&[&url, "--max", "1"]);
        t.compare(&[&url, "arch=amd64", "--json"]);
    }
    let missing = t.mountctl_query(
        Path::new("."),
        &[&format!("{base}/nope/streams/v1/index.json")],
    );
    assert_eq!(missing.code, Some(1), "{}", missing.stderr_text());
    assert!(missing.stderr_text().contains("nope/streams/v1/index.json"));
}

#[test]
fn signed_sources_give_the_signed_body() {
    let Some(t) = tools() else { return };
    if which("gpgv").is_none() {
        return missing("gpgv, which sstream-query verifies signed sources with, is not installed")
            .unwrap_or(());
    }
    let keyring = t
        .fixtures
        .join("simplestreams/signed-minimal/test-keyring.gpg");
    let keyring = keyring.to_str().unwrap();
    // A mirror root without its trailing slash: index.sjson, read after the
    // slash is added. Both check the signatures; stderr is empty for both.
    for source in ["signed-minimal", "signed-minimal/streams/v1/index.sjson"] {
        t.compare_in(
            &t.fixtures.join("simplestreams"),
            &[
                source,
                "--keyring",
                keyring,
                "-o",
                "%(item_url)s %(sha256)s",
            ],
            false,
        );
    }
    // The armored public key works as a keyring too (gpgv, and so
    // sstream-query, takes only binary keyrings).
    let dir = t.fixtures.join("simplestreams");
    let armored = dir.join("signed-minimal/test-pubkey.asc");
    let binary = t.compare_in(&dir, &["signed-minimal", "--keyring", keyring], false);
    let ours = t.mountctl_query(
        &dir,
        &["signed-minimal", "--keyring", armored.to_str().unwrap()],
    );
    assert_eq!(ours.code, Some(0), "{}", ours.stderr_text());
    assert_same(
        "stdout",
        &["--keyring", "test-pubkey.asc"],
        &binary.stdout,
        &ours.stdout,
    );
}

#[test]
fn signed_sources_that_do_not_verify_are_refused() {
    let Some(t) = tools() else { return };
    if which("gpgv").is_none() {
        return missing("gpgv, which sstream-query verifies signed sources with, is not installed")
            .unwrap_or(());
    }
    let tmp = tempfile::tempdir().unwrap();
    let mirror = tmp.path().join("m");
    streamfs_tests::store::copy_tree(&t.fixtures.join("simplestreams/signed-minimal"), &mirror);
    let keyring = mirror.join("test-keyring.gpg");
    let keyring = keyring.to_str().unwrap();
    let products = mirror.join("streams/v1/download.sjson");
    let signed = std::fs::read_to_string(&products).unwrap();
    let tampered = signed.replacen("\"size\": ", "\"size\": 1", 1);
    assert_ne!(tampered, signed, "nothing to tamper with");
    std::fs::write(&products, tampered).unwrap();

    // Both clients refuse the tampered products file, and say which.
    let args = ["m", "--keyring", keyring];
    let theirs = t.sstream_query(tmp.path(), &args);
    assert_ne!(theirs.code, Some(0), "sstream-query read a tampered file");
    let ours = t.mountctl_query(tmp.path(), &args);
    assert_eq!(ours.code, Some(1), "{}", ours.stderr_text());
    assert!(
        ours.stderr_text().contains("m/streams/v1/download.sjson"),
        "the error must name the file: {}",
        ours.stderr_text()
    );
    assert!(ours.stdout.is_empty(), "printed from a tampered file");

    // A keyring without the signer's key, and a missing keyring, fail too.
    let store = tmp.path().join("store");
    let made = run_in(tmp.path(), &t.mountctl, &["--store", "store", "init"]);
    assert_eq!(made.code, Some(0), "{}", made.stderr_text());
    let made = run_in(tmp.path(), &t.mountctl, &["--store", "store", "keygen"]);
    assert_eq!(made.code, Some(0), "{}", made.stderr_text());
    let other = store.join("keys/keyring.gpg");
    for k in [other.to_str().unwrap(), "/nonexistent/keyring.gpg"] {
        let ours = t.mountctl_query(
            &t.fixtures.join("simplestreams"),
            &["signed-minimal", "--keyring", k],
        );
        assert_eq!(ours.code, Some(1), "keyring {k}: {}", ours.stderr_text());
        assert!(
            ours.stderr_text().contains("index.sjson"),
            "{}",
            ours.stderr_text()
        );
    }

    // --no-verify reads it unchecked, as sstream-query -U does.
    let args = ["m", "--no-verify", "-o", "%(item_name)s %(size)s"];
    t.compare_in(tmp.path(), &args, false);
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

#[test]
fn bad_filters_and_formats_fail_with_usage_errors() {
    let Some(t) = tools() else { return };
    let dir = t.fixtures.join("simplestreams");
    let bad = t.mountctl_query(&dir, &["aliases/streams/v1/p.json", "arch"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr_text().contains("invalid filter 'arch'"),
        "{}",
        bad.stderr_text()
    );
    let bad = t.mountctl_query(&dir, &["aliases/streams/v1/p.json", "id~("]);
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr_text().contains("id~("), "{}", bad.stderr_text());
    let bad = t.mountctl_query(&dir, &["aliases/streams/v1/p.json", "-o", "%(id)d"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr_text().contains("a real number is required"),
        "{}",
        bad.stderr_text()
    );
    // sstream-query fails on the same inputs.
    assert_ne!(
        t.sstream_query(&dir, &["aliases/streams/v1/p.json", "arch"])
            .code,
        Some(0)
    );
    let clap = t.mountctl_query(&dir, &["--json", "--pretty", "x"]);
    assert_eq!(clap.code, Some(2));
}

#[test]
fn store_streams_print_what_their_export_prints() {
    let Some(t) = tools() else { return };
    let sc = t.fixtures.join("maas-images/golden/util-scenario");
    let s = streamfs_tests::store::TestStore::init(Some(streamfs_tests::store::SCENARIO_CONFIG));
    for v in ["20250101", "20250102"] {
        let build = sc.join(format!("builds/build-{v}.d"));
        s.ok(&["insert", build.to_str().unwrap(), "candidate"]);
    }
    let export = s.tmp.path().join("export");
    s.ok(&["export", "candidate", export.to_str().unwrap()]);
    let index = export.join("streams/v1/index.json");

    // Every column but item_url, whose root differs: the export's root for
    // sstream-query, `candidate/` (the path under a mount) for a stream name.
    let fmt = "%(product_name)s %(version_name)s %(item_name)s %(path)s %(sha256)s %(size)s";
    for (args, lines) in [
        (vec!["-o", fmt], 48),
        (vec!["kflavor=generic", "-o", fmt, "--max", "1"], 12),
    ] {
        let mut theirs_args = vec![index.to_str().unwrap()];
        theirs_args.extend_from_slice(&args);
        let theirs = t.sstream_query(s.tmp.path(), &theirs_args);
        assert_eq!(theirs.code, Some(0), "{}", theirs.stderr_text());
        let mut ours_args = vec!["--store", "store", "query", "candidate"];
        ours_args.extend_from_slice(&args);
        let ours = run_in(s.tmp.path(), &t.mountctl, &ours_args);
        assert_eq!(ours.code, Some(0), "{}", ours.stderr_text());
        assert_same("stdout", &ours_args, &theirs.stdout, &ours.stdout);
        assert_eq!(
            ours.stdout_text().lines().count(),
            lines,
            "{}",
            ours.stdout_text()
        );
    }
    let urls = run_in(
        s.tmp.path(),
        &t.mountctl,
        &[
            "--store",
            "store",
            "query",
            "candidate",
            "-o",
            "%(item_url)s=%(path)s",
        ],
    );
    for line in urls.stdout_text().lines() {
        let (url, path) = line.split_once('=').unwrap();
        assert_eq!(url, format!("candidate/{path}"));
    }

    // An empty stream prints nothing; an unknown one is an error naming it.
    let empty = run_in(
        s.tmp.path(),
        &t.mountctl,
        &["--store", "store", "query", "stable"],
    );
    assert_eq!(
        (empty.code, empty.stdout.len()),
        (Some(0), 0),
        "{}",
        empty.stderr_text()
    );
    let unknown = run_in(
        s.tmp.path(),
        &t.mountctl,
        &["--store", "store", "query", "nosuch"],
    );
    assert_eq!(unknown.code, Some(1));
    assert!(
        unknown.stderr_text().contains("unknown stream 'nosuch'"),
        "{}",
        unknown.stderr_text()
    );
}
