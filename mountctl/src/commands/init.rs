use std::process::ExitCode;

use anyhow::{Context as _, Result};
use streamfs_core::store::Store;

use super::Context;
use crate::cli::InitArgs;

pub fn run(ctx: &Context, a: InitArgs) -> Result<ExitCode> {
    let text = match &a.config {
        Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?),
        None => None,
    };
    std::fs::create_dir_all(&ctx.store_dir)
        .with_context(|| format!("{}", ctx.store_dir.display()))?;
    let store = Store::init(&ctx.store_dir, text.as_deref())?;
    let names: Vec<&str> = store
        .config()
        .streams
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    println!(
        "created store {} with streams: {}",
        ctx.store_dir.display(),
        names.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
