//! `mountctl build` with the shipped fake builder against meph2-build's own
//! outputs (fixtures `maas-images/golden/meph2-build-*`): same files, same
//! products and index documents except `updated` and the hashes of the stub
//! payloads whose bytes the fixture does not record (squashfs, root image,
//! dtb); kernel, initrd and manifest hashes are compared too. Also: meph2's
//! builder argv, no rerun when every output exists, no partial OUT.

use std::path::Path;

use serde_json::Value;
use streamfs_tests::build::named_log;
use streamfs_tests::serve::{Nginx, sha256_hex};
use streamfs_tests::{fixtures_dir, mountctl_bin, run_in};

/// Payloads of meph2's stub whose exact bytes the fixture does not keep.
const STUB_FTYPES: &[&str] = &["squashfs", "root-image.gz", "boot-dtb"];

fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.shift_remove("updated");
            if m.get("ftype")
                .and_then(Value::as_str)
                .is_some_and(|f| STUB_FTYPES.contains(&f))
            {
                m.shift_remove("sha256");
                m.shift_remove("size");
            }
            for v in m.values_mut() {
                normalize(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn load(p: &Path) -> Value {
    let mut v: Value = serde_json::from_slice(&std::fs::read(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    normalize(&mut v);
    v
}

fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(format!("./{}", p.strip_prefix(base).unwrap().display()));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

struct Case {
    golden: &'static str,
    config: &'static str,
    args: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        golden: "meph2-build-v3-noble-amd64-20250101",
        config: "meph-v3.yaml",
        args: &["amd64", "noble", "20250101"],
    },
    Case {
        golden: "meph2-build-v3-trusty-amd64-20160101",
        config: "meph-v3.yaml",
        args: &["amd64", "trusty", "20160101"],
    },
    Case {
        golden: "meph2-build-v3-focal-armhf-20250101",
        config: "meph-v3.yaml",
        args: &["armhf", "focal", "20250101"],
    },
    Case {
        golden: "meph2-build-v3-focal-arm64-20250101",
        config: "meph-v3.yaml",
        args: &["arm64", "focal", "20250101"],
    },
    Case {
        golden: "meph2-build-v2-xenial-amd64-20160101-disable-di",
        config: "meph-v2.yaml",
        args: &["--disable-di", "amd64", "xenial", "20160101"],
    },
];

fn build(
    tmp: &Path,
    fx: &Path,
    config: &str,
    builder: &str,
    args: &[&str],
    out: &Path,
) -> streamfs_tests::Outcome {
    let cfg = fx.join("maas-images/upstream/conf").join(config);
    let logs = tmp.join("logs");
    let mut a: Vec<String> = vec![
        "build".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--builder".into(),
        builder.into(),
        "--log-dir".into(),
        logs.display().to_string(),
        "--image-format".into(),
        "squashfs-image".into(),
        "--flat-json".into(),
        tmp.join("flat.json").display().to_string(),
    ];
    a.extend(args.iter().map(|s| s.to_string()));
    a.push("/images/IMG".into());
    a.push(out.display().to_string());
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    run_in(tmp, &mountctl_bin(), &refs)
}

#[test]
fn fake_builds_equal_meph2_goldens() {
    let Some(fx) = fixtures_dir() else { return };
    for case in CASES {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let o = build(tmp.path(), &fx, case.config, "fake", case.args, &out);
        assert_eq!(o.code, Some(0), "{}: {}", case.golden, o.stderr_text());
        let golden = fx.join("maas-images/golden").join(case.golden);
        let want: Vec<String> = std::fs::read_to_string(golden.join("FILES.txt"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let mut want = want;
        want.sort();
        assert_eq!(files(&out), want, "{}: files", case.golden);
        for f in std::fs::read_dir(golden.join("streams/v1")).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap();
            assert_eq!(
                load(&out.join("streams/v1").join(name)),
                load(&f),
                "{}: {}",
                case.golden,
                name.to_string_lossy()
            );
        }
        let flat = golden.join("flat-json.json");
        if flat.exists() {
            assert_eq!(
                load(&tmp.path().join("flat.json")),
                load(&flat),
                "{}: flat json",
                case.golden
            );
        }
        let err = o.stderr_text();
        for stage in ["builder", "publish", "metadata"] {
            assert!(err.contains(&format!("stage {stage} started")), "{err}");
            assert!(err.contains(&format!("stage {stage} done in ")), "{err}");
        }
    }
}

fn staged_argv(argv_file: &Path) -> String {
    let text = std::fs::read_to_string(argv_file).unwrap();
    // The builder writes into OUT/.build-VERSION-PID; meph2's example used build.d.
    let re_start = text.find("/.build-").expect("staging dir in argv");
    let prefix_start = text[..re_start].rfind(['=', ' ', ',']).unwrap() + 1;
    let prefix_end = re_start + text[re_start + 1..].find('/').unwrap() + 1;
    let prefix = text[prefix_start..prefix_end].to_string();
    text.replace(&prefix, "build.d").trim_end().to_string()
}

#[test]
fn builder_gets_meph2s_argv_and_is_not_rerun() {
    let Some(fx) = fixtures_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let argv = tmp.path().join("argv.txt");
    let script = tmp.path().join("record.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"ARGS: $*\" >> {}\nexec {} fake-builder \"$@\"\n",
            argv.display(),
            mountctl_bin().display()
        ),
    )
    .unwrap();
    let builder = format!("sh {}", script.display());
    let out = tmp.path().join("out");
    // meph2's example ran with the source path `IMG`.
    let cfg_args = ["amd64", "noble", "20250101"];
    let o = build(tmp.path(), &fx, "meph-v3.yaml", &builder, &cfg_args, &out);
    assert_eq!(o.code, Some(0), "{}", o.stderr_text());
    let want = std::fs::read_to_string(fx.join("maas-images/golden/fake-builder-argv-example.txt"))
        .unwrap();
    assert_eq!(
        staged_argv(&argv).replace("/images/IMG", "IMG"),
        want.trim_end()
    );

    let before = std::fs::read_to_string(&argv).unwrap();
    let o = build(tmp.path(), &fx, "meph-v3.yaml", &builder, &cfg_args, &out);
    assert_eq!(o.code, Some(0), "{}", o.stderr_text());
    assert!(
        o.stderr_text().contains("not running the builder"),
        "{}",
        o.stderr_text()
    );
    assert_eq!(
        std::fs::read_to_string(&argv).unwrap(),
        before,
        "builder ran again"
    );
    assert!(out.join("streams/v1/index.json").is_file());
}

#[test]
fn failed_builder_leaves_no_out_and_names_its_log() {
    let Some(fx) = fixtures_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("half.sh");
    // Writes some outputs, then fails.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{} fake-builder \"$@\"\necho 'chroot step failed: no space' >&2\nexit 3\n",
            mountctl_bin().display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = build(
        tmp.path(),
        &fx,
        "meph-v3.yaml",
        &format!("sh {}", script.display()),
        &["amd64", "noble", "20250101"],
        &out,
    );
    assert_eq!(o.code, Some(1), "{}", o.stderr_text());
    let err = o.stderr_text();
    assert!(err.contains("chroot step failed"), "{err}");
    let (_, log) = named_log(&err);
    assert!(log.contains("--krd-pack=linux-generic,"), "{log}");
    assert!(!out.exists(), "partial OUT left behind");

    // Unknown release and arch are usage errors naming what is wrong.
    for (args, what) in [
        (["amd64", "nosuch", "1"], "nosuch"),
        (["sparc", "noble", "1"], "sparc"),
    ] {
        let o = build(tmp.path(), &fx, "meph-v3.yaml", "fake", &args, &out);
        assert_eq!(o.code, Some(2), "{}", o.stderr_text());
        assert!(o.stderr_text().contains(what), "{}", o.stderr_text());
        assert!(!out.exists());
    }
}

/// A URL source is downloaded once, verified against the SHA256SUMS beside
/// it (or --source-sha256), kept in the cache by sha256 and found there by
/// the next build; one that does not verify is not built from.
#[test]
fn a_url_source_is_verified_downloaded_once_and_cached() {
    let Some(fx) = fixtures_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let served = t.join("served");
    std::fs::create_dir(&served).unwrap();
    let image = b"a root tarball, as far as the fake builder cares\n".repeat(1000);
    std::fs::write(served.join("noble-root.tar.xz"), &image).unwrap();
    std::fs::write(
        served.join("tampered-root.tar.xz"),
        b"not what the sums say",
    )
    .unwrap();
    std::fs::write(served.join("unlisted-root.tar.xz"), b"x").unwrap();
    std::fs::write(
        served.join("SHA256SUMS"),
        format!(
            "{} *noble-root.tar.xz\n{} *tampered-root.tar.xz\n",
            sha256_hex(&image),
            sha256_hex(b"the original")
        ),
    )
    .unwrap();
    let Some(nginx) = Nginx::start(&served) else {
        return;
    };
    let cache = t.join("cache");
    let build = |source: &str, out: &str, extra: &[&str]| {
        let cfg = fx.join("maas-images/upstream/conf/meph-v3.yaml");
        let mut a: Vec<String> = [
            "build",
            "--config",
            cfg.to_str().unwrap(),
            "--builder",
            "fake",
            "--log-dir",
            t.join("logs").to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(["amd64", "noble", "20250101", source, out].map(String::from));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        run_in(t, &mountctl_bin(), &refs)
    };
    let gets = |name: &str| {
        nginx
            .access_log()
            .lines()
            .filter(|l| l.contains(&format!("GET /{name} ")))
            .count()
    };

    let url = nginx.url("/noble-root.tar.xz");
    let o = build(&url, "out1", &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr_text());
    assert!(t.join("out1/streams/v1/index.json").is_file());
    assert_eq!(gets("noble-root.tar.xz"), 1);
    assert_eq!(
        std::fs::read(cache.join(sha256_hex(&image))).unwrap(),
        image,
        "kept by sha256"
    );
    let o = build(&url, "out2", &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr_text());
    assert!(
        o.stderr_text().contains("in the cache"),
        "{}",
        o.stderr_text()
    );
    assert_eq!(gets("noble-root.tar.xz"), 1, "downloaded again");

    // Data that is not what SHA256SUMS says: refused, nothing built or kept.
    let o = build(&nginx.url("/tampered-root.tar.xz"), "out3", &[]);
    assert_eq!(o.code, Some(1), "{}", o.stderr_text());
    assert!(o.stderr_text().contains("sha256"), "{}", o.stderr_text());
    assert!(!t.join("out3").exists());
    assert!(!cache.join(sha256_hex(b"the original")).exists());
    // Nothing to verify against: refused, naming the way out.
    let o = build(&nginx.url("/unlisted-root.tar.xz"), "out3", &[]);
    assert_eq!(o.code, Some(1), "{}", o.stderr_text());
    assert!(
        o.stderr_text().contains("give --source-sha256"),
        "{}",
        o.stderr_text()
    );
    assert_eq!(gets("unlisted-root.tar.xz"), 0, "fetched unverified");
    let o = build(
        &nginx.url("/unlisted-root.tar.xz"),
        "out3",
        &["--source-sha256", &sha256_hex(b"x")],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr_text());
    let o = build(&url, "out4", &["--source-sha256", "abc"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr_text());
    assert!(
        o.stderr_text().contains("not a sha256"),
        "{}",
        o.stderr_text()
    );
}
