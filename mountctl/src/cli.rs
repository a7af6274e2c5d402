//! Every clap type of `mountctl`, in one place, so the whole command line
//! reads at a glance and each command module only receives plain values.
//!
//! Adding a subcommand: a variant in [`Command`] with its `…Args` struct
//! here, a module in `commands/`, an arm in `commands::run`. Subcommands
//! that change the store take `-n/--dry-run` as their own flag
//! (`#[arg(short = 'n', long)] dry_run: bool`), as DESIGN §4 lists.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Companion CLI of streamfs: metadata operations, signing and queries on a
/// streamfs store.
#[derive(Debug, Parser)]
#[command(name = "mountctl", version, about, propagate_version = true)]
pub struct Cli {
    /// The store to work on.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "STREAMFS_STORE",
        default_value = "."
    )]
    pub store: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Query(QueryArgs),
}

/// Print the items of a stream, as sstream-query does (same output, byte
/// for byte).
///
/// SOURCE is a stream name of the store, a path to an index or products
/// file under a `streams/v1/` folder, a mirror root (its
/// `streams/v1/index.sjson` is read), or the same as an http(s):// or
/// file:// URL. FILTERs are KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX on
/// the flattened items (with product_name, version_name, item_name); a
/// missing key compares as the empty string; all must match.
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

    /// OpenPGP keyring to verify signed (.sjson) sources with.
    #[arg(long, value_name = "K")]
    pub keyring: Option<PathBuf>,

    /// Stream name, index or products file, mirror root, or URL.
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// KEY=VALUE, KEY!=VALUE, KEY~REGEX, KEY!~REGEX.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn query_arguments_parse_like_sstream_query() {
        let cli = Cli::try_parse_from([
            "mountctl",
            "query",
            "src/streams/v1/index.json",
            "arch=amd64",
            "--max=-1",
            "-o",
            "%(path)s",
            "release~no",
        ])
        .unwrap();
        let Command::Query(q) = cli.command;
        assert_eq!(q.max_items, Some(-1));
        assert_eq!(q.output_format.as_deref(), Some("%(path)s"));
        assert_eq!(q.filters, ["arch=amd64", "release~no"]);
        assert!(Cli::try_parse_from(["mountctl", "query", "s", "--json", "--pretty"]).is_err());
        assert!(Cli::try_parse_from(["mountctl", "query", "s", "--json", "-o", "x"]).is_err());
    }
}
