//! Inode numbers.
//!
//! An inode number is a hash of the node's path in the mount (stream name
//! included), so it is the same after an unmount and remount, on every host
//! serving the same store, without any table on disk: `find`, `rsync -H`,
//! `tar` and nginx's open file cache see stable identities. The table kept
//! here only maps numbers the kernel was given back to their paths.

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
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    if h <= ROOT { h + 2 } else { h }
}

/// Inode numbers handed to the kernel and the paths they stand for.
#[derive(Debug, Default)]
pub struct InodeTable {
    paths: Mutex<HashMap<u64, String>>,
}

impl InodeTable {
    /// Records `path` and returns its number.
    pub fn register(&self, path: &str) -> u64 {
        let ino = ino_of(path);
        if ino == ROOT {
            return ino;
        }
        let mut m = self.paths.lock().expect("inode table lock");
        if let Some(old) = m.insert(ino, path.to_string())
            && old != path
        {
            tracing::warn!(ino, old, new = path, "inode number collision");
        }
        ino
    }

    /// The path of a number given out earlier.
    pub fn path(&self, ino: u64) -> Option<String> {
        if ino == ROOT {
            return Some(String::new());
        }
        self.paths
            .lock()
            .expect("inode table lock")
            .get(&ino)
            .cloned()
    }

    /// Every number given out (for cache invalidation).
    pub fn all(&self) -> Vec<(u64, String)> {
        self.paths
            .lock()
            .expect("inode table lock")
            .iter()
            .map(|(i, p)| (*i, p.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
