//! Flattening: an item's effective attributes, as python-simplestreams'
//! `products_exdata` computes them (top level, then product, then version,
//! then item; deeper wins), after `_aliases` expansion.
//!
//! The key order matters: sstream-query prints flattened items as Python
//! dicts, so a key keeps the position of its first appearance, exactly as
//! `dict.update` does.

use serde_json::{Map, Value};

use super::aliases::expand_aliases;
use super::products::Products;
use crate::json::python_str;

/// An item's effective attributes, every value a string (Python's `str()` of
/// the original scalar), plus `product_name`, `version_name`, `item_name`.
pub type FlatItem = Map<String, Value>;

fn add_strings(out: &mut FlatItem, m: &Map<String, Value>) {
    for (k, v) in m {
        if let Some(s) = python_str(v) {
            out.insert(k.clone(), Value::String(s));
        }
    }
}

/// The flattened items of a document whose aliases are already expanded.
pub fn flatten_expanded(doc: &Map<String, Value>) -> Vec<FlatItem> {
    let mut top = FlatItem::new();
    add_strings(&mut top, doc);
    let mut out = Vec::new();
    let Some(products) = doc.get("products").and_then(Value::as_object) else {
        return out;
    };
    for (pname, p) in products {
        let Some(p) = p.as_object() else { continue };
        let mut pf = top.clone();
        add_strings(&mut pf, p);
        pf.insert("product_name".into(), Value::String(pname.clone()));
        let Some(versions) = p.get("versions").and_then(Value::as_object) else {
            continue;
        };
        for (vname, v) in versions {
            let Some(v) = v.as_object() else { continue };
            let mut vf = pf.clone();
            add_strings(&mut vf, v);
            vf.insert("version_name".into(), Value::String(vname.clone()));
            let Some(items) = v.get("items").and_then(Value::as_object) else {
                continue;
            };
            for (iname, i) in items {
                let Some(i) = i.as_object() else { continue };
                let mut f = vf.clone();
                add_strings(&mut f, i);
                f.insert("item_name".into(), Value::String(iname.clone()));
                out.push(f);
            }
        }
    }
    out
}

/// The flattened items of a products document, in document order.
pub fn flatten(products: &Products) -> Vec<FlatItem> {
    let mut doc = products.doc().clone();
    expand_aliases(&mut doc).expect("validated by Products::parse");
    flatten_expanded(&doc)
}

/// The attributes a version's items inherit from the document top and the
/// product (aliases expanded, document keys left out), with the version's own
/// attributes on top: what a version needs to carry to keep its meaning when
/// copied under another product or into another document.
pub fn inherited_version_attrs(
    doc: &Map<String, Value>,
    product: &str,
    version: &str,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in doc {
        if !super::DOC_KEYS.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    let p = doc
        .get("products")
        .and_then(|p| p.get(product))
        .and_then(Value::as_object);
    if let Some(p) = p {
        for (k, v) in p {
            if k != "versions" {
                out.insert(k.clone(), v.clone());
            }
        }
        if let Some(v) = p
            .get("versions")
            .and_then(|vs| vs.get(version))
            .and_then(Value::as_object)
        {
            for (k, x) in v {
                if k != "items" {
                    out.insert(k.clone(), x.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeper_levels_win_and_keys_keep_first_position() {
        let doc: Products = Products::parse(
            "t",
            br#"{"format":"products:1.0","arch":"x","products":{"p":{"arch":"y","versions":{"1":{"label":"l","items":{"i":{"arch":"z","size":3,"ok":true,"list":[1]}}}}}}}"#,
        )
        .unwrap();
        let f = flatten(&doc);
        assert_eq!(f.len(), 1);
        let keys: Vec<&str> = f[0].keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "format",
                "arch",
                "product_name",
                "label",
                "version_name",
                "size",
                "ok",
                "item_name"
            ]
        );
        assert_eq!(f[0]["arch"], "z");
        assert_eq!(f[0]["ok"], "True");
        assert_eq!(f[0]["size"], "3");
    }
}
