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

use streamfs_core::fetch::{Client, FetchOptions};

use super::source_image;
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

/// The builder `m` names, owning what [`Builder`] borrows: build and
/// cloudimg-sync pick it the same way.
pub struct Builders {
    cmd: Option<Vec<String>>,
    builtin: BuiltinOptions,
}

impl Builders {
    pub fn new(m: &Meph2Args) -> Result<Builders> {
        Ok(Builders {
            cmd: builder_cmd(m)?,
            builtin: builtin_options(m),
        })
    }

    pub fn builder(&self) -> Builder<'_> {
        match &self.cmd {
            Some(c) => Builder::Command(c),
            None => Builder::Builtin(&self.builtin),
        }
    }
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

/// The source as a local path: a URL is downloaded (or found in the
/// cache), verified against `--source-sha256` or the `SHA256SUMS` beside
/// it; a path given with `--source-sha256` is checked too.
fn local_source(a: &BuildArgs) -> Result<String> {
    let given = a.source_sha256.as_deref().map(str::to_ascii_lowercase);
    if let Some(h) = &given
        && !(h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(streamfs_core::Error::Usage(format!(
            "--source-sha256 {h}: not a sha256 (64 hex digits)"
        ))
        .into());
    }
    let url = &a.source;
    if !source_image::is_url(url) && given.is_none() {
        return Ok(url.clone());
    }
    let client = Client::new(FetchOptions::default())?;
    let sha256 = match given {
        Some(h) => h,
        None => source_image::sha256_beside(&client, url)?.with_context(|| {
            format!(
                "{url}: no SHA256SUMS beside it lists it, so it cannot be verified: \
                 give --source-sha256 HEX"
            )
        })?,
    };
    let cache = source_image::cache_dir(a.cache.as_deref());
    let path = source_image::fetch(
        &client,
        url,
        &format!("source {url}"),
        &sha256,
        None,
        &cache,
    )?;
    Ok(path.display().to_string())
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
    let request = |source| Request {
        arch: &a.arch,
        release: &a.release,
        version_name: &a.version_name,
        source,
        enable_di,
        image_format: a.image_format.as_deref(),
        verbosity: 1,
    };
    // Planned once with the source as given, so an unknown release or
    // arch is refused before anything is downloaded.
    plan(&cfg, &request(&a.source)).map_err(usage)?;
    let source = local_source(&a)?;
    let plan = plan(&cfg, &request(&source)).map_err(usage)?;
    let builders = Builders::new(&a.meph2)?;
    let builder = builders.builder();
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
