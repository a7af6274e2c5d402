//! One module per subcommand, each taking its parsed arguments from
//! [`crate::cli`] and doing the work through `streamfs_core`.

pub mod query;

use crate::cli::{Cli, Command};

/// Runs the subcommand the command line names.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { store, command } = cli;
    match command {
        Command::Query(args) => query::run(&store, args),
    }
}
