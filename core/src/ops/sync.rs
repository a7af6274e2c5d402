//! Sync: mirror an upstream simplestreams source into a stream, the way
//! `sstream-mirror` does, verified, parallel and resumable.
//!
//! 1. Read the source: its index (the signed `.sjson` when one exists,
//!    verified against the keyring) and the products file of the stream's
//!    content id (signed too when the index was).
//! 2. Plan: the versions whose items match the filters, the `max` newest of
//!    each product; those the stream lacks are added, those of products the
//!    source lists that it no longer selects are removed (unless `keep`).
//! 3. Download every distinct blob the pool lacks, `jobs` at once, through
//!    [`crate::fetch`] (verified as written, resumable from `tmp/partial/`).
//! 4. Commit: versions whose items are all in the pool are published in a
//!    commit under the writer lock as they complete (so a mount shows
//!    progress); a failed item leaves only its version out. An up-to-date
//!    stream makes no commit at all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::{PathContents, VersionRef, expanded, portable_version, put_version};
use crate::error::{Error, Result};
use crate::fetch::{Client, Expected, FetchOptions};
use crate::signing::Keyring;
use crate::store::{BlobRef, Store};
use crate::streams::Products;
use crate::streams::filter::ItemFilter;
use crate::streams::index::parse_index;
use crate::streams::query::{Verify, split_mirror_url, strip_clearsign};
use crate::timefmt;

/// No image comes near this; a larger declared size is refused before
/// anything is written (a hostile products file must not make us fill a disk).
pub const MAX_ITEM_SIZE: u64 = 1 << 40;

/// Options of a sync.
pub struct SyncOptions<'a> {
    pub dry_run: bool,
    /// Keep the N newest versions of each product (after filtering).
    pub max: Option<usize>,
    /// Never remove versions from the stream.
    pub keep: bool,
    pub verify: Verify<'a>,
    /// Parallel downloads.
    pub jobs: usize,
    /// The upstream content id to mirror (default: the stream's).
    pub content_id: Option<&'a str>,
    pub filters: &'a [ItemFilter],
    pub fetch: FetchOptions,
    /// Bytes free on the store's filesystem (for unprivileged users), as
    /// the caller measured it: the core has no libc, so the binary runs
    /// `statvfs`. A sync whose downloads need more is refused before the
    /// first byte is fetched. `None` skips the check.
    pub free_space: Option<u64>,
}

/// What a sync reports while it runs (from several threads).
#[derive(Debug)]
pub enum SyncEvent<'a> {
    /// Downloads are about to start: this many files and bytes.
    Planned { files: usize, bytes: u64 },
    /// A download started.
    Started { path: &'a str, size: u64 },
    /// Bytes written by some download.
    Bytes(u64),
    /// A download ended (successfully or not).
    Finished { path: &'a str },
    /// Versions were published.
    Committed { generation: u64, versions: usize },
}

/// A file to download.
#[derive(Clone, Debug)]
pub struct PlannedFile {
    pub path: String,
    pub size: u64,
    pub url: String,
}

/// Something that failed, and why.
#[derive(Clone, Debug)]
pub struct SyncFailure {
    /// product/version/item, or the URL.
    pub what: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct SyncReport {
    /// The products file read.
    pub source: String,
    pub added: Vec<VersionRef>,
    pub removed: Vec<VersionRef>,
    /// Files to download (all of them for a dry run).
    pub downloads: Vec<PlannedFile>,
    pub downloaded: usize,
    /// Bytes of the blobs downloaded, and bytes that crossed the network
    /// for them (less when partials were continued).
    pub bytes: u64,
    pub fetched: u64,
    /// Distinct blobs the selected versions need that the pool already held.
    pub in_pool: usize,
    pub failures: Vec<SyncFailure>,
    /// The generation after the sync (unchanged when up to date).
    pub generation: u64,
}

/// The upstream products document and where its items are.
pub struct Upstream {
    /// The products file read (path or URL).
    pub file: String,
    /// The mirror root its items' paths are relative to.
    pub root: String,
    pub products: Products,
}

impl Upstream {
    /// Where an item's `path` is fetched from.
    pub fn item_url(&self, path: &str) -> String {
        join(&self.root, path)
    }
}

/// Reads a local path or an http(s) URL; `None` when absent.
fn read_loc(client: &Client, loc: &str) -> Result<Option<Vec<u8>>> {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return Ok(client.get(loc)?);
    }
    if let Some(scheme) = loc.split_once("://").map(|(s, _)| s)
        && scheme != "file"
    {
        return Err(Error::Usage(format!(
            "{loc}: unsupported URL scheme '{scheme}' (use a path, http:// or https://)"
        )));
    }
    let path = loc.strip_prefix("file://").unwrap_or(loc);
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn join(root: &str, rel: &str) -> String {
    if root.is_empty() || root.ends_with('/') {
        format!("{root}{rel}")
    } else {
        format!("{root}/{rel}")
    }
}

/// Reads documents, preferring the signed `.sjson` beside a `.json`.
struct Reader<'a> {
    client: &'a Client,
    verify: Verify<'a>,
    keyring: Option<Keyring>,
}

impl Reader<'_> {
    /// Reads `rel` under `root` (a `.json` name tries its `.sjson` first; a
    /// default `.sjson` falls back to the `.json`). Returns the location
    /// read, whether it was signed, and the JSON text.
    fn read(&mut self, root: &str, rel: &str, explicit: bool) -> Result<(String, bool, String)> {
        let mut tries = Vec::new();
        if let Some(stem) = rel.strip_suffix(".json") {
            tries.push(format!("{stem}.sjson"));
            tries.push(rel.to_string());
        } else if let Some(stem) = rel.strip_suffix(".sjson") {
            tries.push(rel.to_string());
            if !explicit {
                tries.push(format!("{stem}.json"));
            }
        } else {
            tries.push(rel.to_string());
        }
        for t in &tries {
            let loc = join(root, t);
            let Some(bytes) = read_loc(self.client, &loc)? else {
                continue;
            };
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::invalid(&loc, "document", "not UTF-8"))?;
            if !t.ends_with(".sjson") {
                return Ok((loc, false, text));
            }
            let body = match self.verify {
                Verify::Off => strip_clearsign(&loc, &text)?,
                Verify::Keyring(k) => {
                    if self.keyring.is_none() {
                        self.keyring = Some(Keyring::load(k)?);
                    }
                    let kr = self.keyring.as_ref().expect("loaded");
                    kr.verify_cleartext(&text)
                        .map_err(|e| Error::Signature(format!("{loc}: {e}")))?
                }
            };
            return Ok((loc, true, body));
        }
        Err(Error::Missing(format!(
            "{}: not found",
            join(root, tries.last().expect("one try"))
        )))
    }
}

/// Reads an upstream source as `sync` does: a mirror root, an index
/// (`content_id` chooses its products file) or a products file, by path or
/// http(s) URL, the signed `.sjson` preferred and verified. Also what
/// `cloudimg-sync` reads its cloud images from.
pub fn load_upstream(
    client: &Client,
    source: &str,
    content_id: &str,
    verify: Verify<'_>,
) -> Result<Upstream> {
    let (root, first) = split_mirror_url(source);
    let explicit = first != "streams/v1/index.sjson" || source.ends_with("index.sjson");
    let mut reader = Reader {
        client,
        verify,
        keyring: None,
    };
    let (loc, signed, text) = reader.read(&root, &first, explicit)?;
    let doc = crate::json::parse_object(&loc, text.as_bytes())?;
    match doc.get("format").and_then(Value::as_str) {
        Some("index:1.0") => {
            let entries = parse_index(&loc, text.as_bytes())?;
            let Some(e) = entries.iter().find(|e| e.content_id == content_id) else {
                let ids: Vec<&str> = entries.iter().map(|e| e.content_id.as_str()).collect();
                return Err(Error::Missing(format!(
                    "{loc}: no content id '{content_id}' (it lists: {}); choose one with --content-id",
                    ids.join(", ")
                )));
            };
            let (ploc, psigned, ptext) = reader.read(&root, &e.path, false)?;
            if signed && !psigned && matches!(verify, Verify::Keyring(_)) {
                return Err(Error::Signature(format!(
                    "{ploc}: the index is signed but this products file is not (no .sjson); \
                     refusing unsigned items from a signed source (-U reads it unchecked)"
                )));
            }
            let products = Products::parse(&ploc, ptext.as_bytes())?;
            Ok(Upstream {
                file: ploc,
                root,
                products,
            })
        }
        Some("products:1.0") => Ok(Upstream {
            products: Products::from_map(&loc, doc)?,
            file: loc,
            root,
        }),
        other => Err(Error::invalid(
            &loc,
            "format",
            format!("expected \"index:1.0\" or \"products:1.0\", found {other:?}"),
        )),
    }
}

/// A version's name and its portable data.
type VersionData = (String, Map<String, Value>);
/// What a download thread reports: the blob and the bytes fetched, or why not.
type Outcome = std::result::Result<(BlobRef, u64), String>;

/// One distinct blob to fetch, and the items that need it.
struct Job {
    key: String,
    url: String,
    path: String,
    expected: Expected,
}

fn hex_field(item: &Map<String, Value>, k: &str) -> Option<String> {
    item.get(k)
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
}

/// Mirrors `source` into `stream`; see the module documentation.
pub fn sync(
    store: &Store,
    stream: &str,
    source: &str,
    opts: &SyncOptions<'_>,
    progress: &(dyn Fn(SyncEvent<'_>) + Sync),
) -> Result<SyncReport> {
    let cfg = store.config().stream(stream)?.clone();
    let client = Client::new(opts.fetch.clone())?;
    let content_id = opts.content_id.unwrap_or(&cfg.content_id);
    let up = load_upstream(&client, source, content_id, opts.verify)?;
    let mut report = SyncReport {
        source: up.file.clone(),
        ..SyncReport::default()
    };

    // 1. The selected versions: filters, then --max newest per product.
    let src = expanded(&up.products);
    let mut selected: BTreeMap<String, Vec<VersionData>> = BTreeMap::new();
    for (p, v) in up.products.version_keys() {
        if let Some(data) = portable_version(&src, &p, &v, opts.filters)? {
            selected.entry(p).or_default().push((v, data));
        }
    }
    for versions in selected.values_mut() {
        versions.sort_by(|a, b| b.0.cmp(&a.0));
        if let Some(n) = opts.max {
            versions.truncate(n);
        }
    }

    // 2. Adds and removes against the current generation.
    let snap = store.snapshot()?;
    report.generation = snap.generation;
    let st = &snap.streams[stream];
    let mut to_add: Vec<(VersionRef, Map<String, Value>)> = Vec::new();
    for (p, versions) in &selected {
        for (v, data) in versions {
            if !st.products.has_version(p, v) {
                let vr = VersionRef {
                    product: p.clone(),
                    version: v.clone(),
                };
                to_add.push((vr, data.clone()));
            }
        }
    }
    let mut to_remove = Vec::new();
    if !opts.keep {
        for p in st.products.product_names() {
            if up.products.product(&p).is_none() {
                continue;
            }
            let keep: BTreeSet<&str> = selected
                .get(&p)
                .into_iter()
                .flatten()
                .map(|(v, _)| v.as_str())
                .collect();
            for v in st.products.versions(&p).into_iter().flat_map(|m| m.keys()) {
                if !keep.contains(v.as_str()) {
                    to_remove.push(VersionRef {
                        product: p.clone(),
                        version: v.clone(),
                    });
                }
            }
        }
    }

    // 3. The distinct blobs to fetch; versions that cannot be fetched
    //    safely are left out with a failure naming why.
    let pool = store.pool();
    let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
    let mut needs: Vec<(VersionRef, Map<String, Value>, BTreeSet<String>)> = Vec::new();
    let mut in_pool = BTreeSet::new();
    'versions: for (vr, data) in to_add {
        let mut keys = BTreeSet::new();
        for (iname, item) in data["items"].as_object().into_iter().flatten() {
            let what = format!("product {} version {} item {iname}", vr.product, vr.version);
            let item = item.as_object().expect("checked by Products::parse");
            let fail = |reason: String| SyncFailure {
                what: what.clone(),
                reason,
            };
            let Some(path) = item.get("path").and_then(Value::as_str) else {
                report.failures.push(fail("no path".into()));
                continue 'versions;
            };
            let size = item.get("size").and_then(Value::as_u64);
            if let Some(s) = size
                && s > MAX_ITEM_SIZE
            {
                report.failures.push(fail(format!(
                    "{path}: size {s} bytes exceeds the {MAX_ITEM_SIZE}-byte limit; refused"
                )));
                continue 'versions;
            }
            let expected = Expected {
                size,
                sha256: hex_field(item, "sha256"),
                sha512: hex_field(item, "sha512"),
                md5: hex_field(item, "md5"),
            };
            let Some(key) = expected.key() else {
                report.failures.push(fail(format!(
                    "{path}: no sha256, sha512 or md5: cannot be verified"
                )));
                continue 'versions;
            };
            if expected.sha256.as_deref().is_some_and(|h| pool.contains(h)) {
                in_pool.insert(key);
                continue;
            }
            if let Some(j) = jobs.get(&key) {
                if j.expected.size != size {
                    report.failures.push(fail(format!(
                        "{path}: same checksum as {} but another size",
                        j.path
                    )));
                    continue 'versions;
                }
            } else {
                jobs.insert(
                    key.clone(),
                    Job {
                        key: key.clone(),
                        url: join(&up.root, path),
                        path: path.to_string(),
                        expected,
                    },
                );
            }
            keys.insert(key);
        }
        needs.push((vr, data, keys));
    }
    report.in_pool = in_pool.len();
    report.downloads = jobs
        .values()
        .map(|j| PlannedFile {
            path: j.path.clone(),
            size: j.expected.size.unwrap_or(0),
            url: j.url.clone(),
        })
        .collect();
    if let Some(free) = opts.free_space
        && !opts.dry_run
    {
        check_space(store, &jobs, free)?;
    }
    if opts.dry_run {
        report.added = needs.into_iter().map(|(v, _, _)| v).collect();
        report.removed = to_remove;
        return Ok(report);
    }

    // 4. Download in parallel; commit versions as they complete.
    progress(SyncEvent::Planned {
        files: jobs.len(),
        bytes: report.downloads.iter().map(|d| d.size).sum(),
    });
    let mut done: BTreeMap<String, String> =
        in_pool.iter().map(|k| (k.clone(), k.clone())).collect();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let urls: BTreeMap<String, String> = jobs
        .values()
        .map(|j| (j.key.clone(), j.url.clone()))
        .collect();
    let queue = Mutex::new(jobs.into_values().collect::<Vec<_>>());
    let (tx, rx) = mpsc::channel::<(String, Outcome)>();
    let mut pending = needs;
    let mut last_commit = Instant::now();
    let result: Result<()> = std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            let tx = tx.clone();
            let (queue, client) = (&queue, &client);
            s.spawn(move || {
                loop {
                    let Some(job) = queue.lock().expect("queue").pop() else {
                        break;
                    };
                    progress(SyncEvent::Started {
                        path: &job.path,
                        size: job.expected.size.unwrap_or(0),
                    });
                    let r = fetch_one(client, store, &job, progress);
                    progress(SyncEvent::Finished { path: &job.path });
                    if tx.send((job.key, r.map_err(|e| e.to_string()))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut open = true;
        while open || !pending.is_empty() {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok((key, Ok((blob, fetched)))) => {
                    report.downloaded += 1;
                    report.bytes += blob.size;
                    report.fetched += fetched;
                    done.insert(key, blob.sha256);
                }
                Ok((key, Err(reason))) => {
                    failed.insert(key, reason);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
            // Versions that can no longer complete.
            pending.retain(|(vr, _, keys)| {
                let bad: Vec<&String> = keys.iter().filter(|k| failed.contains_key(*k)).collect();
                for k in &bad {
                    report.failures.push(SyncFailure {
                        what: format!(
                            "product {} version {} ({})",
                            vr.product, vr.version, urls[*k]
                        ),
                        reason: failed[*k].clone(),
                    });
                }
                bad.is_empty()
            });
            let ready = pending
                .iter()
                .any(|(_, _, k)| k.iter().all(|k| done.contains_key(k)));
            let due = !open || last_commit.elapsed() >= Duration::from_secs(1);
            if ready && due {
                let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut pending)
                    .into_iter()
                    .partition(|(_, _, k)| k.iter().all(|k| done.contains_key(k)));
                pending = later;
                let batch = now
                    .into_iter()
                    .map(|(vr, data, _)| (vr, with_sha256(data, &done)))
                    .collect();
                commit(store, stream, batch, &[], &mut report, progress)?;
                last_commit = Instant::now();
            }
            if !open
                && !pending
                    .iter()
                    .any(|(_, _, k)| k.iter().all(|k| done.contains_key(k)))
            {
                // Nothing more can arrive: whatever is left waits for a key
                // that was neither downloaded nor failed (cannot happen).
                break;
            }
        }
        Ok(())
    });
    result?;
    if !to_remove.is_empty() {
        commit(store, stream, Vec::new(), &to_remove, &mut report, progress)?;
    }
    report.failures.sort_by(|a, b| a.what.cmp(&b.what));
    report.failures.dedup_by(|a, b| a.what == b.what);
    Ok(report)
}

/// Refuses a sync whose downloads cannot fit: the bytes still to fetch (a
/// partial already in `tmp/partial/` counts for what it holds) against
/// `free`. Blobs are renamed from there into the pool on the same
/// filesystem, so nothing needs room twice.
fn check_space(store: &Store, jobs: &BTreeMap<String, Job>, free: u64) -> Result<()> {
    let partials = store.pool().partial_dir();
    let need: u64 = jobs
        .values()
        .map(|j| {
            let have = std::fs::metadata(partials.join(&j.key)).map_or(0, |m| m.len());
            j.expected.size.unwrap_or(0).saturating_sub(have)
        })
        .sum();
    if need > free {
        return Err(Error::Refused(format!(
            "not enough space in {}: the downloads need {need} bytes ({} files), {free} bytes are free",
            store.root().display(),
            jobs.len()
        )));
    }
    Ok(())
}

/// Fills in the sha256 of items that only carried md5/sha512, from the
/// downloads (`done` maps each checksum key to the blob's sha256).
fn with_sha256(
    mut data: Map<String, Value>,
    done: &BTreeMap<String, String>,
) -> Map<String, Value> {
    if let Some(items) = data.get_mut("items").and_then(Value::as_object_mut) {
        for item in items.values_mut().filter_map(Value::as_object_mut) {
            if item.contains_key("sha256") {
                continue;
            }
            let e = Expected {
                size: None,
                sha256: None,
                sha512: hex_field(item, "sha512"),
                md5: hex_field(item, "md5"),
            };
            if let Some(sha) = e.key().and_then(|k| done.get(&k)) {
                item.insert("sha256".into(), sha.clone().into());
            }
        }
    }
    data
}

/// Downloads one blob (or copies it from a local source) and puts it into
/// the pool. Returns the blob and the bytes that crossed the network.
fn fetch_one(
    client: &Client,
    store: &Store,
    job: &Job,
    progress: &(dyn Fn(SyncEvent<'_>) + Sync),
) -> Result<(BlobRef, u64)> {
    let pool = store.pool();
    let what = format!("{} ({})", job.path, job.url);
    if !(job.url.starts_with("http://") || job.url.starts_with("https://")) {
        let local = job.url.strip_prefix("file://").unwrap_or(&job.url);
        let staged = pool.stage_file(Path::new(local), &mut |_| {})?;
        staged.verify(&what, job.expected.size, job.expected.sha256.as_deref())?;
        if job.expected.sha256.is_none() {
            return Err(Error::Refused(format!("{what}: local items need a sha256")));
        }
        progress(SyncEvent::Bytes(staged.blob.size));
        return Ok((pool.admit(staged)?, 0));
    }
    let partials = pool.partial_dir();
    let mut claim = None;
    // A partial another sync deleted (its data was bad) is claimed afresh.
    for _ in 0..3 {
        claim = claim_partial(&partials, &job.key)?;
        if claim.is_some() {
            break;
        }
        // Another sync of this store downloaded it meanwhile.
        if let Some(sha) = &job.expected.sha256
            && pool.contains(sha)
        {
            let size = std::fs::metadata(pool.path(sha))
                .map_err(|e| Error::io(pool.path(sha), e))?
                .len();
            return Ok((
                BlobRef {
                    sha256: sha.clone(),
                    size,
                },
                0,
            ));
        }
    }
    let Some(_claim) = claim else {
        return Err(Error::Refused(format!(
            "{what}: other syncs of this store keep taking its partial download; run again"
        )));
    };
    let d = client
        .download(&job.url, &job.expected, &partials, &|n| {
            progress(SyncEvent::Bytes(n))
        })
        .map_err(Error::from)?;
    let blob = BlobRef {
        sha256: d.sha256,
        size: d.size,
    };
    Ok((pool.admit_verified(&d.path, &blob)?, d.fetched))
}

/// Claims `partials/<key>` for this download: an exclusive lock on the
/// partial file, held until the claim is dropped (after the blob went into
/// the pool). Two syncs of one store (downloads run outside the writer
/// lock) could otherwise append to the same partial. `None` when the file
/// this call locked is no longer the partial (the claim's previous holder
/// moved it into the pool): the blob is then the pool's, or gone.
fn claim_partial(partials: &Path, key: &str) -> Result<Option<std::fs::File>> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(partials).map_err(|e| Error::io(partials, e))?;
    let path = partials.join(key);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    file.lock().map_err(|e| Error::io(&path, e))?;
    let locked = file.metadata().map_err(|e| Error::io(&path, e))?;
    let same = std::fs::metadata(&path)
        .is_ok_and(|now| (now.dev(), now.ino()) == (locked.dev(), locked.ino()));
    Ok(same.then_some(file))
}

/// Publishes `batch` and removes `remove` in one commit under the writer
/// lock. A version another writer added meanwhile is left as it is; one
/// whose paths clash with the stream's is reported and left out.
fn commit(
    store: &Store,
    stream: &str,
    batch: Vec<(VersionRef, Map<String, Value>)>,
    remove: &[VersionRef],
    report: &mut SyncReport,
    progress: &(dyn Fn(SyncEvent<'_>) + Sync),
) -> Result<()> {
    let mut txn = store.begin()?;
    let now = timefmt::now().timestamp();
    let mut added = Vec::new();
    let mut paths = PathContents::of(txn.stream(stream)?);
    for (vr, data) in batch {
        if txn
            .stream(stream)?
            .products
            .has_version(&vr.product, &vr.version)
        {
            continue;
        }
        if let Err(e) = paths.admit(stream, &vr, &data) {
            report.failures.push(SyncFailure {
                what: format!("product {} version {}", vr.product, vr.version),
                reason: e.to_string(),
            });
            continue;
        }
        let shas: Vec<String> = data["items"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, i)| i.get("sha256").and_then(Value::as_str).map(String::from))
            .collect();
        for s in &shas {
            txn.note_arrived(s);
        }
        let st = txn.stream_mut(stream)?;
        for p in super::item_paths(&data) {
            st.mtimes.entry(p.to_string()).or_insert(now);
        }
        put_version(&mut st.products, &vr.product, &vr.version, data);
        added.push(vr);
    }
    let mut removed = Vec::new();
    for vr in remove {
        if super::remove::remove_version(&mut txn, stream, vr)? {
            removed.push(vr.clone());
        }
    }
    if added.is_empty() && removed.is_empty() {
        return Ok(());
    }
    let c = txn.commit()?;
    report.generation = c.generation;
    progress(SyncEvent::Committed {
        generation: c.generation,
        versions: added.len() + removed.len(),
    });
    report.added.extend(added);
    report.removed.extend(removed);
    Ok(())
}
