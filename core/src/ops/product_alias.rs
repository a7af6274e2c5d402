//! Product aliases: other names for a product, kept in its `aliases`
//! attribute as LXD's simplestreams products carry them (comma-separated).
//! The mount shows each alias as a symlink beside the product's directory,
//! and `ln -s` / `rm` of such a link set and drop one; `mountctl node`
//! resolves image names through them. Not to be confused with the document
//! level `_aliases` macro of simplestreams ([`crate::streams::aliases`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::store::{StreamState, Txn};
use crate::streams::Products;

/// The product attribute holding a product's aliases.
pub const ATTR: &str = "aliases";

/// A product's aliases, in the order written.
pub fn of_product(products: &Products, product: &str) -> Vec<String> {
    products
        .product(product)
        .and_then(|p| p.get(ATTR))
        .and_then(Value::as_str)
        .map(split)
        .unwrap_or_default()
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect()
}

/// Every alias of the stream and the product it names. An alias written on
/// two products (by hand) names the first in document order.
pub fn all(state: &StreamState) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in state.products.products().keys() {
        for a in of_product(&state.products, name) {
            out.entry(a).or_insert_with(|| name.clone());
        }
    }
    out
}

/// The product's own directory, stream-relative: what its items' paths
/// share above their version's directory (`debian-12` for
/// `debian-12/20261203_0910/disk.sfimg`). `None` when that is the stream's
/// root or holds another product's items too (MAAS products of one release
/// and arch share it): such a product has no directory to alias.
pub fn product_dir(products: &Products, product: &str) -> Option<String> {
    let dir = common_dir(products, product)?;
    let inside = format!("{dir}/");
    let shared = products
        .items()
        .any(|i| i.product != product && i.path().is_some_and(|p| p.starts_with(&inside)));
    (!shared).then_some(dir)
}

/// [`product_dir`] of every product that has one, by product, in one pass
/// over the stream (what a listing or a link needs for all products at
/// once; asking product by product would read the stream once each).
pub fn product_dirs(products: &Products) -> BTreeMap<String, String> {
    // Every item path with its product; several products may share a path.
    let paths: BTreeSet<(&str, &str)> = products
        .items()
        .filter_map(|i| Some((i.path()?, i.product)))
        .collect();
    let mut out = BTreeMap::new();
    for product in products.products().keys() {
        let Some(dir) = common_dir(products, product) else {
            continue;
        };
        // '0' follows '/': the range holds exactly the paths under `dir`,
        // and stops at the first that is not this product's.
        let (inside, end) = (format!("{dir}/"), format!("{dir}0"));
        let shared = paths
            .range::<(&str, &str), _>((
                Bound::Included((inside.as_str(), "")),
                Bound::Excluded((end.as_str(), "")),
            ))
            .any(|(_, p)| p != product);
        if !shared {
            out.insert(product.clone(), dir);
        }
    }
    out
}

/// What the product's items' paths share above their version's directory,
/// from its own items only; `None` at the stream's root or when an item
/// has no path.
fn common_dir(products: &Products, product: &str) -> Option<String> {
    let mut common: Option<Vec<&str>> = None;
    for version in products.versions(product)?.keys() {
        for item in products.version_items(product, version) {
            let path = item.path()?;
            let comps: Vec<&str> = path.split('/').collect();
            let above = comps[..comps.len() - 1]
                .iter()
                .position(|c| *c == item.version)
                .unwrap_or(comps.len() - 1);
            let dirs = &comps[..above];
            common = Some(match common {
                None => dirs.to_vec(),
                Some(c) => c
                    .iter()
                    .zip(dirs)
                    .take_while(|(a, b)| a == b)
                    .map(|(a, _)| *a)
                    .collect(),
            });
        }
    }
    let dir = common?.join("/");
    (!dir.is_empty()).then_some(dir)
}

/// An alias becomes a path component: letters, digits, `.`, `_`, `-`, not
/// starting with a dot, no comma (the separator).
pub fn check_alias(alias: &str) -> Result<()> {
    let ok = !alias.is_empty()
        && !alias.starts_with('.')
        && alias.len() <= 255
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "alias {alias:?}: use letters, digits, '.', '_' and '-' (not first '.')"
        )))
    }
}

/// Makes `alias` name `product` in `stream`, taking it from any product it
/// named before. Refused when the alias is the name of a product, or would
/// take the place of a file or directory beside the product's directory.
/// Returns whether anything changed.
pub fn set(txn: &mut Txn<'_>, stream: &str, alias: &str, product: &str) -> Result<bool> {
    check_alias(alias)?;
    let st = txn.stream(stream)?;
    if st.products.product(product).is_none() {
        return Err(Error::Missing(format!(
            "stream {stream} has no product {product}"
        )));
    }
    if st.products.product(alias).is_some() {
        return Err(Error::Refused(format!(
            "{alias} is a product of stream {stream}, not free for an alias"
        )));
    }
    if let Some(dir) = product_dir(&st.products, product) {
        let beside = match dir.rsplit_once('/') {
            Some((parent, _)) => format!("{parent}/{alias}"),
            None => alias.to_string(),
        };
        let taken = st.products.items().any(|i| {
            i.path()
                .is_some_and(|p| p == beside || p.starts_with(&format!("{beside}/")))
        });
        if taken {
            return Err(Error::Refused(format!(
                "stream {stream}: {beside} holds items; an alias there would hide them"
            )));
        }
    }
    if all(st).get(alias).is_some_and(|p| p == product) {
        return Ok(false);
    }
    let products = &mut txn.stream_mut(stream)?.products;
    drop_everywhere(products, alias);
    let mut list = of_product(products, product);
    list.push(alias.to_string());
    write(products, product, &list);
    Ok(true)
}

/// Removes `alias` from the stream; `Missing` when no product has it.
pub fn remove(txn: &mut Txn<'_>, stream: &str, alias: &str) -> Result<String> {
    let Some(product) = all(txn.stream(stream)?).get(alias).cloned() else {
        return Err(Error::Missing(format!(
            "stream {stream} has no alias {alias}"
        )));
    };
    drop_everywhere(&mut txn.stream_mut(stream)?.products, alias);
    Ok(product)
}

fn drop_everywhere(products: &mut Products, alias: &str) {
    let names: Vec<String> = products.products().keys().cloned().collect();
    for name in names {
        let list = of_product(products, &name);
        if list.iter().any(|a| a == alias) {
            let kept: Vec<String> = list.into_iter().filter(|a| a != alias).collect();
            write(products, &name, &kept);
        }
    }
}

fn write(products: &mut Products, product: &str, list: &[String]) {
    let Some(p) = products
        .products_mut()
        .get_mut(product)
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if list.is_empty() {
        p.shift_remove(ATTR);
    } else {
        p.insert(ATTR.into(), Value::String(list.join(",")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products() -> Products {
        let doc = r#"{"content_id":"c","format":"products:1.0","products":{
              "debian-12":{"aliases":"debian, default","versions":{"v1":{"items":{
                "i":{"ftype":"sfimg","path":"debian-12/v1/sfimg","sha256":"00","size":1}}},
                "v2":{"items":{"i":{"ftype":"sfimg","path":"debian-12/v2/sfimg","sha256":"00","size":1}}}}},
              "flat":{"versions":{"v1":{"items":{"i":{"ftype":"x","path":"x.img","sha256":"00","size":1}}}}},
              "one":{"versions":{"v9":{"items":{"i":{"ftype":"x","path":"one/v9/x","sha256":"00","size":1}}}}},
              "maas-a":{"versions":{"v1":{"items":{"i":{"ftype":"x","path":"noble/amd64/v1/a","sha256":"00","size":1}}}}},
              "maas-b":{"versions":{"v1":{"items":{"i":{"ftype":"x","path":"noble/amd64/v1/b","sha256":"00","size":1}}}}}}}"#
            .replace("\"00\"", &format!("\"{}\"", "e3".repeat(32)));
        Products::parse("t.json", doc.as_bytes()).unwrap()
    }

    #[test]
    fn aliases_are_read_as_lxd_writes_them() {
        let p = products();
        assert_eq!(of_product(&p, "debian-12"), ["debian", "default"]);
        assert!(of_product(&p, "flat").is_empty());
    }

    #[test]
    fn a_product_dir_is_the_common_directory_of_its_items() {
        let p = products();
        assert_eq!(product_dir(&p, "debian-12").as_deref(), Some("debian-12"));
        assert_eq!(product_dir(&p, "flat"), None);
        assert_eq!(
            product_dir(&p, "one").as_deref(),
            Some("one"),
            "one version"
        );
        assert_eq!(product_dir(&p, "maas-a"), None, "shared with maas-b");
    }

    #[test]
    fn all_product_dirs_at_once_equal_each_asked_alone() {
        let p = products();
        let all = product_dirs(&p);
        for name in p.products().keys() {
            assert_eq!(all.get(name), product_dir(&p, name).as_ref(), "{name}");
        }
        assert_eq!(all.len(), 2, "{all:?}");
    }

    #[test]
    fn alias_names_are_path_components() {
        assert!(check_alias("ubuntu-24.04").is_ok());
        for bad in ["", ".hidden", "a/b", "a,b", "..", "a b"] {
            assert!(check_alias(bad).is_err(), "{bad:?}");
        }
    }
}
