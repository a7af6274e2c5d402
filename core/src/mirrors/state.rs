//! The crawl state (`mirrors-state.json` in the store): the versions each
//! crawled file has had, so that a mirror holding the previous one is known
//! as an alternate for a while, and each mirror's last crawl per stream.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::store::write_atomic;
use serde::{Deserialize, Serialize};

use super::digests::Digests;
use crate::error::{Error, Result};

pub const FILE_NAME: &str = "mirrors-state.json";
const FORMAT: &str = "streamfs-mirrors-state:1";
/// Versions kept per file, however recent (a file pushed every minute must
/// not grow the state without bound).
const MAX_VERSIONS: usize = 8;

/// One version of a crawled file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileVersion {
    #[serde(flatten)]
    pub digests: Digests,
    /// Unix time the crawl first saw it as the store's copy.
    pub first_seen: i64,
    /// Unix time a newer version replaced it; `None` for the current one,
    /// which stays valid however long nothing new is pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded: Option<i64>,
    /// The store generation it belonged to (streams only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// How a mirror's copy of a stream (or tree) compares with the store's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Freshness {
    /// Every crawled file equals the store's current one.
    Current,
    /// Every crawled file equals a current or a still valid earlier one.
    Alternate,
    /// Some file is older than the alternates, differs, or is missing.
    Stale,
}

impl std::fmt::Display for Freshness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Freshness::Current => "current",
            Freshness::Alternate => "alternate",
            Freshness::Stale => "stale",
        })
    }
}

/// A mirror's copy of one stream or tree at its last successful crawl.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteStatus {
    pub freshness: Freshness,
    /// The store generation its copy matches (oldest among its files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Why it is not current: the first file that differed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The sha256 of each crawled file as found on the mirror.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MirrorStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_crawl: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<i64>,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Requests made by the last crawl.
    #[serde(default)]
    pub requests: u64,
    /// By stream or tree name.
    #[serde(default)]
    pub sites: BTreeMap<String, SiteStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrawlState {
    pub format: String,
    /// By `<stream>/streams/v1/<file>` or `<tree>/<file>`, oldest first.
    #[serde(default)]
    pub files: BTreeMap<String, Vec<FileVersion>>,
    #[serde(default)]
    pub mirrors: BTreeMap<String, MirrorStatus>,
}

impl Default for CrawlState {
    fn default() -> Self {
        CrawlState {
            format: FORMAT.into(),
            files: BTreeMap::new(),
            mirrors: BTreeMap::new(),
        }
    }
}

impl CrawlState {
    pub fn path(store_root: &Path) -> PathBuf {
        store_root.join(FILE_NAME)
    }

    /// Reads the state; absent means no crawl yet.
    pub fn load(store_root: &Path) -> Result<CrawlState> {
        let path = Self::path(store_root);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::Io { path, error: e }),
        };
        let bad = |reason: String| Error::Config {
            file: path.display().to_string(),
            reason,
        };
        let st: CrawlState = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if st.format != FORMAT {
            return Err(bad(format!("format: expected \"{FORMAT}\"")));
        }
        Ok(st)
    }

    /// Writes the state atomically; callers hold the store's writer lock.
    pub fn save(&self, store_root: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("state serializes");
        bytes.push(b'\n');
        write_atomic(&Self::path(store_root), &bytes)?;
        Ok(())
    }

    /// Records `d` as the store's copy of `key` now: a new version
    /// supersedes the previous one; the same one changes nothing.
    pub fn record_current(&mut self, key: &str, d: &Digests, now: i64, generation: Option<u64>) {
        let versions = self.files.entry(key.to_string()).or_default();
        if let Some(last) = versions.last_mut() {
            if last.digests == *d {
                return;
            }
            last.superseded = Some(now);
        }
        versions.retain(|v| v.digests != *d);
        versions.push(FileVersion {
            digests: d.clone(),
            first_seen: now,
            superseded: None,
            generation,
        });
        if versions.len() > MAX_VERSIONS {
            versions.drain(..versions.len() - MAX_VERSIONS);
        }
    }

    /// The current version of `key`.
    pub fn current(&self, key: &str) -> Option<&FileVersion> {
        self.files.get(key)?.last()
    }

    /// Earlier versions of `key` still valid at `now`: superseded less than
    /// `validity` seconds ago. Newest first.
    pub fn alternates(&self, key: &str, now: i64, validity: i64) -> Vec<&FileVersion> {
        let Some(v) = self.files.get(key) else {
            return vec![];
        };
        v.iter()
            .rev()
            .skip(1)
            .filter(|f| f.superseded.is_some_and(|s| now - s < validity))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &[u8]) -> Digests {
        Digests::of_bytes(s)
    }

    #[test]
    fn the_previous_version_is_an_alternate_until_its_validity_ends() {
        let mut st = CrawlState::default();
        st.record_current("s/streams/v1/index.json", &d(b"1"), 100, Some(1));
        st.record_current("s/streams/v1/index.json", &d(b"1"), 150, Some(2));
        st.record_current("s/streams/v1/index.json", &d(b"2"), 200, Some(3));
        let k = "s/streams/v1/index.json";
        assert_eq!(st.current(k).unwrap().digests, d(b"2"));
        assert_eq!(st.current(k).unwrap().generation, Some(3));
        assert_eq!(st.alternates(k, 250, 100).len(), 1);
        assert_eq!(st.alternates(k, 250, 100)[0].generation, Some(1));
        assert!(st.alternates(k, 300, 100).is_empty());
        // The current one stays whatever the time.
        assert!(st.current(k).is_some());
    }
}
