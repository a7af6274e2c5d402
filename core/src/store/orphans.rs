//! `orphans.json`: blobs no stream references any more, with the time each
//! was first seen orphaned (meph2-util's format, keyed by pool path). Reaping
//! deletes those older than the grace period, and always re-checks that a
//! blob is still unreferenced at that moment, so a stale entry can never
//! delete live data.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::fsutil::write_atomic;
use crate::error::{Error, Result};
use crate::json;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Orphans {
    /// `pool/sha256/ab/abcdef…` → RFC 2822 time first orphaned.
    pub entries: BTreeMap<String, String>,
}

impl Orphans {
    pub fn load(path: &Path) -> Result<Orphans> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Orphans::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        let file = path.display().to_string();
        let doc = json::parse_object(&file, &bytes)?;
        let mut entries = BTreeMap::new();
        for (k, v) in doc {
            let t = v
                .as_str()
                .ok_or_else(|| Error::invalid(&file, &k, "expected an RFC 2822 time string"))?;
            entries.insert(k, t.to_string());
        }
        Ok(Orphans { entries })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let m: serde_json::Map<String, Value> = self
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        write_atomic(path, &json::to_meph2(&Value::Object(m)))
    }
}
