use std::process::ExitCode;

use anyhow::Result;
use streamfs_core::ops::clean::clean_md;

use super::{Context, filters};
use crate::cli::CleanMdArgs;

pub fn run(ctx: &Context, a: CleanMdArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let filters = filters(&a.filters)?;
    let report = clean_md(&store, &a.stream, a.max, &filters, a.dry.dry_run)?;
    let verb = if a.dry.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for v in &report.removed {
        println!("{verb} {v}");
    }
    if let Some(c) = &report.commit {
        println!(
            "{} version(s) removed from {}; generation {}",
            report.removed.len(),
            a.stream,
            c.generation
        );
    }
    Ok(ExitCode::SUCCESS)
}
