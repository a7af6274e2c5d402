//! clean-md: keep the N newest versions of each product (versions sort as
//! plain strings, the largest is the newest). Also the `keep` retention run
//! after an insert.

use super::{VersionRef, remove::remove_version};
use crate::error::{Error, Result};
use crate::store::publish::unpublishable_versions;
use crate::store::{CommitReport, Store, Txn};
use crate::streams::filter::{ItemFilter, all_match};
use crate::streams::flatten::flatten;

#[derive(Debug, Default)]
pub struct CleanReport {
    pub removed: Vec<VersionRef>,
    pub commit: Option<CommitReport>,
}

/// Removes all but the `max` newest versions of each product accepted by
/// `select`; returns what it removed.
pub fn keep_newest(
    txn: &mut Txn<'_>,
    stream: &str,
    max: usize,
    select: impl Fn(&str) -> bool,
) -> Result<Vec<VersionRef>> {
    let products: Vec<String> = txn
        .stream(stream)?
        .products
        .products()
        .keys()
        .filter(|p| select(p))
        .cloned()
        .collect();
    retire(txn, stream, &products, max, |_, _| true)
}

/// The stream's `keep` retention after an insert: the products that gained
/// a version keep their `keep` newest published versions (all when `keep`
/// is 0).
///
/// Only published versions (every item with its blob) count and go: a build
/// copied into the mount metadata first has pending versions until its data
/// arrive, and retiring the version clients use before its successor is
/// published would leave them nothing. Retention runs again when the
/// pending version's last item arrives ([`super::put::put_blob`]).
pub fn retain_after_insert(
    txn: &mut Txn<'_>,
    stream: &str,
    added: &[VersionRef],
) -> Result<Vec<VersionRef>> {
    let keep = txn.store().config().stream(stream)?.keep;
    if keep == 0 || added.is_empty() {
        return Ok(Vec::new());
    }
    let products: std::collections::BTreeSet<String> =
        added.iter().map(|v| v.product.clone()).collect();
    let products: Vec<String> = products.into_iter().collect();
    let pending = unpublishable_versions(txn.stream(stream)?, txn.store().pool());
    retire(txn, stream, &products, keep, |p, v| {
        !pending.contains(&(p.to_string(), v.to_string()))
    })
}

/// The one retention loop: of each of `products`, the versions that
/// `counts` (newest first, versions sorting as plain strings) past the
/// `keep` newest are removed; returns them, sorted.
fn retire(
    txn: &mut Txn<'_>,
    stream: &str,
    products: &[String],
    keep: usize,
    counts: impl Fn(&str, &str) -> bool,
) -> Result<Vec<VersionRef>> {
    let mut victims = Vec::new();
    {
        let p = &txn.stream(stream)?.products;
        for product in products {
            let mut versions: Vec<&String> = p
                .versions(product)
                .map(|v| v.keys().collect())
                .unwrap_or_default();
            versions.sort();
            versions.reverse();
            let counted = versions.into_iter().filter(|v| counts(product, v));
            for v in counted.skip(keep) {
                victims.push(VersionRef {
                    product: product.clone(),
                    version: v.clone(),
                });
            }
        }
    }
    victims.sort();
    for vr in &victims {
        remove_version(txn, stream, vr)?;
    }
    Ok(victims)
}

/// `clean-md MAX STREAM [FILTER…]`: products with an item matching every
/// filter keep their `max` newest versions.
pub fn clean_md(
    store: &Store,
    stream: &str,
    max: usize,
    filters: &[ItemFilter],
    dry_run: bool,
) -> Result<CleanReport> {
    if max == 0 {
        return Err(Error::Usage(
            "clean-md: MAX must be at least 1 (0 would empty the stream)".into(),
        ));
    }
    let mut txn = store.begin()?;
    let mut selected = std::collections::BTreeSet::new();
    for f in flatten(&txn.stream(stream)?.products) {
        if all_match(filters, &f)?
            && let Some(p) = f.get("product_name").and_then(|v| v.as_str())
        {
            selected.insert(p.to_string());
        }
    }
    let removed = keep_newest(&mut txn, stream, max, |p| selected.contains(p))?;
    let mut report = CleanReport {
        removed,
        commit: None,
    };
    if !dry_run && !report.removed.is_empty() {
        report.commit = Some(txn.commit()?);
    }
    Ok(report)
}
