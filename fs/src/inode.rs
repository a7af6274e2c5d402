//! Inode numbers.
//!
//! An inode number is a hash of the node's path in the mount (stream name
//! included) and, for an item, of its content's sha256, so it is the same
//! after an unmount and remount, on every host serving the same store,
//! without any table on disk: `find`, `rsync -H`, `tar` and nginx's open
//! file cache see stable identities. An item's path can come to name other
//! content (removed, reaped, inserted again); the new content is then
//! another inode, so that nothing keyed by inode (the kernel's passthrough
//! backing file, nginx's cached descriptors) goes on serving the old bytes
//! for it. A generated `streams/v1` document is numbered the same way, by
//! its path and its file in the generation it belongs to, so that each
//! generation's document is a file of its own to the kernel: a download
//! that spans a commit reads one generation's bytes, and pages cached for
//! a number never go stale. The table kept here maps numbers the kernel was
//! given back to their paths, and content numbers to the content they
//! stand for.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::fs::File;
use std::sync::{Arc, Mutex};

/// The mount's root directory (FUSE's fixed root inode).
pub const ROOT: u64 = 1;

/// The inode number of a mount path (`""` is the root, `daily/noble` a
/// directory of stream `daily`): 64-bit FNV-1a of the path, kept clear of 0
/// and of the root's number. A collision needs about 2^32 distinct paths to
/// become likely; one is logged when seen.
pub fn ino_of(path: &str) -> u64 {
    if path.is_empty() {
        return ROOT;
    }
    fnv(&[path.as_bytes()])
}

/// The inode number of the item at `path` holding the blob `sha256`.
pub fn item_ino(path: &str, sha256: &str) -> u64 {
    fnv(&[path.as_bytes(), b"\0", sha256.as_bytes()])
}

/// The inode number of the document at `path` whose file in its
/// generation is `file` (see [`Doc::file_id`]).
pub fn doc_ino(path: &str, file_id: [u64; 3]) -> u64 {
    let mut id = [0u8; 24];
    for (chunk, v) in id.chunks_mut(8).zip(file_id) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    fnv(&[path.as_bytes(), b"\0doc\0", &id])
}

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    if h <= ROOT { h + 2 } else { h }
}

/// The content an item's inode number stands for, as it was when the
/// number was given out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemStamp {
    pub sha256: String,
    pub size: u64,
    pub mtime: i64,
}

/// A generated `streams/v1` document of one generation.
#[derive(Clone, Debug)]
pub struct Doc {
    pub ino: u64,
    /// Open from the generation's directory, which a later commit deletes:
    /// readers of this generation's document keep reading it.
    pub file: Arc<File>,
    pub size: u64,
    pub mtime: i64,
}

impl Doc {
    /// What tells a generation's document file from every other one without
    /// reading it: its inode, modification time (nanoseconds) and size in
    /// the store. A stream left unchanged by a commit is carried into the
    /// next generation by hard links, so its documents keep their numbers
    /// (and the kernel its cached pages).
    pub fn file_id(m: &std::fs::Metadata) -> [u64; 3] {
        use std::os::unix::fs::MetadataExt;
        let mtime_ns = (m.mtime() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(m.mtime_nsec() as u64);
        [m.ino(), mtime_ns, m.size()]
    }
}

/// What a number stands for, where the path alone does not tell.
#[derive(Clone, Debug)]
pub enum Content {
    Item(ItemStamp),
    Doc(Doc),
    /// A directory: the kernel keeps its entry for an hour.
    Dir,
}

#[derive(Debug)]
struct Entry {
    path: String,
    content: Option<Content>,
    /// The kernel dropped its entry for the path while it led to this
    /// number (an `unlink`, `rmdir` or `rename` through the mount), and has
    /// not been handed the number again since.
    dropped: bool,
    /// How many times the kernel was handed the number (entries of LOOKUP,
    /// READDIRPLUS, CREATE, MKDIR and SYMLINK replies) and has not
    /// forgotten it. The entry (and a document's open file) goes when this
    /// drops to zero.
    lookups: u64,
}

/// Inode numbers handed to the kernel and what they stand for.
#[derive(Debug, Default)]
pub struct InodeTable {
    entries: Mutex<HashMap<u64, Entry>>,
}

/// A number handed out, as [`InodeTable::all`] lists it.
#[derive(Debug)]
pub struct Numbered {
    pub ino: u64,
    pub path: String,
    pub content: Option<Content>,
    /// The kernel dropped its entry for the path ([`InodeTable::dropped`]).
    pub dropped: bool,
}

impl InodeTable {
    /// Records `path` (a directory, a generated file, a file being written)
    /// and returns its number.
    pub fn register(&self, path: &str) -> u64 {
        let ino = ino_of(path);
        if ino != ROOT {
            self.record(ino, path, None, 0);
        }
        ino
    }

    /// Records the item at `path` holding `item` and returns its number.
    #[cfg(test)]
    pub fn register_item(&self, path: &str, item: ItemStamp) -> u64 {
        let ino = item_ino(path, &item.sha256);
        self.record(ino, path, Some(Content::Item(item)), 0);
        ino
    }

    /// Records that the kernel was handed the document `doc` at `path` once
    /// more, and returns its number: the table keeps the document readable
    /// until the kernel forgets it as often ([`InodeTable::forget`]).
    pub fn hand_out_doc(&self, path: &str, doc: &Doc) -> u64 {
        self.hand_out(doc.ino, path, Some(Content::Doc(doc.clone())));
        doc.ino
    }

    /// Records that the kernel was handed `ino` for `path` (with `content`
    /// when the number stands for one) once more: an entry of a LOOKUP,
    /// READDIRPLUS, CREATE, MKDIR or SYMLINK reply. The number stays known
    /// until the kernel forgets it as often.
    pub fn hand_out(&self, ino: u64, path: &str, content: Option<Content>) {
        // Recorded and counted at once: a FORGET of the number's earlier
        // references must not remove it in between.
        if ino != ROOT {
            self.record(ino, path, content, 1);
        }
    }

    /// The kernel forgot `n` of the times it was handed `ino`. A number
    /// forgotten as often as handed out leaves the table (a document's file
    /// is closed with it): the kernel sends no request naming a number it
    /// does not hold, so the table holds only what the kernel does, however
    /// many paths were ever looked up.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut m = self.entries.lock().expect("inode table lock");
        if let Slot::Occupied(mut e) = m.entry(ino) {
            let left = e.get().lookups.saturating_sub(n);
            e.get_mut().lookups = left;
            if left == 0 {
                e.remove();
            }
        }
    }

    /// How many numbers the table holds (the daemon's metrics, and tests of
    /// its size).
    pub fn len(&self) -> usize {
        self.entries.lock().expect("inode table lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records whether the kernel dropped its entry leading to `ino` (a
    /// request of its own, `unlink`, `rmdir` or `rename`, is about to), or
    /// keeps it after all (the request failed). Handing the number out
    /// again clears it.
    pub fn dropped(&self, ino: u64, dropped: bool) {
        if let Some(e) = self.entries.lock().expect("inode table lock").get_mut(&ino) {
            e.dropped = dropped;
        }
    }

    /// Records `ino` at `path` (with `content` when given), handed to the
    /// kernel `lookups` more times.
    fn record(&self, ino: u64, path: &str, content: Option<Content>, lookups: u64) {
        let mut m = self.entries.lock().expect("inode table lock");
        let e = m.entry(ino).or_insert_with(|| Entry {
            path: path.to_string(),
            content: None,
            dropped: false,
            lookups: 0,
        });
        e.dropped = false;
        if e.path != path {
            tracing::warn!(ino, old = e.path, new = path, "inode number collision");
            e.path = path.to_string();
            e.content = None;
            e.lookups = 0;
        }
        if content.is_some() {
            e.content = content;
        }
        e.lookups += lookups;
    }

    /// The path of a number given out earlier.
    pub fn path(&self, ino: u64) -> Option<String> {
        self.get(ino).map(|(p, _)| p)
    }

    /// The path of a number given out earlier, and for a content number the
    /// content it stands for.
    pub fn get(&self, ino: u64) -> Option<(String, Option<Content>)> {
        if ino == ROOT {
            return Some((String::new(), None));
        }
        self.entries
            .lock()
            .expect("inode table lock")
            .get(&ino)
            .map(|e| (e.path.clone(), e.content.clone()))
    }

    /// What a number given out earlier stands for, where its path does not
    /// tell (no copy of the path: reads by number ask this per request).
    pub fn content(&self, ino: u64) -> Option<Content> {
        self.entries
            .lock()
            .expect("inode table lock")
            .get(&ino)
            .and_then(|e| e.content.clone())
    }

    /// Every number given out (for cache invalidation).
    pub fn all(&self) -> Vec<Numbered> {
        self.entries
            .lock()
            .expect("inode table lock")
            .iter()
            .map(|(i, e)| Numbered {
                ino: *i,
                path: e.path.clone(),
                content: e.content.clone(),
                dropped: e.dropped,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_numbers_depend_on_the_path_and_the_content() {
        let p = "daily/noble/amd64/20250101/squashfs";
        let a = item_ino(p, &"a".repeat(64));
        assert_eq!(a, item_ino(p, &"a".repeat(64)));
        assert_ne!(a, item_ino(p, &"b".repeat(64)));
        assert_ne!(a, ino_of(p));
        let t = InodeTable::default();
        let stamp = ItemStamp {
            sha256: "a".repeat(64),
            size: 3,
            mtime: 7,
        };
        assert_eq!(t.register_item(p, stamp.clone()), a);
        let (path, content) = t.get(a).unwrap();
        assert_eq!(path, p);
        assert!(matches!(content, Some(Content::Item(s)) if s == stamp));
    }

    #[test]
    fn a_document_stays_readable_until_forgotten_as_often_as_handed_out() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let m = f.as_file().metadata().unwrap();
        let p = "daily/streams/v1/index.json";
        let doc = Doc {
            ino: doc_ino(p, Doc::file_id(&m)),
            file: Arc::new(f.reopen().unwrap()),
            size: 0,
            mtime: 0,
        };
        assert_ne!(doc.ino, ino_of(p));
        let t = InodeTable::default();
        assert_eq!(t.hand_out_doc(p, &doc), doc.ino);
        t.hand_out_doc(p, &doc);
        t.forget(doc.ino, 1);
        assert!(matches!(t.get(doc.ino), Some((_, Some(Content::Doc(_))))));
        t.forget(doc.ino, 1);
        assert!(t.get(doc.ino).is_none());
        // Handed out again after a forget: counted afresh.
        t.hand_out_doc(p, &doc);
        assert!(matches!(t.get(doc.ino), Some((_, Some(Content::Doc(_))))));
    }

    #[test]
    fn numbers_depend_only_on_the_path() {
        assert_eq!(ino_of(""), ROOT);
        let a = ino_of("daily/noble/amd64/20250101/squashfs");
        assert_eq!(a, ino_of("daily/noble/amd64/20250101/squashfs"));
        assert_ne!(a, ino_of("released/noble/amd64/20250101/squashfs"));
        assert!(a > ROOT);
        let t = InodeTable::default();
        let i = t.register("daily/noble");
        assert_eq!(t.path(i).as_deref(), Some("daily/noble"));
        assert_eq!(t.path(ROOT).as_deref(), Some(""));
    }

    #[test]
    fn an_entry_the_kernel_dropped_is_marked_until_handed_out_again() {
        let t = InodeTable::default();
        let p = "daily/noble/amd64/20250101/ga-24.04/generic/boot-kernel";
        let stamp = ItemStamp {
            sha256: "a".repeat(64),
            size: 3,
            mtime: 7,
        };
        let ino = t.register_item(p, stamp.clone());
        let dropped = |t: &InodeTable| t.all().iter().find(|n| n.ino == ino).unwrap().dropped;
        assert!(!dropped(&t));
        t.dropped(ino, true);
        assert!(dropped(&t));
        t.dropped(ino, false);
        assert!(!dropped(&t));
        t.dropped(ino, true);
        t.register_item(p, stamp);
        assert!(!dropped(&t));
    }

    #[test]
    fn every_number_leaves_the_table_when_forgotten_as_often_as_handed_out() {
        let t = InodeTable::default();
        let stamp = ItemStamp {
            sha256: "a".repeat(64),
            size: 1,
            mtime: 0,
        };
        let item = item_ino("daily/x", &stamp.sha256);
        let dir = ino_of("daily");
        for _ in 0..3 {
            t.hand_out(item, "daily/x", Some(Content::Item(stamp.clone())));
        }
        t.hand_out(dir, "daily", Some(Content::Dir));
        t.hand_out(ROOT, "", None);
        assert_eq!(t.len(), 2, "the root is never recorded");
        t.forget(item, 2);
        assert!(t.content(item).is_some(), "still held once");
        t.forget(item, 1);
        t.forget(dir, 1);
        assert!(t.is_empty());
        assert_eq!(t.path(item), None);
        // A FORGET of a number never handed out changes nothing.
        t.forget(12345, 1);
        assert!(t.is_empty());
    }
}
