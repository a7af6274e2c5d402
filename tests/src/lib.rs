//! Shared helpers of the end-to-end tests: finding the reference data, the
//! reference tools and the `mountctl` binary.
//!
//! Tests that need something absent from the machine call these helpers and
//! return early when they get `None`: outside CI they say so with a visible
//! `SKIP: …` line (written past the test harness' output capture), under CI
//! (`CI=true`) the absence fails the test, so a CI run never passes by
//! testing nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// True when running under CI (`CI=true`), where missing prerequisites fail.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a missing prerequisite: a failure under CI, a visible skip
/// otherwise. Returns `None` so callers can `return` on it.
pub fn missing<T>(what: &str) -> Option<T> {
    if in_ci() {
        panic!("{what} (required when CI=true)");
    }
    // Straight to the process' stderr: libtest captures print!/eprint!
    // output of passing tests, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "SKIP: {what}");
    None
}

/// Prints a test's figures (cases run, kill points, faults injected) where
/// CI shows them: straight to stderr, past the harness' output capture.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The reference data (`/work/shared/fixtures` on the development machines):
/// `$STREAMFS_FIXTURES`, else `../shared/fixtures` next to the workspace.
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("STREAMFS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/fixtures"));
    if dir.join("simplestreams").is_dir() {
        Some(dir)
    } else {
        missing(&format!(
            "fixtures not found at {} (set STREAMFS_FIXTURES)",
            dir.display()
        ))
    }
}

/// A program found in `$PATH`.
pub fn in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// The python-simplestreams virtualenv (`bin/sstream-query`,
/// `bin/sstream-mirror`, `bin/python3`): `$STREAMFS_SSTREAM_VENV`, else
/// `/opt/sstream-venv`.
pub fn sstream_venv() -> Option<PathBuf> {
    let dir = std::env::var_os("STREAMFS_SSTREAM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/sstream-venv"));
    if dir.join("bin/sstream-query").is_file() {
        Some(dir)
    } else {
        missing(&format!(
            "python-simplestreams venv not found at {} (set STREAMFS_SSTREAM_VENV; \
             create it with `python3 -m venv DIR && DIR/bin/pip install python-simplestreams requests pyyaml`)",
            dir.display()
        ))
    }
}

/// A binary of the workspace (`mountctl`, `streamfs`) of the profile the
/// tests were built with.
///
/// Cargo builds only the test's own package's binaries for integration
/// tests, so the first call for each runs a build of the workspace (a no-op
/// when it is up to date, and what keeps a stale binary from being tested).
pub fn workspace_bin(package: &str, name: &str) -> PathBuf {
    static BINS: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let mut bins = BINS
        .get_or_init(Default::default)
        .lock()
        .expect("bins lock");
    if let Some(b) = bins.get(name) {
        return b.clone();
    }
    // The test executable is target/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Without the variables `cargo test` sets for the test process
    // (CARGO_MANIFEST_DIR, CARGO_PKG_*, …): build scripts that watch them
    // (ring's) would otherwise rerun, and rebuild everything above them, at
    // every switch between this build and a plain `cargo build`.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_") && k != "CARGO_HOME" {
            cmd.env_remove(k.as_ref());
        }
    }
    // The whole workspace, all targets: the same feature set as `cargo test
    // --workspace` and CI's `cargo build --workspace --all-targets`, so this is
    // a no-op after them. `-p PACKAGE` alone unifies features differently and
    // rebuilds the heavy dependencies (pgp, reqwest) a second time.
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "--workspace", "--all-targets"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    if let Some(target_dir) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target_dir);
    }
    let status = cmd.status().expect("running cargo build");
    assert!(
        status.success(),
        "cargo build --workspace --all-targets (for {package}) failed"
    );
    let bin = profile_dir.join(name);
    assert!(bin.is_file(), "{} missing after the build", bin.display());
    bins.insert(name.to_string(), bin.clone());
    bin
}

/// The `mountctl` binary ([`workspace_bin`]); `$STREAMFS_MOUNTCTL` names a
/// binary to use instead, unbuilt.
pub fn mountctl_bin() -> PathBuf {
    match std::env::var_os("STREAMFS_MOUNTCTL") {
        Some(bin) => PathBuf::from(bin),
        None => workspace_bin("mountctl", "mountctl"),
    }
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: Option<i32>,
}

impl Outcome {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `program args…` in `dir` (no stdin, UTF-8 Python I/O, no `RUST_LOG`
/// from the caller's environment) and collects its output.
pub fn run_in(dir: &Path, program: &Path, args: &[&str]) -> Outcome {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PYTHONIOENCODING", "utf-8")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    Outcome {
        stdout: out.stdout,
        stderr: out.stderr,
        code: out.status.code(),
    }
}
pub mod build;
pub mod buildd;
pub mod chromium;
pub mod debian;
pub mod mirrors;
pub mod mount;
pub mod node;
pub mod serve;
pub mod store;
