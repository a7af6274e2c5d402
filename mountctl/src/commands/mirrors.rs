//! `mountctl mirrors …` and `mountctl metalink`: the mirror list in the
//! store, crawls, and metalinks from the last crawl.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use streamfs_mirrors::crawl::{self, Items};
use streamfs_mirrors::metalink::{self, Format, Target};
use streamfs_mirrors::model::validate_mirror;
use streamfs_mirrors::{CrawlState, Mirror, MirrorsFile};

use super::Context;
use crate::cli::{CrawlItems, MetalinkArgs, MirrorsCommand};

/// Usage errors of the mirrors crate exit 2, like the core's.
fn mapped(e: streamfs_mirrors::Error) -> anyhow::Error {
    match e {
        streamfs_mirrors::Error::Usage(m) => streamfs_core::Error::Usage(m).into(),
        streamfs_mirrors::Error::Store(e) => e.into(),
        e => e.into(),
    }
}

/// Loads `mirrors.toml` under the writer lock, applies `f`, saves it.
fn edit(
    ctx: &Context,
    f: impl FnOnce(&mut MirrorsFile) -> streamfs_mirrors::Result<()>,
) -> Result<()> {
    let store = ctx.open()?;
    let mut txn = store.begin()?;
    let mut file = MirrorsFile::load(store.root())?;
    f(&mut file).map_err(mapped)?;
    file.save(store.root())?;
    // The published metalinks follow the list (a disabled or removed
    // mirror leaves them at once).
    txn.refresh_metalinks();
    txn.commit()?;
    Ok(())
}

pub fn run(ctx: &Context, cmd: MirrorsCommand) -> Result<ExitCode> {
    match cmd {
        MirrorsCommand::Add(a) => {
            let m = Mirror {
                name: a.name,
                url: a.url,
                rsync: a.rsync,
                location: a.location,
                preference: a.preference,
                private: a.private,
                enabled: true,
                disabled_by_crawl: None,
            };
            validate_mirror(&m)
                .map_err(|e| streamfs_core::Error::Usage(format!("mirror '{}': {e}", m.name)))?;
            edit(ctx, |f| {
                if f.mirrors.iter().any(|x| x.name == m.name) {
                    return Err(streamfs_mirrors::Error::Usage(format!(
                        "a mirror named '{}' exists already",
                        m.name
                    )));
                }
                f.mirrors.push(m);
                Ok(())
            })?;
        }
        MirrorsCommand::Remove(a) => {
            edit(ctx, |f| {
                f.mirror_mut(&a.name)?;
                f.mirrors.retain(|m| m.name != a.name);
                Ok(())
            })?;
        }
        MirrorsCommand::Enable(a) => edit(ctx, |f| {
            let m = f.mirror_mut(&a.name)?;
            m.enabled = true;
            m.disabled_by_crawl = None;
            Ok(())
        })?,
        MirrorsCommand::Disable(a) => edit(ctx, |f| {
            f.mirror_mut(&a.name)?.enabled = false;
            Ok(())
        })?,
        MirrorsCommand::List => list(ctx)?,
        MirrorsCommand::Crawl(a) => {
            let store = ctx.open()?;
            let opts = crawl::Options {
                jobs: a.jobs.max(1),
                timeout: Duration::from_secs(a.timeout.max(1)),
                items: match a.items {
                    CrawlItems::All => Items::All,
                    CrawlItems::Sample => Items::Sample,
                    CrawlItems::None => Items::None,
                },
                names: a.names,
            };
            let results = crawl::crawl(&store, &opts).map_err(mapped)?;
            let mut failed = 0;
            for r in &results {
                match &r.result {
                    Ok(sites) => {
                        let s: Vec<String> = sites
                            .iter()
                            .map(|(n, s)| format!("{n}={}", s.freshness))
                            .collect();
                        println!("{}: {} ({} requests)", r.name, s.join(" "), r.requests);
                    }
                    Err(e) => {
                        failed += 1;
                        println!("{}: failed: {e}", r.name);
                    }
                }
            }
            if failed > 0 {
                eprintln!("mountctl: {failed} of {} mirrors failed", results.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &Context) -> Result<()> {
    let store = ctx.open()?;
    let file = MirrorsFile::load(store.root())?;
    let state = CrawlState::load(store.root())?;
    for m in &file.mirrors {
        let status = if m.enabled {
            "enabled".to_string()
        } else if let Some(why) = &m.disabled_by_crawl {
            format!("disabled by crawl: {why}")
        } else {
            "disabled".to_string()
        };
        let mut line = format!(
            "{}\t{}\t{}\tpreference={}{}\t{status}",
            m.name,
            m.url,
            m.location.as_deref().unwrap_or("-"),
            m.preference,
            if m.private { " private" } else { "" },
        );
        if let Some(st) = state.mirrors.get(&m.name) {
            for (site, s) in &st.sites {
                line.push_str(&format!("\t{site}={}", s.freshness));
                if let Some(g) = s.generation {
                    line.push_str(&format!("@{g}"));
                }
            }
            if st.consecutive_failures > 0 {
                line.push_str(&format!("\tfailures={}", st.consecutive_failures));
            }
            if let Some(t) = st.last_success {
                line.push_str(&format!(
                    "\tlast_success={}",
                    streamfs_core::timefmt::rfc2822(streamfs_core::timefmt::from_unix(t))
                ));
            }
        }
        println!("{line}");
    }
    Ok(())
}

pub fn metalink(ctx: &Context, a: MetalinkArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let file = MirrorsFile::load(store.root())?;
    let state = CrawlState::load(store.root())?;
    let target = match (a.stream, a.root) {
        (Some(stream), _) => Target::Stream {
            stream,
            path: a.path,
        },
        (None, Some(dir)) => Target::Root { dir, path: a.path },
        (None, None) => unreachable!("clap requires --stream or --root"),
    };
    let now = streamfs_core::timefmt::now();
    let entry = metalink::entry_for(&store, &file, &state, &target, now.timestamp())?;
    if entry.resources.is_empty() {
        eprintln!("mountctl: warning: no up-to-date mirror carries this file (crawl first?)");
    }
    let format = if a.format == 4 {
        Format::V4
    } else {
        Format::V3
    };
    print!("{}", metalink::write(&entry, format, now));
    Ok(ExitCode::SUCCESS)
}
