//! Inserting one file at a time, as the mount receives them: a blob written
//! at a stream path, or a products document written into `streams/v1/`.
//!
//! `cp -r` and `rsync` deliver a build's files in no particular order, so
//! both orders must end where `mountctl insert` of the whole build ends:
//! - metadata first: its items whose data is absent are *pending*; each data
//!   file written later fills one, verified against the declared size and
//!   sha256;
//! - data first: each file is placed by the stream's path templates (as
//!   `insert` of a directory without metadata does); when the metadata then
//!   arrives, the versions derived from those paths give way to the declared
//!   ones that describe the same files, whether the templates named the
//!   products as the metadata does or otherwise. A version the templates
//!   made is not "existing" for insert's additive rule: the declaration is
//!   the better description of its files and replaces it. A declaration
//!   that gives one of those paths other content is refused, as for any
//!   published path.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{
    VersionRef, check_paths_agree, clean, item_paths, plan_new_versions, put_version,
    source::add_item,
};
use crate::error::{Error, Result};
use crate::relpath::RelPath;
use crate::store::layout::Layout;
use crate::store::pool::Staged;
use crate::store::{BlobRef, Txn};
use crate::streams::Products;
use crate::timefmt;

/// What [`put_blob`] did with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The path already holds exactly this content: nothing changed.
    Unchanged,
    /// The data of pending items declared by metadata (one per product
    /// version that lists the path).
    Filled(Vec<VersionRef>),
    /// A new item placed by the path templates.
    Added(Vec<VersionRef>),
    /// A file shared by products (the `squashfs`) that belongs to no product
    /// yet: its blob is in the pool and the stream keeps it (its `shared`
    /// map) until a product of its version arrives.
    Unattached(BlobRef),
}

/// Inserts one staged blob at `path` of `stream` (no commit).
///
/// A path that metadata declares must receive exactly the declared size and
/// sha256 (else [`Error::Checksum`], and nothing enters the pool); a path
/// already published with other content is refused (items are immutable);
/// any other path must be explained by the stream's templates.
pub fn put_blob(
    txn: &mut Txn<'_>,
    stream: &str,
    path: &RelPath,
    staged: Staged,
) -> Result<PutOutcome> {
    let pool = txn.store().pool().clone();
    let p = path.as_str();
    let declared: Vec<(VersionRef, String, Option<String>, Option<u64>)> = txn
        .stream(stream)?
        .products
        .items()
        .filter(|i| i.path() == Some(p))
        .map(|i| {
            (
                VersionRef {
                    product: i.product.to_string(),
                    version: i.version.to_string(),
                },
                i.name.to_string(),
                i.sha256().map(str::to_ascii_lowercase),
                i.size(),
            )
        })
        .collect();
    if !declared.is_empty() {
        let mut filled = Vec::new();
        for (vr, item, sha, size) in &declared {
            let what = format!(
                "stream {stream} product {} version {} item {item} ({p})",
                vr.product, vr.version
            );
            if let Some(h) = sha
                && pool.contains(h)
            {
                if *h == staged.blob.sha256 {
                    continue;
                }
                return Err(Error::Refused(format!(
                    "{what}: already published with other content (sha256 {h}); items are immutable, remove the version first"
                )));
            }
            staged.verify(&what, *size, sha.as_deref())?;
            filled.push((vr.clone(), item.clone()));
        }
        if filled.is_empty() {
            return Ok(PutOutcome::Unchanged);
        }
        let blob = pool.admit(staged)?;
        txn.note_arrived(&blob.sha256);
        let now = timefmt::now().timestamp();
        let st = txn.stream_mut(stream)?;
        for (vr, item) in &filled {
            set_item_blob(&mut st.products, vr, item, &blob);
        }
        st.mtimes.insert(p.to_string(), now);
        let filled: Vec<VersionRef> = filled.into_iter().map(|(vr, _)| vr).collect();
        // A version this completes is published now: retention may retire
        // what it supersedes.
        clean::retain_after_insert(txn, stream, &filled)?;
        return Ok(PutOutcome::Filled(filled));
    }

    let cfg = txn.store().config().stream(stream)?.clone();
    let placement = cfg.layout.place(p).ok_or_else(|| {
        Error::Unexplained(format!(
            "stream {stream}: no path template and no pending item explains '{p}'"
        ))
    })?;
    let blob = pool.admit(staged)?;
    txn.note_arrived(&blob.sha256);
    let added = match &placement.product {
        Some(pid) => {
            let mut attrs: Map<String, Value> = placement
                .attrs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            // As `mountctl insert` of a data-only build labels its products.
            if let Some(l) = &cfg.label {
                attrs.insert("label".into(), l.as_str().into());
            }
            let st = txn.stream_mut(stream)?;
            add_item(
                &mut st.products,
                pid,
                &attrs,
                &placement.version,
                &placement.ftype,
                item_map(&placement.ftype, p, &blob),
            );
            vec![VersionRef {
                product: pid.clone(),
                version: placement.version.clone(),
            }]
        }
        None => attach(txn, stream, path, &blob, None)?,
    };
    let now = timefmt::now().timestamp();
    if added.is_empty() {
        let st = txn.stream_mut(stream)?;
        if let Some(old) = st.shared.insert(p.to_string(), blob.clone())
            && old.sha256 != blob.sha256
        {
            txn.note_unreferenced(&old.sha256);
        }
        txn.stream_mut(stream)?.mtimes.insert(p.to_string(), now);
        return Ok(PutOutcome::Unattached(blob));
    }
    txn.stream_mut(stream)?.mtimes.insert(p.to_string(), now);
    if placement.product.is_some() {
        attach_known_shared(txn, stream, path)?;
    }
    clean::retain_after_insert(txn, stream, &added)?;
    Ok(PutOutcome::Added(added))
}

/// Gives the shared files the stream already has in the directories above
/// `near` (kept ones, and those other products at that version list) to the
/// product versions there that lack them: a shared file belongs to every
/// product of its version, also those that arrive after it.
fn attach_known_shared(txn: &mut Txn<'_>, stream: &str, near: &RelPath) -> Result<()> {
    let layout = &txn.store().config().stream(stream)?.layout;
    let st = txn.stream(stream)?;
    let items = st.products.items().filter_map(|i| {
        Some((
            i.path()?.to_string(),
            BlobRef {
                sha256: i.sha256()?.to_string(),
                size: i.size().unwrap_or(0),
            },
        ))
    });
    let kept = st.shared.iter().map(|(p, b)| (p.clone(), b.clone()));
    let candidates: BTreeMap<String, BlobRef> = items
        .chain(kept)
        .filter(|(p, _)| {
            RelPath::new(p).is_ok_and(|rp| same_dir_or_below(near.as_str(), &rp))
                && layout.place(p).is_some_and(|pl| pl.product.is_none())
        })
        .collect();
    for (p, b) in candidates {
        let rp = RelPath::new(&p).map_err(|r| Error::invalid(stream, &p, r))?;
        attach_shared(txn, stream, &rp, &b, None)?;
    }
    Ok(())
}

/// Attaches every shared file the stream keeps to `versions` (those an
/// insert just added) where its path binds them. Versions that were there
/// before are left as they are: an insert that adds nothing changes
/// nothing, and a promoted version keeps exactly its source's items.
pub fn attach_kept_shared(txn: &mut Txn<'_>, stream: &str, versions: &[VersionRef]) -> Result<()> {
    if versions.is_empty() {
        return Ok(());
    }
    let kept: Vec<(String, BlobRef)> = txn
        .stream(stream)?
        .shared
        .iter()
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect();
    for (p, b) in kept {
        let rp = RelPath::new(&p).map_err(|r| Error::invalid(stream, &p, r))?;
        attach_shared(txn, stream, &rp, &b, Some(versions))?;
    }
    Ok(())
}

/// Attaches a shared file already in the pool to every product version that
/// matches what its path binds (only those of `only`, when given); returns
/// those versions (none: nothing changed).
pub fn attach_shared(
    txn: &mut Txn<'_>,
    stream: &str,
    path: &RelPath,
    blob: &BlobRef,
    only: Option<&[VersionRef]>,
) -> Result<Vec<VersionRef>> {
    let added = attach(txn, stream, path, blob, only)?;
    if !added.is_empty() {
        // The modification time it shows from its first attachment.
        let now = timefmt::now().timestamp();
        txn.stream_mut(stream)?
            .mtimes
            .entry(path.as_str().to_string())
            .or_insert(now);
    }
    Ok(added)
}

/// Attaches the shared file at `path` to the product versions its path
/// binds that lack it (only those of `only`, when given).
fn attach(
    txn: &mut Txn<'_>,
    stream: &str,
    path: &RelPath,
    blob: &BlobRef,
    only: Option<&[VersionRef]>,
) -> Result<Vec<VersionRef>> {
    let cfg = txn.store().config().stream(stream)?.clone();
    let Some(placement) = cfg.layout.place(path.as_str()) else {
        return Ok(vec![]);
    };
    let targets: Vec<String> = {
        let products = &txn.stream(stream)?.products;
        products
            .products()
            .iter()
            .filter(|(_, p)| p.as_object().is_some_and(|p| placement.agrees_with(p)))
            .filter(|(name, _)| {
                only.is_none_or(|vs| {
                    vs.iter()
                        .any(|v| v.product == **name && v.version == placement.version)
                })
            })
            .filter(|(name, _)| {
                products
                    .version(name, &placement.version)
                    .and_then(|v| v.get("items"))
                    .and_then(Value::as_object)
                    .is_some_and(|items| {
                        !items.contains_key(&placement.ftype)
                            && items.values().any(|i| {
                                i.get("path")
                                    .and_then(Value::as_str)
                                    .is_some_and(|ip| same_dir_or_below(ip, path))
                            })
                    })
            })
            .map(|(n, _)| n.clone())
            .collect()
    };
    if targets.is_empty() {
        return Ok(vec![]);
    }
    let st = txn.stream_mut(stream)?;
    let mut out = Vec::new();
    for pid in targets {
        let attrs = st.products.product(&pid).cloned().unwrap_or_default();
        add_item(
            &mut st.products,
            &pid,
            &attrs,
            &placement.version,
            &placement.ftype,
            item_map(&placement.ftype, path.as_str(), blob),
        );
        out.push(VersionRef {
            product: pid,
            version: placement.version.clone(),
        });
    }
    Ok(out)
}

/// Whether `item_path` lies in the directory of `shared` or below it: a
/// shared file belongs to the products whose files sit beside or under it.
fn same_dir_or_below(item_path: &str, shared: &RelPath) -> bool {
    match shared.parent() {
        Some(dir) => RelPath::new(item_path).is_ok_and(|p| p.is_under(dir)),
        None => true,
    }
}

fn item_map(ftype: &str, path: &str, blob: &BlobRef) -> Map<String, Value> {
    let mut item = Map::new();
    item.insert("ftype".into(), ftype.into());
    item.insert("path".into(), path.into());
    item.insert("sha256".into(), blob.sha256.clone().into());
    item.insert("size".into(), blob.size.into());
    item
}

fn set_item_blob(products: &mut Products, vr: &VersionRef, item: &str, blob: &BlobRef) {
    let Some(i) = products
        .products_mut()
        .get_mut(&vr.product)
        .and_then(|p| p.get_mut("versions"))
        .and_then(|v| v.get_mut(&vr.version))
        .and_then(|v| v.get_mut("items"))
        .and_then(|i| i.get_mut(item))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    i.insert("sha256".into(), blob.sha256.clone().into());
    i.insert("size".into(), blob.size.into());
}

/// What [`insert_metadata`] did.
#[derive(Debug, Default)]
pub struct MetadataReport {
    pub added: Vec<VersionRef>,
    /// Versions the stream already had: left as they are.
    pub existing: Vec<VersionRef>,
    /// Versions derived earlier from paths, replaced by declared ones.
    pub superseded: Vec<VersionRef>,
    /// Items declared without their data in the pool yet.
    pub pending: usize,
}

/// Inserts a products document written into the mount (no commit), with
/// insert's additive semantics. Items whose blob is not in the pool become
/// pending: their version is published once every item has its data.
pub fn insert_metadata(txn: &mut Txn<'_>, stream: &str, doc: &Products) -> Result<MetadataReport> {
    let pool = txn.store().pool().clone();
    let mut report = MetadataReport::default();
    // Paths are safe: a `Products` value has had every one checked.
    let (mut plan, mut existing) = plan_new_versions(&txn.stream(stream)?.products, [doc], &[])?;
    // Versions the templates made under the declared ids: the declaration
    // describes the same files better and takes their place (the check
    // below still refuses one that gives a path other content).
    let replaced = redeclared(
        &txn.store().config().stream(stream)?.layout,
        &txn.stream(stream)?.products,
        doc,
    );
    if !replaced.is_empty() {
        let src = super::expanded(doc);
        existing.retain(|vr| !replaced.contains(vr));
        for vr in &replaced {
            if let Some(data) = super::portable_version(&src, &vr.product, &vr.version, &[])? {
                plan.push((vr.clone(), data));
            }
        }
    }
    check_paths_agree(
        txn.stream(stream)?,
        stream,
        plan.iter().map(|(v, d)| (v, d)),
    )?;
    report.existing = existing;
    // Paths the new versions declare, by version name.
    let mut declared: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let new_products: BTreeSet<String> = doc.version_keys().into_iter().map(|(p, _)| p).collect();
    for (vr, data) in &plan {
        declared
            .entry(vr.version.clone())
            .or_default()
            .extend(item_paths(data).map(String::from));
    }
    let superseded: Vec<VersionRef> = {
        let target = &txn.stream(stream)?.products;
        target
            .version_keys()
            .into_iter()
            .filter(|(p, v)| {
                !new_products.contains(p)
                    && declared.get(v).is_some_and(|paths| {
                        let mut items = target.version_items(p, v).peekable();
                        items.peek().is_some()
                            && items.all(|i| i.path().is_some_and(|ip| paths.contains(ip)))
                    })
            })
            .map(|(product, version)| VersionRef { product, version })
            .chain(replaced)
            .collect()
    };
    let now = timefmt::now().timestamp();
    let st = txn.stream_mut(stream)?;
    for vr in &superseded {
        st.products.remove_version(&vr.product, &vr.version);
    }
    report.superseded = superseded;
    for (vr, data) in plan {
        for item in data["items"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, i)| i)
        {
            let Some(p) = item.get("path").and_then(Value::as_str) else {
                continue;
            };
            let present = item
                .get("sha256")
                .and_then(Value::as_str)
                .is_some_and(|h| pool.contains(&h.to_ascii_lowercase()));
            if present {
                st.mtimes.entry(p.to_string()).or_insert(now);
            } else {
                report.pending += 1;
            }
        }
        put_version(&mut st.products, &vr.product, &vr.version, data);
        report.added.push(vr);
    }
    attach_kept_shared(txn, stream, &report.added)?;
    clean::retain_after_insert(txn, stream, &report.added)?;
    Ok(report)
}

/// The versions of `doc` that `target` has as the stream's templates made
/// them (from data written before its metadata), with every one of their
/// paths declared by `doc` at that version.
fn redeclared(layout: &Layout, target: &Products, doc: &Products) -> Vec<VersionRef> {
    doc.version_keys()
        .into_iter()
        .filter(|(p, v)| {
            let paths: BTreeSet<&str> = doc.version_items(p, v).filter_map(|i| i.path()).collect();
            let mut items = target.version_items(p, v).peekable();
            items.peek().is_some()
                && items.all(|i| {
                    i.path().is_some_and(|ip| paths.contains(ip)) && template_made(layout, &i)
                })
        })
        .map(|(product, version)| VersionRef { product, version })
        .collect()
}

/// Whether an item is exactly what the templates make of its path (as
/// [`put_blob`] and a data-only `insert` make them): named after its ftype,
/// at the version and product its path binds, with no attribute beyond
/// ftype, path, sha256 and size. An item a declaration describes with more
/// (a `kpackage`, an `md5`) is never taken for a template-made one, so a
/// declared version is not replaced by a later products file.
fn template_made(layout: &Layout, item: &crate::streams::Item<'_>) -> bool {
    let Some(pl) = item.path().and_then(|p| layout.place(p)) else {
        return false;
    };
    pl.version == item.version
        && pl.ftype == item.name
        && item.data.get("ftype").and_then(Value::as_str) == Some(pl.ftype.as_str())
        && pl.product.as_deref().is_none_or(|p| p == item.product)
        && item
            .data
            .keys()
            .all(|k| matches!(k.as_str(), "ftype" | "path" | "sha256" | "size"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use sha2::{Digest, Sha256};

    const KPATH: &str = "noble/amd64/20250101/ga-24.04/generic/boot-kernel";

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_or_init(&d.path().join("s")).unwrap();
        (d, s)
    }

    fn staged(store: &Store, data: &[u8]) -> Staged {
        let mut w = store.pool().writer().unwrap();
        w.append(data).unwrap();
        w.finish().unwrap()
    }

    fn doc(data: &[u8]) -> Products {
        doc_of(
            "com.ubuntu.maas:candidate:v3:boot:24.04:amd64:ga-24.04",
            data,
        )
    }

    fn doc_of(product: &str, data: &[u8]) -> Products {
        let sha = hex::encode(Sha256::digest(data));
        let text = format!(
            r#"{{"format":"products:1.0","content_id":"c","datatype":"image-downloads",
            "products":{{"{product}":{{"arch":"amd64","kpackage":"linux-generic",
            "versions":{{"20250101":{{"items":{{"boot-kernel":{{"ftype":"boot-kernel",
            "path":"{KPATH}","sha256":"{sha}","size":{}}}}}}}}}}}}}}}"#,
            data.len()
        );
        Products::parse("doc", text.as_bytes()).unwrap()
    }

    #[test]
    fn metadata_first_makes_items_pending_and_data_must_match_them() {
        let (_d, s) = store();
        let mut txn = s.begin().unwrap();
        let r = insert_metadata(&mut txn, "daily", &doc(b"kernel")).unwrap();
        assert_eq!((r.added.len(), r.pending), (1, 1));
        let path = RelPath::new(KPATH).unwrap();
        let e = put_blob(&mut txn, "daily", &path, staged(&s, b"other!")).unwrap_err();
        assert!(matches!(e, Error::Checksum { .. }), "{e}");
        assert!(s.pool().list().unwrap().is_empty());
        let out = put_blob(&mut txn, "daily", &path, staged(&s, b"kernel")).unwrap();
        assert!(matches!(out, PutOutcome::Filled(ref v) if v.len() == 1));
        assert_eq!(
            put_blob(&mut txn, "daily", &path, staged(&s, b"kernel")).unwrap(),
            PutOutcome::Unchanged
        );
        txn.commit().unwrap();
        assert_eq!(s.pool().list().unwrap().len(), 1);
    }

    #[test]
    fn data_first_is_placed_by_templates_then_superseded_by_its_metadata() {
        let (_d, s) = store();
        let mut txn = s.begin().unwrap();
        let path = RelPath::new(KPATH).unwrap();
        let out = put_blob(&mut txn, "daily", &path, staged(&s, b"kernel")).unwrap();
        assert!(matches!(out, PutOutcome::Added(_)));
        let sq = RelPath::new("noble/amd64/20250101/squashfs").unwrap();
        assert!(matches!(
            put_blob(&mut txn, "daily", &sq, staged(&s, b"root")).unwrap(),
            PutOutcome::Added(ref v) if v.len() == 1
        ));
        let stray = RelPath::new("stray").unwrap();
        assert!(matches!(
            put_blob(&mut txn, "daily", &stray, staged(&s, b"x")),
            Err(Error::Unexplained(_))
        ));
        // The declared kernel replaces the derived product only when the
        // metadata covers every one of its files; here the squashfs is not
        // declared, so both stay.
        let r = insert_metadata(&mut txn, "daily", &doc(b"kernel")).unwrap();
        assert!(r.superseded.is_empty());
        assert_eq!(r.pending, 0);
        let names = txn.stream("daily").unwrap().products.product_names();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn metadata_after_its_data_replaces_the_version_the_templates_made_under_its_ids() {
        let (_d, s) = store();
        let mut txn = s.begin().unwrap();
        let path = RelPath::new(KPATH).unwrap();
        put_blob(&mut txn, "daily", &path, staged(&s, b"kernel")).unwrap();
        let pid = "com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04";
        let r = insert_metadata(&mut txn, "daily", &doc_of(pid, b"kernel")).unwrap();
        assert!(r.existing.is_empty(), "{:?}", r.existing);
        assert_eq!(r.added.len(), 1);
        let products = &txn.stream("daily").unwrap().products;
        assert_eq!(products.product_names(), vec![pid.to_string()]);
        let flat = crate::streams::flatten::flatten(products);
        assert!(
            flat.iter().all(|i| i["kpackage"] == "linux-generic"),
            "{flat:?}"
        );
    }

    #[test]
    fn metadata_contradicting_the_data_the_templates_placed_is_refused() {
        let (_d, s) = store();
        let mut txn = s.begin().unwrap();
        let path = RelPath::new(KPATH).unwrap();
        put_blob(&mut txn, "daily", &path, staged(&s, b"kernel")).unwrap();
        let pid = "com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04";
        let e = insert_metadata(&mut txn, "daily", &doc_of(pid, b"other")).unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e}");
    }
}
