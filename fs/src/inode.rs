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
//! for it. The table kept here maps numbers the kernel was given back to
//! their paths, and item numbers to the content they stand for.

use std::collections::HashMap;
use std::sync::Mutex;

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

#[derive(Debug)]
struct Entry {
    path: String,
    item: Option<ItemStamp>,
}

/// Inode numbers handed to the kernel and what they stand for.
#[derive(Debug, Default)]
pub struct InodeTable {
    entries: Mutex<HashMap<u64, Entry>>,
}

impl InodeTable {
    /// Records `path` (a directory, a generated file, a file being written)
    /// and returns its number.
    pub fn register(&self, path: &str) -> u64 {
        let ino = ino_of(path);
        if ino != ROOT {
            self.record(ino, path, None);
        }
        ino
    }

    /// Records the item at `path` holding `item` and returns its number.
    pub fn register_item(&self, path: &str, item: ItemStamp) -> u64 {
        let ino = item_ino(path, &item.sha256);
        self.record(ino, path, Some(item));
        ino
    }

    fn record(&self, ino: u64, path: &str, item: Option<ItemStamp>) {
        let mut m = self.entries.lock().expect("inode table lock");
        let e = m.entry(ino).or_insert_with(|| Entry {
            path: path.to_string(),
            item: None,
        });
        if e.path != path {
            tracing::warn!(ino, old = e.path, new = path, "inode number collision");
            e.path = path.to_string();
            e.item = None;
        }
        if item.is_some() {
            e.item = item;
        }
    }

    /// The path of a number given out earlier.
    pub fn path(&self, ino: u64) -> Option<String> {
        self.get(ino).map(|(p, _)| p)
    }

    /// The path of a number given out earlier, and for an item the content
    /// it stands for.
    pub fn get(&self, ino: u64) -> Option<(String, Option<ItemStamp>)> {
        if ino == ROOT {
            return Some((String::new(), None));
        }
        self.entries
            .lock()
            .expect("inode table lock")
            .get(&ino)
            .map(|e| (e.path.clone(), e.item.clone()))
    }

    /// Every number given out, with its path and, for an item, its
    /// content (for cache invalidation).
    pub fn all(&self) -> Vec<(u64, String, Option<ItemStamp>)> {
        self.entries
            .lock()
            .expect("inode table lock")
            .iter()
            .map(|(i, e)| (*i, e.path.clone(), e.item.clone()))
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
        assert_eq!(t.get(a), Some((p.to_string(), Some(stamp))));
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
}
