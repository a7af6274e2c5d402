//! The streams metadata of a build, as meph2-build writes it: one products
//! file `streams/v1/<content_id>.json` holding this version of every planned
//! product (condensed, keys sorted), its `index.json`, and the `--flat-json`
//! list of items.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};
use streamfs_core::json;
use streamfs_core::store::pool::hash_file;
use streamfs_core::store::write_atomic;
use streamfs_core::streams::condense::condense;
use streamfs_core::streams::index::index_of;
use streamfs_core::streams::products::Products;

use crate::error::{Error, Result};
use crate::plan::Plan;

/// A product's items: (item name, attributes), in meph2's order.
pub type NamedItems = Vec<(String, Map<String, Value>)>;

/// Every item of the plan with its attributes, per product, in plan order.
pub fn items(plan: &Plan, out: &Path) -> Result<Vec<(String, NamedItems)>> {
    let mut info = BTreeMap::new();
    for p in &plan.outputs {
        info.insert(p.clone(), {
            let b = hash_file(&out.join(p))?;
            (b.sha256, b.size)
        });
    }
    let mut ret = Vec::new();
    for prod in &plan.products {
        let mut items = Vec::new();
        for it in &prod.items {
            let mut m = prod.attrs.clone();
            m.insert("ftype".into(), it.name.clone().into());
            m.insert("path".into(), it.path.clone().into());
            if let Some(k) = &it.kpackage {
                m.insert("kpackage".into(), k.clone().into());
            }
            let (sha, size) = &info[&it.path];
            m.insert("sha256".into(), sha.clone().into());
            m.insert("size".into(), (*size).into());
            items.push((it.name.clone(), m));
        }
        ret.push((prod.name.clone(), items));
    }
    Ok(ret)
}

/// The products document of the build (condensed as meph2 condenses).
pub fn products(plan: &Plan, out: &Path, updated: &str) -> Result<Products> {
    let mut doc = Products::new(&plan.content_id, "image-downloads");
    for (name, items) in items(plan, out)? {
        let mut im = Map::new();
        for (n, m) in items {
            im.insert(n, Value::Object(m));
        }
        let mut data = Map::new();
        data.insert("items".into(), Value::Object(im));
        doc.set_version(&name, &Map::new(), &plan.version_name, data);
    }
    condense(&mut doc);
    doc.set_top("updated", updated);
    doc.sort();
    Ok(doc)
}

/// Writes `streams/v1/<content_id>.json` and `index.json` under `out`.
pub fn write_streams(out: &Path, doc: &Products, updated: &str) -> Result<()> {
    let dir = out.join("streams/v1");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    write_atomic(
        &dir.join(format!("{}.json", doc.content_id())),
        &doc.to_bytes(),
    )?;
    let index = index_of(doc, updated);
    write_atomic(&dir.join("index.json"), &json::to_meph2(&index))?;
    Ok(())
}

/// meph2-build's `--flat-json`: every item with its product, version and
/// item names, sorted keys, two-space indent, no trailing newline.
pub fn flat_json(plan: &Plan, out: &Path) -> Result<String> {
    let mut list = Vec::new();
    for (name, items) in items(plan, out)? {
        for (item_name, mut m) in items {
            m.insert("product_name".into(), name.clone().into());
            m.insert("version_name".into(), plan.version_name.clone().into());
            m.insert("item_name".into(), item_name.into());
            list.push(Value::Object(m));
        }
    }
    Ok(json::to_indented(&Value::Array(list), 2))
}
