//! `mountctl query`: sstream-query's traversal and output, so that both
//! print the same bytes for the same source, filters, `--max` and format.
//!
//! What sstream-query does (python-simplestreams' `BasicMirrorWriter.sync`
//! with its `FilterMirror`), and so what this module does:
//!
//! - An index is walked in file order; each entry whose `format` is
//!   `products:1.0` or `index:1.0` and that has a `path` is read and synced.
//! - A products document has its `_aliases` expanded, then every item is
//!   flattened (top, product, version, item; `product_name`, `version_name`,
//!   `item_name` added) and filtered. A version left without items is
//!   dropped; a version that never had items stays (and counts for `--max`).
//! - Per product, in document order, the remaining version names are sorted
//!   newest (largest string) first and cut to `--max` (with Python's slice
//!   semantics, so a negative N drops the N oldest); their items are printed
//!   in document order.
//! - An item with a `path` gets `item_url`: the mirror root string followed by
//!   the path. Before it is printed, sstream-query insists on a checksum
//!   (`md5`, `sha256` or `sha512`) and an integer `size` for such an item,
//!   and stops with an error otherwise.
//! - Output: `FMT % item` per item (default `%s`, Python's `str()` of the
//!   dict); a missing key writes two lines to stderr and goes on; `--json`
//!   prints all items at the end as `json.dumps(indent=2, sort_keys=True)`;
//!   `--pretty` uses `pprint.pprint`.

mod flat;
mod mirror;
mod parallel;
mod pprint;
mod printable;
mod pyfmt;
pub mod tree;

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;

pub use flat::Flat;
use flat::{Members, expanded, lookup};
pub use mirror::{HttpGet, Mirror, NoHttp, Verify, fetch, split_mirror_url, strip_clearsign};
use parallel::{PARALLEL_MIN_PRODUCTS, PRODUCTS_PER_CHUNK, in_order};
pub use pprint::pformat;
pub use pyfmt::{Entries, FormatError, PercentFormat, dict_repr, repr};

use super::aliases::ALIASES;
use super::filter::ItemFilter;
use super::index::parse_index;
use super::products::{check_product, check_products};
use crate::error::{Error, IoContext, Result};
use crate::json;
use tree::{Node, Object};

/// How items are printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `-o FMT`: Python `%`-formatting with the item as mapping.
    Format(String),
    /// `--json`
    Json,
    /// `--pretty`
    Pretty,
}

impl Default for Output {
    /// sstream-query's default: `str()` of each item.
    fn default() -> Self {
        Output::Format("%s".into())
    }
}

#[derive(Clone, Debug, Default)]
pub struct QueryOptions {
    /// All must match.
    pub filters: Vec<ItemFilter>,
    /// `--max`: versions kept per product, newest first, after filtering.
    pub max_items: Option<i64>,
    pub output: Output,
}

enum Printer {
    Format(PercentFormat, String),
    Json,
    Pretty,
}

/// A query in progress: feed it products documents in order, then
/// [`Query::finish`].
pub struct Query<'a> {
    select: Select<'a>,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    /// `--json`'s items, printed at the end.
    json: Vec<Value>,
}

/// What decides which items are printed and how: shared by the threads
/// that print the products of a large document.
struct Select<'a> {
    filters: &'a [ItemFilter],
    max_items: Option<i64>,
    printer: Printer,
}

/// What a run of products printed: lines are formatted straight into
/// `text`, which is kept until every earlier run is written out (runs are
/// printed by several threads for large documents).
#[derive(Default)]
struct Printed {
    text: String,
    err: Vec<u8>,
    json: Vec<Value>,
}

impl Printed {
    /// `FMT % item` as the next line; nothing of it is left on an error.
    fn format(&mut self, fmt: &PercentFormat, item: &Flat) -> Result<(), FormatError> {
        let start = self.text.len();
        match fmt.format_into(item, &mut self.text) {
            Ok(()) => {
                self.text.push('\n');
                Ok(())
            }
            Err(e) => {
                self.text.truncate(start);
                Err(e)
            }
        }
    }

    fn clear(&mut self) {
        self.text.clear();
        self.err.clear();
        self.json.clear();
    }
}

/// Where query output goes; named in errors.
const STDOUT: &str = "<stdout>";
const STDERR: &str = "<stderr>";

/// One item selected for printing.
struct Selected<'d> {
    flat: Flat<'d>,
    name: &'d str,
    /// The item's own `path` (not one inherited from a level above).
    own_path: Option<&'d str>,
}

/// Checks what python-simplestreams would trip on in a document's top
/// level (its products are checked by [`check_product`], all of them
/// before anything of the document is printed).
fn check_products_doc(file: &str, doc: &Object) -> Result<()> {
    crate::streams::products::check_format(
        file,
        doc.get("format")
            .map(|f| (f.as_str(), f as &dyn std::fmt::Display)),
    )?;
    if doc.get("content_id").is_none() {
        return Err(Error::invalid(file, "content_id", "missing"));
    }
    match doc.get("products") {
        Some(p) if p.as_object().is_none() => check_products(file, p),
        _ => Ok(()),
    }
}

impl<'a> Query<'a> {
    pub fn new(opts: &'a QueryOptions, out: &'a mut dyn Write, err: &'a mut dyn Write) -> Self {
        let printer = match &opts.output {
            Output::Format(f) => Printer::Format(PercentFormat::new(f), f.clone()),
            Output::Json => Printer::Json,
            Output::Pretty => Printer::Pretty,
        };
        Query {
            select: Select {
                filters: &opts.filters,
                max_items: opts.max_items,
                printer,
            },
            out,
            err,
            json: Vec::new(),
        }
    }

    /// Queries one products document. `file` names it in errors; `mirror`
    /// is the root its item paths are relative to, as the string `item_url`s
    /// start with.
    pub fn products(&mut self, file: &str, doc: &Object<'_>, mirror: &str) -> Result<()> {
        check_products_doc(file, doc)?;
        let aliases = doc.get(ALIASES).and_then(Node::as_object);
        let top_level = expanded(doc, aliases);
        let products: Vec<(&str, &Node)> = lookup(&top_level, "products")
            .and_then(Node::as_object)
            .map(|p| p.iter().collect())
            .unwrap_or_default();
        let doc = Doc {
            file,
            mirror,
            aliases,
            top: &top_level,
        };
        let workers = if products.len() < PARALLEL_MIN_PRODUCTS {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
        };
        let chunks: Vec<_> = products.chunks(PRODUCTS_PER_CHUNK).collect();
        // Every product is checked before anything of the document is
        // printed; the first failure in document order is the error.
        in_order(
            workers,
            chunks.len(),
            |i| {
                chunks[i]
                    .iter()
                    .try_for_each(|&(pname, product)| check_product(file, pname, product))
            },
            |checked| checked,
        )?;
        // What was printed before an error stays printed. Buffers written
        // out are handed back for the next runs of products.
        let spare = std::sync::Mutex::new(Vec::<Printed>::new());
        in_order(
            workers,
            chunks.len(),
            |i| {
                let mut run = spare.lock().expect("buffers").pop().unwrap_or_default();
                (self.select.run(&doc, chunks[i], &mut run), run)
            },
            |(printed, mut run)| {
                self.out.write_all(run.text.as_bytes()).at(STDOUT)?;
                self.err.write_all(&run.err).at(STDERR)?;
                self.json.append(&mut run.json);
                run.clear();
                spare.lock().expect("buffers").push(run);
                printed
            },
        )
    }

    /// Prints what is printed at the end (`--json`) and flushes.
    pub fn finish(self) -> Result<()> {
        if let Printer::Json = self.select.printer {
            let mut text = json::to_indented(&Value::Array(self.json), 2);
            text.push('\n');
            self.out.write_all(text.as_bytes()).at(STDOUT)?;
        }
        self.out.flush().at(STDOUT)?;
        self.err.flush().at(STDERR)
    }

    /// Reads a document of `mirror` and queries it: a products document
    /// directly, an index by each of its entries in order.
    fn sync(&mut self, mirror: &Mirror, path: &str, text: &str, depth: usize) -> Result<()> {
        const MAX_DEPTH: usize = 8;
        let url = mirror.url(path);
        let doc = tree::parse_object(&url, text.as_bytes())?;
        let format = doc.get("format").and_then(Node::as_str);
        match format {
            Some("products:1.0") => self.products(&url, &doc, mirror.root()),
            Some("index:1.0") if depth < MAX_DEPTH => {
                for entry in parse_index(&url, text.as_bytes())? {
                    let fmt = entry.data.get("format").and_then(Value::as_str);
                    if matches!(fmt, Some("products:1.0" | "index:1.0")) {
                        let text = mirror.read(&entry.path)?;
                        self.sync(mirror, &entry.path, &text, depth + 1)?;
                    }
                }
                Ok(())
            }
            Some("index:1.0") => Err(Error::invalid(
                url,
                "index",
                format!("indexes nested deeper than {MAX_DEPTH} levels (a loop?)"),
            )),
            _ => Err(Error::invalid(
                url,
                "format",
                format!(
                    "unknown format {}: expected \"products:1.0\" or \"index:1.0\"",
                    doc.get("format")
                        .map_or("(missing)".to_string(), Node::to_string)
                ),
            )),
        }
    }
}

/// A products document being printed.
struct Doc<'d, 'x> {
    file: &'x str,
    mirror: &'x str,
    aliases: Option<&'d Object<'d>>,
    /// The top level's members, `_aliases` applied.
    top: &'x Members<'d>,
}

impl Select<'_> {
    /// Prints a run of products, in order.
    fn run<'d>(
        &self,
        doc: &Doc<'d, '_>,
        products: &[(&'d str, &'d Node<'d>)],
        out: &mut Printed,
    ) -> Result<()> {
        let prerender = matches!(&self.printer, Printer::Format(f, _) if f.renders_item());
        let mut top = Flat::default();
        top.add_level(doc.top);
        for &(pname, product) in products {
            self.product(doc, &top, pname, product, prerender, out)?;
        }
        Ok(())
    }

    fn product<'d>(
        &self,
        doc: &Doc<'d, '_>,
        top: &Flat<'d>,
        pname: &'d str,
        product: &'d Node<'d>,
        prerender: bool,
        out: &mut Printed,
    ) -> Result<()> {
        let aliases = doc.aliases;
        let Some(product) = product.as_object() else {
            return Ok(());
        };
        let product = expanded(product, aliases);
        let Some(versions) = lookup(&product, "versions").and_then(Node::as_object) else {
            return Ok(());
        };
        let mut pflat = top.child(&product, "product_name", pname);
        if prerender {
            pflat.prerender();
        }
        let mut kept: Vec<(&str, Vec<Selected>)> = Vec::new();
        for (vname, version) in versions.iter() {
            let Some(version) = version.as_object() else {
                continue;
            };
            let version = expanded(version, aliases);
            let items = lookup(&version, "items").and_then(Node::as_object);
            let Some(items) = items.filter(|i| !i.is_empty()) else {
                // Never had items: sstream-query keeps such a version.
                kept.push((vname, Vec::new()));
                continue;
            };
            let mut vflat = pflat.child(&version, "version_name", vname);
            if prerender {
                vflat.prerender();
            }
            let mut selected = Vec::new();
            for (iname, item) in items.iter() {
                let Some(item) = item.as_object() else {
                    continue;
                };
                let item = expanded(item, aliases);
                let flat = vflat.child(&item, "item_name", iname);
                if flat.matches(self.filters)? {
                    selected.push(Selected {
                        flat,
                        name: iname,
                        own_path: lookup(&item, "path").and_then(Node::as_str),
                    });
                }
            }
            if !selected.is_empty() {
                kept.push((vname, selected));
            }
        }
        kept.sort_by(|a, b| b.0.cmp(a.0));
        kept.truncate(newest_kept(kept.len(), self.max_items));
        for (vname, items) in kept {
            for mut sel in items {
                let what = || format!("product {pname} version {vname} item {}", sel.name);
                add_item_url(doc.file, &what, &mut sel.flat, sel.own_path, doc.mirror)?;
                self.print(&sel.flat, out)?;
            }
        }
        Ok(())
    }

    fn print(&self, item: &Flat, out: &mut Printed) -> Result<()> {
        match &self.printer {
            Printer::Format(fmt, text) => match out.format(fmt, item) {
                Ok(()) => Ok(()),
                Err(FormatError::MissingKey(key)) => {
                    let msg = format!(
                        "output format failed. Missing {key}\nitem: {}\n",
                        dict_repr(item)
                    );
                    out.err.extend_from_slice(msg.as_bytes());
                    Ok(())
                }
                Err(FormatError::Python { kind, message }) => Err(Error::Usage(format!(
                    "output format '{}' failed: {kind}: {message}",
                    text.escape_debug()
                ))),
            },
            Printer::Json => {
                out.json.push(item.to_json());
                Ok(())
            }
            Printer::Pretty => {
                out.text.push_str(&pformat(item));
                Ok(())
            }
        }
    }
}

/// How many of `n` versions (sorted newest first) `--max` keeps, as
/// python-simplestreams' `resolve_work` computes it (`list[max:]` dropped,
/// Python slice semantics).
fn newest_kept(n: usize, max_items: Option<i64>) -> usize {
    match max_items {
        None => n,
        Some(m) if m >= 0 => n.min(usize::try_from(m).unwrap_or(usize::MAX)),
        Some(m) => n.saturating_sub(usize::try_from(m.unsigned_abs()).unwrap_or(usize::MAX)),
    }
}

/// Adds `item_url` to an item that has a `path`, after the checks
/// sstream-query makes on such an item (it builds a checksumming reader for
/// it, which needs a checksum and an integer size).
fn add_item_url(
    file: &str,
    what: &dyn Fn() -> String,
    item: &mut Flat,
    own_path: Option<&str>,
    mirror: &str,
) -> Result<()> {
    if let Some(path) = own_path {
        let url = format!("{mirror}{path}");
        if !["md5", "sha256", "sha512"]
            .iter()
            .any(|k| item.lookup(k).is_some())
        {
            return Err(Error::invalid(
                file,
                what(),
                format!("{url}: no md5, sha256 or sha512 checksum"),
            ));
        }
        match item.lookup("size") {
            None => {
                return Err(Error::invalid(file, what(), format!("{url}: no size")));
            }
            Some(size) if !is_python_int(size) => {
                return Err(Error::invalid(
                    file,
                    what(),
                    format!("{url}: size '{size}' is not an integer"),
                ));
            }
            Some(_) => {}
        }
        item.set("item_url", Cow::Owned(url));
    } else if item.lookup("path").is_some() {
        return Err(Error::invalid(
            file,
            what(),
            "inherits a path but has none of its own",
        ));
    }
    Ok(())
}

/// Whether Python's `int(s)` accepts `s` (surrounding whitespace, a sign,
/// digits with single underscores between them).
fn is_python_int(s: &str) -> bool {
    let s = s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c));
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c == '_' || c.is_numeric())
}

/// Queries products files already read (a store stream's generated
/// ones): each as its file name, its bytes, and the mirror root its paths
/// are relative to.
pub fn query_products(
    docs: &[(&str, &[u8], &str)],
    opts: &QueryOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let mut q = Query::new(opts, out, err);
    for &(file, bytes, mirror) in docs {
        let doc = tree::parse_object(file, bytes)?;
        q.products(file, &doc, mirror)?;
    }
    q.finish()
}

/// Queries a mirror: `source` is what sstream-query takes (a path or URL of
/// an index or products file under `streams/v1/`, or a mirror root).
/// `verify` says how `.sjson` sources are checked.
pub fn query_mirror(
    source: &str,
    verify: Verify<'_>,
    http: &dyn HttpGet,
    opts: &QueryOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let (mirror, path, text) = Mirror::open(source, verify, http)?;
    let mut q = Query::new(opts, out, err);
    // Whatever was printed before an error stays printed, as with
    // sstream-query; --json prints nothing then.
    let res = q.sync(&mirror, &path, &text, 0);
    match res {
        Ok(()) => q.finish(),
        Err(e) => {
            let _ = q.out.flush();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests;
