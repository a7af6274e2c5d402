//! Artifact intake: blobs a worker uploads for a build are kept under
//! `STORE/buildd/jobs/<id>/blobs/<sha256>` once verified; at the build's end
//! its output tree is assembled there from those blobs and the pool (hard
//! links, same filesystem) and inserted into the target stream through the
//! store's insert operation, in one commit, signed when the store signs, as
//! `mountctl insert` does.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use streamfs_core::ops::insert::{InsertOptions, insert_source};
use streamfs_core::relpath::RelPath;
use streamfs_core::store::Store;
use streamfs_core::store::pool::{Pool, valid_sha};

/// One file of a build's output tree.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

pub fn jobs_dir(store: &Path) -> PathBuf {
    store.join("buildd").join("jobs")
}

fn job_dir(store: &Path, id: i64) -> PathBuf {
    jobs_dir(store).join(id.to_string())
}

fn blob_path(store: &Path, id: i64, sha: &str) -> PathBuf {
    job_dir(store, id).join("blobs").join(sha)
}

/// Every path relative without `..`, every sha256 well formed, no path
/// twice, at most 100,000 files: checked before anything touches the disk.
pub fn check_files(files: &[FileEntry]) -> std::result::Result<(), String> {
    if files.len() > 100_000 {
        return Err(format!("{} files: at most 100000 per build", files.len()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in files {
        RelPath::check(&f.path).map_err(|e| format!("file {:?}: {e}", f.path))?;
        if !valid_sha(&f.sha256) {
            return Err(format!(
                "file {}: sha256 {:?} is not 64 lowercase hex digits",
                f.path, f.sha256
            ));
        }
        if !seen.insert(f.path.as_str()) {
            return Err(format!("file {}: named twice", f.path));
        }
    }
    Ok(())
}

/// The blobs neither in the pool nor uploaded for this build yet.
pub fn missing(store: &Path, id: i64, files: &[FileEntry]) -> Vec<String> {
    let pool = Pool::new(store);
    let mut out: Vec<String> = files
        .iter()
        .filter(|f| !pool.contains(&f.sha256) && !blob_path(store, id, &f.sha256).is_file())
        .map(|f| f.sha256.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A blob being received: written to a `.part` file, hashed as it comes,
/// renamed to its name only when the hash matches.
pub struct Upload {
    part: PathBuf,
    dest: PathBuf,
    file: File,
    hash: Sha256,
    size: u64,
    sha: String,
}

impl Upload {
    pub fn create(store: &Path, id: i64, sha: &str) -> Result<Upload> {
        let dest = blob_path(store, id, sha);
        let dir = dest.parent().expect("blob has a dir");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let part = dir.join(format!("{sha}.{}.part", std::process::id()));
        let file = File::create(&part).with_context(|| format!("creating {}", part.display()))?;
        Ok(Upload {
            part,
            dest,
            file,
            hash: Sha256::new(),
            size: 0,
            sha: sha.to_string(),
        })
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hash.update(data);
        self.size += data.len() as u64;
        self.file
            .write_all(data)
            .with_context(|| format!("writing {}", self.part.display()))
    }

    /// The size on success; on a hash mismatch the data is dropped.
    pub fn finish(self) -> std::result::Result<u64, String> {
        let actual = hex::encode(self.hash.clone().finalize());
        if actual != self.sha {
            let _ = fs::remove_file(&self.part);
            return Err(format!(
                "blob {}: the data received hashes to {actual} ({} bytes): refused",
                self.sha, self.size
            ));
        }
        self.file
            .sync_all()
            .and_then(|()| fs::rename(&self.part, &self.dest))
            .map_err(|e| format!("blob {}: storing it: {e}", self.sha))?;
        Ok(self.size)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // An upload cut short leaves nothing behind.
        let _ = fs::remove_file(&self.part);
    }
}

/// Assembles the output tree and inserts it into `stream`; returns the
/// versions added (`product version`). Everything is staged and checked
/// first; `may_commit` is asked last (with the store locked): when it says
/// no (the build was canceled meanwhile) the blobs this insert put into the
/// pool are removed and nothing is committed: `Ok(None)`.
pub fn insert(
    store_dir: &Path,
    id: i64,
    stream: &str,
    files: &[FileEntry],
    may_commit: &mut dyn FnMut() -> bool,
) -> std::result::Result<Option<Vec<String>>, String> {
    let out = job_dir(store_dir, id).join("out");
    let _ = fs::remove_dir_all(&out);
    let pool = Pool::new(store_dir);
    for f in files {
        let src = if pool.contains(&f.sha256) {
            pool.path(&f.sha256)
        } else {
            let b = blob_path(store_dir, id, &f.sha256);
            if !b.is_file() {
                return Err(format!(
                    "file {}: blob {} was never uploaded",
                    f.path, f.sha256
                ));
            }
            b
        };
        let dest = out.join(&f.path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        fs::hard_link(&src, &dest)
            .or_else(|_| fs::copy(&src, &dest).map(|_| ()))
            .map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    let store = Store::open(store_dir).map_err(|e| e.to_string())?;
    let cfg = store
        .config()
        .stream(stream)
        .map_err(|e| e.to_string())?
        .clone();
    let source = streamfs_core::ops::source::load(&out, &cfg).map_err(|e| e.to_string())?;
    let mut txn = store.begin().map_err(|e| e.to_string())?;
    // Under the store's lock: the blobs not in the pool yet are this
    // insert's to take back.
    let new: Vec<&str> = files
        .iter()
        .map(|f| f.sha256.as_str())
        .filter(|s| !pool.contains(s))
        .collect();
    let mut report = insert_source(
        &mut txn,
        stream,
        &source,
        InsertOptions {
            dry_run: false,
            filters: &[],
            progress: &mut |_| {},
        },
    )
    .map_err(|e| e.to_string())?;
    if report.added.is_empty() {
        return Err(format!(
            "stream {stream} already has every version of this build ({})",
            report
                .existing
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !may_commit() {
        for sha in new {
            let _ = pool.remove(sha);
        }
        return Ok(None);
    }
    report.commit = Some(txn.commit().map_err(|e| e.to_string())?);
    Ok(Some(report.added.iter().map(ToString::to_string).collect()))
}

/// The blobs uploaded for a build, and its directory when nothing else is
/// left in it.
pub fn remove_blobs(store: &Path, id: i64) {
    let _ = fs::remove_dir_all(job_dir(store, id).join("blobs"));
    let _ = fs::remove_dir(job_dir(store, id));
}

pub fn remove_job_dir(store: &Path, id: i64) {
    let _ = fs::remove_dir_all(job_dir(store, id));
}
