//! Generating a stream's served metadata from its state: the products file
//! (only publishable versions, condensed), the index, and their signatures.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::config::StreamConfig;
use super::fsutil::{sync_dir, write_new};
use super::pool::Pool;
use super::state::StreamState;
use crate::error::{IoContext, Result};
use crate::json::{self, Field};
use crate::signing::SigningKey;
use crate::streams::Products;
use crate::streams::condense::{condense, condense_product};
use crate::streams::index::{build_index, to_signed_paths};
use crate::timefmt;

/// The versions of `state` that may be published: every item that names a
/// path has its blob in the pool (the publication rule).
pub fn unpublishable_versions(state: &StreamState, pool: &Pool) -> BTreeSet<(String, String)> {
    let present = pool.present(
        state
            .products
            .items()
            .filter(|i| i.path().is_some())
            .filter_map(|i| i.sha256()),
    );
    let mut out = BTreeSet::new();
    for item in state.products.items() {
        if item.path().is_none() {
            continue;
        }
        let ok = item.sha256().is_some_and(|h| present.contains(h));
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

/// The published products document as bytes, equal to
/// `published_products(..).to_bytes()`, and its product names (sorted), for
/// the index. Rendered one product at a time: only one product is ever
/// copied, held out of the publication and condensed, never the document.
pub fn render_published(
    cfg: &StreamConfig,
    state: &StreamState,
    pool: &Pool,
    updated: &str,
) -> (Vec<u8>, Vec<String>) {
    let unpublishable = unpublishable_versions(state, pool);
    let doc = state.products.doc();
    let products = state.products.products();
    let mut names: Vec<&String> = products.keys().collect();
    names.sort_unstable();
    let mut kept = Vec::with_capacity(names.len());
    let made = names.into_iter().filter_map(|name| {
        let mut p = products.get(name.as_str())?.as_object()?.clone();
        if !unpublishable.is_empty()
            && let Some(Value::Object(versions)) = p.get_mut("versions")
        {
            let before = versions.len();
            versions.retain(|v, _| !unpublishable.contains(&(name.clone(), v.clone())));
            // A product all of whose versions are held back is not published.
            if versions.len() < before && versions.is_empty() {
                return None;
            }
        }
        sort_product(&mut p);
        condense_product(&mut p);
        kept.push(name.clone());
        Some((name.as_str(), Value::Object(p)))
    });
    let top = [
        ("content_id", Value::from(cfg.content_id.as_str())),
        ("datatype", Value::from(cfg.datatype.as_str())),
        ("format", Value::from("products:1.0")),
        ("updated", Value::from(updated)),
    ];
    let mut fields: Vec<(&str, Field)> = doc
        .iter()
        .filter(|(k, _)| k.as_str() != "products" && !top.iter().any(|(t, _)| t == k))
        .map(|(k, v)| (k.as_str(), Field::Value(v)))
        .collect();
    fields.extend(top.iter().map(|(k, v)| (*k, Field::Value(v))));
    fields.push(("products", Field::Made(Box::new(made))));
    // The products file is about as large as the state's products.
    let capacity = 4096 + 300 * state.mtimes.len();
    let bytes = json::fields_to_meph2(fields, capacity);
    (bytes, kept)
}

fn sort_product(p: &mut Map<String, Value>) {
    if let Some(Value::Object(versions)) = p.get_mut("versions") {
        versions.sort_keys();
        for v in versions.values_mut() {
            if let Some(Value::Object(items)) = v.get_mut("items") {
                items.sort_keys();
            }
        }
    }
}

/// Writes `dir/state.json` and `dir/streams/v1/*` for one stream, durably.
///
/// `state.json` is written on its own thread while the products file is
/// rendered, written and signed; the two signatures of a file are made in
/// parallel too. On a large stream each of these takes a similar time.
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
    std::thread::scope(|scope| {
        let state_json = scope.spawn(|| write_new(&dir.join("state.json"), &state.to_bytes()));
        let published = write_published(&v1, cfg, state, pool, key, now);
        let written = state_json
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        published.and(written)
    })?;
    sync_dir(&v1)?;
    sync_dir(&dir.join("streams"))?;
    sync_dir(dir)
}

fn write_published(
    v1: &Path,
    cfg: &StreamConfig,
    state: &StreamState,
    pool: &Pool,
    key: Option<&SigningKey>,
    now: DateTime<Utc>,
) -> Result<()> {
    let updated = timefmt::rfc2822(now);
    let (products_bytes, names) = render_published(cfg, state, pool, &updated);
    let index = build_index(&cfg.content_id, &cfg.datatype, names, &updated);
    let index_bytes = json::to_meph2(&index);
    let pname = format!("{}.json", cfg.content_id);
    write_new(&v1.join(&pname), &products_bytes)?;
    write_new(&v1.join("index.json"), &index_bytes)?;
    if let Some(key) = key {
        sign_pair(v1, &pname, &products_bytes, key)?;
        sign_pair(v1, "index.json", &index_bytes, key)?;
        // index.sjson points clients at the signed products files.
        let signed_index = json::to_meph2(&to_signed_paths(&index));
        let text = String::from_utf8_lossy(&signed_index);
        write_new(
            &v1.join("index.sjson"),
            key.sign_cleartext(&text)?.as_bytes(),
        )?;
    }
    Ok(())
}

/// `X.json.gpg` (detached) and, except for the index whose `.sjson` differs
/// from its `.json`, `X.sjson` (clearsigned); the two signatures of a
/// products file are made in parallel.
fn sign_pair(v1: &Path, name: &str, bytes: &[u8], key: &SigningKey) -> Result<()> {
    let detached = || {
        write_new(
            &v1.join(format!("{name}.gpg")),
            key.sign_detached(bytes)?.as_bytes(),
        )
    };
    if name == "index.json" {
        return detached();
    }
    let stem = name.strip_suffix(".json").unwrap_or(name);
    std::thread::scope(|scope| {
        let detached = scope.spawn(detached);
        let text = String::from_utf8_lossy(bytes);
        let clear = key
            .sign_cleartext(&text)
            .and_then(|signed| write_new(&v1.join(format!("{stem}.sjson")), signed.as_bytes()));
        let detached = detached
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        detached.and(clear)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Config;

    #[test]
    fn rendering_a_product_at_a_time_equals_the_whole_published_document() {
        let d = tempfile::tempdir().unwrap();
        let pool = Pool::new(d.path());
        let cfg = Config::parse("store.toml", crate::store::config::DEFAULT_CONFIG).unwrap();
        let cfg = &cfg.streams[0];
        let sha = |c: char| c.to_string().repeat(64);
        // `b` has one version whose blob is missing (held back) and one whose
        // blob is present; `a` has only a held version (the product goes);
        // `c` has no versions at all (kept, as the whole-document path does).
        fs::create_dir_all(pool.path(&sha('1')).parent().unwrap()).unwrap();
        fs::write(pool.path(&sha('1')), b"x").unwrap();
        let doc = serde_json::json!({
            "content_id": "old", "datatype": "image-downloads", "format": "products:1.0",
            "creator": "\u{e9}",
            "products": {
                "b": {"arch": "amd64", "versions": {
                    "2": {"items": {"z": {"ftype": "root.tar.xz", "path": "p/2", "sha256": sha('2'), "size": 1}}},
                    "1": {"items": {
                        "z": {"ftype": "root.tar.xz", "path": "p/1", "sha256": sha('1'), "size": 1, "k": "v"},
                        "a": {"ftype": "manifest", "path": "p/1m", "sha256": sha('1'), "size": 1, "k": "v"}}}}},
                "a": {"versions": {"1": {"items": {"i": {"ftype": "x", "path": "q", "sha256": sha('3'), "size": 1}}}}},
                "c": {"arch": "arm64"}
            }
        });
        let mut st = StreamState::new(&cfg.content_id, &cfg.datatype);
        st.products = Products::parse("p", &serde_json::to_vec(&doc).unwrap()).unwrap();
        let updated = "Thu, 01 Jan 2026 00:00:00 +0000";
        let (bytes, names) = render_published(cfg, &st, &pool, updated);
        let want = published_products(cfg, &st, &pool, updated);
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(&want.to_bytes())
        );
        assert_eq!(names, want.product_names());
        assert_eq!(names, ["b", "c"]);
    }
}
