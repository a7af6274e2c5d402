//! `mirrors.toml`: the mirrors of a store and the served trees (e.g. an
//! ostree repository) crawled beside its streams. Kept in the store root,
//! written atomically under the store's writer lock.
//!
//! ```toml
//! [crawl]
//! max_failures = 3            # crawls failed in a row before a mirror is disabled
//! alternate_validity = "3d"   # how long a superseded file stays valid on mirrors
//!
//! [[mirror]]
//! name = "us1"
//! url = "https://mirror.example.com/streamfs/"   # streams appear as <url>/<stream>/streams/v1/…
//! rsync = "rsync://mirror.example.com/streamfs/"
//! location = "US"
//! preference = 100
//! private = false
//! enabled = true
//!
//! [[tree]]                    # served as <url>/<name>/<file>
//! name = "atomic"
//! dir = "/srv/ostree/atomic"
//! files = ["summary"]
//! ```

use std::path::{Path, PathBuf};

use crate::store::write_atomic;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const FILE_NAME: &str = "mirrors.toml";

fn default_true() -> bool {
    true
}
fn default_preference() -> u32 {
    100
}
fn default_max_failures() -> u32 {
    3
}
fn default_validity() -> String {
    "3d".into()
}
fn default_files() -> Vec<String> {
    vec!["summary".into()]
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub name: String,
    /// HTTP(S) root under which each stream appears as `<stream>/…`.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync: Option<String>,
    /// ISO 3166 country code, upper case as MirrorManager writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default = "default_preference")]
    pub preference: u32,
    /// Private mirrors are crawled but never listed in metalinks.
    #[serde(default)]
    pub private: bool,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Why the crawl disabled the mirror (absent when an operator did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_by_crawl: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlSettings {
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_validity")]
    pub alternate_validity: String,
}

impl Default for CrawlSettings {
    fn default() -> Self {
        CrawlSettings {
            max_failures: default_max_failures(),
            alternate_validity: default_validity(),
        }
    }
}

/// A directory served beside the streams on every mirror (an ostree
/// repository): its small `files` are crawled like a stream's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    pub name: String,
    pub dir: PathBuf,
    #[serde(default = "default_files")]
    pub files: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorsFile {
    #[serde(default)]
    pub crawl: CrawlSettings,
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<Mirror>,
    #[serde(default, rename = "tree")]
    pub trees: Vec<Tree>,
}

impl MirrorsFile {
    pub fn path(store_root: &Path) -> PathBuf {
        store_root.join(FILE_NAME)
    }

    /// Reads the store's `mirrors.toml`; an absent file is an empty list.
    pub fn load(store_root: &Path) -> Result<MirrorsFile> {
        let path = Self::path(store_root);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::Io { path, error: e }),
        };
        let file = path.display().to_string();
        let parsed: MirrorsFile = toml::from_str(&text).map_err(|e| Error::Config {
            file: file.clone(),
            reason: e.to_string().trim_end().replace('\n', " "),
        })?;
        parsed
            .validate()
            .map_err(|reason| Error::Config { file, reason })?;
        Ok(parsed)
    }

    /// Writes the file atomically (temp file, fsync, rename).
    pub fn save(&self, store_root: &Path) -> Result<()> {
        let text = toml::to_string(self).map_err(|e| Error::Config {
            file: FILE_NAME.into(),
            reason: e.to_string(),
        })?;
        write_atomic(&Self::path(store_root), text.as_bytes())?;
        Ok(())
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        crate::timefmt::parse_duration(&self.crawl.alternate_validity)
            .map_err(|e| format!("[crawl] alternate_validity: {e}"))?;
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.mirrors {
            validate_mirror(m).map_err(|e| format!("mirror '{}': {e}", m.name))?;
            if !seen.insert(&m.name) {
                return Err(format!("mirror '{}' is listed twice", m.name));
            }
        }
        for t in &self.trees {
            validate_name(&t.name).map_err(|e| format!("tree '{}': {e}", t.name))?;
            for f in &t.files {
                crate::relpath::RelPath::check(f)
                    .map_err(|e| format!("tree '{}': file '{f}': {e}", t.name))?;
            }
        }
        Ok(())
    }

    pub fn mirror_mut(&mut self, name: &str) -> Result<&mut Mirror> {
        self.mirrors
            .iter_mut()
            .find(|m| m.name == name)
            .ok_or_else(|| Error::Usage(format!("no mirror named '{name}'")))
    }

    pub fn alternate_validity_secs(&self) -> i64 {
        crate::timefmt::parse_duration(&self.crawl.alternate_validity)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(3 * 86400)
    }
}

fn validate_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err("a name is letters, digits, '-', '_' and '.' (not first)".into())
    }
}

/// The checks `mirrors add` and loading both make.
pub fn validate_mirror(m: &Mirror) -> std::result::Result<(), String> {
    validate_name(&m.name)?;
    let scheme_ok = |u: &str, schemes: &[&str]| {
        schemes.iter().any(|s| {
            u.strip_prefix(s)
                .and_then(|r| r.strip_prefix("://"))
                .is_some_and(|host| !host.is_empty() && !host.starts_with('/'))
        })
    };
    if !scheme_ok(&m.url, &["http", "https"]) {
        return Err(format!(
            "URL '{}' is not an http:// or https:// URL with a host",
            m.url
        ));
    }
    if let Some(r) = &m.rsync
        && !scheme_ok(r, &["rsync"])
    {
        return Err(format!(
            "rsync URL '{r}' is not an rsync:// URL with a host"
        ));
    }
    if let Some(cc) = &m.location
        && !(cc.len() == 2 && cc.chars().all(|c| c.is_ascii_uppercase()))
    {
        return Err(format!(
            "location '{cc}' is not a two-letter country code (e.g. US)"
        ));
    }
    if [&m.url, m.rsync.as_ref().unwrap_or(&m.url)]
        .iter()
        .any(|u| u.chars().any(|c| c.is_whitespace() || "<>\"".contains(c)))
    {
        return Err("a URL may not contain spaces, quotes or angle brackets".into());
    }
    Ok(())
}

/// `base` + `/` + `rel`, with exactly one slash between.
pub fn join_url(base: &str, rel: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rel.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(url: &str) -> Mirror {
        Mirror {
            name: "m".into(),
            url: url.into(),
            rsync: None,
            location: None,
            preference: 100,
            private: false,
            enabled: true,
            disabled_by_crawl: None,
        }
    }

    #[test]
    fn urls_of_other_schemes_are_refused() {
        assert!(validate_mirror(&mirror("http://h/x")).is_ok());
        assert!(validate_mirror(&mirror("https://h")).is_ok());
        for bad in [
            "ftp://h/x",
            "file:///srv",
            "http:///x",
            "h/x",
            "http://h/<x>",
        ] {
            assert!(validate_mirror(&mirror(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_malformed_file_names_itself_and_the_reason() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(FILE_NAME), "[[mirror]]\nname = 3\n").unwrap();
        let e = MirrorsFile::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("mirrors.toml") && e.contains("name"), "{e}");
    }

    #[test]
    fn the_file_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let mut f = MirrorsFile::default();
        f.mirrors.push(mirror("http://h/x"));
        f.save(d.path()).unwrap();
        assert_eq!(MirrorsFile::load(d.path()).unwrap(), f);
    }
}
