//! A store signing with a key made by `gpg`: what it generates verifies with
//! `gpgv`, and python-simplestreams reads and mirrors its export with every
//! signature and checksum checked; tampering is caught.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use streamfs_tests::store::{SCENARIO_CONFIG, TestStore};
use streamfs_tests::{fixtures_dir, missing, run_in, sstream_venv};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("gpg runs");
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn gpgv(keyring: &Path, args: &[&Path]) -> bool {
    Command::new("gpgv")
        .arg("--keyring")
        .arg(keyring)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("gpgv runs")
        .success()
}

#[test]
fn a_gpg_key_signs_every_commit_and_clients_verify_it() {
    let Some(fx) = fixtures_dir() else { return };
    let Some(venv) = sstream_venv() else { return };
    if !have("gpg") || !have("gpgv") {
        missing::<()>("gpg and gpgv (apt-get install gnupg gpgv)");
        return;
    }
    let config = SCENARIO_CONFIG.replacen(
        "[[stream]]",
        "[signing]\nkey = \"keys/k.asc\"\n\n[[stream]]",
        1,
    );
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("gnupg");
    fs::create_dir_all(&home).unwrap();
    fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    gpg(
        &home,
        &[
            "--quick-gen-key",
            "streamfs test <test@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
    );
    let secret = gpg(&home, &["--armor", "--export-secret-keys"]);
    let keyring = tmp.path().join("keyring.gpg");
    fs::write(&keyring, gpg(&home, &["--export"])).unwrap();
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "all"])
        .status();

    // The key must exist before the store's first commit signs with it.
    let root = tmp.path().join("store");
    fs::create_dir_all(root.join("keys")).unwrap();
    fs::write(root.join("keys/k.asc"), &secret).unwrap();
    let cfg = tmp.path().join("store.toml");
    fs::write(&cfg, &config).unwrap();
    let s = TestStore {
        tmp: tempfile::tempdir().unwrap(),
        root: root.clone(),
    };
    s.ok(&["init", "--config", cfg.to_str().unwrap()]);
    let build = fx.join("maas-images/golden/util-scenario/builds/build-20250101.d");
    s.ok(&["insert", build.to_str().unwrap(), "candidate"]);

    let v1 = root.join("meta/current/candidate/streams/v1");
    let pjson = v1.join("com.ubuntu.maas:candidate:v3:download.json");
    for f in ["index.sjson", "com.ubuntu.maas:candidate:v3:download.sjson"] {
        assert!(gpgv(&keyring, &[&v1.join(f)]), "gpgv rejects {f}");
    }
    let sig = v1.join("com.ubuntu.maas:candidate:v3:download.json.gpg");
    assert!(
        gpgv(&keyring, &[&sig, &pjson]),
        "gpgv rejects the detached signature"
    );
    assert!(gpgv(
        &keyring,
        &[&v1.join("index.json.gpg"), &v1.join("index.json")]
    ));
    let index_sjson = fs::read_to_string(v1.join("index.sjson")).unwrap();
    assert!(
        index_sjson.contains("download.sjson\""),
        "index.sjson must point at .sjson files"
    );

    // Export, then the reference client reads and mirrors it.
    let export = tmp.path().join("export");
    s.ok(&["export", "candidate", export.to_str().unwrap()]);
    // sstream-query on the export's signed index, checked with `keyring`.
    let signed_index = export.join("streams/v1/index.sjson");
    let query = |extra: &[&str]| {
        let mut args = vec![
            "--keyring",
            keyring.to_str().unwrap(),
            signed_index.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run_in(tmp.path(), &venv.join("bin/sstream-query"), &args)
    };
    let q = query(&["-o", "%(version_name)s %(item_name)s %(sha256)s"]);
    assert_eq!(q.code, Some(0), "sstream-query: {}", q.stderr_text());
    assert_eq!(q.stdout_text().lines().count(), 24, "{}", q.stdout_text());
    let mirror = tmp.path().join("mirror");
    let m = run_in(
        tmp.path(),
        &venv.join("bin/sstream-mirror"),
        &[
            "--keyring",
            keyring.to_str().unwrap(),
            &format!("{}/", export.display()),
            mirror.to_str().unwrap(),
        ],
    );
    assert_eq!(m.code, Some(0), "sstream-mirror: {}", m.stderr_text());
    let squashfs = mirror.join("noble/amd64/20250101/squashfs");
    assert_eq!(
        fs::read(&squashfs).unwrap(),
        fs::read(build.join("noble/amd64/20250101/squashfs")).unwrap()
    );

    // Tampering: gpgv and mountctl verify both refuse.
    let out = s.ok(&[
        "verify",
        "--keyring",
        keyring.to_str().unwrap(),
        v1.join("index.sjson").to_str().unwrap(),
    ]);
    assert!(out.stdout_text().contains("good signature"));
    let tampered = tmp.path().join("tampered.sjson");
    fs::write(&tampered, index_sjson.replace("image-ids", "image-idz")).unwrap();
    assert!(
        !gpgv(&keyring, &[&tampered]),
        "gpgv accepted a tampered file"
    );
    let out = s.mountctl(&[
        "verify",
        "--keyring",
        keyring.to_str().unwrap(),
        tampered.to_str().unwrap(),
    ]);
    assert_eq!(
        out.code,
        Some(1),
        "mountctl verify accepted a tampered file"
    );
    assert!(
        out.stderr_text().contains("tampered.sjson"),
        "{}",
        out.stderr_text()
    );
    // A tampered export fails the reference client too.
    let exported = export.join("streams/v1/com.ubuntu.maas:candidate:v3:download.sjson");
    let original = fs::read_to_string(&exported).unwrap();
    let t = original.replacen("\"size\": 22", "\"size\": 23", 1);
    assert_ne!(t, original, "nothing to tamper with");
    fs::remove_file(&exported).unwrap();
    fs::write(&exported, t).unwrap();
    let q = query(&[]);
    assert_ne!(q.code, Some(0), "sstream-query read a tampered stream");
}
