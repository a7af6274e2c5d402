//! What an operator checks on a store (`mountctl status`): per stream its
//! products, versions, items and bytes; the pool and what deduplication
//! saves; orphans waiting and when the next reap is due; the generation and
//! when it was committed; the mounts of the store and the generation each
//! shows; the signing key and when it expires.
//!
//! Everything is read without the writer lock (generations are immutable,
//! `orphans.json` is replaced atomically), so `status` never waits for a
//! commit and never delays one.
//!
//! A mount tells which generation it shows through a small record that its
//! daemon keeps in `STORE/run/` ([`MountRecord`]), rewritten whenever the
//! generation it serves changes. Reading it costs nothing on the mount
//! (asking through the mount would be a request to a daemon that may be the
//! one hung); a record whose process is gone, or whose mount point no longer
//! holds a streamfs mount, is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{Orphans, Store};
use crate::timefmt;

/// How long before the signing key expires `status` starts warning.
pub const KEY_EXPIRY_WARNING_DAYS: i64 = 30;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub store: PathBuf,
    pub generation: u64,
    /// When the current generation was committed (Unix seconds).
    pub committed: i64,
    pub streams: Vec<StreamStatus>,
    pub pool: PoolStatus,
    pub orphans: OrphanStatus,
    /// `None` when the store signs nothing.
    pub signing: Option<KeyStatus>,
    pub mounts: Vec<MountStatus>,
    /// What needs the operator's attention, one sentence each.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub products: usize,
    pub versions: usize,
    pub items: usize,
    /// The items' sizes summed (what a full mirror of the stream downloads).
    pub bytes: u64,
    /// Declared items whose data has not arrived (their versions are not
    /// published yet).
    pub pending_items: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub blobs: usize,
    /// The blobs' sizes on disk, orphans included.
    pub bytes: u64,
    /// What every live reference of every stream adds up to: the space the
    /// streams would take without content addressing.
    pub logical_bytes: u64,
    /// The distinct blobs live references name, and their sizes: with the
    /// orphans, the whole pool (anything else is a leak `fsck` reports).
    pub referenced_blobs: usize,
    pub referenced_bytes: u64,
    /// `logical_bytes - referenced_bytes`.
    pub dedup_saved_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrphanStatus {
    pub count: usize,
    pub bytes: u64,
    /// When the oldest entry was orphaned (Unix seconds).
    pub oldest: Option<i64>,
    pub grace_secs: u64,
    /// When the oldest orphan's grace ends (Unix seconds): a running mount
    /// reaps it within a quarter of the grace (one minute at most) after
    /// that; `mountctl reap-orphans` at once.
    pub next_reap_due: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    pub file: PathBuf,
    pub fingerprint: String,
    pub created: i64,
    /// `None`: never expires.
    pub expires: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MountStatus {
    pub mountpoint: PathBuf,
    pub source: String,
    pub read_only: bool,
    /// The daemon serving it, when it keeps a record.
    pub pid: Option<u32>,
    /// The generation it shows (`None` when its daemon keeps no record).
    pub generation: Option<u64>,
}

/// What a mount's daemon keeps in `STORE/run/mount-<pid>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub pid: u32,
    pub mountpoint: PathBuf,
    pub generation: u64,
}

impl MountRecord {
    fn dir(store_root: &Path) -> PathBuf {
        store_root.join("run")
    }

    fn path(store_root: &Path, pid: u32) -> PathBuf {
        Self::dir(store_root).join(format!("mount-{pid}.json"))
    }

    /// Writes the record (a temp file renamed over the old one, so readers
    /// see one or the other). Not fsynced: it describes a running process
    /// and means nothing after a crash.
    pub fn save(&self, store_root: &Path) -> Result<()> {
        let dir = Self::dir(store_root);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = Self::path(store_root, self.pid);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(self).expect("a record serializes");
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// Removes the record of `pid` (at unmount).
    pub fn remove(store_root: &Path, pid: u32) {
        let _ = std::fs::remove_file(Self::path(store_root, pid));
    }

    /// Removes the records of processes that are gone (daemons killed
    /// before they could remove their own).
    pub fn remove_dead(store_root: &Path) {
        for r in Self::load_all(store_root) {
            if !alive(r.pid) {
                Self::remove(store_root, r.pid);
            }
        }
    }

    /// Every readable record; unreadable ones (being replaced) are skipped.
    pub fn load_all(store_root: &Path) -> Vec<MountRecord> {
        let Ok(rd) = std::fs::read_dir(Self::dir(store_root)) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect()
    }
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// A line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
    pub read_only: bool,
}

/// Parses `/proc/self/mountinfo` (proc(5)): the mount point is field 5,
/// the per-mount options field 6, then optional fields up to `-`, then the
/// type and the source. Spaces, tabs, newlines and backslashes are escaped
/// as octal (`\040`).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            Some(MountEntry {
                mountpoint: PathBuf::from(unescape(f.get(4)?)),
                read_only: f.get(5)?.split(',').any(|o| o == "ro"),
                fstype: unescape(f.get(dash + 1)?),
                source: unescape(f.get(dash + 2)?),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The streamfs mounts of the store at `store_root` among `mounts`: those
/// whose source is the store, and those a live daemon of this store
/// records (a store path with a comma or a space is mounted under the
/// source name `streamfs`).
pub fn mounts_of(store_root: &Path, mounts: &[MountEntry]) -> Vec<MountStatus> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let root = canon(store_root);
    let records: BTreeMap<PathBuf, MountRecord> = MountRecord::load_all(store_root)
        .into_iter()
        .filter(|r| alive(r.pid))
        .map(|r| (r.mountpoint.clone(), r))
        .collect();
    mounts
        .iter()
        .filter(|m| m.fstype == "fuse.streamfs")
        .filter_map(|m| {
            let rec = records.get(&m.mountpoint);
            let ours = canon(Path::new(&m.source)) == root;
            (ours || rec.is_some()).then(|| MountStatus {
                mountpoint: m.mountpoint.clone(),
                source: m.source.clone(),
                read_only: m.read_only,
                pid: rec.map(|r| r.pid),
                generation: rec.map(|r| r.generation),
            })
        })
        .collect()
}

impl Status {
    /// Computes the status of `store`, with `mounts` the system's mount
    /// table (see [`parse_mountinfo`]).
    pub fn of(store: &Store, mounts: &[MountEntry]) -> Result<Status> {
        let snap = store.snapshot()?;
        let pool = store.pool();
        let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
        for sha in pool.list()? {
            let p = pool.path(&sha);
            let len = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
            sizes.insert(sha, len);
        }
        let mut warnings = Vec::new();

        let mut streams = Vec::new();
        let mut logical_bytes = 0;
        let mut referenced = BTreeSet::new();
        for (name, st) in &snap.streams {
            let mut s = StreamStatus {
                name: name.clone(),
                products: st.products.products().len(),
                versions: st.products.version_keys().len(),
                items: 0,
                bytes: 0,
                pending_items: 0,
            };
            for i in st.products.items() {
                s.items += 1;
                s.bytes += i.size().unwrap_or(0);
                if !i.sha256().is_some_and(|h| sizes.contains_key(h)) {
                    s.pending_items += 1;
                }
            }
            for (_, b) in st.live_blobs() {
                if sizes.contains_key(&b.sha256) {
                    logical_bytes += b.size;
                    referenced.insert(b.sha256);
                }
            }
            streams.push(s);
        }
        let referenced_bytes: u64 = referenced.iter().map(|h| sizes[h]).sum();
        let pool_status = PoolStatus {
            blobs: sizes.len(),
            bytes: sizes.values().sum(),
            logical_bytes,
            referenced_blobs: referenced.len(),
            referenced_bytes,
            dedup_saved_bytes: logical_bytes.saturating_sub(referenced_bytes),
        };

        let orphans = Orphans::load(&store.orphans_path())?;
        let grace = store.config().grace;
        let mut oldest: Option<i64> = None;
        let mut orphan_bytes = 0;
        for (key, t) in &orphans.entries {
            let sha = key.rsplit('/').next().unwrap_or_default();
            orphan_bytes += sizes.get(sha).copied().unwrap_or(0);
            match timefmt::parse_rfc2822(t) {
                Ok(at) => oldest = Some(oldest.map_or(at.timestamp(), |o| o.min(at.timestamp()))),
                Err(_) => warnings.push(format!(
                    "{}: orphan {key} has an unreadable time '{t}'",
                    store.orphans_path().display()
                )),
            }
        }
        let orphan_status = OrphanStatus {
            count: orphans.entries.len(),
            bytes: orphan_bytes,
            oldest,
            grace_secs: grace.as_secs(),
            next_reap_due: oldest.map(|o| o + grace.as_secs() as i64),
        };

        let now = timefmt::now().timestamp();
        let signing = match store.signing_key() {
            Ok(None) => None,
            Ok(Some(k)) => {
                let (created, expires) = k.validity();
                let fingerprint = k.fingerprint();
                if let Some(e) = expires {
                    let days = (e - now).div_euclid(86400);
                    if e <= now {
                        warnings.push(format!(
                            "signing key {fingerprint} expired on {}: clients' gpgv refuses every signature it makes; make a new one (mountctl keygen --force) or extend it",
                            timefmt::rfc2822(timefmt::from_unix(e))
                        ));
                    } else if days < KEY_EXPIRY_WARNING_DAYS {
                        warnings.push(format!(
                            "signing key {fingerprint} expires in {days} day(s), on {}: extend it or roll a new one and give clients its public key",
                            timefmt::rfc2822(timefmt::from_unix(e))
                        ));
                    }
                }
                Some(KeyStatus {
                    file: store
                        .root()
                        .join(store.config().signing_key.as_deref().unwrap_or_default()),
                    fingerprint,
                    created,
                    expires,
                })
            }
            Err(e) => {
                warnings.push(format!("signing key: {e}"));
                None
            }
        };

        let mounts = mounts_of(store.root(), mounts);
        for m in &mounts {
            if let Some(g) = m.generation
                && g < snap.generation
            {
                warnings.push(format!(
                    "mount {} shows generation {g}, the store is at {}: its daemon (pid {}) does not pick up commits (hung?)",
                    m.mountpoint.display(),
                    snap.generation,
                    m.pid.unwrap_or_default()
                ));
            }
        }

        let current = store.meta_dir().join("current");
        let committed = std::fs::symlink_metadata(&current)
            .and_then(|m| m.modified())
            .map_err(|e| Error::io(&current, e))?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);

        Ok(Status {
            store: store.root().to_path_buf(),
            generation: snap.generation,
            committed,
            streams,
            pool: pool_status,
            orphans: orphan_status,
            signing,
            mounts,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_mount_point_type_source_and_ro() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - fuse.streamfs /srv/store rw,user_id=0\n\
                    37 35 98:0 / /srv/serve ro,nosuid - fuse.streamfs /srv/store ro\n\
                    38 35 0:5 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mountpoint, Path::new("/mnt/a b"));
        assert_eq!(m[0].fstype, "fuse.streamfs");
        assert_eq!(m[0].source, "/srv/store");
        assert!(!m[0].read_only);
        assert!(m[1].read_only);
        assert_eq!(m[2].fstype, "proc");
    }

    #[test]
    fn a_store_s_mounts_are_found_by_source_and_by_live_record() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("store");
        std::fs::create_dir(&store).unwrap();
        let me = std::process::id();
        MountRecord {
            pid: me,
            mountpoint: "/m/named".into(),
            generation: 7,
        }
        .save(&store)
        .unwrap();
        // A record of a process that is gone is not believed.
        let dead = MountRecord {
            pid: u32::MAX - 1,
            mountpoint: "/m/other".into(),
            generation: 3,
        };
        dead.save(&store).unwrap();
        let src = store.display().to_string();
        let entries = vec![
            MountEntry {
                mountpoint: "/m/plain".into(),
                fstype: "fuse.streamfs".into(),
                source: src.clone(),
                read_only: true,
            },
            MountEntry {
                mountpoint: "/m/named".into(),
                fstype: "fuse.streamfs".into(),
                source: "streamfs".into(),
                read_only: false,
            },
            MountEntry {
                mountpoint: "/m/other".into(),
                fstype: "fuse.streamfs".into(),
                source: "/elsewhere".into(),
                read_only: false,
            },
            MountEntry {
                mountpoint: "/m/bind".into(),
                fstype: "ext4".into(),
                source: src,
                read_only: false,
            },
        ];
        let found = mounts_of(&store, &entries);
        let got: Vec<(&Path, Option<u64>)> = found
            .iter()
            .map(|m| (m.mountpoint.as_path(), m.generation))
            .collect();
        assert_eq!(
            got,
            [
                (Path::new("/m/plain"), None),
                (Path::new("/m/named"), Some(7))
            ]
        );
        MountRecord::remove_dead(&store);
        assert_eq!(MountRecord::load_all(&store).len(), 1);
    }
}
