//! Metalinks published with each generation: `streams/v1/<doc>.metalink`
//! beside every document of a stream, so the mount (and nginx serving it)
//! hands clients a metalink with no extra server.
//!
//! They are rendered when a commit writes a stream's documents, from the
//! mirror list and the last crawl ([`super::metalink::entry_from`]): the
//! new documents' hashes, the crawled copies still valid as alternates, and
//! the mirrors carrying one of them. A crawl that changes what a metalink
//! lists commits a generation that only re-renders them
//! ([`crate::store::Txn::refresh_metalinks`]). A store without an enabled
//! public mirror publishes none.

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::digests::Digests;
use super::metalink::{entry_from, mtime, write_v3};
use super::model::MirrorsFile;
use super::state::CrawlState;
use crate::error::{IoContext, Result};
use crate::store::{sync_dir, write_new};

/// The extension of a published metalink (Metalink 3.0, MirrorManager's
/// dialect, which ostree, dnf and aria2 read).
pub const SUFFIX: &str = ".metalink";

/// What metalinks are rendered from: the mirror list and the last crawl,
/// read once per commit for every stream it renders.
pub struct Listing {
    mirrors: MirrorsFile,
    state: CrawlState,
}

impl Listing {
    /// The store's listing, or `None` when no mirror could be listed (none
    /// configured, all disabled or private): no metalinks are published.
    pub fn load(store_root: &Path) -> Result<Option<Listing>> {
        let mirrors = MirrorsFile::load(store_root)?;
        if !mirrors.mirrors.iter().any(|m| m.enabled && !m.private) {
            return Ok(None);
        }
        Ok(Some(Listing {
            mirrors,
            state: CrawlState::load(store_root)?,
        }))
    }
}

/// Whether `name` in a `streams/v1` directory is a document a metalink is
/// made for (not a metalink itself, nor a writer's temporary file).
pub fn is_document(name: &str) -> bool {
    !name.starts_with('.') && !name.ends_with(SUFFIX) && !name.ends_with(".meta4")
}

/// The metalinks for the documents in `v1` (a stream's `streams/v1`), by
/// file name; none without a listing.
fn render(
    listing: Option<&Listing>,
    stream: &str,
    v1: &Path,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String)>> {
    let Some(listing) = listing else {
        return Ok(vec![]);
    };
    let mut docs: Vec<String> = fs::read_dir(v1)
        .at(v1)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_document(n))
        .collect();
    docs.sort();
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        let local = v1.join(&doc);
        let entry = entry_from(
            &listing.mirrors,
            &listing.state,
            stream,
            &format!("streams/v1/{doc}"),
            Digests::of_file(&local)?,
            mtime(&local),
            now.timestamp(),
        );
        out.push((format!("{doc}{SUFFIX}"), write_v3(&entry, now)));
    }
    Ok(out)
}

/// Renders the metalinks of the stream directory `v1` of a generation being
/// written, replacing those it holds (hard links to the previous
/// generation's, for a stream the commit did not change).
pub fn render_beside(
    listing: Option<&Listing>,
    stream: &str,
    v1: &Path,
    now: DateTime<Utc>,
) -> Result<()> {
    let fresh = render(listing, stream, v1, now)?;
    for e in fs::read_dir(v1).at(v1)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(SUFFIX) && !fresh.iter().any(|(n, _)| *n == name) {
            fs::remove_file(e.path()).at(e.path())?;
        }
    }
    for (name, text) in &fresh {
        let path = v1.join(name);
        // Never write through a hard link into a published generation.
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(&path),
            _ => {}
        }
        write_new(&path, text.as_bytes())?;
    }
    sync_dir(v1)
}

/// Whether the metalinks published in `v1` (a stream's `streams/v1` of the
/// current generation) differ from what `listing` makes of its documents
/// now, their publication dates aside.
pub fn stale(
    listing: Option<&Listing>,
    stream: &str,
    v1: &Path,
    now: DateTime<Utc>,
) -> Result<bool> {
    let fresh = render(listing, stream, v1, now)?;
    let mut published = 0;
    for e in fs::read_dir(v1).at(v1)?.flatten() {
        if e.file_name().to_string_lossy().ends_with(SUFFIX) {
            published += 1;
        }
    }
    if published != fresh.len() {
        return Ok(true);
    }
    for (name, text) in &fresh {
        let old = match fs::read_to_string(v1.join(name)) {
            Ok(t) => t,
            Err(_) => return Ok(true),
        };
        if without_pubdate(&old) != without_pubdate(text) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A Metalink 3.0 text without its `pubdate` attribute (the one part that
/// changes at every rendering).
fn without_pubdate(text: &str) -> String {
    match text.find(" pubdate=\"") {
        Some(i) => {
            let rest = &text[i + 10..];
            let end = rest.find('"').map_or(rest.len(), |j| j + 1);
            format!("{}{}", &text[..i], &rest[end..])
        }
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publication_date_is_not_a_difference() {
        let a = "<metalink version=\"3.0\" pubdate=\"Mon, 01 Jan 2024 00:00:00 GMT\" generator=\"streamfs\">";
        let b = "<metalink version=\"3.0\" pubdate=\"Tue, 02 Jan 2024 00:00:00 GMT\" generator=\"streamfs\">";
        assert_eq!(without_pubdate(a), without_pubdate(b));
        assert_ne!(
            without_pubdate(a),
            without_pubdate(&b.replace("streamfs", "other"))
        );
    }
}
