//! The store on disk, the source of truth (ARCHITECTURE.md §2):
//!
//! ```text
//! STORE/
//!   store.toml              streams, layouts, signing key, retention, grace
//!   pool/sha256/ab/abc…     blobs, immutable, read-only
//!   meta/current            symlink to the current generation: gen/<N>
//!   meta/gen/<N>/<stream>/  state.json (working products, removed paths,
//!                           insert times) and streams/v1/ (the generated,
//!                           signed metadata served to clients)
//!   orphans.json            unreferenced blobs and when they were orphaned
//!   tmp/                    staging for data being written
//!   lock                    the writer lock
//! ```
//!
//! A commit writes a whole new generation directory (unchanged streams are
//! hard-linked from the previous one), fsyncs it, then swaps `meta/current`
//! with one atomic rename. A crash leaves the previous or the next
//! generation, never a mix; blobs are in the pool before any generation
//! names them.

mod append;
pub mod config;
mod direct;
mod fsutil;
pub mod layout;
pub mod lock;
pub mod orphans;
pub mod pool;
pub mod publish;
pub mod state;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

pub use config::{Config, StreamConfig};
pub use fsutil::{sync_dir, write_atomic, write_new};
pub use lock::StoreLock;
pub use orphans::Orphans;
pub use pool::{BlobRef, Pool};
pub use state::{Removed, StreamState};

use crate::error::{Error, IoContext, Result};
use crate::signing::SigningKey;
use crate::timefmt;

/// An opened store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    config: Config,
    pool: Pool,
}

/// The state of every stream at one generation.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub generation: u64,
    /// `meta/gen/<N>`.
    pub dir: PathBuf,
    pub streams: BTreeMap<String, StreamState>,
}

impl Snapshot {
    /// The generated `streams/v1` directory of a stream at this generation.
    pub fn streams_v1(&self, stream: &str) -> PathBuf {
        self.dir.join(stream).join("streams").join("v1")
    }
}

impl Store {
    /// Creates a store at `root` with `config_text` (the default
    /// configuration when `None`). Refuses to overwrite an existing store.
    pub fn init(root: &Path, config_text: Option<&str>) -> Result<Store> {
        let text = config_text.unwrap_or(config::DEFAULT_CONFIG);
        let cfg_path = root.join("store.toml");
        Config::parse(&cfg_path.display().to_string(), text)?;
        if cfg_path.exists() {
            return Err(Error::Refused(format!(
                "{}: a store already exists here",
                cfg_path.display()
            )));
        }
        for d in ["pool/sha256", "meta/gen", "tmp"] {
            fs::create_dir_all(root.join(d)).at(root.join(d))?;
        }
        write_atomic(&cfg_path, text.as_bytes())?;
        let store = Store::open(root)?;
        if !store.root.join("meta/current").exists() {
            let txn = store.begin()?;
            txn.commit_all()?;
        }
        Ok(store)
    }

    /// Opens an existing store.
    pub fn open(root: &Path) -> Result<Store> {
        let cfg_path = root.join("store.toml");
        if !cfg_path.exists() {
            return Err(Error::NoStore(root.to_path_buf()));
        }
        let config = Config::load(&cfg_path)?;
        Ok(Store {
            root: root.to_path_buf(),
            config,
            pool: Pool::new(root),
        })
    }

    /// Opens the store at `root`, creating it with the default configuration
    /// when `root` holds none (what `streamfs STORE MNT` does).
    pub fn open_or_init(root: &Path) -> Result<Store> {
        if root.join("store.toml").exists() {
            Store::open(root)
        } else {
            fs::create_dir_all(root).at(root)?;
            Store::init(root, None)
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether the store's filesystem refuses writes (mounted read-only).
    /// Probed as any writer would find out: by creating, then removing, a
    /// file in `tmp/`. Any other failure (no permission, a full disk) is not
    /// an answer to this question and says "writable": the write itself
    /// will report it.
    pub fn on_read_only_fs(&self) -> bool {
        let tmp = self.root.join("tmp");
        let probe = tmp.join(format!(".rw-probe.{}", std::process::id()));
        let created = fs::create_dir_all(&tmp).and_then(|()| {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .map(drop)
        });
        match created {
            Ok(()) => {
                let _ = fs::remove_file(&probe);
                false
            }
            Err(e) => e.kind() == std::io::ErrorKind::ReadOnlyFilesystem,
        }
    }

    pub fn meta_dir(&self) -> PathBuf {
        self.root.join("meta")
    }

    pub fn orphans_path(&self) -> PathBuf {
        self.root.join("orphans.json")
    }

    /// The signing key named by `store.toml`, if any.
    pub fn signing_key(&self) -> Result<Option<SigningKey>> {
        match &self.config.signing_key {
            None => Ok(None),
            Some(rel) => {
                let p = self.root.join(rel);
                if !p.exists() {
                    return Err(Error::Config {
                        file: self.root.join("store.toml").display().to_string(),
                        reason: format!("[signing] key '{}' does not exist", p.display()),
                    });
                }
                SigningKey::load(&p).map(Some)
            }
        }
    }

    /// The current generation number, read from `meta/current`.
    pub fn current_generation(&self) -> Result<u64> {
        self.current_generation_dir().map(|(g, _)| g)
    }

    /// The current generation's number and directory, without reading any
    /// stream's state (for a reader that needs one published file).
    pub fn current_generation_dir(&self) -> Result<(u64, PathBuf)> {
        let link = self.meta_dir().join("current");
        let target = fs::read_link(&link).at(&link)?;
        let generation = parse_gen(&target).ok_or_else(|| {
            Error::invalid(
                link.display().to_string(),
                "current",
                "not a generation link",
            )
        })?;
        Ok((generation, self.meta_dir().join(&target)))
    }

    /// Reads the current generation (no lock: generations are immutable).
    pub fn snapshot(&self) -> Result<Snapshot> {
        let (generation, dir) = self.current_generation_dir()?;
        let mut streams = BTreeMap::new();
        for s in &self.config.streams {
            let p = dir.join(&s.name).join("state.json");
            let state = match fs::read(&p) {
                Ok(b) => StreamState::parse(&p.display().to_string(), &b)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    StreamState::new(&s.content_id, &s.datatype)
                }
                Err(e) => return Err(Error::io(p, e)),
            };
            streams.insert(s.name.clone(), state);
        }
        Ok(Snapshot {
            generation,
            dir,
            streams,
        })
    }

    /// Starts a write transaction: takes the writer lock (waiting for it),
    /// clears what dead writers left in `tmp/`, and loads the current state.
    pub fn begin(&self) -> Result<Txn<'_>> {
        self.begin_from(None)
    }

    /// [`Store::begin`] for a writer that holds the state of a generation
    /// already (the mount holds its view's): when that generation is still
    /// the current one under the lock, the transaction starts from a copy
    /// of it instead of reading and parsing every stream's state again.
    pub fn begin_from(&self, known: Option<&Snapshot>) -> Result<Txn<'_>> {
        let lock = StoreLock::acquire(&self.root.join("lock"))?;
        self.pool.clean_stale_staging()?;
        // The transaction takes the snapshot's states as its working copy
        // (nothing reads them from the base again): no second copy of every
        // stream is made.
        let (base, streams) = if self.meta_dir().join("current").exists() {
            let mut snap = match known {
                Some(k) if self.current_generation()? == k.generation => k.clone(),
                _ => self.snapshot()?,
            };
            let streams = std::mem::take(&mut snap.streams);
            (Some(snap), streams)
        } else {
            let streams = self
                .config
                .streams
                .iter()
                .map(|s| (s.name.clone(), StreamState::new(&s.content_id, &s.datatype)))
                .collect();
            (None, streams)
        };
        Ok(Txn {
            store: self,
            _lock: lock,
            base,
            streams,
            changed: BTreeSet::new(),
            unreferenced: BTreeSet::new(),
            arrived: BTreeSet::new(),
            refresh_metalinks: false,
        })
    }
}

/// The mirror list and crawl that metalinks are rendered from: `Some(None)`
/// when no mirror can be listed, `None` when they cannot be read. Metalinks
/// describe the documents; they never stop a commit of them, so a damaged
/// file is logged and the metalinks are left as they are.
fn metalink_listing(root: &Path) -> Option<Option<crate::mirrors::publish::Listing>> {
    crate::mirrors::publish::Listing::load(root)
        .map_err(|e| tracing::warn!("metalinks not published: {e}"))
        .ok()
}

fn parse_gen(target: &Path) -> Option<u64> {
    target.file_name()?.to_str()?.parse().ok()
}

fn gen_name(n: u64) -> String {
    format!("{n:020}")
}

/// A write transaction: the working copy of every stream, committed as one
/// new generation.
pub struct Txn<'s> {
    store: &'s Store,
    _lock: StoreLock,
    base: Option<Snapshot>,
    streams: BTreeMap<String, StreamState>,
    changed: BTreeSet<String>,
    /// Blobs some edit stopped referencing: orphan candidates at commit.
    unreferenced: BTreeSet<String>,
    /// Blobs put into the pool by this transaction.
    arrived: BTreeSet<String>,
    /// Re-render every stream's metalinks (the mirror list or the crawl
    /// changed), even when no stream changed.
    refresh_metalinks: bool,
}

/// What a commit did.
#[derive(Debug, Clone)]
pub struct CommitReport {
    pub generation: u64,
    pub streams: Vec<String>,
    pub new_orphans: Vec<String>,
}

impl<'s> Txn<'s> {
    pub fn store(&self) -> &'s Store {
        self.store
    }

    pub fn generation(&self) -> u64 {
        self.base.as_ref().map_or(0, |b| b.generation)
    }

    pub fn stream(&self, name: &str) -> Result<&StreamState> {
        self.streams
            .get(name)
            .ok_or_else(|| Error::UnknownStream(name.to_string()))
    }

    /// A stream's working state, marked as changed.
    pub fn stream_mut(&mut self, name: &str) -> Result<&mut StreamState> {
        let s = self
            .streams
            .get_mut(name)
            .ok_or_else(|| Error::UnknownStream(name.to_string()))?;
        self.changed.insert(name.to_string());
        Ok(s)
    }

    pub fn streams(&self) -> &BTreeMap<String, StreamState> {
        &self.streams
    }

    /// Records that an edit dropped a reference to `sha256`; at commit it is
    /// recorded in `orphans.json` unless something still references it.
    pub fn note_unreferenced(&mut self, sha256: &str) {
        self.unreferenced.insert(sha256.to_string());
    }

    /// Records that a blob entered the pool. At commit, every stream with
    /// an item of that content is regenerated too: the blob may complete a
    /// version that stream was waiting for (declared by metadata before its
    /// data arrived, here through another stream).
    pub fn note_arrived(&mut self, sha256: &str) {
        self.arrived.insert(sha256.to_string());
    }

    /// Every blob referenced by a live item of any stream.
    pub fn referenced(&self) -> BTreeSet<String> {
        referenced(&self.streams)
    }

    /// Whether a metalink of the current generation lists something else
    /// than the mirror list and the last crawl now make of it.
    fn metalinks_stale(&self, base: &Snapshot) -> bool {
        let Some(listing) = metalink_listing(&self.store.root) else {
            return false;
        };
        let now = timefmt::now();
        self.store.config.streams.iter().any(|s| {
            crate::mirrors::publish::stale(
                listing.as_ref(),
                &s.name,
                &base.streams_v1(&s.name),
                now,
            )
            .unwrap_or_else(|e| {
                tracing::warn!(stream = %s.name, "metalinks not checked: {e}");
                false
            })
        })
    }

    /// Asks the commit to re-render every stream's metalinks from the mirror
    /// list and the last crawl (see [`crate::mirrors::publish`]). Without a
    /// stream change, a new generation is written only when a metalink would
    /// list something else than the current generation's does.
    pub fn refresh_metalinks(&mut self) {
        self.refresh_metalinks = true;
    }

    /// Regenerates every stream (used when creating a store and by `sign`).
    pub fn commit_all(mut self) -> Result<CommitReport> {
        self.changed = self.streams.keys().cloned().collect();
        self.commit()
    }

    /// Writes the new generation and makes it current. Without changes,
    /// nothing is written and the current generation is returned.
    pub fn commit(self) -> Result<CommitReport> {
        self.commit_with_state().map(|(report, _)| report)
    }

    /// [`Txn::commit`], handing back the state of the generation it made
    /// current (equal to what [`Store::snapshot`] would now read), so that a
    /// long-lived writer such as the mount need not read and parse it again.
    pub fn commit_with_state(mut self) -> Result<(CommitReport, Snapshot)> {
        let store = self.store;
        if !self.arrived.is_empty() {
            for (name, st) in &self.streams {
                if !self.changed.contains(name)
                    && st
                        .products
                        .items()
                        .any(|i| i.sha256().is_some_and(|h| self.arrived.contains(h)))
                {
                    self.changed.insert(name.clone());
                }
            }
        }
        if self.changed.is_empty()
            && let Some(base) = &self.base
            && !(self.refresh_metalinks && self.metalinks_stale(base))
        {
            let report = CommitReport {
                generation: self.generation(),
                streams: vec![],
                new_orphans: vec![],
            };
            let mut snap = self.base.take().expect("checked");
            snap.streams = std::mem::take(&mut self.streams);
            return Ok((report, snap));
        }
        let now = timefmt::now();
        let key = store.signing_key()?;
        let pool = &store.pool;
        // Removed paths whose blob is gone (reaped) are no longer readable.
        for name in self.changed.clone() {
            let st = self.streams.get_mut(&name).expect("changed streams exist");
            // Sorted as `state.json` is written, so the state handed back
            // iterates as the one read from it would.
            st.products.sort();
            st.removed.retain(|_, r| pool.contains(&r.blob.sha256));
            let items: BTreeSet<String> = st
                .products
                .items()
                .filter_map(|i| i.path().map(String::from))
                .collect();
            // A kept shared file that became an item needs no keeping.
            st.shared.retain(|p, _| !items.contains(p));
            let live: BTreeSet<String> = st.live_blobs().map(|(p, _)| p.to_string()).collect();
            st.removed.retain(|p, _| !live.contains(p));
            st.mtimes.retain(|p, _| live.contains(p));
        }

        let gen_root = store.meta_dir().join("gen");
        fs::create_dir_all(&gen_root).at(&gen_root)?;
        let generation = self.generation() + 1;
        let final_dir = gen_root.join(gen_name(generation));
        let tmp_dir = gen_root.join(format!(
            "{}.tmp-{}",
            gen_name(generation),
            std::process::id()
        ));
        // Under the lock, anything at or past the next generation's name is
        // what an interrupted commit left before it could swap `current`.
        for d in [&tmp_dir, &final_dir] {
            if d.exists() {
                fs::remove_dir_all(d).at(d)?;
            }
        }
        fs::create_dir_all(&tmp_dir).at(&tmp_dir)?;
        // Read once for every stream whose metalinks the commit renders.
        let listing = metalink_listing(&store.root);
        let res = (|| {
            for s in &store.config.streams {
                let dir = tmp_dir.join(&s.name);
                let prev = self.base.as_ref().map(|b| b.dir.join(&s.name));
                let changed = self.changed.contains(&s.name);
                if !changed && prev.as_ref().is_some_and(|p| p.exists()) {
                    link_tree(prev.as_ref().expect("checked"), &dir)?;
                } else {
                    let st = &self.streams[&s.name];
                    publish::write_stream(&dir, s, st, pool, key.as_ref(), now)?;
                }
                if (changed || self.refresh_metalinks)
                    && let Some(listing) = &listing
                {
                    let v1 = dir.join("streams").join("v1");
                    if let Err(e) =
                        crate::mirrors::publish::render_beside(listing.as_ref(), &s.name, &v1, now)
                    {
                        tracing::warn!(stream = %s.name, "metalinks not published: {e}");
                    }
                }
            }
            sync_dir(&tmp_dir)?;
            fs::rename(&tmp_dir, &final_dir).at(&final_dir)?;
            sync_dir(&gen_root)?;
            let meta = store.meta_dir();
            let link_tmp = meta.join(format!("current.tmp-{}", std::process::id()));
            // Link leftovers of interrupted commits (any process) go too.
            for e in fs::read_dir(&meta).at(&meta)?.flatten() {
                if e.file_name().to_string_lossy().starts_with("current.tmp-") {
                    let _ = fs::remove_file(e.path());
                }
            }
            std::os::unix::fs::symlink(Path::new("gen").join(gen_name(generation)), &link_tmp)
                .at(&link_tmp)?;
            fs::rename(&link_tmp, meta.join("current")).at(meta.join("current"))?;
            sync_dir(&meta)
        })();
        if let Err(e) = res {
            let _ = fs::remove_dir_all(&tmp_dir);
            return Err(e);
        }
        let new_orphans = self.update_orphans(now)?;
        self.collect_old_generations(generation);
        let report = CommitReport {
            generation,
            streams: self.changed.iter().cloned().collect(),
            new_orphans,
        };
        let snap = Snapshot {
            generation,
            dir: final_dir,
            streams: std::mem::take(&mut self.streams),
        };
        Ok((report, snap))
    }

    /// Records newly unreferenced blobs in `orphans.json` and drops entries
    /// that are referenced again. Runs after the generation is current: a
    /// crash in between leaves an unrecorded orphan (found by
    /// `find-orphans`), never a recorded live blob.
    fn update_orphans(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<String>> {
        let path = self.store.orphans_path();
        let mut orphans = Orphans::load(&path)?;
        let before = orphans.clone();
        let referenced = self.referenced();
        let stamp = timefmt::rfc2822(now);
        let mut added = Vec::new();
        for sha in &self.unreferenced {
            if referenced.contains(sha) || !self.store.pool.contains(sha) {
                continue;
            }
            let key = Pool::rel_path(sha);
            if !orphans.entries.contains_key(&key) {
                orphans.entries.insert(key.clone(), stamp.clone());
                added.push(key);
            }
        }
        orphans.entries.retain(|k, _| {
            let sha = k.rsplit('/').next().unwrap_or_default();
            !referenced.contains(sha) && self.store.pool.contains(sha)
        });
        if orphans != before {
            orphans.save(&path)?;
        }
        Ok(added)
    }

    /// Keeps the new generation and the one before it; older ones and
    /// leftovers of interrupted commits go.
    fn collect_old_generations(&self, current: u64) {
        let gen_root = self.store.meta_dir().join("gen");
        let Ok(rd) = fs::read_dir(&gen_root) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let keep = name.parse::<u64>().is_ok_and(|n| n + 1 >= current);
            if !keep {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Every blob referenced by a live item of any stream.
pub fn referenced(streams: &BTreeMap<String, StreamState>) -> BTreeSet<String> {
    streams
        .values()
        .flat_map(|s| s.live_blobs().map(|(_, b)| b.sha256))
        .collect()
}

/// Hard-links every file of `from` into a new tree `to` (an unchanged stream
/// carried into the next generation without rewriting its files).
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).at(to)?;
    for e in fs::read_dir(from).at(from)? {
        let e = e.at(from)?;
        let src = e.path();
        let dst = to.join(e.file_name());
        if e.file_type().at(&src)?.is_dir() {
            link_tree(&src, &dst)?;
        } else {
            fs::hard_link(&src, &dst)
                .or_else(|_| fs::copy(&src, &dst).map(|_| ()))
                .at(&dst)?;
        }
    }
    sync_dir(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_after_one_killed_before_swapping_current_succeeds() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::init(d.path(), None).unwrap();
        let g = store.current_generation().unwrap();
        // What a writer killed between renaming its generation directory
        // and swapping `meta/current` leaves behind.
        let stale = store.meta_dir().join("gen").join(gen_name(g + 1));
        fs::create_dir_all(stale.join("daily")).unwrap();
        fs::write(stale.join("daily/state.json"), b"partial").unwrap();
        std::os::unix::fs::symlink("gen/x", store.meta_dir().join("current.tmp-999999")).unwrap();
        let mut txn = store.begin().unwrap();
        txn.stream_mut("daily").unwrap();
        assert_eq!(txn.commit().unwrap().generation, g + 1);
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.generation, g + 1);
        assert!(snap.streams["daily"].products.products().is_empty());
        assert!(!store.meta_dir().join("current.tmp-999999").exists());
    }

    #[test]
    fn the_state_a_commit_hands_back_is_what_its_generation_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::init(d.path(), None).unwrap();
        let mut txn = store.begin().unwrap();
        let st = txn.stream_mut("daily").unwrap();
        // Versions and items added out of order, one item with its blob
        // missing: the commit sorts, and the state keeps what it held back.
        for (v, path) in [("20250102", "b/2"), ("20250101", "b/1")] {
            let item = serde_json::json!({"z": {"ftype": "root.tar.xz", "path": path,
                "sha256": "1".repeat(64), "size": 1}, "a": {"ftype": "manifest",
                "path": format!("{path}m"), "sha256": "2".repeat(64), "size": 1}});
            let mut data = serde_json::Map::new();
            data.insert("items".into(), item);
            st.products
                .set_version("p:x", &serde_json::Map::new(), v, data);
            st.mtimes.insert(path.to_string(), 7);
        }
        let (report, handed) = txn.commit_with_state().unwrap();
        let read = store.snapshot().unwrap();
        assert_eq!(handed.generation, report.generation);
        assert_eq!(handed.generation, read.generation);
        assert_eq!(handed.dir, read.dir);
        assert_eq!(handed.streams, read.streams);
        for (name, st) in &read.streams {
            let order = |s: &StreamState| -> Vec<String> {
                s.products
                    .items()
                    .map(|i| format!("{}/{}/{}", i.product, i.version, i.name))
                    .collect()
            };
            assert_eq!(order(&handed.streams[name]), order(st), "{name}");
        }
        // A commit with nothing to do hands back the current state.
        let (report, same) = store.begin().unwrap().commit_with_state().unwrap();
        assert!(report.streams.is_empty());
        assert_eq!(same.generation, read.generation);
        assert_eq!(same.streams, read.streams);
    }

    #[test]
    fn a_writer_starts_from_the_state_it_holds_only_while_it_is_current() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::init(d.path(), None).unwrap();
        let mut held = store.snapshot().unwrap();
        held.streams
            .get_mut("daily")
            .unwrap()
            .mtimes
            .insert("marker".into(), 1);
        let txn = store.begin_from(Some(&held)).unwrap();
        assert!(txn.stream("daily").unwrap().mtimes.contains_key("marker"));
        drop(txn);
        // Another writer commits: the held state is stale and is not used.
        let mut txn = store.begin().unwrap();
        txn.stream_mut("released").unwrap();
        txn.commit().unwrap();
        let txn = store.begin_from(Some(&held)).unwrap();
        assert!(!txn.stream("daily").unwrap().mtimes.contains_key("marker"));
        assert_eq!(txn.generation(), held.generation + 1);
    }
}
