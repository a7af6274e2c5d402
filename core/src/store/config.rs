//! `store.toml`: the streams of a store, their layout templates, the signing
//! key, retention and the orphans' grace period (ARCHITECTURE.md §2). This schema is
//! the store's interface; `mountctl init` writes [`DEFAULT_CONFIG`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::layout::Layout;
use crate::error::{Error, IoContext, Result};
use crate::timefmt::parse_duration;

/// The configuration `mountctl init` (and a first `streamfs STORE MNT`)
/// writes: MAAS v3 `daily` and `released` streams.
pub const DEFAULT_CONFIG: &str = include_str!("default-store.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_grace")]
    grace: String,
    #[serde(default)]
    signing: RawSigning,
    #[serde(default, rename = "stream")]
    streams: Vec<RawStream>,
}

fn default_grace() -> String {
    "3d".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: String,
    content_id: String,
    #[serde(default = "default_datatype")]
    datatype: String,
    product_id: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    keep: usize,
    #[serde(default)]
    paths: Option<Vec<String>>,
    /// File name → ftype, for files whose ftype is not their name
    /// (`squashfs.manifest` is a `manifest`).
    #[serde(default)]
    ftype: Option<BTreeMap<String, String>>,
    #[serde(default)]
    release: Option<BTreeMap<String, BTreeMap<String, toml::Value>>>,
}

fn default_datatype() -> String {
    "image-downloads".into()
}

/// What a stream passes on to the next one that omits it: paths, ftype
/// table, release table.
type Inherited = (
    Vec<String>,
    BTreeMap<String, String>,
    BTreeMap<String, BTreeMap<String, toml::Value>>,
);

/// One stream of the store.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub name: String,
    pub content_id: String,
    pub datatype: String,
    pub label: Option<String>,
    pub keep: usize,
    pub layout: Layout,
}

impl StreamConfig {
    /// The constant text of `product_id` before its first `{`: what promotion
    /// swaps between streams.
    pub fn product_prefix(&self) -> &str {
        self.layout.product_prefix()
    }
}

/// A parsed, validated `store.toml`.
#[derive(Clone, Debug)]
pub struct Config {
    pub grace: Duration,
    pub signing_key: Option<String>,
    pub streams: Vec<StreamConfig>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).at(path)?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn parse(file: &str, text: &str) -> Result<Config> {
        let cfg_err = |reason: String| Error::Config {
            file: file.to_string(),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| cfg_err(e.to_string()))?;
        let grace = parse_duration(&raw.grace).map_err(|e| cfg_err(format!("grace: {e}")))?;
        let mut streams: Vec<StreamConfig> = Vec::new();
        // Streams after the first inherit paths, ftypes and releases from the
        // one before when they omit them, so `released` need not repeat `daily`.
        let mut prev: Option<Inherited> = None;
        for s in raw.streams {
            if !valid_stream_name(&s.name) {
                return Err(cfg_err(format!(
                    "stream name '{}' must be a non-empty single path component of letters, digits, '.', '_' or '-'",
                    s.name
                )));
            }
            if streams.iter().any(|o| o.name == s.name) {
                return Err(cfg_err(format!("stream '{}' is defined twice", s.name)));
            }
            if s.content_id.is_empty() || s.content_id.contains('/') {
                return Err(cfg_err(format!(
                    "stream '{}': content_id must be non-empty without '/'",
                    s.name
                )));
            }
            let (ppaths, pftype, prelease) = prev.clone().unwrap_or_default();
            let paths = s.paths.unwrap_or(ppaths);
            let ftype = s.ftype.unwrap_or(pftype);
            let release = s.release.unwrap_or(prelease);
            let releases = release
                .iter()
                .map(|(r, attrs)| {
                    let attrs = attrs
                        .iter()
                        .map(|(k, v)| {
                            let v = match v {
                                toml::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            (k.clone(), v)
                        })
                        .collect();
                    (r.clone(), attrs)
                })
                .collect();
            let layout = Layout::new(&s.product_id, &paths, ftype.clone(), releases)
                .map_err(|e| cfg_err(format!("stream '{}': {e}", s.name)))?;
            prev = Some((paths, ftype, release));
            streams.push(StreamConfig {
                name: s.name,
                content_id: s.content_id,
                datatype: s.datatype,
                label: s.label,
                keep: s.keep,
                layout,
            });
        }
        if streams.is_empty() {
            return Err(cfg_err("no [[stream]] defined".into()));
        }
        Ok(Config {
            grace,
            signing_key: raw.signing.key,
            streams,
        })
    }

    pub fn stream(&self, name: &str) -> Result<&StreamConfig> {
        self.streams
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::UnknownStream(name.to_string()))
    }
}

fn valid_stream_name(n: &str) -> bool {
    !n.is_empty()
        && n != "."
        && n != ".."
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_parses_and_released_inherits_daily_layout() {
        let c = Config::parse("default", DEFAULT_CONFIG).unwrap();
        assert_eq!(c.grace.as_secs(), 3 * 86400);
        let names: Vec<&str> = c.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["daily", "released"]);
        assert_eq!(c.stream("released").unwrap().layout.templates().len(), 2);
        assert_eq!(
            c.stream("daily").unwrap().product_prefix(),
            "com.ubuntu.maas.daily:v3:boot:"
        );
        assert_eq!(
            c.stream("released").unwrap().product_prefix(),
            "com.ubuntu.maas:v3:boot:"
        );
    }

    #[test]
    fn unknown_keys_and_bad_names_are_reported_with_the_file() {
        let e = Config::parse("s.toml", "bogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.toml: ") && e.contains("bogus"), "{e}");
        let e = Config::parse(
            "s.toml",
            "[[stream]]\nname = \"../x\"\ncontent_id = \"c\"\nproduct_id = \"p\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("../x"), "{e}");
    }
}
