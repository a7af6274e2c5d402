//! Condensing, as python-simplestreams' `products_condense` with meph2-util's
//! sticky keys: a string attribute that every child of a version (items) or
//! of a product (versions) carries with the same value moves up one level.
//! Readers flatten, so condensing never changes what any item means; it only
//! keeps generated files small and shaped like Canonical's.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::STICKY_KEYS;
use super::products::Products;

/// `move_dups`: moves to `target` every key present in all of `children`
/// with one identical string value, unless `target` holds a different value.
fn move_dups(children: &mut Map<String, Value>, target: &mut Map<String, Value>, structural: &str) {
    let mut iter = children.values().filter_map(Value::as_object);
    let Some(first) = iter.next() else { return };
    let mut candidates: BTreeSet<String> = first
        .keys()
        .filter(|k| !STICKY_KEYS.contains(&k.as_str()) && k.as_str() != structural)
        .cloned()
        .collect();
    for child in iter {
        candidates.retain(|k| child.contains_key(k));
    }
    let mut updates = Map::new();
    for k in candidates {
        let mut vals = children.values().filter_map(|c| c.get(&k));
        let Some(v0) = vals.next() else { continue };
        if !v0.is_string() || vals.any(|v| v != v0) {
            continue;
        }
        if target.get(&k).is_some_and(|t| t != v0) {
            continue;
        }
        updates.insert(k, v0.clone());
    }
    if updates.is_empty() {
        return;
    }
    for c in children.values_mut().filter_map(Value::as_object_mut) {
        for k in updates.keys() {
            c.shift_remove(k);
        }
    }
    for (k, v) in updates {
        target.insert(k, v);
    }
}

/// Condenses items into versions, then versions into products (never into
/// the document top: meph2-util condenses with `top='versions'`).
pub fn condense(products: &mut Products) {
    for p in products.products_mut().values_mut() {
        if let Some(p) = p.as_object_mut() {
            condense_product(p);
        }
    }
}

/// [`condense`] of one product, for writers that render a document one
/// product at a time.
pub fn condense_product(p: &mut Map<String, Value>) {
    if let Some(Value::Object(versions)) = p.get_mut("versions") {
        for v in versions.values_mut() {
            let Some(v) = v.as_object_mut() else { continue };
            if let Some(Value::Object(mut items)) = v.shift_remove("items") {
                move_dups(&mut items, v, "items");
                v.insert("items".into(), Value::Object(items));
            }
        }
    }
    if let Some(Value::Object(mut versions)) = p.shift_remove("versions") {
        move_dups(&mut versions, p, "versions");
        p.insert("versions".into(), Value::Object(versions));
    }
}

/// Pushes every string attribute of products and versions down into their
/// items, the inverse of [`condense`]; used before edits that change one
/// version's attributes so that its siblings keep theirs.
pub fn push_down(products: &mut Products) {
    for p in products.products_mut().values_mut() {
        let Some(p) = p.as_object_mut() else { continue };
        let pattrs: Vec<(String, Value)> = p
            .iter()
            .filter(|(k, v)| k.as_str() != "versions" && v.is_string())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let Some(Value::Object(versions)) = p.get_mut("versions") else {
            continue;
        };
        for v in versions.values_mut() {
            let Some(v) = v.as_object_mut() else { continue };
            for (k, x) in &pattrs {
                if !v.contains_key(k) {
                    v.insert(k.clone(), x.clone());
                }
            }
            let vattrs: Vec<(String, Value)> = v
                .iter()
                .filter(|(k, x)| k.as_str() != "items" && x.is_string())
                .map(|(k, x)| (k.clone(), x.clone()))
                .collect();
            if let Some(Value::Object(items)) = v.get_mut("items") {
                for i in items.values_mut().filter_map(Value::as_object_mut) {
                    for (k, x) in &vattrs {
                        if !i.contains_key(k) {
                            i.insert(k.clone(), x.clone());
                        }
                    }
                }
            }
            v.retain(|k, x| k == "items" || !x.is_string());
        }
        p.retain(|k, x| k == "versions" || !x.is_string());
    }
}

#[cfg(test)]
mod tests {
    use super::super::flatten::flatten;
    use super::*;

    #[test]
    fn condense_then_flatten_is_identity_and_sticky_keys_stay() {
        let src = br#"{"format":"products:1.0","products":{"p":{"versions":{
            "1":{"items":{"a":{"ftype":"k","path":"x/a","label":"c","os":"u"},"b":{"ftype":"k","path":"x/b","label":"c","os":"u"}}},
            "2":{"items":{"a":{"ftype":"k","path":"y/a","label":"d","os":"u"}}}}}}}"#;
        let mut p = Products::parse("t", src).unwrap();
        let before = flatten(&p);
        condense(&mut p);
        let prod = p.product("p").unwrap();
        assert_eq!(prod["os"], "u");
        assert!(prod.get("label").is_none());
        assert_eq!(p.version("p", "1").unwrap()["label"], "c");
        let item = &p.version("p", "1").unwrap()["items"]["a"];
        assert_eq!(item["ftype"], "k");
        let sort = |mut v: Vec<FlatItemOrd>| {
            v.sort();
            v
        };
        assert_eq!(sort(ord(&before)), sort(ord(&flatten(&p))));
        push_down(&mut p);
        assert_eq!(sort(ord(&before)), sort(ord(&flatten(&p))));
    }

    type FlatItemOrd = Vec<(String, String)>;
    fn ord(items: &[super::super::FlatItem]) -> Vec<FlatItemOrd> {
        items
            .iter()
            .map(|i| {
                let mut v: Vec<(String, String)> = i
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                v.sort();
                v
            })
            .collect()
    }
}
