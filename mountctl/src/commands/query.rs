//! `mountctl query`: sstream-query's output for a store stream, a local
//! mirror or an http(s) one (the work is `streamfs_core::streams::query`).

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, bail};
use streamfs_core::streams::filter::ItemFilter;
use streamfs_core::streams::query::{Output, QueryOptions, query_mirror};

use crate::cli::QueryArgs;
use crate::http::Http;

/// What SOURCE names.
#[derive(Debug, PartialEq, Eq)]
enum Source<'a> {
    /// A path or URL, read as sstream-query reads it.
    Mirror(&'a str),
    /// A stream of the store.
    Stream(&'a str),
}

/// A bare name (no `/`, no `scheme:`) that is not a file or directory here
/// is a stream name; anything else is a mirror path or URL, so that every
/// SOURCE sstream-query accepts means the same here.
fn classify(source: &str) -> Source<'_> {
    let bare = !source.contains('/') && !source.contains(':');
    if bare && !source.is_empty() && !Path::new(source).exists() {
        Source::Stream(source)
    } else {
        Source::Mirror(source)
    }
}

pub fn run(store: &Path, args: QueryArgs) -> anyhow::Result<()> {
    // Filters are checked before anything is read, as sstream-query does.
    let filters = ItemFilter::parse_all(&args.filters)?;
    let output = if args.json {
        Output::Json
    } else if args.pretty {
        Output::Pretty
    } else {
        Output::Format(args.output_format.unwrap_or_else(|| "%s".into()))
    };
    let opts = QueryOptions {
        filters,
        max_items: args.max_items,
        output,
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut err = std::io::stderr().lock();
    match classify(&args.source) {
        Source::Mirror(source) => {
            tracing::debug!(source, "querying a mirror");
            let res = query_mirror(
                source,
                args.keyring.as_deref(),
                &Http::default(),
                &opts,
                &mut out,
                &mut err,
            );
            // What was printed before a failure stays printed.
            let flushed = out.flush();
            res?;
            flushed.context("<stdout>")?;
        }
        Source::Stream(name) => {
            // TODO: once the store layer lands, build the stream's products
            // document(s) from `store` and call
            // `streamfs_core::streams::query::query_products` with the
            // stream's mirror root (`<mount>/<stream>/`) as item_url prefix.
            bail!(
                "'{name}': querying the streams of a store ({}) is not available yet; \
                 give a mirror path (…/streams/v1/index.json) or URL",
                store.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_apart() {
        assert_eq!(classify("daily"), Source::Stream("daily"));
        assert_eq!(
            classify("a/streams/v1/index.json"),
            Source::Mirror("a/streams/v1/index.json")
        );
        assert_eq!(classify("https://h/x"), Source::Mirror("https://h/x"));
        assert_eq!(classify("."), Source::Mirror("."));
    }
}
