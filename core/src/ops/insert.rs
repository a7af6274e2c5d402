//! Insert, with meph2-util's semantics: additive (only versions missing from
//! the stream are added, an existing version is never overwritten), data
//! copied into the pool with size and sha256 verified, then the stream's
//! `keep` retention.
//!
//! Nothing reaches the store unless everything checks out: every data file
//! is staged and verified before the first blob enters the pool, so a bad
//! input leaves the store byte-identical.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::source::Source;
use super::{
    Progress, VersionRef, check_paths_agree, clean, item_paths, plan_new_versions, put_version,
};
use crate::error::{Error, Result};
use crate::store::pool::{Staged, hash_file};
use crate::store::{BlobRef, CommitReport, Store, Txn};
use crate::streams::filter::ItemFilter;
use crate::timefmt;

#[derive(Debug, Default)]
pub struct InsertReport {
    pub added: Vec<VersionRef>,
    /// Versions the stream already had: left as they are.
    pub existing: Vec<VersionRef>,
    /// Versions removed by the stream's `keep` retention.
    pub retired: Vec<VersionRef>,
    pub new_blobs: usize,
    pub bytes_copied: u64,
    pub commit: Option<CommitReport>,
}

/// Options of an insert.
pub struct InsertOptions<'a> {
    pub dry_run: bool,
    pub filters: &'a [ItemFilter],
    pub progress: &'a mut dyn FnMut(Progress<'_>),
}

/// Inserts `src` into `stream` and commits.
pub fn insert(
    store: &Store,
    stream: &str,
    src: &Path,
    opts: InsertOptions<'_>,
) -> Result<InsertReport> {
    let cfg = store.config().stream(stream)?.clone();
    let source = super::source::load(src, &cfg)?;
    let mut txn = store.begin()?;
    let mut report = insert_source(&mut txn, stream, &source, opts)?;
    if !report.added.is_empty() {
        report.commit = Some(txn.commit()?);
    }
    Ok(report)
}

/// Inserts an already loaded source within a transaction (no commit).
pub fn insert_source(
    txn: &mut Txn<'_>,
    stream: &str,
    source: &Source,
    opts: InsertOptions<'_>,
) -> Result<InsertReport> {
    let InsertOptions {
        dry_run,
        filters,
        progress,
    } = opts;
    let pool = txn.store().pool().clone();
    let mut report = InsertReport::default();

    // 1. What to add: source versions the stream lacks.
    let (mut plan, existing) = plan_new_versions(
        &txn.stream(stream)?.products,
        source.docs.iter().map(|(_, d)| d),
        filters,
    )?;
    report.existing = existing;

    // 2. Check every data file exists with its declared size before copying
    //    anything, so the common mistakes fail fast and change nothing.
    let mut total = 0u64;
    for (vr, data) in &plan {
        for (iname, item) in data["items"].as_object().into_iter().flatten() {
            let Some(path) = item.get("path").and_then(Value::as_str) else {
                continue;
            };
            let what = format!("product {} version {} item {iname}", vr.product, vr.version);
            let file = source.data_file(&what, path)?;
            let meta = std::fs::metadata(&file).map_err(|_| Error::MissingData {
                what: what.clone(),
                path: file.clone(),
            })?;
            if let Some(size) = item.get("size").and_then(Value::as_u64)
                && size != meta.len()
            {
                return Err(Error::Checksum {
                    what,
                    reason: format!(
                        "{}: size mismatch: metadata says {size} bytes, file has {}",
                        file.display(),
                        meta.len()
                    ),
                });
            }
            total += meta.len();
        }
    }
    if dry_run {
        report.added = plan.into_iter().map(|(vr, _)| vr).collect();
        return Ok(report);
    }

    // 3. Stage and verify every file; identical content is copied once.
    let mut staged: BTreeMap<String, Staged> = BTreeMap::new();
    let mut hashed: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut done = 0u64;
    for (vr, data) in plan.iter_mut() {
        let items = data
            .get_mut("items")
            .and_then(Value::as_object_mut)
            .expect("portable version has items");
        for (iname, item) in items.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            let Some(path) = item.get("path").and_then(Value::as_str).map(String::from) else {
                continue;
            };
            let what = format!("product {} version {} item {iname}", vr.product, vr.version);
            let file = source.data_file(&what, &path)?;
            let declared = item
                .get("sha256")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase);
            let (sha, size) = if let Some(h) = hashed.get(&path) {
                h.clone()
            } else if declared.as_deref().is_some_and(|h| pool.contains(h)) {
                // Already in the pool: verify the source without copying it.
                let b = hash_file(&file)?;
                done += b.size;
                (progress)(Progress::Bytes {
                    path: &path,
                    done,
                    total,
                });
                (b.sha256, b.size)
            } else {
                let base = done;
                let s = pool.stage_file(&file, &mut |n| {
                    (progress)(Progress::Bytes {
                        path: &path,
                        done: base + n,
                        total,
                    })
                })?;
                done += s.blob.size;
                let r = (s.blob.sha256.clone(), s.blob.size);
                if !pool.contains(&r.0) && !staged.contains_key(&r.0) {
                    report.bytes_copied += r.1;
                    staged.insert(r.0.clone(), s);
                }
                r
            };
            hashed.insert(path.clone(), (sha.clone(), size));
            let data = BlobRef { sha256: sha, size };
            data.check(
                &format!("{what} ({})", file.display()),
                item.get("size").and_then(Value::as_u64),
                declared.as_deref(),
            )?;
            let BlobRef { sha256: sha, size } = data;
            item.insert("sha256".into(), sha.into());
            item.insert("size".into(), size.into());
        }
    }

    check_paths_agree(
        txn.stream(stream)?,
        stream,
        plan.iter().map(|(v, d)| (v, d)),
    )?;

    // 4. Into the pool, then into the metadata.
    report.new_blobs = staged.len();
    for (_, s) in std::mem::take(&mut staged) {
        let b = pool.admit(s)?;
        txn.note_arrived(&b.sha256);
    }
    let now = timefmt::now().timestamp();
    let st = txn.stream_mut(stream)?;
    for (vr, data) in plan {
        for p in item_paths(&data) {
            st.mtimes.entry(p.to_string()).or_insert(now);
        }
        put_version(&mut st.products, &vr.product, &vr.version, data);
        report.added.push(vr);
    }
    report.retired = clean::retain_after_insert(txn, stream, &report.added)?;
    Ok(report)
}
