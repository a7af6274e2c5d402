use std::process::ExitCode;

use anyhow::Result;
use streamfs_core::ops::orphans::{find_orphans, reap_orphans};
use streamfs_core::timefmt::parse_duration;

use super::Context;
use crate::cli::{FindOrphansArgs, ReapOrphansArgs};

pub fn find(ctx: &Context, a: FindOrphansArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let r = find_orphans(&store, a.orphans_json.as_deref())?;
    for (k, t) in &r.orphans.entries {
        println!("{k}\t{t}");
    }
    eprintln!(
        "{} orphan(s): {} new, {} no longer orphaned",
        r.orphans.entries.len(),
        r.added.len(),
        r.dropped.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn reap(ctx: &Context, a: ReapOrphansArgs) -> Result<ExitCode> {
    // Validate arguments before touching the store.
    let older = match &a.older {
        // A bad duration is bad input to the command (exit 1), not a
        // malformed command line.
        Some(s) => parse_duration(s).map_err(|e| anyhow::anyhow!("--older: {e}"))?,
        None => ctx.open()?.config().grace,
    };
    let store = ctx.open()?;
    let r = reap_orphans(
        &store,
        older,
        a.now,
        a.dry.dry_run,
        a.orphans_json.as_deref(),
    )?;
    let verb = if a.dry.dry_run {
        "would reap"
    } else {
        "reaped"
    };
    for k in &r.reaped {
        println!("{verb} {k}");
    }
    eprintln!(
        "{} reaped ({} bytes), {} kept (younger than {}s), {} stale entr(ies) dropped",
        r.reaped.len(),
        r.bytes_freed,
        r.kept.len(),
        older.as_secs(),
        r.stale.len()
    );
    Ok(ExitCode::SUCCESS)
}
