//! A products:1.0 document, kept as JSON so unknown keys at every level
//! survive a read-modify-write, with typed access to what streamfs needs.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::json;
use crate::relpath::RelPath;

/// A products document. The invariants checked by [`Products::parse`] hold for
/// every value of this type: `products` is an object of objects, each
/// `versions` an object of objects, each `items` an object of objects, and
/// every item `path` is a safe relative path with a well-formed `sha256` and
/// `size` when present.
#[derive(Clone, Debug, PartialEq)]
pub struct Products {
    doc: Map<String, Value>,
}

/// A borrowed view of one item with its pedigree.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    pub product: &'a str,
    pub version: &'a str,
    pub name: &'a str,
    pub data: &'a Map<String, Value>,
}

impl<'a> Item<'a> {
    pub fn path(&self) -> Option<&'a str> {
        self.data.get("path").and_then(Value::as_str)
    }
    pub fn sha256(&self) -> Option<&'a str> {
        self.data.get("sha256").and_then(Value::as_str)
    }
    pub fn size(&self) -> Option<u64> {
        self.data.get("size").and_then(Value::as_u64)
    }
    /// "product P version V item I", as errors name an item.
    pub fn what(&self) -> String {
        format!(
            "product {} version {} item {}",
            self.product, self.version, self.name
        )
    }
}

impl Products {
    /// An empty products document for a stream.
    pub fn new(content_id: &str, datatype: &str) -> Self {
        let mut doc = Map::new();
        doc.insert("content_id".into(), content_id.into());
        doc.insert("datatype".into(), datatype.into());
        doc.insert("format".into(), "products:1.0".into());
        doc.insert("products".into(), Value::Object(Map::new()));
        Products { doc }
    }

    /// Parses and validates a products file; `file` names it in errors.
    /// A document with any unsafe path is rejected whole.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self> {
        let doc = json::parse_object(file, bytes)?;
        Self::from_map(file, doc)
    }

    pub fn from_map(file: &str, mut doc: Map<String, Value>) -> Result<Self> {
        check_format(
            file,
            doc.get("format")
                .map(|f| (f.as_str(), f as &dyn std::fmt::Display)),
        )?;
        if doc.contains_key("_aliases") {
            crate::streams::aliases::check_aliases(&doc)
                .map_err(|r| Error::invalid(file, "_aliases", r))?;
        }
        let products = doc
            .entry("products")
            .or_insert_with(|| Value::Object(Map::new()));
        check_products(file, &*products)?;
        Ok(Products { doc })
    }

    pub fn doc(&self) -> &Map<String, Value> {
        &self.doc
    }

    pub fn into_doc(self) -> Map<String, Value> {
        self.doc
    }

    pub fn content_id(&self) -> &str {
        self.doc
            .get("content_id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn set_top(&mut self, key: &str, value: impl Into<Value>) {
        self.doc.insert(key.into(), value.into());
    }

    pub fn products(&self) -> &Map<String, Value> {
        self.doc["products"].as_object().expect("validated")
    }

    pub fn products_mut(&mut self) -> &mut Map<String, Value> {
        self.doc
            .get_mut("products")
            .and_then(Value::as_object_mut)
            .expect("validated")
    }

    pub fn product(&self, name: &str) -> Option<&Map<String, Value>> {
        self.products().get(name).and_then(Value::as_object)
    }

    pub fn versions(&self, product: &str) -> Option<&Map<String, Value>> {
        self.product(product)?.get("versions")?.as_object()
    }

    pub fn version(&self, product: &str, version: &str) -> Option<&Map<String, Value>> {
        self.versions(product)?.get(version)?.as_object()
    }

    pub fn has_version(&self, product: &str, version: &str) -> bool {
        self.version(product, version).is_some()
    }

    /// Every item, in document order.
    pub fn items(&self) -> impl Iterator<Item = Item<'_>> {
        self.products().iter().flat_map(|(pname, p)| {
            let versions = p.get("versions").and_then(Value::as_object);
            versions.into_iter().flatten().flat_map(move |(vname, v)| {
                let items = v.get("items").and_then(Value::as_object);
                items.into_iter().flatten().filter_map(move |(iname, i)| {
                    Some(Item {
                        product: pname,
                        version: vname,
                        name: iname,
                        data: i.as_object()?,
                    })
                })
            })
        })
    }

    /// The items of one version.
    pub fn version_items<'a>(
        &'a self,
        product: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = Item<'a>> {
        let items = self
            .version(product, version)
            .and_then(|v| v.get("items"))
            .and_then(Value::as_object);
        items.into_iter().flatten().filter_map(move |(iname, i)| {
            Some(Item {
                product,
                version,
                name: iname,
                data: i.as_object()?,
            })
        })
    }

    /// `(product, version)` pairs, products and versions in sorted order.
    pub fn version_keys(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (pname, p) in self.products() {
            if let Some(vs) = p.get("versions").and_then(Value::as_object) {
                for vname in vs.keys() {
                    out.push((pname.clone(), vname.clone()));
                }
            }
        }
        out.sort();
        out
    }

    /// Sets a product's version, creating the product with `attrs` (its
    /// attributes, without `versions`) when it does not exist yet.
    pub fn set_version(
        &mut self,
        product: &str,
        attrs: &Map<String, Value>,
        version: &str,
        data: Map<String, Value>,
    ) {
        let products = self.products_mut();
        let p = products
            .entry(product.to_string())
            .or_insert_with(|| {
                let mut m = attrs.clone();
                m.remove("versions");
                Value::Object(m)
            })
            .as_object_mut()
            .expect("validated");
        let versions = p
            .entry("versions")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("validated");
        versions.insert(version.to_string(), Value::Object(data));
    }

    /// Removes a version; a product left without versions goes too.
    pub fn remove_version(&mut self, product: &str, version: &str) -> Option<Map<String, Value>> {
        let products = self.products_mut();
        let p = products.get_mut(product)?.as_object_mut()?;
        let removed = p
            .get_mut("versions")?
            .as_object_mut()?
            .shift_remove(version);
        let empty = p
            .get("versions")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        if empty {
            products.shift_remove(product);
        }
        removed.and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
    }

    /// Removes one item; empty versions and products go too.
    pub fn remove_item(&mut self, product: &str, version: &str, item: &str) -> bool {
        let products = self.products_mut();
        let Some(p) = products.get_mut(product).and_then(Value::as_object_mut) else {
            return false;
        };
        let Some(vs) = p.get_mut("versions").and_then(Value::as_object_mut) else {
            return false;
        };
        let Some(v) = vs.get_mut(version).and_then(Value::as_object_mut) else {
            return false;
        };
        let Some(items) = v.get_mut("items").and_then(Value::as_object_mut) else {
            return false;
        };
        if items.shift_remove(item).is_none() {
            return false;
        }
        if items.is_empty() {
            vs.shift_remove(version);
        }
        if vs.is_empty() {
            products.shift_remove(product);
        }
        true
    }

    /// Sorts products, versions and items by name so that a document built
    /// by any sequence of operations serializes and iterates the same way.
    pub fn sort(&mut self) {
        fn sort_map(m: &mut Map<String, Value>) {
            m.sort_keys();
        }
        let products = self.products_mut();
        sort_map(products);
        for p in products.values_mut() {
            if let Some(vs) = p.get_mut("versions").and_then(Value::as_object_mut) {
                sort_map(vs);
                for v in vs.values_mut() {
                    if let Some(items) = v.get_mut("items").and_then(Value::as_object_mut) {
                        sort_map(items);
                    }
                }
            }
        }
    }

    /// The document in meph2-util's JSON style.
    pub fn to_bytes(&self) -> Vec<u8> {
        json::map_to_meph2(&self.doc)
    }

    /// Product names, sorted (for the index).
    pub fn product_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.products().keys().cloned().collect();
        v.sort();
        v
    }
}

/// What checking a products document needs of a JSON value, so that the
/// query's borrowed documents are checked by the same code as `Value`s.
pub(crate) trait JsonNode: std::fmt::Display {
    fn as_str(&self) -> Option<&str>;
    fn as_u64(&self) -> Option<u64>;
    fn kind(&self) -> &'static str;
    fn is_object(&self) -> bool;
    /// A member of an object (`None` for anything else).
    fn member(&self, key: &str) -> Option<&Self>;
    /// Calls `f` on an object's members in order, stopping at an error.
    fn try_members(&self, f: &mut dyn FnMut(&str, &Self) -> Result<()>) -> Result<()>;
}

impl JsonNode for Value {
    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }

    fn as_u64(&self) -> Option<u64> {
        Value::as_u64(self)
    }

    fn kind(&self) -> &'static str {
        json::kind(self)
    }

    fn is_object(&self) -> bool {
        Value::is_object(self)
    }

    fn member(&self, key: &str) -> Option<&Self> {
        self.get(key)
    }

    fn try_members(&self, f: &mut dyn FnMut(&str, &Self) -> Result<()>) -> Result<()> {
        self.as_object()
            .into_iter()
            .flatten()
            .try_for_each(|(k, v)| f(k, v))
    }
}

fn obj<'a, N: JsonNode>(v: &'a N, file: &str, what: impl FnOnce() -> String) -> Result<&'a N> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(Error::invalid(
            file,
            what(),
            format!("expected an object, found {}", v.kind()),
        ))
    }
}

/// Checks a document's `products` member: products, versions and items are
/// objects, and every item passes [`check_item_fields`].
pub(crate) fn check_products<N: JsonNode>(file: &str, products: &N) -> Result<()> {
    obj(products, file, || "products".into())?
        .try_members(&mut |pname, p| check_product(file, pname, p))
}

/// [`check_products`] for one product.
pub(crate) fn check_product<N: JsonNode>(file: &str, pname: &str, p: &N) -> Result<()> {
    let p = obj(p, file, || format!("product {pname}"))?;
    let Some(versions) = p.member("versions") else {
        return Ok(());
    };
    let versions = obj(versions, file, || format!("product {pname} versions"))?;
    versions.try_members(&mut |vname, v| {
        let v = obj(v, file, || format!("product {pname} version {vname}"))?;
        let Some(items) = v.member("items") else {
            return Ok(());
        };
        let items = obj(items, file, || {
            format!("product {pname} version {vname} items")
        })?;
        items.try_members(&mut |iname, i| {
            let what = || format!("product {pname} version {vname} item {iname}");
            let i = obj(i, file, what)?;
            check_item_fields(file, what, |k| i.member(k))
        })
    })
}

/// An item's `path` is safe, its `sha256` 64 hex digits and its `size` a
/// non-negative integer, where present.
/// `what` names the item in errors; it is only formatted for one.
pub(crate) fn check_item_fields<'v, F: JsonNode + 'v>(
    file: &str,
    what: impl Fn() -> String,
    get: impl Fn(&str) -> Option<&'v F>,
) -> Result<()> {
    if let Some(p) = get("path") {
        let s = p.as_str().ok_or_else(|| {
            Error::invalid(
                file,
                what(),
                format!("path must be a string, found {}", p.kind()),
            )
        })?;
        RelPath::check(s).map_err(|reason| Error::invalid(file, what(), reason))?;
    }
    if let Some(h) = get("sha256") {
        let ok = h
            .as_str()
            .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Err(Error::invalid(
                file,
                what(),
                format!("sha256 must be 64 hex digits, found {h}"),
            ));
        }
    }
    if let Some(s) = get("size")
        && s.as_u64().is_none()
    {
        return Err(Error::invalid(
            file,
            what(),
            format!("size must be a non-negative integer, found {s}"),
        ));
    }
    Ok(())
}

/// The `format` of a products document, as found (its text when a string,
/// and how to show it): `products:1.0` or an error naming what was found.
/// Shared by [`Products::from_map`] and the query's borrowed tree.
pub(crate) fn check_format(
    file: &str,
    format: Option<(Option<&str>, &dyn std::fmt::Display)>,
) -> Result<()> {
    match format {
        Some((Some("products:1.0"), _)) => Ok(()),
        Some((_, other)) => Err(Error::invalid(
            file,
            "format",
            format!("expected \"products:1.0\", found {other}"),
        )),
        None => Err(Error::invalid(
            file,
            "format",
            "missing \"format\": not a products:1.0 document",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str) -> String {
        format!(
            r#"{{"format":"products:1.0","content_id":"c","products":{{"p":{{"versions":{{"1":{{"items":{{"i":{{"path":"{path}","sha256":"{}","size":3}}}}}}}}}}}}}}"#,
            "a".repeat(64)
        )
    }

    #[test]
    fn a_products_file_with_an_unsafe_path_is_rejected_naming_the_item() {
        let e = Products::parse("f.json", doc("../x").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.json") && e.contains("product p version 1 item i") && e.contains(".."),
            "{e}"
        );
        assert!(Products::parse("f.json", doc("/etc/passwd").as_bytes()).is_err());
        assert!(Products::parse("f.json", doc("ok/x").as_bytes()).is_ok());
    }

    /// Found by fuzzing (fuzz/fuzz_targets/products.rs): a number beyond
    /// u64 (here an unknown key's, which must survive untouched) came back
    /// one unit in the last place off at every rewrite, because JSON floats
    /// were not parsed with correct rounding.
    #[test]
    fn numbers_survive_a_read_modify_write_unchanged() {
        let text = format!(
            r#"{{"format":"products:1.0","huge":{},"tiny":1.7668888888888892e+98,"p":0.1,"products":{{}}}}"#,
            "176688888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888"
        );
        let first = Products::parse("f.json", text.as_bytes()).unwrap();
        let written = first.to_bytes();
        let again = Products::parse("f.json", &written).unwrap();
        assert_eq!(again, first);
        assert_eq!(again.to_bytes(), written, "a rewrite changes nothing");
        let written = String::from_utf8(written).unwrap();
        assert!(
            written.contains("\"tiny\": 1.7668888888888892e+98"),
            "{written}"
        );
        assert!(written.contains("\"p\": 0.1,"), "{written}");
    }

    /// Found by fuzzing (fuzz/fuzz_targets/products.rs): an alias whose
    /// attributes bring in the aliased key again expanded forever and
    /// overflowed the stack; aliases that double at every level would
    /// exhaust memory.
    #[test]
    fn aliases_that_include_themselves_or_multiply_are_refused() {
        let looping = br#"{"format":"products:1.0","content_id":"c",
            "_aliases":{"k":{"v":{"child":{"k":"v"}}}},
            "products":{"p":{"k":"v","versions":{}}}}"#;
        let e = Products::parse("f.json", looping).unwrap_err().to_string();
        assert!(
            e.contains("f.json: _aliases") && e.contains("includes itself"),
            "{e}"
        );
        // The query expands aliases level by level as it flattens, never
        // recursing into what they bring: it neither loops nor refuses.
        let doc = crate::streams::query::tree::parse_object("f.json", looping).unwrap();
        let opts = crate::streams::query::QueryOptions::default();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut q = crate::streams::query::Query::new(&opts, &mut out, &mut err);
        q.products("f.json", &doc, "").unwrap();

        let mut table = serde_json::Map::new();
        for level in 0..60 {
            table.insert(
                format!("k{level}"),
                serde_json::json!({"v": {"a": {format!("k{}", level + 1): "v"}, "b": {format!("k{}", level + 1): "v"}}}),
            );
        }
        let doubling = serde_json::json!({
            "format": "products:1.0",
            "_aliases": table,
            "products": {"p": {"k0": "v"}}
        });
        let e = Products::parse("g.json", doubling.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("g.json: _aliases") && e.contains("objects"),
            "{e}"
        );
    }

    #[test]
    fn removing_the_last_item_removes_its_version_and_product() {
        let mut p = Products::parse("f", doc("a/b").as_bytes()).unwrap();
        assert!(p.remove_item("p", "1", "i"));
        assert!(p.products().is_empty());
    }
}
