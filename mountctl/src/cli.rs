//! Every clap type of mountctl, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Companion CLI of streamfs: metadata operations on a store (mounted or
/// not), signing, queries.
#[derive(Debug, Parser)]
#[command(name = "mountctl", version, about, propagate_version = true)]
pub struct Cli {
    /// The store directory.
    #[arg(long, global = true, env = "STREAMFS_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Report progress and details on stderr (RUST_LOG overrides).
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the items of a stream, as sstream-query does.
    Query(QueryArgs),
    /// Create a store with the default store.toml (or --config FILE).
    Init(InitArgs),
    /// Insert a build output dir or a streams/v1 products/index file into a stream.
    Insert(InsertArgs),
    /// Promote a version from one stream to another (no data copied).
    Promote(PromoteArgs),
    /// Keep the MAX newest versions of each product of a stream.
    #[command(name = "clean-md")]
    CleanMd(CleanMdArgs),
    /// Record blobs no stream references, with the time first seen.
    #[command(name = "find-orphans")]
    FindOrphans(FindOrphansArgs),
    /// Delete blobs orphaned for longer than --older.
    #[command(name = "reap-orphans")]
    ReapOrphans(ReapOrphansArgs),
    /// Write a plain mirror tree of a stream (hard links where possible).
    Export(ExportArgs),
    /// Verify every blob's hash and every reference.
    Fsck(FsckArgs),
    /// Re-sign the metadata of the named streams (all when none is named).
    Sign(SignArgs),
    /// Generate an OpenPGP signing key for the store and start signing with it.
    Keygen(KeygenArgs),
    /// Verify a signed file (.sjson, or X.json with X.json.gpg beside it).
    Verify(VerifyArgs),
    /// Client of the build service (streamfs-buildd): submit and follow image builds.
    Builds(BuildsArgs),
}

#[derive(Debug, Args)]
pub struct DryRun {
    /// Report what would change and change nothing.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// A store.toml to use instead of the default one.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InsertArgs {
    #[command(flatten)]
    pub dry: DryRun,
    /// A build output directory, or a streams/v1 index or products file.
    pub src: PathBuf,
    /// The target stream.
    pub stream: String,
    /// Item filters (key=value, key!=value, key~regex, key!~regex).
    pub filters: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub dry: DryRun,
    /// The label to set (default: the target stream's label).
    #[arg(short, long)]
    pub label: Option<String>,
    /// The source stream.
    pub from: String,
    /// The target stream.
    pub to: String,
    /// The version to promote.
    #[arg(id = "version_name", value_name = "VERSION")]
    pub version: String,
    pub filters: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CleanMdArgs {
    #[command(flatten)]
    pub dry: DryRun,
    /// How many of the newest versions each product keeps.
    pub max: usize,
    pub stream: String,
    pub filters: Vec<String>,
}

#[derive(Debug, Args)]
pub struct FindOrphansArgs {
    /// Where to record orphans (default: the store's orphans.json).
    pub orphans_json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReapOrphansArgs {
    #[command(flatten)]
    pub dry: DryRun,
    /// Reap orphans older than this: [0-9]+[dhms] tokens, summed; a bare
    /// number is days (default: the store's grace period).
    #[arg(long)]
    pub older: Option<String>,
    /// Reap every orphan now, whatever its age.
    #[arg(long)]
    pub now: bool,
    pub orphans_json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub stream: String,
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Fix what can be fixed without losing data.
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    pub streams: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key's user id.
    #[arg(long, default_value = "streamfs signing key")]
    pub uid: String,
    /// Make an RSA key of this many bits instead of ed25519.
    #[arg(long, value_name = "BITS")]
    pub rsa: Option<u32>,
    /// Replace a key the store already has.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A keyring: gpg's binary format or armored public keys.
    #[arg(long, value_name = "K")]
    pub keyring: PathBuf,
    /// A clearsigned .sjson, or a file with a detached FILE.gpg beside it.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    mountctl query daily release=noble arch=amd64 --max 1\n  \
    mountctl query mirror/streams/v1/index.json -o '%(product_name)s %(version_name)s %(item_url)s'\n  \
    mountctl query https://images.maas.io/ephemeral-v3/stable/ 'product_name~:24.04:' --json")]
pub struct QueryArgs {
    /// Python %-format applied to each item, e.g. '%(version_name)s %(path)s'
    /// (default: the item as a Python dict).
    #[arg(
        short = 'o',
        long = "output-format",
        value_name = "FMT",
        conflicts_with_all = ["json", "pretty"]
    )]
    pub output_format: Option<String>,

    /// Keep the N newest versions per product (after filtering).
    #[arg(long = "max", value_name = "N", allow_negative_numbers = true)]
    pub max_items: Option<i64>,

    /// Print all items as one JSON list.
    #[arg(long, conflicts_with = "pretty")]
    pub json: bool,

    /// Pretty-print each item (Python's pprint).
    #[arg(long)]
    pub pretty: bool,

    /// OpenPGP keyring (binary or armored) that signed (.sjson) sources
    /// must verify against; sstream-query's default.
    #[arg(
        long,
        value_name = "K",
        default_value = "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg"
    )]
    pub keyring: PathBuf,

    /// Read signed sources without checking their signatures.
    #[arg(short = 'U', long = "no-verify")]
    pub no_verify: bool,

    /// Stream name, index or products file, mirror root, or URL.
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// KEY=VALUE, KEY!=VALUE, KEY~REGEX, KEY!~REGEX.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BuildsArgs {
    /// The build service's base URL.
    #[arg(long, env = "STREAMFS_BUILDS_URL", value_name = "URL", global = true)]
    pub server: Option<String>,
    /// A file holding a submit token.
    #[arg(
        long,
        env = "STREAMFS_BUILDS_TOKEN_FILE",
        value_name = "FILE",
        global = true
    )]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: BuildsCommand,
}

#[derive(Debug, Subcommand)]
pub enum BuildsCommand {
    /// Queue a build; prints its id.
    Submit(BuildsSubmitArgs),
    /// List builds, newest first.
    List(BuildsListArgs),
    /// Show one build as JSON.
    Show(BuildIdArg),
    /// Follow a build's progress and log until it ends (exit 0 only when it succeeded).
    Watch(BuildIdArg),
    /// Print a build's log.
    Logs(BuildIdArg),
    /// Cancel a queued or running build.
    Cancel(BuildIdArg),
    /// Submit a failed or canceled build again; prints the new id.
    Retry(BuildIdArg),
}

#[derive(Debug, Args)]
pub struct BuildsSubmitArgs {
    #[arg(long)]
    pub arch: String,
    #[arg(long)]
    pub release: String,
    /// The version name the artifacts get in the stream. Default: today
    /// (YYYYMMDD). (`--version` prints mountctl's own version.)
    #[arg(long = "version-name", id = "version_name", value_name = "VERSION")]
    pub version: Option<String>,
    /// The cloud-image root tarball (path on the worker, or URL).
    #[arg(long)]
    pub source: String,
    /// The stream the artifacts are inserted into.
    #[arg(long)]
    pub stream: String,
    /// A build config file on the worker.
    #[arg(long, value_name = "F")]
    pub config: Option<String>,
    /// Kernel flavours to build (repeatable).
    #[arg(long = "kernel")]
    pub kernels: Vec<String>,
    /// Follow the build as `watch` does.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct BuildsListArgs {
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub arch: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BuildIdArg {
    pub id: i64,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
