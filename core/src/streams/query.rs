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

mod mirror;
mod pprint;
mod printable;
mod pyfmt;
pub mod tree;

use std::borrow::Cow;
use std::io::Write;
use std::rc::Rc;

use serde_json::Value;

pub use mirror::{HttpGet, Mirror, NoHttp, Verify, fetch, split_mirror_url, strip_clearsign};
pub use pprint::pformat;
pub use pyfmt::{Entries, FormatError, PercentFormat, dict_repr, repr};
use pyfmt::{write_dict_pair, write_dict_repr};

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

/// Documents with at least this many products are printed by several
/// threads (sstream-query's output is one product after another, so each
/// thread takes whole products and their output is joined in order).
const PARALLEL_MIN_PRODUCTS: usize = 16;
/// Products per unit of work handed to a thread: small enough to balance
/// products of unequal size, large enough that handing out costs nothing.
const PRODUCTS_PER_CHUNK: usize = 8;

/// Runs `work(0..n)` on `workers` threads (on the calling one when fewer
/// than two) and hands each result to `take` in index order, on the calling
/// thread, as soon as the results before it were taken. The first error
/// `take` returns stops the work (results not taken yet are dropped) and is
/// returned.
fn in_order<T: Send>(
    workers: usize,
    n: usize,
    work: impl Fn(usize) -> T + Sync,
    mut take: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    if workers < 2 {
        return (0..n).try_for_each(|i| take(work(i)));
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, T)>();
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, stop, work) = (&next, &stop, &work);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || tx.send((i, work(i))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut early = std::collections::BTreeMap::new();
        let mut want = 0;
        let result = (|| {
            for (i, r) in &rx {
                early.insert(i, r);
                while let Some(r) = early.remove(&want) {
                    take(r)?;
                    want += 1;
                }
            }
            Ok(())
        })();
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        drop(rx);
        result
    })
}

/// Where query output goes; named in errors.
const STDOUT: &str = "<stdout>";
const STDERR: &str = "<stderr>";

/// A flattened item borrowing its strings from the document: what
/// `flatten::flatten_expanded` computes (same keys, values, order, checked
/// by a test), without an owned map per item, which dominated the cost of
/// large queries. Keys keep the position of their first appearance and
/// deeper levels overwrite values, as Python's `dict.update` does.
#[derive(Clone, Debug, Default)]
pub struct Flat<'d> {
    entries: Vec<(&'d str, Cow<'d, str>)>,
    /// `repr(key): repr(value)` of entries, where [`Flat::prerender`] made
    /// it: an upper level's pairs are rendered once for all the items below
    /// it instead of once per item (they are most of an item's text).
    rendered: Vec<Option<Rc<str>>>,
}

impl<'d> Flat<'d> {
    fn set(&mut self, key: &'d str, value: Cow<'d, str>) {
        match self.entries.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                self.entries[i].1 = value;
                self.rendered[i] = None;
            }
            None => {
                self.entries.push((key, value));
                self.rendered.push(None);
            }
        }
    }

    /// Renders the pairs not rendered yet, for `%s`/`%r` of the items below.
    fn prerender(&mut self) {
        for ((k, v), r) in self.entries.iter().zip(&mut self.rendered) {
            if r.is_none() {
                let mut s = String::with_capacity(k.len() + v.len() + 6);
                write_dict_pair(&mut s, k, v, false);
                *r = Some(s.into());
            }
        }
    }

    /// Adds a level's scalar attributes (`stringitems`).
    fn add_level(&mut self, level: &Members<'d>) {
        for &(k, v) in level {
            if let Some(value) = v.python_str() {
                self.set(k, value);
            }
        }
    }

    /// The next level down: this one, then `level`'s attributes, then its
    /// name under `name_key`.
    fn child(&self, level: &Members<'d>, name_key: &'static str, name: &'d str) -> Self {
        // Room for every key the level may add, so that it grows once.
        let room = self.entries.len() + level.len() + 2;
        let mut entries = Vec::with_capacity(room);
        entries.extend_from_slice(&self.entries);
        let mut rendered = Vec::with_capacity(room);
        rendered.extend_from_slice(&self.rendered);
        let mut f = Flat { entries, rendered };
        f.add_level(level);
        f.set(name_key, Cow::Borrowed(name));
        f
    }

    fn matches(&self, filters: &[ItemFilter]) -> Result<bool> {
        for f in filters {
            if !f.matches_value(self.lookup(f.key()))? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn to_json(&self) -> Value {
        Value::Object(
            self.pairs()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect(),
        )
    }
}

impl Entries for Flat<'_> {
    fn lookup(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (*k, v.as_ref()))
    }

    fn write_dict_repr(&self, out: &mut String, ascii: bool) {
        if ascii {
            return write_dict_repr(out, self.pairs(), ascii);
        }
        out.push('{');
        for (i, ((k, v), r)) in self.entries.iter().zip(&self.rendered).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match r {
                Some(r) => out.push_str(r),
                None => write_dict_pair(out, k, v, false),
            }
        }
        out.push('}');
    }
}

/// One item selected for printing.
struct Selected<'d> {
    flat: Flat<'d>,
    name: &'d str,
    /// The item's own `path` (not one inherited from a level above).
    own_path: Option<&'d str>,
}

/// A level's members as python-simplestreams' `expand_tree` leaves them:
/// for each of the level's own keys in order, a string value with an entry
/// in `_aliases[key]` merges that entry's members in (replacing in place,
/// new keys at the end). Applied to each level as it is flattened instead of
/// rewriting the whole tree first.
type Members<'d> = Vec<(&'d str, &'d Node<'d>)>;

const ALIASES: &str = "_aliases";

fn expanded<'d>(level: &'d Object<'d>, aliases: Option<&'d Object<'d>>) -> Members<'d> {
    let mut m: Members<'d> = level.iter().collect();
    let Some(refs) = aliases else {
        return m;
    };
    for (key, _) in level.iter() {
        if key == ALIASES {
            continue;
        }
        let Some(Node::Object(table)) = refs.get(key) else {
            continue;
        };
        if table.is_empty() {
            continue;
        }
        let Some(val) = lookup(&m, key).and_then(Node::as_str) else {
            continue;
        };
        if val.is_empty() {
            continue;
        }
        if let Some(Node::Object(add)) = table.get(val) {
            for (k, v) in add.iter() {
                match m.iter_mut().find(|(mk, _)| *mk == k) {
                    Some(slot) => slot.1 = v,
                    None => m.push((k, v)),
                }
            }
        }
    }
    m
}

fn lookup<'d>(m: &Members<'d>, key: &str) -> Option<&'d Node<'d>> {
    m.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}

/// Checks what python-simplestreams would trip on in a document's top
/// level (its products are checked by [`check_product`], all of them
/// before anything of the document is printed).
fn check_products_doc(file: &str, doc: &Object) -> Result<()> {
    match doc.get("format") {
        Some(Node::String(f)) if f == "products:1.0" => {}
        Some(other) => {
            return Err(Error::invalid(
                file,
                "format",
                format!("expected \"products:1.0\", found {other}"),
            ));
        }
        None => {
            return Err(Error::invalid(
                file,
                "format",
                "missing \"format\": not a products:1.0 document",
            ));
        }
    }
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
mod tests {
    use super::*;

    const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    /// A products file's bytes.
    fn doc(products: Value) -> Vec<u8> {
        let doc = serde_json::json!({
            "format": "products:1.0", "content_id": "c", "products": products
        });
        serde_json::to_vec(&doc).unwrap()
    }

    fn query(p: &[u8], opts: &QueryOptions) -> Result<(String, String)> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        query_products(&[("t", p, "/m/")], opts, &mut out, &mut err)?;
        Ok((
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        ))
    }

    fn run(p: &[u8], opts: &QueryOptions) -> (String, String) {
        query(p, opts).unwrap()
    }

    fn opts(filters: &[&str], max: Option<i64>, fmt: &str) -> QueryOptions {
        QueryOptions {
            filters: ItemFilter::parse_all(filters).unwrap(),
            max_items: max,
            output: Output::Format(fmt.into()),
        }
    }

    fn versions_doc() -> Vec<u8> {
        let item = |a: &str| serde_json::json!({"items": {"i": {"arch": a}}});
        doc(serde_json::json!({
            "p": {"versions": {"2": item("x"), "3": item("y"), "1": item("x"), "10": item("x")}},
            "e": {"versions": {"9": {}, "1": item("x")}}
        }))
    }

    #[test]
    fn versions_sorted_newest_first_and_max_applies_after_filtering() {
        let p = versions_doc();
        let o = |f: &[&str], m| run(&p, &opts(f, m, "%(product_name)s %(version_name)s")).0;
        assert_eq!(o(&[], None), "p 3\np 2\np 10\np 1\ne 1\n");
        assert_eq!(o(&["arch=x"], Some(2)), "p 2\np 10\ne 1\n");
        // A version that never had items counts for --max.
        assert_eq!(o(&[], Some(1)), "p 3\n");
        assert_eq!(o(&[], Some(0)), "");
        assert_eq!(o(&["arch=x"], Some(-1)), "p 2\np 10\n");
        assert_eq!(o(&[], Some(-9)), "");
    }

    #[test]
    fn missing_keys_are_reported_and_the_query_goes_on() {
        let p = versions_doc();
        let (out, err) = run(&p, &opts(&["version_name=3"], None, "%(nope)s"));
        assert_eq!(out, "");
        assert_eq!(
            err,
            "output format failed. Missing nope\nitem: {'format': 'products:1.0', 'content_id': 'c', 'product_name': 'p', 'version_name': '3', 'arch': 'y', 'item_name': 'i'}\n"
        );
    }

    #[test]
    fn items_with_a_path_get_an_item_url_and_need_checksum_and_size() {
        let p = doc(serde_json::json!({"p": {"versions": {"1": {"items": {
            "i": {"path": "a/b", "sha256": SHA, "size": 3}}}}}}));
        let (out, _) = run(&p, &opts(&[], None, "%(item_url)s"));
        assert_eq!(out, "/m/a/b\n");
        let p = doc(serde_json::json!({"p": {"versions": {"1": {"items": {
            "i": {"path": "a/b", "size": 3}}}}}}));
        let e = query(&p, &QueryOptions::default()).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        assert!(is_python_int(" +1_000 ") && !is_python_int("1.5") && !is_python_int("1__0"));
    }

    /// Products printed by several threads come out in document order; an
    /// error while printing stops the output after the products before it;
    /// a product failing its checks prints nothing at all.
    #[test]
    fn products_printed_by_threads_keep_document_order_and_error_semantics() {
        let n = PARALLEL_MIN_PRODUCTS * 4;
        let many = |broken: Option<(usize, Value)>| {
            let mut products = serde_json::Map::new();
            for p in 0..n {
                let item = match &broken {
                    Some((b, v)) if *b == p => v.clone(),
                    _ => serde_json::json!({"path": format!("p{p}"), "sha256": SHA, "size": 1}),
                };
                products.insert(
                    format!("p{p:03}"),
                    serde_json::json!({"versions": {"1": {"items": {"i": item}}}}),
                );
            }
            doc(Value::Object(products))
        };
        let fmt = opts(&[], None, "%(product_name)s");
        let want: String = (0..n).map(|p| format!("p{p:03}\n")).collect();
        assert_eq!(run(&many(None), &fmt).0, want);
        let partial = |broken: Value, at: usize| {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let bytes = many(Some((at, broken)));
            let e = query_products(&[("t", &bytes, "/m/")], &fmt, &mut out, &mut err)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("product p{at:03}")), "{e}");
            String::from_utf8(out).unwrap()
        };
        let no_checksum = serde_json::json!({"path": "x", "size": 1});
        assert_eq!(partial(no_checksum, 41), want[..41 * 5]);
        let unsafe_path = serde_json::json!({"path": "../x", "sha256": SHA, "size": 1});
        assert_eq!(partial(unsafe_path, 50), "");
    }

    #[test]
    fn borrowed_flattening_agrees_with_flatten() {
        let text = br#"{"format":"products:1.0","content_id":"c","n":1.5,"arch":"x",
            "_aliases":{"crsn":{"r1":{"region":"r1","arch":"aliased"}}},
            "products":{"p":{"arch":"y","crsn":"r1","versions":{"1":{"label":"l","product_name":"v",
            "items":{"i":{"arch":"z","size":3,"ok":true,"list":[1],"crsn":"r1"},"j":{"n":null}}}}}}}"#;
        let products = crate::streams::products::Products::parse("t", text).unwrap();
        let want = crate::streams::flatten::flatten(&products);
        let doc = tree::parse_object("t", text).unwrap();
        let aliases = doc.get(ALIASES).and_then(Node::as_object);
        let level = |n: &'static [&str]| {
            let mut o = &doc;
            for k in n {
                o = o.get(k).and_then(Node::as_object).unwrap();
            }
            expanded(o, aliases)
        };
        let mut top = Flat::default();
        top.add_level(&expanded(&doc, aliases));
        let pf = top.child(&level(&["products", "p"]), "product_name", "p");
        let vf = pf.child(
            &level(&["products", "p", "versions", "1"]),
            "version_name",
            "1",
        );
        let items = [
            (
                "i",
                level(&["products", "p", "versions", "1", "items", "i"]),
            ),
            (
                "j",
                level(&["products", "p", "versions", "1", "items", "j"]),
            ),
        ];
        let got: Vec<Value> = items
            .iter()
            .map(|(name, m)| vf.child(m, "item_name", name).to_json())
            .collect();
        let want: Vec<Value> = want.into_iter().map(Value::Object).collect();
        assert_eq!(got, want);
        let keys = |x: &Value| x.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&got[0]), keys(&want[0]));
    }

    #[test]
    fn json_output_collects_every_item() {
        let p = versions_doc();
        let o = QueryOptions {
            filters: ItemFilter::parse_all(&["product_name=e"]).unwrap(),
            output: Output::Json,
            ..Default::default()
        };
        let (out, _) = run(&p, &o);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert!(out.starts_with("[\n  {\n    \"arch\": \"x\",\n"), "{out}");
        let o = QueryOptions {
            filters: ItemFilter::parse_all(&["product_name=none"]).unwrap(),
            output: Output::Json,
            ..Default::default()
        };
        assert_eq!(run(&p, &o).0, "[]\n");
    }
}
