//! A stream's state at one generation: its working products (published and
//! not yet publishable versions alike) and what the implementation tracks
//! beside them. Stored as `meta/gen/N/<stream>/state.json`; the published
//! `streams/v1` files are generated from it at each commit.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::pool::BlobRef;
use crate::error::{Error, Result};
use crate::json::{self, Field};
use crate::streams::Products;

const FORMAT: &str = "streamfs-state:1";

/// A path that left the metadata but whose blob stays downloadable by that
/// path until it is reaped (clients holding an older index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    pub blob: BlobRef,
    /// Unix time of the removal.
    pub at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StreamState {
    pub products: Products,
    /// Removed paths still readable, by stream-relative path.
    pub removed: BTreeMap<String, Removed>,
    /// Insert time (Unix seconds) of each live path: its mtime in the mount.
    pub mtimes: BTreeMap<String, i64>,
    /// Shared files (the `squashfs` of every kernel of a version) written
    /// before any product of their version exists, by stream-relative path.
    /// Kept here, not in memory, so that a file whose `close` succeeded
    /// survives a restart and is never reaped; each is attached to the
    /// products of its version as they arrive, and leaves this map once it
    /// is an item.
    pub shared: BTreeMap<String, BlobRef>,
}

impl StreamState {
    pub fn new(content_id: &str, datatype: &str) -> Self {
        StreamState {
            products: Products::new(content_id, datatype),
            removed: BTreeMap::new(),
            mtimes: BTreeMap::new(),
            shared: BTreeMap::new(),
        }
    }

    /// `state.json`. Written from the state as it is, without copying the
    /// products document or building the other maps as JSON first: on a large
    /// stream this file is most of what a commit writes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let format = Value::from(FORMAT);
        let removed = self.removed.iter().map(|(p, r)| {
            (
                p.as_str(),
                json!({"sha256": r.blob.sha256, "size": r.blob.size, "at": r.at}),
            )
        });
        let mtimes = self.mtimes.iter().map(|(p, t)| (p.as_str(), json!(t)));
        let shared = self
            .shared
            .iter()
            .map(|(p, b)| (p.as_str(), json!({"sha256": b.sha256, "size": b.size})));
        // About 400 bytes per item (counted by its mtime) on real streams.
        let capacity = 4096 + 400 * self.mtimes.len();
        json::fields_to_meph2(
            vec![
                ("format", Field::Value(&format)),
                ("products", Field::Map(self.products.doc())),
                ("removed", Field::Made(Box::new(removed))),
                ("mtimes", Field::Made(Box::new(mtimes))),
                ("shared", Field::Made(Box::new(shared))),
            ],
            capacity,
        )
    }

    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self> {
        let mut doc = json::parse_object(file, bytes)?;
        if doc.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(Error::invalid(
                file,
                "format",
                format!("expected \"{FORMAT}\""),
            ));
        }
        let products = match doc.remove("products") {
            Some(Value::Object(m)) => Products::from_map(file, m)?,
            _ => return Err(Error::invalid(file, "products", "missing or not an object")),
        };
        let blob = |r: &Value| BlobRef {
            sha256: r
                .get("sha256")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            size: r.get("size").and_then(Value::as_u64).unwrap_or_default(),
        };
        let mut removed = BTreeMap::new();
        if let Some(Value::Object(m)) = doc.get("removed") {
            for (p, r) in m {
                let at = r.get("at").and_then(Value::as_i64).unwrap_or_default();
                removed.insert(p.clone(), Removed { blob: blob(r), at });
            }
        }
        let mut shared = BTreeMap::new();
        if let Some(Value::Object(m)) = doc.get("shared") {
            for (p, r) in m {
                shared.insert(p.clone(), blob(r));
            }
        }
        let mut mtimes = BTreeMap::new();
        if let Some(Value::Object(m)) = doc.get("mtimes") {
            for (p, t) in m {
                mtimes.insert(p.clone(), t.as_i64().unwrap_or_default());
            }
        }
        Ok(StreamState {
            products,
            removed,
            mtimes,
            shared,
        })
    }

    /// Live paths and their blobs: items with a path and a sha256, and the
    /// shared files kept for products to come.
    pub fn live_blobs(&self) -> impl Iterator<Item = (&str, BlobRef)> {
        self.products
            .items()
            .filter_map(|i| {
                Some((
                    i.path()?,
                    BlobRef {
                        sha256: i.sha256()?.to_string(),
                        size: i.size().unwrap_or(0),
                    },
                ))
            })
            .chain(self.shared.iter().map(|(p, b)| (p.as_str(), b.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_json_is_the_whole_state_in_meph2_style_and_reads_back() {
        let doc = br#"{"content_id": "c", "datatype": "image-downloads", "format": "products:1.0",
            "products": {"p": {"arch": "amd64", "versions": {"v1": {"items": {"i": {
                "ftype": "root.tar.xz", "path": "a/b", "sha256":
                "0000000000000000000000000000000000000000000000000000000000000000", "size": 3}}}}}}}"#;
        let blob = |c: char| BlobRef {
            sha256: c.to_string().repeat(64),
            size: 7,
        };
        let mut st = StreamState::new("c", "image-downloads");
        st.products = Products::parse("p.json", doc).unwrap();
        st.mtimes.insert("a/b".into(), 1_700_000_000);
        st.mtimes.insert("a/a\u{e9}".into(), 5);
        st.removed.insert(
            "old/x".into(),
            Removed {
                blob: blob('1'),
                at: 42,
            },
        );
        st.shared.insert("s/squashfs".into(), blob('2'));
        let bytes = st.to_bytes();
        let want = json::to_meph2(&json!({
            "format": FORMAT,
            "products": Value::Object(st.products.doc().clone()),
            "removed": {"old/x": {"sha256": "1".repeat(64), "size": 7, "at": 42}},
            "mtimes": {"a/b": 1_700_000_000, "a/a\u{e9}": 5},
            "shared": {"s/squashfs": {"sha256": "2".repeat(64), "size": 7}},
        }));
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(StreamState::parse("state.json", &bytes).unwrap(), st);
        let empty = StreamState::new("c", "d");
        assert_eq!(StreamState::parse("s", &empty.to_bytes()).unwrap(), empty);
    }
}
