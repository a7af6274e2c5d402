//! fsck: verify every blob's hash and every reference; with `repair`, fix
//! what can be fixed without losing data (stale staging files, unrecorded
//! orphans, corrupt blobs moved aside so they are never served).

use std::fs;

use crate::error::{IoContext, Result};
use crate::store::publish::published_products;
use crate::store::{Orphans, Pool, Store, referenced};
use crate::streams::Products;
use crate::streams::flatten::flatten;

#[derive(Debug, Default)]
pub struct FsckReport {
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    pub items_checked: usize,
    /// Problems found, each a sentence naming what is wrong.
    pub problems: Vec<String>,
    /// Facts worth knowing that are not damage (unreferenced blobs left by
    /// an interrupted insert, waiting for find-orphans and reaping).
    pub notes: Vec<String>,
    /// What `repair` did.
    pub repaired: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn fsck(store: &Store, repair: bool) -> Result<FsckReport> {
    let _txn = store.begin()?;
    let mut r = FsckReport::default();
    let snap = store.snapshot()?;
    let pool = store.pool();

    // Blobs: named by their hash.
    let blobs = pool.list()?;
    // Blobs moved to quarantine/ by this run: no longer in the pool.
    let mut quarantined = std::collections::BTreeSet::new();
    for sha in &blobs {
        let path = pool.path(sha);
        r.blobs_checked += 1;
        r.bytes_checked += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if !crate::store::pool::valid_sha(sha) {
            r.problems
                .push(format!("{}: not a sha256 name", path.display()));
            continue;
        }
        if let Some(actual) = pool.verify(sha)? {
            r.problems.push(format!(
                "{}: corrupt blob: content hashes to {actual}",
                path.display()
            ));
            if repair {
                let q = store.root().join("quarantine");
                fs::create_dir_all(&q).at(&q)?;
                fs::rename(&path, q.join(sha)).at(&path)?;
                quarantined.insert(sha.clone());
                r.repaired
                    .push(format!("moved corrupt blob {sha} to quarantine/"));
            }
        }
    }

    // References: every published item has its blob, with the right size;
    // the served files are what the state says.
    for s in &store.config().streams {
        let st = &snap.streams[&s.name];
        let v1 = snap.streams_v1(&s.name);
        let pfile = v1.join(format!("{}.json", s.content_id));
        let bytes = fs::read(&pfile).at(&pfile);
        let served = match bytes.and_then(|b| Products::parse(&pfile.display().to_string(), &b)) {
            Ok(p) => p,
            Err(e) => {
                r.problems.push(format!("stream {}: {e}", s.name));
                continue;
            }
        };
        let updated = served
            .doc()
            .get("updated")
            .and_then(|u| u.as_str())
            .unwrap_or("")
            .to_string();
        let mut expect = published_products(s, st, pool, &updated);
        // Versions whose last blob entered the pool after the last commit
        // (a writer that died between the two) are complete but not served
        // yet: not damage; the stream's next commit publishes them.
        let waiting: Vec<(String, String)> = expect
            .version_keys()
            .into_iter()
            .filter(|(p, v)| !served.has_version(p, v))
            .collect();
        for (p, v) in &waiting {
            expect.remove_version(p, v);
        }
        if flatten(&expect) != flatten(&served) {
            r.problems.push(format!(
                "stream {}: {} does not match the stream's state",
                s.name,
                pfile.display()
            ));
        } else if !waiting.is_empty() {
            r.notes.push(format!(
                "stream {}: {} complete version(s) not published yet (the stream's next commit publishes them)",
                s.name,
                waiting.len()
            ));
        }
        for item in served.items() {
            r.items_checked += 1;
            let (Some(path), Some(sha)) = (item.path(), item.sha256()) else {
                continue;
            };
            let blob = pool.path(sha);
            match fs::metadata(&blob) {
                Err(_) => r.problems.push(format!(
                    "stream {}: {}: published item {path} has no blob {}",
                    s.name,
                    item.what(),
                    Pool::rel_path(sha)
                )),
                Ok(m) if item.size().is_some_and(|sz| sz != m.len()) => r.problems.push(format!(
                    "stream {}: {}: size {} in metadata but blob has {}",
                    s.name,
                    item.what(),
                    item.size().unwrap_or(0),
                    m.len()
                )),
                Ok(_) => {}
            }
        }
        let index = v1.join("index.json");
        if let Err(e) = fs::read(&index)
            .at(&index)
            .and_then(|b| crate::streams::index::parse_index(&index.display().to_string(), &b))
        {
            r.problems.push(format!("stream {}: {e}", s.name));
        }
    }

    // Orphans: every unreferenced blob is recorded, so it will be reaped.
    let refs = referenced(&snap.streams);
    let mut orphans = Orphans::load(&store.orphans_path())?;
    let mut missing = Vec::new();
    for sha in blobs.into_iter().filter(|b| !quarantined.contains(b)) {
        if !refs.contains(&sha) && !orphans.entries.contains_key(&Pool::rel_path(&sha)) {
            missing.push(sha);
        }
    }
    if !missing.is_empty() {
        if repair {
            let stamp = crate::timefmt::rfc2822(crate::timefmt::now());
            for sha in &missing {
                orphans.entries.insert(Pool::rel_path(sha), stamp.clone());
            }
            orphans.save(&store.orphans_path())?;
            r.repaired.push(format!(
                "recorded {} unreferenced blob(s) in orphans.json",
                missing.len()
            ));
        } else {
            // Not damage (an interrupted insert leaves these), but reaping
            // frees them only once recorded.
            r.notes.push(format!(
                "{} unreferenced blob(s) not recorded in orphans.json (run find-orphans or fsck --repair)",
                missing.len()
            ));
        }
    }

    // Staging leftovers of dead writers.
    let n = pool.clean_stale_staging()?;
    if n > 0 {
        r.repaired.push(format!(
            "removed {n} staging file(s) left by interrupted writers"
        ));
    }
    Ok(r)
}
