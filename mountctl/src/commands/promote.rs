use std::process::ExitCode;

use anyhow::Result;
use streamfs_core::ops::promote::{PromoteRequest, promote};

use super::{Context, filters};
use crate::cli::PromoteArgs;

pub fn run(ctx: &Context, a: PromoteArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let filters = filters(&a.filters)?;
    let report = promote(
        &store,
        &PromoteRequest {
            products: None,
            from: &a.from,
            to: &a.to,
            version: &a.version,
            label: a.label.as_deref(),
            filters: &filters,
            dry_run: a.dry.dry_run,
        },
    )?;
    let verb = if a.dry.dry_run {
        "would promote"
    } else {
        "promoted"
    };
    for (s, d) in &report.added {
        println!("{verb} {s} -> {}", d.product);
    }
    for d in &report.existing {
        println!("exists {d} (unchanged)");
    }
    if let Some(c) = &report.commit {
        println!(
            "{} version(s) promoted to {}; generation {}",
            report.added.len(),
            a.to,
            c.generation
        );
    }
    Ok(ExitCode::SUCCESS)
}
