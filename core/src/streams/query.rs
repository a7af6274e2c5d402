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

use std::borrow::Cow;
use std::io::Write;

use serde_json::{Map, Value};

pub use mirror::{HttpGet, Mirror, NoHttp, fetch, split_mirror_url, strip_clearsign};
pub use pprint::pformat;
pub use pyfmt::{Entries, FormatError, PercentFormat, dict_repr, repr};

use super::filter::ItemFilter;
use super::flatten::expand_aliases;
use super::index::parse_index;
use super::products::Products;
use crate::error::{Error, IoContext, Result};
use crate::json::{self, python_str};

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
    Json(Vec<Value>),
    Pretty,
}

/// A query in progress: feed it products documents in order, then
/// [`Query::finish`].
pub struct Query<'a> {
    filters: &'a [ItemFilter],
    max_items: Option<i64>,
    printer: Printer,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
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
}

impl<'d> Flat<'d> {
    fn set(&mut self, key: &'d str, value: Cow<'d, str>) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Adds a level's scalar attributes (`stringitems`).
    fn add_level(&mut self, level: &'d Map<String, Value>) {
        for (k, v) in level {
            let value = match v {
                Value::String(s) => Cow::Borrowed(s.as_str()),
                other => match python_str(other) {
                    Some(s) => Cow::Owned(s),
                    None => continue,
                },
            };
            self.set(k, value);
        }
    }

    /// The next level down: this one, then `level`'s attributes, then its
    /// name under `name_key`.
    fn child(&self, level: &'d Map<String, Value>, name_key: &'static str, name: &'d str) -> Self {
        let mut f = self.clone();
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
}

/// One item selected for printing.
struct Selected<'d> {
    flat: Flat<'d>,
    name: &'d str,
    data: &'d Map<String, Value>,
}

impl<'a> Query<'a> {
    pub fn new(opts: &'a QueryOptions, out: &'a mut dyn Write, err: &'a mut dyn Write) -> Self {
        let printer = match &opts.output {
            Output::Format(f) => Printer::Format(PercentFormat::new(f), f.clone()),
            Output::Json => Printer::Json(Vec::new()),
            Output::Pretty => Printer::Pretty,
        };
        Query {
            filters: &opts.filters,
            max_items: opts.max_items,
            printer,
            out,
            err,
        }
    }

    /// Queries one products document (aliases not yet expanded; taken by
    /// value because expanding them rewrites it). `file` names it in errors;
    /// `mirror` is the root its item paths are relative to, as the string
    /// `item_url`s start with.
    pub fn products(
        &mut self,
        file: &str,
        mut doc: Map<String, Value>,
        mirror: &str,
    ) -> Result<()> {
        if !doc.contains_key("content_id") {
            return Err(Error::invalid(file, "content_id", "missing"));
        }
        expand_aliases(&mut doc).map_err(|r| Error::invalid(file, "_aliases", r))?;
        let mut top = Flat::default();
        top.add_level(&doc);
        let products = doc.get("products").and_then(Value::as_object);
        for (pname, product) in products.into_iter().flatten() {
            let Some(product) = product.as_object() else {
                continue;
            };
            let Some(versions) = product.get("versions").and_then(Value::as_object) else {
                continue;
            };
            let pflat = top.child(product, "product_name", pname);
            let mut kept: Vec<(&str, Vec<Selected>)> = Vec::new();
            for (vname, version) in versions {
                let Some(version) = version.as_object() else {
                    continue;
                };
                let items = version.get("items").and_then(Value::as_object);
                let Some(items) = items.filter(|i| !i.is_empty()) else {
                    // Never had items: sstream-query keeps such a version.
                    kept.push((vname, Vec::new()));
                    continue;
                };
                let vflat = pflat.child(version, "version_name", vname);
                let mut selected = Vec::new();
                for (iname, item) in items {
                    let Some(data) = item.as_object() else {
                        continue;
                    };
                    let flat = vflat.child(data, "item_name", iname);
                    if flat.matches(self.filters)? {
                        selected.push(Selected {
                            flat,
                            name: iname,
                            data,
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
                    add_item_url(file, &what, &mut sel.flat, sel.data, mirror)?;
                    self.print(&sel.flat)?;
                }
            }
        }
        Ok(())
    }

    fn print(&mut self, item: &Flat) -> Result<()> {
        match &mut self.printer {
            Printer::Format(fmt, text) => match fmt.format(item) {
                Ok(mut line) => {
                    line.push('\n');
                    self.out.write_all(line.as_bytes()).at(STDOUT)
                }
                Err(FormatError::MissingKey(key)) => {
                    let msg = format!(
                        "output format failed. Missing {key}\nitem: {}\n",
                        dict_repr(item)
                    );
                    self.err.write_all(msg.as_bytes()).at(STDERR)
                }
                Err(FormatError::Python { kind, message }) => Err(Error::Usage(format!(
                    "output format '{}' failed: {kind}: {message}",
                    text.escape_debug()
                ))),
            },
            Printer::Json(items) => {
                items.push(item.to_json());
                Ok(())
            }
            Printer::Pretty => self.out.write_all(pformat(item).as_bytes()).at(STDOUT),
        }
    }

    /// Prints what is printed at the end (`--json`) and flushes.
    pub fn finish(self) -> Result<()> {
        if let Printer::Json(items) = self.printer {
            let mut text = json::to_indented(&Value::Array(items), 2);
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
        let doc = json::parse_object(&url, text.as_bytes())?;
        let format = doc.get("format").and_then(Value::as_str);
        match format {
            Some("products:1.0") => {
                let products = Products::from_map(&url, doc)?;
                self.products(&url, products.into_doc(), mirror.root())
            }
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
                        .map_or("(missing)".to_string(), Value::to_string)
                ),
            )),
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
    data: &Map<String, Value>,
    mirror: &str,
) -> Result<()> {
    let own_path = data.get("path").and_then(Value::as_str);
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

/// Queries documents already in memory (a store stream's generated products),
/// each with the mirror root its paths are relative to.
pub fn query_products(
    docs: &[(&Products, &str)],
    opts: &QueryOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let mut q = Query::new(opts, out, err);
    for (products, mirror) in docs {
        let file = format!("{mirror}streams/v1/{}.json", products.content_id());
        q.products(&file, products.doc().clone(), mirror)?;
    }
    q.finish()
}

/// Queries a mirror: `source` is what sstream-query takes (a path or URL of
/// an index or products file under `streams/v1/`, or a mirror root).
/// `keyring` is for `.sjson` sources.
pub fn query_mirror(
    source: &str,
    keyring: Option<&std::path::Path>,
    http: &dyn HttpGet,
    opts: &QueryOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let (mirror, path, text) = Mirror::open(source, keyring, http)?;
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

    fn doc(products: Value) -> Products {
        let mut m = Map::new();
        m.insert("format".into(), "products:1.0".into());
        m.insert("content_id".into(), "c".into());
        m.insert("products".into(), products);
        Products::from_map("t", m).unwrap()
    }

    fn run(p: &Products, opts: &QueryOptions) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        query_products(&[(p, "/m/")], opts, &mut out, &mut err).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn opts(filters: &[&str], max: Option<i64>, fmt: &str) -> QueryOptions {
        QueryOptions {
            filters: ItemFilter::parse_all(filters).unwrap(),
            max_items: max,
            output: Output::Format(fmt.into()),
        }
    }

    fn versions_doc() -> Products {
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
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let e = query_products(&[(&p, "/m/")], &QueryOptions::default(), &mut out, &mut err)
            .unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        assert!(is_python_int(" +1_000 ") && !is_python_int("1.5") && !is_python_int("1__0"));
    }

    #[test]
    fn borrowed_flattening_agrees_with_flatten() {
        let text = br#"{"format":"products:1.0","content_id":"c","n":1.5,"arch":"x",
            "_aliases":{"crsn":{"r1":{"region":"r1","arch":"aliased"}}},
            "products":{"p":{"arch":"y","crsn":"r1","versions":{"1":{"label":"l","product_name":"v",
            "items":{"i":{"arch":"z","size":3,"ok":true,"list":[1],"crsn":"r1"},"j":{"n":null}}}}}}}"#;
        let products = Products::parse("t", text).unwrap();
        let want = crate::streams::flatten::flatten(&products);
        let mut doc = products.into_doc();
        expand_aliases(&mut doc).unwrap();
        let top = {
            let mut f = Flat::default();
            f.add_level(&doc);
            f
        };
        let p = doc["products"]["p"].as_object().unwrap();
        let v = p["versions"]["1"].as_object().unwrap();
        let pf = top.child(p, "product_name", "p");
        let vf = pf.child(v, "version_name", "1");
        let got: Vec<Value> = ["i", "j"]
            .iter()
            .map(|i| {
                vf.child(v["items"][*i].as_object().unwrap(), "item_name", i)
                    .to_json()
            })
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
