use std::process::ExitCode;

use anyhow::Result;
use streamfs_core::ops::insert::{InsertOptions, insert};

use super::{Context, filters};
use crate::cli::InsertArgs;
use crate::progress::Reporter;

pub fn run(ctx: &Context, a: InsertArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let filters = filters(&a.filters)?;
    let mut reporter = Reporter::new();
    let report = insert(
        &store,
        &a.stream,
        &a.src,
        InsertOptions {
            dry_run: a.dry.dry_run,
            filters: &filters,
            progress: &mut |p| reporter.update(p),
        },
    )?;
    drop(reporter);
    let verb = if a.dry.dry_run { "would add" } else { "added" };
    for v in &report.added {
        println!("{verb} {v}");
    }
    for v in &report.existing {
        println!("exists {v} (unchanged)");
    }
    for v in &report.retired {
        println!("retired {v} (keep)");
    }
    match &report.commit {
        Some(c) => println!(
            "{} version(s) added to {}, {} new blob(s), {} bytes copied; generation {}",
            report.added.len(),
            a.stream,
            report.new_blobs,
            report.bytes_copied,
            c.generation
        ),
        None if a.dry.dry_run => println!("dry run: nothing changed"),
        None => println!("nothing to add: {} already has every version", a.stream),
    }
    Ok(ExitCode::SUCCESS)
}
