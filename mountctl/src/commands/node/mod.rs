//! `mountctl node …`: testbed nodes and their disk images.

mod images;
mod load;
mod progress;
mod testbed;

use std::process::ExitCode;

use anyhow::Result;
use streamfs_node::cmc::Verb;
use streamfs_node::nodespec::{Naming, Selection};
use streamfs_node::settings::Settings;

use super::Context;
use crate::cli::{NodeCommand, NodeSelectArgs};

pub fn run(ctx: &Context, cmd: NodeCommand) -> Result<ExitCode> {
    let settings = Settings::load().map_err(usage)?;
    match cmd {
        NodeCommand::Resolve(a) => {
            let (naming, sel) = select(&settings, &a)?;
            println!("{}", sel.names(&naming).join(" "));
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Config => {
            for (section, key, v) in settings.effective() {
                println!("[{section}] {key} = {}    # {}", v.value, v.origin);
            }
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Images(a) => images::list(ctx, &settings, a),
        NodeCommand::Import(a) => images::import(ctx, &settings, a),
        NodeCommand::Alias(a) => images::alias(ctx, &settings, a),
        NodeCommand::Load(a) => load::load(ctx, settings, a),
        NodeCommand::Save(a) => load::save(ctx, settings, a),
        NodeCommand::Wait(a) => load::wait(settings, a),
        NodeCommand::On(a) => load::power(settings, a, Verb::On),
        NodeCommand::Off(a) => load::power(settings, a, Verb::Off),
        NodeCommand::Reset(a) => load::power(settings, a, Verb::Reset),
        NodeCommand::Status(a) => load::power(settings, a, Verb::Status),
        NodeCommand::Info(a) => load::power(settings, a, Verb::Info),
    }
}

/// The nodes a command line names; a bad spec is a usage error (exit 2)
/// raised before anything is touched.
pub fn select(settings: &Settings, a: &NodeSelectArgs) -> Result<(Naming, Selection)> {
    let naming = Naming {
        regular: settings
            .required("testbed", "regularname")
            .map_err(usage)?
            .to_string(),
        reboot: settings
            .required("testbed", "rebootname")
            .map_err(usage)?
            .to_string(),
    };
    let env = std::env::var("NODES").ok();
    let sel = Selection::from_args(
        &naming,
        settings.value("testbed", "all_scope"),
        a.all,
        &a.specs,
        env.as_deref(),
    )
    .map_err(usage)?;
    Ok((naming, sel))
}

/// Maps the node library's usage and settings errors to exit 2.
pub fn usage(e: streamfs_node::Error) -> anyhow::Error {
    match e {
        streamfs_node::Error::Usage(_) | streamfs_node::Error::Settings { .. } => {
            streamfs_core::Error::Usage(e.to_string()).into()
        }
        streamfs_node::Error::Store(s) => s.into(),
        other => other.into(),
    }
}
