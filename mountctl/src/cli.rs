//! Every clap type of mountctl, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use streamfs_core::streams::query::Verify;

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
    /// Testbed nodes: load and save disk images, drive their CMC cards.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Mirror an upstream simplestreams source into a stream (as sstream-mirror).
    Sync(SyncArgs),
    /// Build MAAS boot images (squashfs, kernels, initrds, manifest) and their
    /// products metadata from a cloud-image root, as meph2-build.
    Build(BuildArgs),
    /// Build what a MAAS stream lacks of the newest cloud images, as
    /// meph2-cloudimg-sync: OUT gets the target's metadata plus the new versions.
    #[command(name = "cloudimg-sync")]
    CloudimgSync(CloudimgSyncArgs),
    /// The fake builder (meph2's builder argv, small deterministic files).
    #[command(name = "fake-builder", hide = true)]
    FakeBuilder(FakeBuilderArgs),
    /// Streams, pool, orphans, generation, mounts and signing key at a glance.
    Status(StatusArgs),
    /// Manage the store's mirrors and crawl them.
    #[command(subcommand)]
    Mirrors(MirrorsCommand),
    /// Print a Metalink (3.0, or RFC 5854 with --format 4) for a stream file or a served tree's file.
    Metalink(MetalinkArgs),
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

    #[command(flatten)]
    pub signatures: SignatureArgs,

    /// Stream name, index or products file, mirror root, or URL.
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// KEY=VALUE, KEY!=VALUE, KEY~REGEX, KEY!~REGEX.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
}

#[derive(Debug, Subcommand)]
#[command(
    after_help = "Node specs: 1-12 fit15-reboot18 ~4-6 (ranges, steps a-b-c, ~ excludes, commas);\n\
    without any, $NODES; -a starts from [testbed] all_scope."
)]
pub enum NodeCommand {
    /// Print the nodes a spec means.
    Resolve(NodeSelectArgs),
    /// Print each effective setting and the file (and line) it came from.
    Config,
    /// List the images of the images stream: names, versions, sizes, aliases, comments.
    Images(NodeImagesArgs),
    /// Store a raw disk image (.img) as a new version of image NAME.
    Import(NodeImportArgs),
    /// Give an image another name (`-i ALIAS` loads it; the mount shows the
    /// symlink ALIAS -> IMAGE), or drop one with -d.
    Alias(NodeAliasArgs),
    /// Load an image onto nodes: PXE link, reset, send down a chain of the nodes, boot back.
    Load(NodeLoadArgs),
    /// Save a node's disk as a new version of image NAME.
    Save(NodeSaveArgs),
    /// Wait until each node's agent answers.
    Wait(NodeWaitArgs),
    /// Power nodes on through their CMC.
    On(NodeSelectArgs),
    /// Power nodes off through their CMC.
    Off(NodeSelectArgs),
    /// Reset nodes through their CMC.
    Reset(NodeSelectArgs),
    /// Print each node's power status from its CMC.
    Status(NodeSelectArgs),
    /// Print what each node's CMC says about it.
    Info(NodeSelectArgs),
}

#[derive(Debug, Args)]
pub struct NodeLoadArgs {
    /// IMAGE (its newest version) or IMAGE@VERSION.
    #[arg(short = 'i', long = "image", value_name = "IMAGE")]
    pub image: String,
    /// Give up after this many seconds (default: [nodes] load_default_timeout).
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Cap the sending rate, in megabits per second.
    #[arg(short = 'b', long = "bandwidth", value_name = "MBPS")]
    pub mbps: Option<f64>,
    /// Leave the nodes in the imaging environment (no final reset).
    #[arg(short = 'n', long = "no-reset")]
    pub no_reset: bool,
    /// Each node pulls the image from [images] http_url (nginx serving the
    /// mount) instead of joining the chain.
    #[arg(long)]
    pub http: bool,
    #[command(flatten)]
    pub select: NodeSelectArgs,
}

#[derive(Debug, Args)]
pub struct NodeSaveArgs {
    /// The node whose disk to save.
    pub node: String,
    /// The image name (a new version of it is made).
    #[arg(short = 'o', long = "output", value_name = "NAME")]
    pub name: String,
    /// A comment kept with the version.
    #[arg(short = 'c', long)]
    pub comment: Option<String>,
    /// Give up after this many seconds (default: [nodes] save_default_timeout).
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct NodeWaitArgs {
    /// Give up after this many seconds (default: [nodes] wait_default_timeout).
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    #[command(flatten)]
    pub select: NodeSelectArgs,
}

#[derive(Debug, Args)]
pub struct NodeSelectArgs {
    /// Start from the testbed's all_scope.
    #[arg(short = 'a', long = "all-nodes")]
    pub all: bool,
    /// Node specs (default: $NODES).
    #[arg(value_name = "NODESPEC", allow_hyphen_values = false)]
    pub specs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NodeImagesArgs {
    /// Every version with its size, date, node and comment.
    #[arg(short = 'l', long)]
    pub long: bool,
    /// Only images whose name contains this text.
    pub pattern: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    mountctl node alias ubuntu ubuntu-24.04\n  \
    mountctl node alias -d ubuntu")]
pub struct NodeAliasArgs {
    /// The alias.
    pub alias: String,
    /// The image it names (an image name or another alias).
    #[arg(required_unless_present = "delete", conflicts_with = "delete")]
    pub image: Option<String>,
    /// Drop the alias.
    #[arg(short = 'd', long)]
    pub delete: bool,
}

#[derive(Debug, Args)]
pub struct NodeImportArgs {
    /// The raw disk image.
    pub file: PathBuf,
    /// The image name (the product in the images stream).
    #[arg(short = 'o', long = "output", value_name = "NAME")]
    pub name: String,
    /// A comment kept with the version.
    #[arg(short = 'c', long)]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    mountctl sync https://images.maas.io/ephemeral-v3/stable/ released arch=amd64 --max 2\n  \
    mountctl sync -n --keyring K.gpg http://mirror/streams/v1/index.sjson daily release=noble")]
pub struct SyncArgs {
    #[command(flatten)]
    pub dry: DryRun,
    /// Keep the N newest versions of each product (after filtering).
    #[arg(long = "max", value_name = "N")]
    pub max: Option<usize>,
    /// Never remove versions from the stream (upstream dropped them, or
    /// they fall outside --max).
    #[arg(long)]
    pub keep: bool,
    #[command(flatten)]
    pub signatures: SignatureArgs,
    /// Parallel downloads.
    #[arg(short = 'j', long, value_name = "JOBS", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// The upstream content id to mirror into STREAM (default: the stream's).
    #[arg(long, value_name = "ID")]
    pub content_id: Option<String>,
    /// No progress on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// An http(s) URL or a local path: a mirror root, an index or a products file.
    pub source: String,
    /// The target stream.
    pub stream: String,
    /// KEY=VALUE, KEY!=VALUE, KEY~REGEX, KEY!~REGEX.
    pub filters: Vec<String>,
}

/// meph2 options shared by `build` and `cloudimg-sync`.
#[derive(Debug, Args)]
pub struct Meph2Args {
    /// meph2's YAML config (meph-v3.yaml, meph-v2.yaml).
    #[arg(
        long,
        value_name = "FILE",
        env = "STREAMFS_MEPH2_CONFIG",
        default_value = "conf/meph-v3.yaml"
    )]
    pub config: PathBuf,

    /// Who builds the images: `builtin` (the default: the shipped builder,
    /// run as root), `fake` (small deterministic files, for tests), or a
    /// command run with meph2's builder argv (e.g. maas-cloudimg2eph2).
    #[arg(
        long,
        value_name = "CMD",
        env = "MAAS_CLOUDIMG2EPH2",
        default_value = "builtin"
    )]
    pub builder: String,

    /// The builtin builder keeps downloaded packages (kernels) and package
    /// lists here between builds (DIR/archives, DIR/lists).
    #[arg(long, value_name = "DIR", env = "STREAMFS_BUILD_APT_CACHE")]
    pub apt_cache: Option<PathBuf>,

    /// Keep one log per builder run here.
    #[arg(long, value_name = "DIR", env = "STREAMFS_BUILD_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub meph2: Meph2Args,

    /// Build d-i items (needs the archive's installer images: refused).
    #[arg(long, conflicts_with = "disable_di")]
    pub enable_di: bool,

    /// Do not build d-i items, whatever the config says.
    #[arg(long)]
    pub disable_di: bool,

    /// The source image's format, passed on to the builder as --format.
    #[arg(long, value_name = "FORMAT", value_parser = ["auto", "img-tar", "root-image", "root-image-gz", "root-tar", "squashfs-image"])]
    pub image_format: Option<String>,

    /// Also write every item as a flat JSON list to F.
    #[arg(long, value_name = "F")]
    pub flat_json: Option<PathBuf>,

    /// The source's sha256 (a URL source is verified against it; by
    /// default against the SHA256SUMS file beside it).
    #[arg(long, value_name = "HEX")]
    pub source_sha256: Option<String>,

    /// Where downloaded source images are kept by sha256 (default
    /// ~/.cache/streamfs/cloudimg, shared with cloudimg-sync).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,

    pub arch: String,
    pub release: String,
    /// The version name (the cloud image's serial, YYYYMMDD[.N]).
    #[arg(value_name = "VERSION")]
    pub version_name: String,
    /// The source image: a path or an http(s) URL (downloaded once,
    /// verified, kept in the cache).
    pub source: String,
    /// Output directory (data files and streams/v1).
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct FakeBuilderArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON (times as Unix seconds).
    #[arg(long)]
    pub json: bool,
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
    /// Builds per page (the server's default 100, at most 1000).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Only builds older than this id (the `next` a page ends with).
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
    /// Every build, following the pages to the oldest.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MirrorsCommand {
    /// Add a mirror: URL is a root under which each stream appears as <stream>/streams/v1/….
    Add(MirrorsAddArgs),
    /// List the mirrors with their state at the last crawl.
    List,
    /// Remove a mirror and its crawl results.
    Remove(MirrorNameArgs),
    /// Enable a mirror (also one the crawl disabled).
    Enable(MirrorNameArgs),
    /// Disable a mirror: it is neither crawled nor listed in metalinks.
    Disable(MirrorNameArgs),
    /// Crawl the mirrors (all enabled ones, or those named) and record what they carry.
    Crawl(MirrorsCrawlArgs),
}

#[derive(Debug, Args)]
pub struct MirrorsAddArgs {
    pub name: String,
    /// http:// or https:// root of the mirror.
    pub url: String,
    /// rsync:// root of the mirror (items are then checked with rsync --list-only).
    #[arg(long, value_name = "URL")]
    pub rsync: Option<String>,
    /// Two-letter country code (e.g. US).
    #[arg(long, value_name = "CC")]
    pub location: Option<String>,
    /// Higher is tried first (1-100).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub preference: u32,
    /// Crawled, but never listed in metalinks.
    #[arg(long)]
    pub private: bool,
}

#[derive(Debug, Args)]
pub struct MirrorNameArgs {
    pub name: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CrawlItems {
    All,
    Sample,
    None,
}

#[derive(Debug, Args)]
pub struct MirrorsCrawlArgs {
    /// Mirrors crawled at once.
    #[arg(short = 'j', long, value_name = "JOBS", default_value_t = 8)]
    pub jobs: usize,
    /// Seconds to wait for one mirror's connection or answer.
    #[arg(long, value_name = "S", default_value_t = 20)]
    pub timeout: u64,
    /// Items checked by size on each mirror.
    #[arg(long, value_enum, default_value = "sample")]
    pub items: CrawlItems,
    /// Mirrors to crawl (default: every enabled one).
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MetalinkArgs {
    /// The stream PATH is relative to.
    #[arg(
        long,
        value_name = "S",
        conflicts_with = "root",
        required_unless_present = "root"
    )]
    pub stream: Option<String>,
    /// A served tree of mirrors.toml (e.g. an ostree repository) PATH is relative to.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// 3: Metalink 3.0 (MirrorManager's, read by ostree); 4: RFC 5854 (.meta4).
    #[arg(long, value_name = "3|4", default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=4))]
    pub format: u8,
    /// e.g. streams/v1/index.json, an item path, or summary.
    pub path: String,
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

#[derive(Debug, Args)]
pub struct CloudimgSyncArgs {
    #[command(flatten)]
    pub meph2: Meph2Args,

    /// The cloud images: a products file, an index or a mirror root (path or
    /// http(s) URL); a signed .sjson is verified against --keyring.
    #[arg(
        long,
        value_name = "URL|PATH",
        default_value = "http://cloud-images.ubuntu.com/daily/streams/v1/com.ubuntu.cloud:daily:download.json"
    )]
    pub source: String,

    /// The source's content id to read from an index.
    #[arg(
        long,
        value_name = "ID",
        default_value = "com.ubuntu.cloud:candidate:download"
    )]
    pub content_id: String,

    /// The MAAS stream to bring up to date: a URL or path (mirror root,
    /// index or products file), a stream of the store, or `force` (empty:
    /// build every wanted serial). Default: the --insert stream, else the
    /// config's default_target.
    #[arg(long, value_name = "URL|PATH|STREAM|force")]
    pub target: Option<String>,

    /// Build source serial A as version B even if the target has A.
    #[arg(long, value_name = "A:B")]
    pub rebuild: Vec<String>,

    /// The newest serials considered per cloud-image product.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub max: usize,

    /// Arches to build (comma-separated or repeated; default: those this
    /// host builds for, as meph2).
    #[arg(long, value_name = "ARCHES", value_delimiter = ',')]
    pub arches: Vec<String>,

    /// Do not build d-i items, whatever the config says.
    #[arg(long)]
    pub disable_di: bool,

    /// Also insert each new version into this stream of the store (one
    /// commit per version).
    #[arg(long, value_name = "STREAM")]
    pub insert: Option<String>,

    /// Where downloaded cloud images are kept by sha256 (default
    /// ~/.cache/streamfs/cloudimg).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,

    #[command(flatten)]
    pub signatures: SignatureArgs,

    /// List what would be built; download and build nothing.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,

    /// The output directory: the new versions' files and the metadata.
    pub out: PathBuf,

    /// Item filters (key=value, key!=value, key~regex, key!~regex) on the
    /// source's cloud images.
    pub filters: Vec<String>,
}

/// How signed (`.sjson`) documents read from a mirror are checked.
#[derive(Debug, Args)]
pub struct SignatureArgs {
    /// OpenPGP keyring (binary or armored) that signed (.sjson) documents
    /// must verify against; sstream-query's default.
    #[arg(
        long,
        value_name = "K",
        default_value = "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg"
    )]
    pub keyring: PathBuf,

    /// Read signed documents without checking their signatures.
    #[arg(short = 'U', long = "no-verify", conflicts_with = "keyring")]
    pub no_verify: bool,
}

impl SignatureArgs {
    pub fn verify(&self) -> Verify<'_> {
        if self.no_verify {
            Verify::Off
        } else {
            Verify::Keyring(&self.keyring)
        }
    }
}
