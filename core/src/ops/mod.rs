//! Metadata operations on a store: meph2-util's insert, promote, clean-md,
//! find-orphans and reap-orphans, plus removal, export and fsck. Each takes a
//! write transaction (or the store) and returns a report; none prints.

pub mod clean;
pub mod export;
pub mod fsck;
pub mod insert;
pub mod orphans;
pub mod product_alias;
pub mod promote;
pub mod put;
pub mod remove;
pub mod source;
pub mod sync;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::store::StreamState;
use crate::streams::Products;
use crate::streams::aliases::expand_aliases;
use crate::streams::filter::{ItemFilter, all_match};
use crate::streams::flatten::{flatten_expanded, inherited_version_attrs};

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
/// item matches; an error when a filter cannot be evaluated.
pub fn portable_version(
    src: &Map<String, Value>,
    product: &str,
    version: &str,
    filters: &[ItemFilter],
) -> Result<Option<Map<String, Value>>> {
    let all_items = src
        .get("products")
        .and_then(|p| p.get(product))
        .and_then(|p| p.get("versions"))
        .and_then(|v| v.get(version))
        .and_then(|v| v.get("items"))
        .and_then(Value::as_object);
    let Some(all_items) = all_items else {
        return Ok(None);
    };
    let mut items = Map::new();
    if filters.is_empty() {
        items = all_items.clone();
    } else {
        for f in flatten_expanded(&single_version_doc(src, product, version)) {
            if all_match(filters, &f)? {
                let name = f["item_name"].as_str().unwrap_or_default();
                if let Some(i) = all_items.get(name) {
                    items.insert(name.to_string(), i.clone());
                }
            }
        }
    }
    if items.is_empty() {
        return Ok(None);
    }
    let mut out = inherited_version_attrs(src, product, version);
    out.insert("items".into(), Value::Object(items));
    Ok(Some(out))
}

fn single_version_doc(
    src: &Map<String, Value>,
    product: &str,
    version: &str,
) -> Map<String, Value> {
    // The document's own attributes, without its other products.
    let mut doc: Map<String, Value> = src
        .iter()
        .filter(|(k, _)| k.as_str() != "products")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
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

/// The paths a portable version's items name.
pub fn item_paths(data: &Map<String, Value>) -> impl Iterator<Item = &str> {
    data.get("items")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(_, i)| i.get("path").and_then(Value::as_str))
}

/// A version to add, with its portable data.
pub type Planned = (VersionRef, Map<String, Value>);

/// What insert's additive semantics take from `docs`: every version the
/// target lacks (once, the first document naming it wins), as portable data
/// keeping only items that match `filters`; and the versions left alone
/// because the target (or an earlier document) already has them. Fails
/// when a filter cannot be evaluated.
pub fn plan_new_versions<'a>(
    target: &Products,
    docs: impl IntoIterator<Item = &'a Products>,
    filters: &[ItemFilter],
) -> Result<(Vec<Planned>, Vec<VersionRef>)> {
    let (mut plan, mut existing) = (Vec::new(), Vec::new());
    let mut seen = std::collections::BTreeSet::new();
    for doc in docs {
        let src = expanded(doc);
        for (product, version) in doc.version_keys() {
            let vr = VersionRef { product, version };
            if target.has_version(&vr.product, &vr.version) || !seen.insert(vr.clone()) {
                existing.push(vr);
                continue;
            }
            if let Some(data) = portable_version(&src, &vr.product, &vr.version, filters)? {
                plan.push((vr, data));
            }
        }
    }
    Ok((plan, existing))
}

/// One path has one content in a stream: a new version whose item names a
/// path the stream already has with other content (an item, or a shared
/// file kept for products to come) is refused, or clients would be served
/// one file under two checksums. Items without a sha256 yet are checked
/// when their data arrives.
pub fn check_paths_agree<'a>(
    state: &StreamState,
    stream: &str,
    plan: impl IntoIterator<Item = (&'a VersionRef, &'a Map<String, Value>)>,
) -> Result<()> {
    let mut paths = PathContents::of(state);
    for (vr, data) in plan {
        paths.admit(stream, vr, data)?;
    }
    Ok(())
}

/// The content (sha256) of each live path of a stream, for checking new
/// versions against the stream and against each other
/// ([`check_paths_agree`]) with one pass over the stream, however many
/// versions come: a sync adding 10,000 versions checks each on its own
/// (a refused one is left out, the others go on), and building this map
/// per version made that quadratic (10 minutes in a debug build).
pub struct PathContents {
    have: std::collections::BTreeMap<String, String>,
}

impl PathContents {
    pub fn of(state: &StreamState) -> PathContents {
        PathContents {
            have: state
                .live_blobs()
                .map(|(p, b)| (p.to_string(), b.sha256.to_ascii_lowercase()))
                .collect(),
        }
    }

    /// Checks the items of version `vr` (its `data`); when none contradicts
    /// a path already known, its paths are known from now on.
    pub fn admit(
        &mut self,
        stream: &str,
        vr: &VersionRef,
        data: &Map<String, Value>,
    ) -> Result<()> {
        let mut new: Vec<(&str, String)> = Vec::new();
        for (iname, item) in data
            .get("items")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let (Some(path), Some(sha)) = (
                item.get("path").and_then(Value::as_str),
                item.get("sha256").and_then(Value::as_str),
            ) else {
                continue;
            };
            let sha = sha.to_ascii_lowercase();
            let known = self
                .have
                .get(path)
                .or_else(|| new.iter().find(|(p, _)| *p == path).map(|(_, h)| h));
            match known {
                Some(h) if *h != sha => {
                    return Err(Error::Refused(format!(
                        "stream {stream} product {} version {} item {iname}: {path} already holds other content (sha256 {h}); remove it first",
                        vr.product, vr.version
                    )));
                }
                Some(_) => {}
                None => new.push((path, sha)),
            }
        }
        for (p, h) in new {
            self.have.insert(p.to_string(), h);
        }
        Ok(())
    }
}

/// A source document with its aliases expanded.
pub fn expanded(p: &Products) -> Map<String, Value> {
    let mut d = p.doc().clone();
    expand_aliases(&mut d).expect("validated by Products::parse");
    d.remove("_aliases");
    d
}

/// Puts a portable version under `product` in `target`. A new product gets
/// no attributes of its own: condensing at publication moves the shared ones
/// up. An existing product's attributes that the version does not set are
/// made explicit in its other versions first, so nothing changes meaning.
/// A product's aliases ([`product_alias`]) name the product, not its
/// versions: they stay where they are.
pub fn put_version(target: &mut Products, product: &str, version: &str, data: Map<String, Value>) {
    if let Some(p) = target.product(product) {
        let conflicting: Vec<String> = p
            .keys()
            .filter(|k| !product_only(k) && !data.contains_key(k.as_str()))
            .cloned()
            .collect();
        if !conflicting.is_empty() {
            product_attrs_to_versions(target, product);
        }
    }
    target.set_version(product, &Map::new(), version, data);
}

/// Moves a product's own attributes onto each of its versions (not further:
/// an item added to a version later still inherits them from it).
fn product_attrs_to_versions(target: &mut Products, product: &str) {
    let Some(p) = target
        .products_mut()
        .get_mut(product)
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let attrs: Vec<(String, Value)> = p
        .iter()
        .filter(|(k, v)| !product_only(k) && v.is_string())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(Value::Object(versions)) = p.get_mut("versions") {
        for v in versions.values_mut().filter_map(Value::as_object_mut) {
            for (k, x) in &attrs {
                if !v.contains_key(k) {
                    v.insert(k.clone(), x.clone());
                }
            }
        }
    }
    p.retain(|k, x| product_only(k) || !x.is_string());
}

fn product_only(key: &str) -> bool {
    key == "versions" || key == product_alias::ATTR
}
