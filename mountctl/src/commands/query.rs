//! `mountctl query`: sstream-query's output for a store stream, a local
//! mirror or an http(s) one (the work is `streamfs_core::streams::query`).

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use streamfs_core::store::Store;
use streamfs_core::streams::filter::ItemFilter;
use streamfs_core::streams::query::{Output, QueryOptions, query_mirror, query_products};

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

pub fn run(store_dir: &Path, args: QueryArgs) -> anyhow::Result<()> {
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
    let res = match classify(&args.source) {
        Source::Mirror(source) => {
            tracing::debug!(source, "querying a mirror");
            let verify = args.signatures.verify();
            query_mirror(source, verify, &Http::default(), &opts, &mut out, &mut err)
                .map_err(anyhow::Error::from)
        }
        Source::Stream(name) => query_stream(store_dir, name, &opts, &mut out, &mut err),
    };
    // What was printed before a failure stays printed.
    let flushed = out.flush();
    res?;
    flushed.context("<stdout>")?;
    Ok(())
}

/// Queries what a store stream publishes now: the products file of the
/// current generation, exactly the bytes clients are served. `item_url` is
/// `<stream>/<path>`, the item's path under a mount of the store (or under
/// an nginx root serving that mount), since an unmounted store has no URL.
fn query_stream(
    store_dir: &Path,
    name: &str,
    opts: &QueryOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    // A bare word that is not a file is taken for a stream name; say so
    // when that guess leads nowhere.
    let guess = || format!("'{name}' is not a file here, so it was taken for a stream name");
    let store = Store::open(store_dir).with_context(guess)?;
    let content_id = &store.config().stream(name).with_context(guess)?.content_id;
    let file = store
        .snapshot()?
        .streams_v1(name)
        .join(format!("{content_id}.json"));
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        // A stream nothing was ever inserted into publishes no products.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(query_products(&[], opts, out, err)?);
        }
        Err(e) => return Err(e).with_context(|| file.display().to_string()),
    };
    let root = format!("{name}/");
    let file = file.display().to_string();
    Ok(query_products(&[(&file, &bytes, &root)], opts, out, err)?)
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
