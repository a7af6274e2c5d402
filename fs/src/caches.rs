//! Dropping what the kernel caches when the mount shows a new generation.
//!
//! The kernel keeps entries, attributes and directory listings for an hour
//! (`CACHE_TTL_SECS`), so every commit must drop them. A commit of the
//! mount's own (an insert at `close`, a rename, a promote) may publish items
//! in directories the kernel did not touch (a products file that completes
//! a version, a shared squashfs joining a new kernel), so those caches are
//! dropped before that request is answered: a `ls` right after `close`
//! returns sees the new items. Commits made beside the mount are picked up
//! by the generation watcher, which drops them the same way.
//!
//! Only attributes and directory listings are dropped in a request's path:
//! dropping a file's cached pages may wait for a read in flight, which needs
//! a free FUSE worker, and the worker waiting would be one of them. The
//! watcher drops file pages afterwards, on its own thread, and only of
//! files numbered by their path: an item's or a document's number stands
//! for fixed bytes (see [`crate::inode`]), so its pages never go stale and
//! stay cached across commits (on a mount whose opens the kernel answers,
//! that is what keeps nginx's requests in the kernel).

use crate::metrics;
use std::sync::{Mutex, OnceLock};

use fuser::{INodeNo, Notifier};

use crate::fs::{KernelHeld, StreamFs};

#[derive(Default)]
pub struct KernelCaches {
    notifier: OnceLock<Notifier>,
    /// The newest generation whose changes the kernel has been told of.
    dropped_for: Mutex<u64>,
}

impl KernelCaches {
    /// The session's notifier, known once the session exists.
    pub fn attach(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Drops attributes and listings for every inode the kernel may hold, if
    /// `fs` shows a generation newer than the last they were dropped for.
    pub fn sync(&self, fs: &StreamFs) {
        self.drop_listings(fs, None);
    }

    /// At a new generation, from the watcher's thread: what
    /// [`KernelCaches::sync`] drops, then the cached pages of every file
    /// numbered by its path, outside the lock that requests wait on, and the
    /// kernel's entries that lead to items their paths no longer hold.
    pub fn drop_all(&self, fs: &StreamFs) {
        let Some(n) = self.notifier.get() else {
            return;
        };
        let known = fs.known_inodes();
        self.drop_listings(fs, Some(&known));
        for (ino, k) in &known {
            match k {
                KernelHeld::File => {
                    let _ = n.inval_inode(INodeNo(*ino), 0, 0);
                    metrics::invalidations(1);
                }
                KernelHeld::Gone { parent, name } => {
                    let _ = n.inval_entry(INodeNo(*parent), std::ffi::OsStr::new(name));
                    metrics::invalidations(1);
                }
                KernelHeld::Dir | KernelHeld::Item | KernelHeld::Doc => {}
            }
        }
    }

    /// [`KernelCaches::sync`], for the inodes `known` (all known ones when
    /// None).
    fn drop_listings(&self, fs: &StreamFs, known: Option<&[(u64, KernelHeld)]>) {
        let Some(n) = self.notifier.get() else {
            return;
        };
        let mut dropped_for = self.dropped_for.lock().expect("caches lock");
        let g = fs.generation();
        if g <= *dropped_for {
            return;
        }
        let all;
        let known = match known {
            Some(k) => k,
            None => {
                all = fs.known_inodes();
                &all
            }
        };
        for (ino, k) in known {
            // Offset 0 drops a directory's cached listing with its
            // attributes; a negative offset drops only the attributes.
            let offset = match k {
                KernelHeld::Dir => 0,
                KernelHeld::File | KernelHeld::Item | KernelHeld::Gone { .. } => -1,
                KernelHeld::Doc => continue,
            };
            let _ = n.inval_inode(INodeNo(*ino), offset, 0);
            metrics::invalidations(1);
        }
        *dropped_for = g;
    }
}
