//! Generating a stream's served metadata from its state: the products file
//! (only publishable versions, condensed), the index, and their signatures.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::config::StreamConfig;
use super::fsutil::{sync_dir, write_new};
use super::pool::Pool;
use super::state::StreamState;
use crate::error::{IoContext, Result};
use crate::json;
use crate::signing::SigningKey;
use crate::streams::Products;
use crate::streams::condense::condense;
use crate::streams::index::{build_index, to_signed_paths};
use crate::timefmt;

/// The versions of `state` that may be published: every item that names a
/// path has its blob in the pool (the publication rule).
pub fn unpublishable_versions(state: &StreamState, pool: &Pool) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for item in state.products.items() {
        if item.path().is_none() {
            continue;
        }
        let ok = item.sha256().is_some_and(|h| pool.contains(h));
        if !ok {
            out.insert((item.product.to_string(), item.version.to_string()));
        }
    }
    out
}

/// The products document clients see.
pub fn published_products(
    cfg: &StreamConfig,
    state: &StreamState,
    pool: &Pool,
    updated: &str,
) -> Products {
    let mut p = state.products.clone();
    for (prod, ver) in unpublishable_versions(state, pool) {
        p.remove_version(&prod, &ver);
    }
    p.set_top("content_id", cfg.content_id.as_str());
    p.set_top("datatype", cfg.datatype.as_str());
    p.set_top("format", "products:1.0");
    p.set_top("updated", updated);
    p.sort();
    condense(&mut p);
    p
}

/// Writes `dir/state.json` and `dir/streams/v1/*` for one stream, durably.
pub fn write_stream(
    dir: &Path,
    cfg: &StreamConfig,
    state: &StreamState,
    pool: &Pool,
    key: Option<&SigningKey>,
    now: DateTime<Utc>,
) -> Result<()> {
    let v1 = dir.join("streams").join("v1");
    fs::create_dir_all(&v1).at(&v1)?;
    write_new(&dir.join("state.json"), &state.to_bytes())?;
    let updated = timefmt::rfc2822(now);
    let products = published_products(cfg, state, pool, &updated);
    let index = build_index(&products, &updated);
    let products_bytes = products.to_bytes();
    let index_bytes = json::to_meph2(&index);
    let pname = format!("{}.json", cfg.content_id);
    write_new(&v1.join(&pname), &products_bytes)?;
    write_new(&v1.join("index.json"), &index_bytes)?;
    if let Some(key) = key {
        sign_pair(&v1, &pname, &products_bytes, key)?;
        sign_pair(&v1, "index.json", &index_bytes, key)?;
        // index.sjson points clients at the signed products files.
        let signed_index = json::to_meph2(&to_signed_paths(&index));
        let text = String::from_utf8_lossy(&signed_index);
        write_new(
            &v1.join("index.sjson"),
            key.sign_cleartext(&text)?.as_bytes(),
        )?;
    }
    sync_dir(&v1)?;
    sync_dir(&dir.join("streams"))?;
    sync_dir(dir)
}

/// `X.json.gpg` (detached) and, except for the index whose `.sjson` differs
/// from its `.json`, `X.sjson` (clearsigned).
fn sign_pair(v1: &Path, name: &str, bytes: &[u8], key: &SigningKey) -> Result<()> {
    write_new(
        &v1.join(format!("{name}.gpg")),
        key.sign_detached(bytes)?.as_bytes(),
    )?;
    if name != "index.json" {
        let stem = name.strip_suffix(".json").unwrap_or(name);
        let text = String::from_utf8_lossy(bytes);
        write_new(
            &v1.join(format!("{stem}.sjson")),
            key.sign_cleartext(&text)?.as_bytes(),
        )?;
    }
    Ok(())
}
