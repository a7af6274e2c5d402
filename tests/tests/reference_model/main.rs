//! Reference-model property tests of the mount, after awslabs/mountpoint-s3's
//! reftests: random sequences of operations are applied both to a real
//! streamfs mount and to a small in-memory model of the streams, and after
//! every step the mount's listings, file contents, paths readable but not
//! listed, and flattened metadata must equal what the model predicts.
//!
//! The operations are what an operator does (ARCHITECTURE.md §3, §4): insert by copy,
//! by rename of an rsync staging file and by writing a products file into
//! `streams/v1/` followed by its data; promote by `ln -s`; remove by `rm` and
//! `rm -r`; and, beside the mount, `mountctl insert`, `promote`, `clean-md`
//! and `reap-orphans --now`; and remounting. A case ends with `mountctl
//! fsck`, which must find the store clean.
//!
//! The model (see [`Model`]) holds each stream's product versions and their
//! items (path and content), the removed paths still readable, the shared
//! files kept until a product of their version exists, the pool's contents
//! and the recorded orphans. Its rules are those of ARCHITECTURE.md, stated in its
//! methods; where the mount disagrees, one of the two is wrong and the
//! failing sequence becomes a regression test at the end of this file.
//!
//! Figures: `STREAMFS_MODEL_CASES` (default 500) cases of up to
//! `STREAMFS_MODEL_STEPS` (default 8) steps. A longer run:
//! `STREAMFS_MODEL_CASES=5000 STREAMFS_MODEL_STEPS=30 cargo test -p
//! streamfs-tests --test reference_model -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sha2::{Digest, Sha256};
use streamfs_tests::mount::{Mount, can_mount, write_closed};
use streamfs_tests::store::flat_items;
use streamfs_tests::{mountctl_bin, run_in};

mod checks;
mod generators;
mod model;
mod real;
mod regressions;

use checks::*;
use generators::*;
use model::*;
use real::*;

pub(crate) static STEPS: AtomicUsize = AtomicUsize::new(0);

/// Runs one sequence on a fresh store and mount.
pub(crate) fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut real = Real::new();
    for (i, op) in ops.iter().enumerate() {
        STEPS.fetch_add(1, Ordering::Relaxed);
        let want = model.apply(op);
        let got = real.apply(op);
        if !same_outcome(want, got) {
            return Err(TestCaseError::fail(format!(
                "step {i} {op:?}: model {want:?}, mount {got:?}\n{}",
                real.log()
            )));
        }
        if let Err(e) = check(&model, real.mnt(), true) {
            return Err(TestCaseError::fail(format!(
                "after step {i} {op:?}: {e}\n{}",
                real.log()
            )));
        }
        // Whatever generation the served mount shows now, read all of it.
        let _ = walk(real.served());
    }
    // The served mount shows the last commit within a second (it notices
    // commits made beside it), whatever its caches held before.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = check(&model, real.served(), false) {
        if Instant::now() > deadline {
            let log = real.served.as_ref().map(Mount::log_text);
            return Err(TestCaseError::fail(format!(
                "the read-only mount after {} steps: {e}\n{}",
                ops.len(),
                log.unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    real.fsck()
        .map_err(|e| TestCaseError::fail(format!("fsck after {} steps: {e}", ops.len())))?;
    if let Some(m) = real.served.take() {
        m.unmount();
    }
    if let Some(m) = real.mount.take() {
        m.unmount();
    }
    Ok(())
}

pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
pub(crate) fn random_operation_sequences_agree_with_the_model() {
    if !can_mount() {
        return;
    }
    let cases = env_usize("STREAMFS_MODEL_CASES", 500) as u32;
    let steps = env_usize("STREAMFS_MODEL_STEPS", 8).max(1);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..=steps), |ops| {
        run_case(&ops)
    });
    streamfs_tests::report(&format!(
        "reference model: {cases} cases, {} steps, each compared with the mount",
        STEPS.load(Ordering::Relaxed)
    ));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Runs a fixed sequence (a regression found by the random ones).
pub(crate) fn regression(ops: &[Op]) {
    if !can_mount() {
        return;
    }
    if let Err(e) = run_case(ops) {
        panic!("{e}");
    }
}
