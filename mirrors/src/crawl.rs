//! The crawl: which mirrors carry the store's current copy of each stream
//! (and of each served tree), and which an earlier one still valid.
//!
//! Small files (`streams/v1/*`, an ostree `summary`) are downloaded whole
//! and compared by sha256 with the versions the crawl state remembers;
//! items are compared by size (HEAD, or one `rsync --list-only` listing
//! for a mirror with an rsync URL). Mirrors are crawled in parallel, each
//! with its own client and timeout, so a slow or dead host costs only its
//! own worker and marks only itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use streamfs_core::store::Store;

use crate::error::{Error, Result};
use crate::hashes::Digests;
use crate::model::{Mirror, MirrorsFile, join_url};
use crate::state::{CrawlState, Freshness, MirrorStatus, SiteStatus};

/// How many items of a stream the crawl checks on each mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Items {
    All,
    /// The first, middle and last item by path.
    Sample,
    None,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub jobs: usize,
    pub timeout: Duration,
    pub items: Items,
    /// Mirrors to crawl; empty means every enabled one.
    pub names: Vec<String>,
}

/// A stream or tree as the crawl checks it: its small files (name under
/// the site, local copy) and its items (path, size).
#[derive(Clone, Debug)]
pub struct Site {
    pub name: String,
    pub files: Vec<(String, PathBuf)>,
    pub items: Vec<(String, u64)>,
    pub generation: Option<u64>,
}

/// What one mirror's crawl found.
#[derive(Clone, Debug)]
pub struct MirrorOutcome {
    pub name: String,
    pub result: std::result::Result<BTreeMap<String, SiteStatus>, String>,
    pub requests: u64,
}

/// The sites of the store: every stream at the current generation, every
/// tree of `mirrors.toml`.
pub fn sites(store: &Store, mirrors: &MirrorsFile) -> Result<Vec<Site>> {
    let snap = store.snapshot()?;
    let mut out = Vec::new();
    for (name, st) in &snap.streams {
        let v1 = snap.streams_v1(name);
        let mut files = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&v1) {
            for e in rd.flatten() {
                let f = e.file_name().to_string_lossy().into_owned();
                if !streamfs_core::mirrors::publish::is_document(&f) {
                    continue;
                }
                files.push((format!("streams/v1/{f}"), e.path()));
            }
        }
        files.sort();
        let pool = store.pool();
        let mut items: Vec<(String, u64)> = st
            .products
            .items()
            .filter(|i| i.sha256().is_some_and(|h| pool.contains(h)))
            .filter_map(|i| Some((i.path()?.to_string(), i.size()?)))
            .collect();
        items.sort();
        items.dedup();
        out.push(Site {
            name: name.clone(),
            files,
            items,
            generation: Some(snap.generation),
        });
    }
    for t in &mirrors.trees {
        out.push(Site {
            name: t.name.clone(),
            files: t.files.iter().map(|f| (f.clone(), t.dir.join(f))).collect(),
            items: vec![],
            generation: None,
        });
    }
    Ok(out)
}

/// Crawls the mirrors and records the outcome: the crawl itself runs
/// without the writer lock (it may take minutes); the results are merged
/// into a freshly read `mirrors.toml` and crawl state under the lock.
pub fn crawl(store: &Store, opts: &Options) -> Result<Vec<MirrorOutcome>> {
    let root = store.root();
    let mirrors = MirrorsFile::load(root)?;
    for n in &opts.names {
        if !mirrors.mirrors.iter().any(|m| &m.name == n) {
            return Err(Error::Usage(format!("no mirror named '{n}'")));
        }
    }
    let sites = sites(store, &mirrors)?;
    let now = streamfs_core::timefmt::now().timestamp();
    let mut state = CrawlState::load(root)?;
    let mut local = Vec::new();
    for s in &sites {
        for (f, path) in &s.files {
            let d = Digests::of_file(path)?;
            local.push((format!("{}/{f}", s.name), d, s.generation));
        }
    }
    for (k, d, g) in &local {
        state.record_current(k, d, now, *g);
    }
    let validity = mirrors.alternate_validity_secs();
    let todo: Vec<&Mirror> = mirrors
        .mirrors
        .iter()
        .filter(|m| {
            if opts.names.is_empty() {
                m.enabled
            } else {
                opts.names.contains(&m.name)
            }
        })
        .collect();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.clamp(1, 256).min(todo.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(m) = todo.get(i) else { break };
                    let out = crawl_mirror(m, &sites, &state, now, validity, opts);
                    tracing::info!(mirror = %m.name, ok = out.result.is_ok(), "crawled");
                    results.lock().expect("no panics hold it").push(out);
                }
            });
        }
    });
    let mut results = results.into_inner().expect("no panics hold it");
    results.sort_by(|a, b| a.name.cmp(&b.name));

    // Under the writer lock: the state, the list, then the metalinks the
    // mount publishes, re-rendered in a commit of their own when they list
    // something new.
    let mut txn = store.begin()?;
    let mut mirrors = MirrorsFile::load(root)?;
    let mut fresh = CrawlState::load(root)?;
    for (k, d, g) in &local {
        fresh.record_current(k, d, now, *g);
    }
    for r in &results {
        let st = fresh.mirrors.entry(r.name.clone()).or_default();
        apply(st, r, now);
        if let Err(e) = &r.result
            && st.consecutive_failures >= mirrors.crawl.max_failures
            && let Ok(m) = mirrors.mirror_mut(&r.name)
            && m.enabled
        {
            m.enabled = false;
            m.disabled_by_crawl = Some(format!(
                "{} crawls failed in a row (last: {e})",
                st.consecutive_failures
            ));
            tracing::warn!(mirror = %r.name, "disabled after {} failed crawls", st.consecutive_failures);
        }
    }
    fresh
        .mirrors
        .retain(|n, _| mirrors.mirrors.iter().any(|m| &m.name == n));
    fresh.save(root)?;
    mirrors.save(root)?;
    txn.refresh_metalinks();
    txn.commit()?;
    Ok(results)
}

fn apply(st: &mut MirrorStatus, r: &MirrorOutcome, now: i64) {
    st.last_crawl = Some(now);
    st.requests = r.requests;
    match &r.result {
        Ok(sites) => {
            st.last_success = Some(now);
            st.consecutive_failures = 0;
            st.last_error = None;
            st.sites = sites.clone();
        }
        Err(e) => {
            st.consecutive_failures += 1;
            st.last_error = Some(e.clone());
        }
    }
}

/// One mirror: every site's small files, then its items. A transport error
/// or a server error (5xx) fails the whole mirror (it is down, not stale).
pub fn crawl_mirror(
    m: &Mirror,
    sites: &[Site],
    state: &CrawlState,
    now: i64,
    validity: i64,
    opts: &Options,
) -> MirrorOutcome {
    let mut requests = 0u64;
    let result = (|| {
        let client = reqwest::blocking::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .user_agent(concat!("streamfs-mirrors/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let mut out = BTreeMap::new();
        for s in sites {
            let mut status = SiteStatus {
                freshness: Freshness::Current,
                generation: s.generation,
                detail: None,
                files: BTreeMap::new(),
            };
            let worse = |st: &mut SiteStatus, f: Freshness, why: String, g: Option<u64>| {
                if f > st.freshness {
                    st.freshness = f;
                    st.detail = Some(why);
                }
                if f == Freshness::Alternate {
                    st.generation = match (st.generation, g) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        _ => None,
                    };
                }
            };
            for (f, _) in &s.files {
                let key = format!("{}/{f}", s.name);
                let url = join_url(&m.url, &key);
                requests += 1;
                let resp = client.get(&url).send().map_err(|e| format!("{url}: {e}"))?;
                let code = resp.status();
                if code.is_server_error() {
                    return Err(format!("{url}: HTTP {code}"));
                }
                if !code.is_success() {
                    worse(
                        &mut status,
                        Freshness::Stale,
                        format!("{f}: HTTP {code}"),
                        None,
                    );
                    continue;
                }
                let body = resp.bytes().map_err(|e| format!("{url}: {e}"))?;
                let sha = hex::encode(Sha256::digest(&body));
                status.files.insert(f.clone(), sha.clone());
                if state.current(&key).is_some_and(|c| c.digests.sha256 == sha) {
                    continue;
                }
                match state
                    .alternates(&key, now, validity)
                    .into_iter()
                    .find(|v| v.digests.sha256 == sha)
                {
                    Some(v) => worse(
                        &mut status,
                        Freshness::Alternate,
                        format!("{f}: an earlier version"),
                        v.generation,
                    ),
                    None => worse(
                        &mut status,
                        Freshness::Stale,
                        format!("{f}: neither the current nor a valid earlier version"),
                        None,
                    ),
                }
            }
            // Items are those of the current generation: a mirror whose
            // metadata is an alternate carries an earlier generation's
            // items, which the crawl does not know, so only a current copy
            // has its items checked.
            if status.freshness == Freshness::Current
                && opts.items != Items::None
                && let Some(why) = check_items(m, s, &client, opts, &mut requests)?
            {
                worse(&mut status, Freshness::Stale, why, None);
            }
            out.insert(s.name.clone(), status);
        }
        Ok(out)
    })();
    MirrorOutcome {
        name: m.name.clone(),
        result,
        requests,
    }
}

fn pick(items: &[(String, u64)], how: Items) -> Vec<&(String, u64)> {
    match how {
        Items::None => vec![],
        Items::All => items.iter().collect(),
        Items::Sample => {
            let mut idx = vec![0, items.len() / 2, items.len().saturating_sub(1)];
            idx.dedup();
            idx.iter().filter_map(|&i| items.get(i)).collect()
        }
    }
}

/// The first item whose size differs on the mirror, or `None`.
fn check_items(
    m: &Mirror,
    s: &Site,
    client: &reqwest::blocking::Client,
    opts: &Options,
    requests: &mut u64,
) -> std::result::Result<Option<String>, String> {
    let chosen = pick(&s.items, opts.items);
    if chosen.is_empty() {
        return Ok(None);
    }
    if let Some(rsync) = &m.rsync {
        *requests += 1;
        let listing = rsync_sizes(&join_url(rsync, &s.name), opts.timeout)?;
        for (p, size) in chosen {
            match listing.get(p.as_str()) {
                Some(got) if got == size => {}
                Some(got) => return Ok(Some(format!("{p}: {got} bytes, expected {size}"))),
                None => return Ok(Some(format!("{p}: missing"))),
            }
        }
        return Ok(None);
    }
    for (p, size) in chosen {
        let url = join_url(&m.url, &format!("{}/{p}", s.name));
        *requests += 1;
        let resp = client
            .head(&url)
            .send()
            .map_err(|e| format!("{url}: {e}"))?;
        if resp.status().is_server_error() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        if !resp.status().is_success() {
            return Ok(Some(format!("{p}: HTTP {}", resp.status())));
        }
        let got = resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if got != Some(*size) {
            return Ok(Some(format!(
                "{p}: {} bytes, expected {size}",
                got.map_or("unknown".into(), |g| g.to_string())
            )));
        }
    }
    Ok(None)
}

/// `rsync --list-only -r URL/`: regular files and their sizes, by path
/// under URL.
fn rsync_sizes(url: &str, timeout: Duration) -> std::result::Result<BTreeMap<String, u64>, String> {
    let out = Command::new("rsync")
        .arg("--list-only")
        .arg("-r")
        .arg(format!("--timeout={}", timeout.as_secs().max(1)))
        .arg(format!("--contimeout={}", timeout.as_secs().max(1)))
        .arg(format!("{}/", url.trim_end_matches('/')))
        .output()
        .map_err(|e| format!("rsync: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rsync --list-only {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(parse_rsync_listing(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `-rw-r--r--      1,234 2026/12/03 09:00:00 dir/name` lines.
pub fn parse_rsync_listing(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if !line.starts_with('-') {
            continue;
        }
        let rest: Vec<&str> = line.split_whitespace().collect();
        if rest.len() < 5 {
            continue;
        }
        let Ok(size) = rest[1].replace([',', '.'], "").parse::<u64>() else {
            continue;
        };
        // The name is everything after the time, spaces included.
        let time = rest[3];
        if let Some(pos) = line.find(time) {
            let name = line[pos + time.len()..].trim_start();
            out.insert(name.to_string(), size);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsync_listings_give_sizes_by_path() {
        let l = "drwxr-xr-x          4,096 2026/12/03 09:00:00 .\n\
                 -r--r--r--      1,234,567 2026/12/03 09:00:00 noble/amd64/1/squashfs\n\
                 -r--r--r--             12 2026/12/03 09:00:00 a b\n";
        let m = parse_rsync_listing(l);
        assert_eq!(m.get("noble/amd64/1/squashfs"), Some(&1_234_567));
        assert_eq!(m.get("a b"), Some(&12));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_sample_is_first_middle_last() {
        let items: Vec<(String, u64)> = (0..10).map(|i| (format!("p{i}"), i)).collect();
        let s: Vec<u64> = pick(&items, Items::Sample).iter().map(|x| x.1).collect();
        assert_eq!(s, vec![0, 5, 9]);
        assert_eq!(pick(&items[..1], Items::Sample).len(), 1);
    }
}
