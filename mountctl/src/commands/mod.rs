//! One module per subcommand; `run` resolves the store once and dispatches.

mod build;
mod builds;
mod clean_md;
mod cloudimg_sync;
mod export;
mod fsck;
mod init;
mod insert;
mod mirrors;
mod node;
mod orphans;
mod promote;
mod query;
mod sign;
mod source_image;
mod status;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use streamfs_core::store::Store;
use streamfs_core::streams::filter::ItemFilter;

use crate::cli::{Cli, Command};

/// Settings resolved once: CLI, then environment (clap's `env`), then the
/// current directory.
pub struct Context {
    pub store_dir: PathBuf,
}

impl Context {
    pub fn open(&self) -> Result<Store> {
        Ok(Store::open(&self.store_dir)?)
    }
}

pub fn filters(f: &[String]) -> Result<Vec<ItemFilter>> {
    Ok(ItemFilter::parse_all(f)?)
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Context {
        store_dir: cli.store.unwrap_or_else(|| PathBuf::from(".")),
    };
    match cli.command {
        Command::Query(a) => query::run(&ctx.store_dir, a).map(|()| ExitCode::SUCCESS),
        Command::Init(a) => init::run(&ctx, a),
        Command::Insert(a) => insert::run(&ctx, a),
        Command::Promote(a) => promote::run(&ctx, a),
        Command::CleanMd(a) => clean_md::run(&ctx, a),
        Command::FindOrphans(a) => orphans::find(&ctx, a),
        Command::ReapOrphans(a) => orphans::reap(&ctx, a),
        Command::Export(a) => export::run(&ctx, a),
        Command::Fsck(a) => fsck::run(&ctx, a),
        Command::Sign(a) => sign::sign(&ctx, a),
        Command::Keygen(a) => sign::keygen(&ctx, a),
        Command::Verify(a) => sign::verify(a),
        Command::Node(c) => node::run(&ctx, c),
        Command::Sync(a) => sync::run(&ctx, a),
        Command::Build(a) => build::run(a),
        Command::CloudimgSync(a) => cloudimg_sync::run(&ctx, a),
        Command::FakeBuilder(a) => build::fake(a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Mirrors(c) => mirrors::run(&ctx, c),
        Command::Metalink(a) => mirrors::metalink(&ctx, a),
        Command::Builds(a) => builds::run(a),
    }
}
