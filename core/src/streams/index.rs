//! index:1.0 documents: the generated index of a stream, and reading an
//! index to find its products files.

use serde_json::{Map, Value};

use super::products::Products;
use crate::error::{Error, Result};
use crate::json;
use crate::relpath::RelPath;

/// One entry of an index: a products file and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexEntry {
    pub content_id: String,
    pub path: String,
    pub data: Map<String, Value>,
}

/// Builds the index of a stream whose one products file is `products`, at
/// `streams/v1/<content_id>.json`.
pub fn index_of(products: &Products, updated: &str) -> Value {
    let datatype = products
        .doc()
        .get("datatype")
        .and_then(Value::as_str)
        .unwrap_or("image-downloads");
    build_index(
        products.content_id(),
        datatype,
        products.product_names(),
        updated,
    )
}

/// Builds the index of a stream with one products file of `content_id`, at
/// `streams/v1/<content_id>.json`, listing `product_names` (sorted).
pub fn build_index(
    content_id: &str,
    datatype: &str,
    product_names: Vec<String>,
    updated: &str,
) -> Value {
    let mut entry = Map::new();
    entry.insert("datatype".into(), datatype.into());
    entry.insert("format".into(), "products:1.0".into());
    entry.insert(
        "path".into(),
        format!("streams/v1/{content_id}.json").into(),
    );
    entry.insert(
        "products".into(),
        Value::Array(product_names.into_iter().map(Value::String).collect()),
    );
    entry.insert("updated".into(), updated.into());
    let mut index = Map::new();
    index.insert(content_id.to_string(), Value::Object(entry));
    let mut doc = Map::new();
    doc.insert("format".into(), "index:1.0".into());
    doc.insert("index".into(), Value::Object(index));
    doc.insert("updated".into(), updated.into());
    Value::Object(doc)
}

/// Parses an index and returns its entries (validated paths), in file order.
pub fn parse_index(file: &str, bytes: &[u8]) -> Result<Vec<IndexEntry>> {
    let doc = json::parse_object(file, bytes)?;
    match doc.get("format").and_then(Value::as_str) {
        Some("index:1.0") => {}
        other => {
            return Err(Error::invalid(
                file,
                "format",
                format!("expected \"index:1.0\", found {other:?}"),
            ));
        }
    }
    let index = doc
        .get("index")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::invalid(file, "index", "missing or not an object"))?;
    let mut out = Vec::new();
    for (cid, e) in index {
        let data = e
            .as_object()
            .ok_or_else(|| Error::invalid(file, format!("index entry {cid}"), "not an object"))?;
        let path = data
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid(file, format!("index entry {cid}"), "missing path"))?;
        RelPath::new(path).map_err(|r| Error::invalid(file, format!("index entry {cid}"), r))?;
        out.push(IndexEntry {
            content_id: cid.clone(),
            path: path.to_string(),
            data: data.clone(),
        });
    }
    Ok(out)
}

/// Rewrites every entry's `path` from `.json` to `.sjson`, as meph2-util
/// does for `index.sjson`.
pub fn to_signed_paths(index: &Value) -> Value {
    let mut out = index.clone();
    if let Some(entries) = out.get_mut("index").and_then(Value::as_object_mut) {
        for e in entries.values_mut() {
            if let Some(Value::String(p)) = e.get_mut("path")
                && let Some(stem) = p.strip_suffix(".json")
            {
                *p = format!("{stem}.sjson");
            }
        }
    }
    out
}
