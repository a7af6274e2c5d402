//! streamfs-node: the agent that runs on a testbed node while it is being
//! imaged. `mountctl node load|save|wait` reach it at the inventory's
//! control address and `[nodes] agent_port`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use streamfs_node::agent::Agent;
use streamfs_node::proto::Key;

/// Receives disk images onto this node's disk (passing them on along a
/// chain of nodes) and sends the disk back for a save; only callers holding
/// the testbed key are served.
#[derive(Parser)]
#[command(name = "streamfs-node", version)]
struct Args {
    /// The address to listen on, IP:PORT.
    #[arg(long, value_name = "IP:PORT")]
    listen: std::net::SocketAddr,
    /// The disk: a block device or a file.
    #[arg(long, value_name = "PATH")]
    disk: PathBuf,
    /// The testbed key (at least 16 bytes), as in [nodes] key_file.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let key = Key::load(&args.key)?;
    streamfs_node::agent::disk_capacity(&args.disk)?;
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!("serving {} on {}", args.disk.display(), args.listen);
    Arc::new(Agent::new(key, args.disk)).serve(listener)?;
    Ok(())
}
