//! `mountctl build`: one meph2-build run (plan, builder, metadata), with one
//! progress line per stage on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use streamfs_build::builtin::BuiltinOptions;
use streamfs_build::config::Config;
use streamfs_build::plan::{Request, plan};
use streamfs_build::run::{BuildOptions, Builder, build};
use streamfs_build::stage::Stages;

use crate::cli::{BuildArgs, FakeBuilderArgs, Meph2Args};

/// Library usage errors become the CLI's (exit 2).
pub fn usage(e: streamfs_build::Error) -> anyhow::Error {
    match e {
        streamfs_build::Error::Usage(m) => streamfs_core::Error::Usage(m).into(),
        other => other.into(),
    }
}

pub fn load_config(m: &Meph2Args) -> Result<Config> {
    Config::load(&m.config).map_err(usage).with_context(|| {
        format!(
            "reading the meph2 config (--config or STREAMFS_MEPH2_CONFIG; default {})",
            m.config.display()
        )
    })
}

/// The builder argv prefix (None for the builtin builder): `fake` runs
/// this binary's fake builder.
pub fn builder_cmd(m: &Meph2Args) -> Result<Option<Vec<String>>> {
    Ok(match m.builder.as_str() {
        streamfs_build::builtin::NAME => None,
        "fake" => Some(vec![
            std::env::current_exe()?.display().to_string(),
            "fake-builder".into(),
        ]),
        cmd => Some(cmd.split_whitespace().map(str::to_string).collect()),
    })
}

pub fn builtin_options(m: &Meph2Args) -> BuiltinOptions {
    BuiltinOptions {
        apt_cache: m.apt_cache.clone(),
    }
}

pub fn log_dir(m: &Meph2Args) -> PathBuf {
    m.log_dir.clone().unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map_or(PathBuf::from("/tmp"), PathBuf::from);
        home.join(".local/state/streamfs/build-logs")
    })
}

pub fn stderr_sink() -> impl FnMut(&str) {
    |line: &str| eprintln!("{line}")
}

pub fn run(a: BuildArgs) -> Result<ExitCode> {
    let cfg = load_config(&a.meph2)?;
    let enable_di = if a.enable_di {
        Some(true)
    } else if a.disable_di {
        Some(false)
    } else {
        None
    };
    let req = Request {
        arch: &a.arch,
        release: &a.release,
        version_name: &a.version_name,
        source: &a.source,
        enable_di,
        image_format: a.image_format.as_deref(),
        verbosity: 1,
    };
    let plan = plan(&cfg, &req).map_err(usage)?;
    let cmd = builder_cmd(&a.meph2)?;
    let builtin = builtin_options(&a.meph2);
    let builder = match &cmd {
        Some(c) => Builder::Command(c),
        None => Builder::Builtin(&builtin),
    };
    let logs = log_dir(&a.meph2);
    let mut sink = stderr_sink();
    let mut stages = Stages::new(&mut sink);
    let report = build(
        &plan,
        &BuildOptions {
            builder,
            out: &a.out,
            flat_json: a.flat_json.as_deref(),
            log_dir: &logs,
        },
        &mut stages,
    )
    .map_err(usage)?;
    for p in &report.products {
        println!("{p} {}", a.version_name);
    }
    if let Some(l) = &report.log {
        eprintln!("log: {}", l.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn fake(a: FakeBuilderArgs) -> Result<ExitCode> {
    streamfs_build::fake::run(&a.args).map_err(usage)?;
    Ok(ExitCode::SUCCESS)
}
