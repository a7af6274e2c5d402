//! mountctl: parse, resolve settings once, run one command, map the outcome
//! to an exit code (0 success, 1 failure, 2 bad usage).

mod cli;
mod commands;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    match commands::run(cli) {
        Ok(code) => code,
        // Exit 2 is clap's, for a malformed command line; everything that
        // fails once the command runs (bad files, bad values, a store
        // problem) is 1.
        Err(e) => {
            eprintln!("mountctl: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: bool) {
    let default = if verbose { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}
