use std::process::ExitCode;

use anyhow::Result;
use streamfs_core::ops::export::export;

use super::Context;
use crate::cli::ExportArgs;

pub fn run(ctx: &Context, a: ExportArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let r = export(&store, &a.stream, &a.dir)?;
    println!(
        "exported {} to {}: {} metadata file(s), {} item file(s) ({} hard-linked, {} copied)",
        a.stream,
        a.dir.display(),
        r.metadata.len(),
        r.files,
        r.linked,
        r.copied
    );
    Ok(ExitCode::SUCCESS)
}
