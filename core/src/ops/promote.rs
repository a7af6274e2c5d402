//! Promote: copy a version of every matching product of one stream into
//! another, with the product id's prefix swapped (the constant text of the
//! source stream's `product_id` before its first `{` becomes the target's,
//! as meph2-util turns `.candidate:` into `:`) and the label set. Items keep
//! their paths and blobs: nothing is copied.

use super::{VersionRef, check_paths_agree, expanded, item_paths, portable_version, put_version};
use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::relpath::RelPath;
use crate::store::{CommitReport, Store, Txn};
use crate::streams::filter::ItemFilter;
use crate::timefmt;

#[derive(Debug, Default)]
pub struct PromoteReport {
    /// (source version, target version) pairs added.
    pub added: Vec<(VersionRef, VersionRef)>,
    /// Target versions that already existed: left as they are.
    pub existing: Vec<VersionRef>,
    pub commit: Option<CommitReport>,
}

pub struct PromoteRequest<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub version: &'a str,
    /// The label to set; the target stream's `label` when `None`.
    pub label: Option<&'a str>,
    pub filters: &'a [ItemFilter],
    /// Only these products (by source product id), when given.
    pub products: Option<&'a BTreeSet<String>>,
    pub dry_run: bool,
}

/// The target stream's name for a source product.
pub fn map_product(from_prefix: &str, to_prefix: &str, product: &str) -> String {
    match product.strip_prefix(from_prefix) {
        Some(rest) if !from_prefix.is_empty() => format!("{to_prefix}{rest}"),
        _ => product.to_string(),
    }
}

pub fn promote(store: &Store, req: &PromoteRequest<'_>) -> Result<PromoteReport> {
    let mut txn = store.begin()?;
    let mut report = promote_in(&mut txn, req)?;
    if !req.dry_run && !report.added.is_empty() {
        report.commit = Some(txn.commit()?);
    }
    Ok(report)
}

/// Promotes, within a transaction, the version of stream `from` whose
/// items lie under `rel` (a version directory or below one: every product
/// with an item there, at the one version those items have) into stream
/// `to`: what a symlink from `to`'s `rel` to `from`'s does in the mount.
pub fn promote_path_in(
    txn: &mut Txn<'_>,
    from: &str,
    to: &str,
    rel: &RelPath,
) -> Result<PromoteReport> {
    let mut products = BTreeSet::new();
    let mut versions = BTreeSet::new();
    for i in txn.stream(from)?.products.items() {
        if i.path()
            .and_then(|ip| RelPath::new(ip).ok())
            .is_some_and(|ip| ip.is_under(rel.as_str()))
        {
            products.insert(i.product.to_string());
            versions.insert(i.version.to_string());
        }
    }
    let version = match (versions.len(), versions.first()) {
        (1, Some(v)) if rel.as_str().split('/').any(|c| c == v) => v.clone(),
        (0, _) => {
            return Err(Error::Refused(format!(
                "stream {from} has no items under {rel}"
            )));
        }
        _ => {
            return Err(Error::Refused(format!(
                "{rel} is not a version directory (or below one) of stream {from}"
            )));
        }
    };
    promote_in(
        txn,
        &PromoteRequest {
            from,
            to,
            version: &version,
            label: None,
            filters: &[],
            products: Some(&products),
            dry_run: false,
        },
    )
}

/// Promotes within a transaction (no commit).
pub fn promote_in(txn: &mut Txn<'_>, req: &PromoteRequest<'_>) -> Result<PromoteReport> {
    let config = txn.store().config();
    let from_cfg = config.stream(req.from)?;
    let to_cfg = config.stream(req.to)?;
    if req.from == req.to {
        return Err(Error::Usage(format!(
            "promote: source and target are both '{}'",
            req.from
        )));
    }
    let label = req.label.or(to_cfg.label.as_deref());
    let (from_prefix, to_prefix) = (
        from_cfg.product_prefix().to_string(),
        to_cfg.product_prefix().to_string(),
    );
    let pool = txn.store().pool().clone();
    let src_state = txn.stream(req.from)?;
    let src = expanded(&src_state.products);
    let mut report = PromoteReport::default();
    let mut plan = Vec::new();
    let mut found = false;
    for (product, version) in src_state.products.version_keys() {
        if version != req.version || req.products.is_some_and(|p| !p.contains(&product)) {
            continue;
        }
        found = true;
        let Some(mut data) = portable_version(&src, &product, &version, req.filters)? else {
            continue;
        };
        let src_vr = VersionRef {
            product: product.clone(),
            version: version.clone(),
        };
        for (iname, item) in data["items"].as_object().into_iter().flatten() {
            let present = item
                .get("sha256")
                .and_then(|h| h.as_str())
                .is_some_and(|h| pool.contains(h));
            if item.get("path").is_some() && !present {
                return Err(Error::Refused(format!(
                    "promote: stream {} product {product} version {version} item {iname} has no data yet (pending); promote it once complete",
                    req.from
                )));
            }
        }
        let dst = VersionRef {
            product: map_product(&from_prefix, &to_prefix, &product),
            version: version.clone(),
        };
        if txn
            .stream(req.to)?
            .products
            .has_version(&dst.product, &dst.version)
        {
            report.existing.push(dst);
            continue;
        }
        match label {
            Some(l) => data.insert("label".into(), l.into()),
            None => data.remove("label"),
        };
        plan.push((src_vr, dst, data));
    }
    if !found {
        return Err(Error::Missing(format!(
            "promote: stream {} has no version {}",
            req.from, req.version
        )));
    }
    check_paths_agree(
        txn.stream(req.to)?,
        req.to,
        plan.iter().map(|(_, d, data)| (d, data)),
    )?;
    if req.dry_run {
        report.added = plan.into_iter().map(|(s, d, _)| (s, d)).collect();
        return Ok(report);
    }
    let now = timefmt::now().timestamp();
    let st = txn.stream_mut(req.to)?;
    for (s, d, data) in plan {
        for p in item_paths(&data) {
            st.mtimes.entry(p.to_string()).or_insert(now);
        }
        put_version(&mut st.products, &d.product, &d.version, data);
        report.added.push((s, d));
    }
    Ok(report)
}
