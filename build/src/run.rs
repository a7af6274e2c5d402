//! Running a build: the builder writes into a staging directory inside OUT;
//! only when it succeeded and wrote every file it was asked for are the files
//! renamed into place and the metadata written. A failed build leaves OUT as
//! it was (removed when it did not exist). When every output already exists
//! the builder is not run again (as meph2-build), only the metadata.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use streamfs_core::timefmt;

use crate::builtin::log::tail;
use crate::builtin::{self, BuiltinOptions};
use crate::error::{Error, Result};
use crate::metadata;
use crate::plan::Plan;
use crate::stage::Stages;

/// Who makes the images.
#[derive(Clone, Copy, Debug)]
pub enum Builder<'a> {
    /// A command and its leading arguments, run with meph2's argv after them
    /// (meph2's `maas-cloudimg2eph2`, the fake builder, a wrapper).
    Command(&'a [String]),
    /// The builtin builder, run in this process (its steps are stage lines).
    Builtin(&'a BuiltinOptions),
}

pub struct BuildOptions<'a> {
    pub builder: Builder<'a>,
    pub out: &'a Path,
    pub flat_json: Option<&'a Path>,
    /// Directory that keeps one log file per builder run.
    pub log_dir: &'a Path,
}

#[derive(Debug)]
pub struct BuildReport {
    /// False when every output existed and the builder was not run.
    pub built: bool,
    pub products: Vec<String>,
    pub log: Option<PathBuf>,
}

/// Removes what a failed build created: the staging dir, and OUT itself
/// when this build created it.
struct Cleanup<'a> {
    staging: PathBuf,
    out: &'a Path,
    created_out: bool,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
        if self.armed && self.created_out {
            let _ = std::fs::remove_dir_all(self.out);
        }
    }
}

fn log_path(dir: &Path, plan: &Plan, out: &Path) -> PathBuf {
    let stamp = timefmt::now().format("%Y%m%dT%H%M%S");
    let base = out
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().into_owned());
    dir.join(format!(
        "build-{base}-{}-{stamp}-{}.log",
        plan.version_name,
        std::process::id()
    ))
}

pub fn build(plan: &Plan, opts: &BuildOptions<'_>, stages: &mut Stages<'_>) -> Result<BuildReport> {
    let out = opts.out;
    let created_out = !out.exists();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut cleanup = Cleanup {
        staging: out.join(format!(
            ".build-{}-{}",
            plan.version_name,
            std::process::id()
        )),
        out,
        created_out,
        armed: true,
    };
    let all_exist = plan.outputs.iter().all(|p| out.join(p).is_file());
    let mut log = None;
    if all_exist {
        stages.note(&format!(
            "all {} outputs exist in {}: not running the builder",
            plan.outputs.len(),
            out.display()
        ));
    } else {
        let staging = cleanup.staging.clone();
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        std::fs::create_dir_all(opts.log_dir).map_err(|e| Error::io(opts.log_dir, e))?;
        let lp = log_path(opts.log_dir, plan, out);
        log = Some(lp.clone());
        stages.run("builder", |stages| match opts.builder {
            Builder::Command(cmd) => run_builder(plan, cmd, &staging, &lp),
            Builder::Builtin(b) => {
                builtin::run(&plan.builder_args(&staging), b, &lp, stages)?;
                check_outputs(plan, &staging, builtin::NAME, &lp)
            }
        })?;
        stages.run("publish", |_| {
            for p in &plan.outputs {
                let (from, to) = (staging.join(p), out.join(p));
                if let Some(d) = to.parent() {
                    std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
                }
                std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
            }
            Ok(())
        })?;
    }
    let updated = timefmt::rfc2822(timefmt::now());
    stages.run("metadata", |_| {
        let doc = metadata::products(plan, out, &updated)?;
        metadata::write_streams(out, &doc, &updated)?;
        if let Some(f) = opts.flat_json {
            let text = metadata::flat_json(plan, out)?;
            std::fs::write(f, text).map_err(|e| Error::io(f, e))?;
        }
        Ok(())
    })?;
    cleanup.armed = false;
    Ok(BuildReport {
        built: !all_exist,
        products: plan.products.iter().map(|p| p.name.clone()).collect(),
        log,
    })
}

fn run_builder(plan: &Plan, builder: &[String], staging: &Path, log: &Path) -> Result<()> {
    let fail = |reason: String| Error::Builder {
        step: builder.first().cloned().unwrap_or_default(),
        reason,
        log: log.to_path_buf(),
    };
    let (prog, lead) = builder
        .split_first()
        .ok_or_else(|| fail("no builder command".into()))?;
    let args = plan.builder_args(staging);
    let mut logf = std::fs::File::create(log).map_err(|e| Error::io(log, e))?;
    {
        use std::io::Write;
        let _ = writeln!(logf, "ARGS: {} {}", builder.join(" "), args.join(" "));
    }
    let errf = logf.try_clone().map_err(|e| Error::io(log, e))?;
    let status = Command::new(prog)
        .args(lead)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(errf)
        .status()
        .map_err(|e| fail(format!("cannot run {prog}: {e}")))?;
    if !status.success() {
        return Err(fail(format!("{status}; last log lines: {}", tail(log, 5))));
    }
    check_outputs(plan, staging, prog, log)
}

/// Every file the plan names was written by builder `step`.
fn check_outputs(plan: &Plan, staging: &Path, step: &str, log: &Path) -> Result<()> {
    match plan.outputs.iter().find(|p| !staging.join(p).is_file()) {
        Some(p) => Err(Error::Builder {
            step: step.to_string(),
            reason: format!("it did not write {p}"),
            log: log.to_path_buf(),
        }),
        None => Ok(()),
    }
}
