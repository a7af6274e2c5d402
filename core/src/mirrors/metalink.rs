//! Metalink documents for one file: Metalink 3.0 in MirrorManager's
//! dialect (what ostree and yum/dnf read) and RFC 5854 (`.meta4`).
//!
//! ostree's parser refuses unknown attributes, so `<file>` carries only
//! `name` and every `<url>` exactly `protocol`, `type`, `location` and
//! `preference`; size and hashes come before `<resources>`. Private mirrors
//! are never listed, and only mirrors whose copy is current (or a valid
//! alternate of a metadata file) are.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::relpath::RelPath;
use crate::store::Store;
use chrono::{DateTime, Utc};

use super::digests::Digests;
use super::model::{MirrorsFile, join_url};
use super::state::{CrawlState, Freshness};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    V3,
    V4,
}

/// An earlier version of the file still accepted from mirrors.
#[derive(Clone, Debug, PartialEq)]
pub struct Alternate {
    pub timestamp: i64,
    pub digests: Digests,
}

/// A mirror's URL for the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub url: String,
    /// `http` or `https`.
    pub protocol: String,
    pub location: String,
    pub preference: u32,
}

/// Everything a metalink says about one file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileEntry {
    pub name: String,
    pub timestamp: i64,
    pub digests: Digests,
    pub alternates: Vec<Alternate>,
    /// In preference order, best first.
    pub resources: Vec<Resource>,
}

/// XML text and attribute escaping.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

fn verification(o: &mut String, d: &Digests, indent: &str) {
    let _ = writeln!(o, "{indent}<size>{}</size>", d.size);
    let _ = writeln!(o, "{indent}<verification>");
    let _ = writeln!(o, "{indent}  <hash type=\"sha256\">{}</hash>", d.sha256);
    let _ = writeln!(o, "{indent}  <hash type=\"sha512\">{}</hash>", d.sha512);
    let _ = writeln!(o, "{indent}</verification>");
}

/// Metalink 3.0, as MirrorManager's `metalink()` writes it.
pub fn write_v3(f: &FileEntry, pubdate: DateTime<Utc>) -> String {
    let mut o = String::with_capacity(2048);
    o.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let _ = writeln!(
        o,
        "<metalink version=\"3.0\" xmlns=\"http://www.metalinker.org/\" type=\"dynamic\" pubdate=\"{}\" generator=\"streamfs\" xmlns:mm0=\"http://fedorahosted.org/mirrormanager\">",
        pubdate.format("%a, %d %b %Y %H:%M:%S GMT")
    );
    o.push_str("  <files>\n");
    let _ = writeln!(o, "    <file name=\"{}\">", esc(&f.name));
    let _ = writeln!(o, "      <mm0:timestamp>{}</mm0:timestamp>", f.timestamp);
    verification(&mut o, &f.digests, "      ");
    if !f.alternates.is_empty() {
        o.push_str("      <mm0:alternates>\n");
        for a in &f.alternates {
            o.push_str("        <mm0:alternate>\n");
            let _ = writeln!(
                o,
                "          <mm0:timestamp>{}</mm0:timestamp>",
                a.timestamp
            );
            verification(&mut o, &a.digests, "          ");
            o.push_str("        </mm0:alternate>\n");
        }
        o.push_str("      </mm0:alternates>\n");
    }
    o.push_str("      <resources maxconnections=\"1\">\n");
    for r in &f.resources {
        let _ = writeln!(
            o,
            "        <url protocol=\"{p}\" type=\"{p}\" location=\"{}\" preference=\"{}\">{}</url>",
            esc(&r.location),
            r.preference.clamp(1, 100),
            esc(&r.url),
            p = esc(&r.protocol),
        );
    }
    o.push_str("      </resources>\n    </file>\n  </files>\n</metalink>\n");
    o
}

/// RFC 5854 (`application/metalink4+xml`): priority 1 is the best mirror.
pub fn write_v4(f: &FileEntry, published: DateTime<Utc>) -> String {
    let mut o = String::with_capacity(2048);
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    o.push_str("<metalink xmlns=\"urn:ietf:params:xml:ns:metalink\">\n");
    o.push_str("  <generator>streamfs</generator>\n");
    let _ = writeln!(
        o,
        "  <published>{}</published>",
        published.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let _ = writeln!(o, "  <file name=\"{}\">", esc(&f.name));
    let _ = writeln!(o, "    <size>{}</size>", f.digests.size);
    let _ = writeln!(o, "    <hash type=\"sha-256\">{}</hash>", f.digests.sha256);
    let _ = writeln!(o, "    <hash type=\"sha-512\">{}</hash>", f.digests.sha512);
    for (i, r) in f.resources.iter().enumerate() {
        let loc = if r.location.is_empty() {
            String::new()
        } else {
            format!(" location=\"{}\"", esc(&r.location.to_ascii_lowercase()))
        };
        let _ = writeln!(
            o,
            "    <url{loc} priority=\"{}\">{}</url>",
            i + 1,
            esc(&r.url)
        );
    }
    o.push_str("  </file>\n</metalink>\n");
    o
}

pub fn write(f: &FileEntry, format: Format, now: DateTime<Utc>) -> String {
    match format {
        Format::V3 => write_v3(f, now),
        Format::V4 => write_v4(f, now),
    }
}

/// What a metalink is asked for.
#[derive(Clone, Debug)]
pub enum Target {
    /// PATH relative to a stream (`streams/v1/index.json`, an item path).
    Stream { stream: String, path: String },
    /// PATH relative to a served tree of `mirrors.toml` (its `dir`).
    Root { dir: PathBuf, path: String },
}

/// The entry for `target` from the store and the last crawl.
pub fn entry_for(
    store: &Store,
    mirrors: &MirrorsFile,
    state: &CrawlState,
    target: &Target,
    now: i64,
) -> Result<FileEntry> {
    let (site, path, local) = match target {
        Target::Stream { stream, path } => {
            let rel =
                RelPath::new(path).map_err(|e| Error::Usage(format!("path '{path}': {e}")))?;
            if !store.config().streams.iter().any(|s| s.name == *stream) {
                return Err(Error::Usage(format!("unknown stream '{stream}'")));
            }
            let local = if let Some(doc) = rel.as_str().strip_prefix("streams/v1/") {
                // A published document: no stream state to read.
                let (_, dir) = store.current_generation_dir()?;
                dir.join(stream).join("streams").join("v1").join(doc)
            } else {
                let snap = store.snapshot()?;
                let st = &snap.streams[stream];
                let item = st
                    .products
                    .items()
                    .find(|i| i.path() == Some(rel.as_str()))
                    .and_then(|i| i.sha256().map(str::to_string));
                match item {
                    Some(h) if store.pool().contains(&h) => store.pool().path(&h),
                    _ => PathBuf::new(),
                }
            };
            if !local.is_file() {
                return Err(Error::Missing(format!(
                    "stream '{stream}' has no file '{path}'"
                )));
            }
            (stream.clone(), rel.as_str().to_string(), local)
        }
        Target::Root { dir, path } => {
            let rel =
                RelPath::new(path).map_err(|e| Error::Usage(format!("path '{path}': {e}")))?;
            let want = canonical(dir);
            let Some(tree) = mirrors.trees.iter().find(|t| canonical(&t.dir) == want) else {
                return Err(Error::Usage(format!(
                    "{} is not the dir of a [[tree]] in mirrors.toml",
                    dir.display()
                )));
            };
            let local = tree.dir.join(rel.as_str());
            if !local.is_file() {
                return Err(Error::Missing(format!("{}: no such file", local.display())));
            }
            (tree.name.clone(), rel.as_str().to_string(), local)
        }
    };
    let digests = Digests::of_file(&local)?;
    Ok(entry_from(
        mirrors,
        state,
        &site,
        &path,
        digests,
        mtime(&local),
        now,
    ))
}

/// The entry for `path` of `site` (a stream or tree) whose content has
/// `digests`, from the mirror list and the last crawl.
///
/// The crawl's record of the store's copy may be older than `digests` (a
/// commit since the last crawl): that copy is then an alternate, superseded
/// just now, so the mirrors that carry it stay listed until the next crawl
/// says otherwise.
pub fn entry_from(
    mirrors: &MirrorsFile,
    state: &CrawlState,
    site: &str,
    path: &str,
    digests: Digests,
    timestamp: i64,
    now: i64,
) -> FileEntry {
    let key = format!("{site}/{path}");
    let validity = mirrors.alternate_validity_secs();
    let crawled = state.current(&key).is_some();
    let mut alternates: Vec<Alternate> = Vec::new();
    if let Some(c) = state.current(&key)
        && c.digests != digests
    {
        alternates.push(Alternate {
            timestamp: c.first_seen,
            digests: c.digests.clone(),
        });
    }
    alternates.extend(
        state
            .alternates(&key, now, validity)
            .into_iter()
            .filter(|v| v.digests != digests)
            .map(|v| Alternate {
                timestamp: v.first_seen,
                digests: v.digests.clone(),
            }),
    );
    let mut listed: Vec<_> = mirrors
        .mirrors
        .iter()
        .filter(|m| m.enabled && !m.private)
        .filter(|m| {
            let Some(s) = state.mirrors.get(&m.name).and_then(|s| s.sites.get(site)) else {
                return false;
            };
            match s.freshness {
                Freshness::Current => true,
                // A crawled metadata file: listed when the mirror's copy of
                // it is the current one or one of the alternates listed.
                Freshness::Alternate => {
                    crawled
                        && s.files.get(path).is_some_and(|sha| {
                            *sha == digests.sha256
                                || alternates.iter().any(|a| a.digests.sha256 == *sha)
                        })
                }
                Freshness::Stale => false,
            }
        })
        .collect();
    listed.sort_by(|a, b| b.preference.cmp(&a.preference).then(a.name.cmp(&b.name)));
    let resources = listed
        .iter()
        .map(|m| {
            let url = join_url(&m.url, &key);
            Resource {
                protocol: url.split("://").next().unwrap_or("http").to_string(),
                url,
                location: m.location.clone().unwrap_or_default(),
                preference: m.preference,
            }
        })
        .collect();
    FileEntry {
        name: Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        timestamp,
        digests,
        alternates,
        resources,
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A file's modification time (0 when it cannot be read).
pub(super) fn mtime(p: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map(|m| m.mtime()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> FileEntry {
        FileEntry {
            name: "summary".into(),
            timestamp: 1450000000,
            digests: Digests::of_bytes(b"x"),
            alternates: vec![],
            resources: vec![Resource {
                url: "https://m1.example/a&b/summary".into(),
                protocol: "https".into(),
                location: "US".into(),
                preference: 100,
            }],
        }
    }

    #[test]
    fn v3_has_mirrormanagers_shape() {
        let t = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let x = write_v3(&entry(), t);
        assert!(x.contains("<metalink version=\"3.0\" xmlns=\"http://www.metalinker.org/\" type=\"dynamic\" pubdate=\""));
        assert!(x.contains("<file name=\"summary\">\n"));
        assert!(x.contains("<url protocol=\"https\" type=\"https\" location=\"US\" preference=\"100\">https://m1.example/a&amp;b/summary</url>"));
        assert!(x.find("<size>").unwrap() < x.find("<resources").unwrap());
        assert!(x.find("sha512").unwrap() < x.find("<resources").unwrap());
        assert!(!x.contains("private"));
    }

    #[test]
    fn v4_ranks_by_priority() {
        let t = chrono::DateTime::from_timestamp(0, 0).unwrap();
        let x = write_v4(&entry(), t);
        assert!(x.contains("<url location=\"us\" priority=\"1\">"));
        assert!(x.contains("<hash type=\"sha-256\">"));
    }
}
