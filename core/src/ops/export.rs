//! export: a plain mirror tree of one stream, for serving without FUSE:
//! the generated (and signed) `streams/v1` files, and every published item
//! at its path, hard-linked from the pool where the filesystem allows.

use std::fs;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::store::Store;
use crate::store::publish::unpublishable_versions;

#[derive(Debug, Default)]
pub struct ExportReport {
    pub files: usize,
    pub linked: usize,
    pub copied: usize,
    pub metadata: Vec<String>,
}

pub fn export(store: &Store, stream: &str, dir: &Path) -> Result<ExportReport> {
    store.config().stream(stream)?;
    let snap = store.snapshot()?;
    let state = &snap.streams[stream];
    let mut report = ExportReport::default();
    let v1_src = snap.streams_v1(stream);
    let v1_dst = dir.join("streams").join("v1");
    fs::create_dir_all(&v1_dst).at(&v1_dst)?;
    let mut names: Vec<_> = fs::read_dir(&v1_src)
        .at(&v1_src)?
        .filter_map(|e| e.ok())
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let dst = v1_dst.join(e.file_name());
        let _ = fs::remove_file(&dst);
        fs::copy(e.path(), &dst).at(&dst)?;
        report
            .metadata
            .push(e.file_name().to_string_lossy().into_owned());
    }
    let pool = store.pool();
    let skip = unpublishable_versions(state, pool);
    let mut done = std::collections::BTreeSet::new();
    for item in state.products.items() {
        if skip.contains(&(item.product.to_string(), item.version.to_string())) {
            continue;
        }
        let (Some(path), Some(sha)) = (item.path(), item.sha256()) else {
            continue;
        };
        if !done.insert(path.to_string()) {
            continue;
        }
        let dst = dir.join(path);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        let _ = fs::remove_file(&dst);
        let src = pool.path(sha);
        if fs::hard_link(&src, &dst).is_ok() {
            report.linked += 1;
        } else {
            fs::copy(&src, &dst).at(&dst)?;
            report.copied += 1;
        }
        report.files += 1;
    }
    Ok(report)
}
