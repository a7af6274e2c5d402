//! Metadata operations on a store: meph2-util's insert, promote, clean-md,
//! find-orphans and reap-orphans, plus removal, export and fsck. Each takes a
//! write transaction (or the store) and returns a report; none prints.

pub mod clean;
pub mod export;
pub mod fsck;
pub mod insert;
pub mod orphans;
pub mod promote;
pub mod put;
pub mod remove;
pub mod source;

use serde_json::{Map, Value};

use crate::streams::Products;
use crate::streams::filter::{ItemFilter, all_match};
use crate::streams::flatten::{expand_aliases, flatten_expanded, inherited_version_attrs};

/// A product version named in reports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionRef {
    pub product: String,
    pub version: String,
}

impl std::fmt::Display for VersionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.product, self.version)
    }
}

/// Progress of a long operation, for front-ends to render.
#[derive(Clone, Debug)]
pub enum Progress<'a> {
    /// Copying `path`: `done` of `total` bytes of this operation.
    Bytes {
        path: &'a str,
        done: u64,
        total: u64,
    },
}

/// A version of `src` ready to be put into another document: its items (only
/// those matching `filters`), and every attribute it inherits from the
/// source's top level and product made explicit at the version level, so it
/// keeps its meaning under a product whose attributes differ. `None` when no
/// item matches.
pub fn portable_version(
    src: &Map<String, Value>,
    product: &str,
    version: &str,
    filters: &[ItemFilter],
) -> Option<Map<String, Value>> {
    let vdata = src
        .get("products")?
        .get(product)?
        .get("versions")?
        .get(version)?
        .as_object()?;
    let mut out = inherited_version_attrs(src, product, version);
    let mut items = Map::new();
    let all_items = vdata.get("items").and_then(Value::as_object)?;
    if filters.is_empty() {
        items = all_items.clone();
    } else {
        let flat = flatten_expanded(&single_version_doc(src, product, version));
        for f in flat {
            if all_match(filters, &f).unwrap_or(false) {
                let name = f["item_name"].as_str().unwrap_or_default();
                if let Some(i) = all_items.get(name) {
                    items.insert(name.to_string(), i.clone());
                }
            }
        }
    }
    if items.is_empty() {
        return None;
    }
    out.insert("items".into(), Value::Object(items));
    Some(out)
}

fn single_version_doc(
    src: &Map<String, Value>,
    product: &str,
    version: &str,
) -> Map<String, Value> {
    let mut doc = src.clone();
    let mut p = src["products"][product]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let v = p["versions"][version].clone();
    let mut vs = Map::new();
    vs.insert(version.to_string(), v);
    p.insert("versions".into(), Value::Object(vs));
    let mut ps = Map::new();
    ps.insert(product.to_string(), Value::Object(p));
    doc.insert("products".into(), Value::Object(ps));
    doc
}

/// A source document with its aliases expanded.
pub fn expanded(p: &Products) -> Map<String, Value> {
    let mut d = p.doc().clone();
    expand_aliases(&mut d);
    d.remove("_aliases");
    d
}

/// Puts a portable version under `product` in `target`. A new product gets
/// no attributes of its own: condensing at publication moves the shared ones
/// up. An existing product's attributes that the version does not set are
/// made explicit in its other versions first, so nothing changes meaning.
pub fn put_version(target: &mut Products, product: &str, version: &str, data: Map<String, Value>) {
    if let Some(p) = target.product(product) {
        let conflicting: Vec<String> = p
            .keys()
            .filter(|k| k.as_str() != "versions" && !data.contains_key(k.as_str()))
            .cloned()
            .collect();
        if !conflicting.is_empty() {
            crate::streams::condense::push_down(target);
        }
    }
    target.set_version(product, &Map::new(), version, data);
}
