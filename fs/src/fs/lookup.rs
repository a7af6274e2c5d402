//! Resolution of mount paths, inode bookkeeping, attributes and lookup.

use super::*;

impl StreamFs {
    pub(super) fn path_of(&self, ino: u64) -> FsResult<String> {
        self.inodes.path(ino).ok_or(FsError::NotFound)
    }

    pub(super) fn resolve(&self, view: &View, path: &str) -> Option<Node> {
        let Some(StreamPath { stream, rel }) = split(path) else {
            return Some(Node::Dir);
        };
        let sv = view.streams.get(stream)?;
        if rel.is_empty() || rel == "streams" || rel == "streams/v1" {
            return Some(Node::Dir);
        }
        let w = self.in_flight.lock().expect("in-flight lock");
        if let Some(name) = rel.strip_prefix("streams/v1/") {
            if let Some(doc) = sv.generated.get(name)
                && !w.is_replacing(path)
            {
                return Some(Node::Generated(doc.clone()));
            }
        } else if rel.starts_with("streams/") {
            return None;
        }
        if let Some(f) = sv.files.get(rel) {
            // A file unlinked moments ago names nothing until its removal is
            // committed (a removed path is readable again from then on, until
            // reaped): a tool that unlinks a file to write it anew (`tar -x`,
            // `install`) creates it next (see `StreamFs::create`).
            if w.removing.get(path) == Some(&false) {
                return None;
            }
            return Some(Node::Blob(f.clone()));
        }
        if let Some(target) = sv.links.get(rel) {
            return Some(Node::Link(target.clone()));
        }
        if sv.children.contains_key(rel) || w.dirs.contains(path) {
            return Some(Node::Dir);
        }
        if let Some(size) = w.writing.get(path) {
            return Some(Node::Pending(*size));
        }
        if let Some(p) = w.parked.get(path) {
            return Some(Node::Pending(match p {
                Parked::Blob(s) => s.blob.size,
                Parked::Meta(b) => b.len() as u64,
            }));
        }
        if let Some(b) = w.merged(path) {
            return Some(Node::Pending(b.len() as u64));
        }
        if let Some(f) = sv.hidden.get(rel) {
            return Some(Node::Blob(f.clone()));
        }
        if sv.hidden_dirs.contains(rel) {
            return Some(Node::Dir);
        }
        None
    }

    /// The inode number of `node` at `path` (see [`crate::inode`]). Only
    /// computed: the table learns a number when it is handed to the kernel
    /// ([`StreamFs::record_handed_out`]).
    pub(super) fn ino_for(&self, path: &str, node: &Node) -> u64 {
        match node {
            Node::Blob(f) => item_ino(path, &f.blob.sha256),
            Node::Generated(d) => d.ino,
            Node::Dir | Node::Pending(_) | Node::Link(_) => ino_of(path),
        }
    }

    /// Records that the kernel is handed the entry of `node` at `path` (a
    /// LOOKUP, READDIRPLUS, CREATE, MKDIR or SYMLINK reply): its number is
    /// known (and a document's file open) until the kernel forgets it
    /// ([`StreamFs::forget`]).
    pub(super) fn record_handed_out(&self, path: &str, node: &Node) {
        let content = match node {
            Node::Blob(f) => Some(Content::Item(ItemStamp {
                sha256: f.blob.sha256.clone(),
                size: f.blob.size,
                mtime: f.mtime,
            })),
            Node::Generated(d) => Some(Content::Doc(d.clone())),
            Node::Dir => Some(Content::Dir),
            Node::Pending(_) | Node::Link(_) => None,
        };
        self.inodes
            .hand_out(self.ino_for(path, node), path, content);
    }

    /// The kernel is about to drop its entry `name` in `parent` (an
    /// `unlink`, `rmdir` or `rename` through the mount): recorded on the
    /// number it leads to (see [`InodeTable::dropped`]), which is returned
    /// for [`StreamFs::entry_kept`].
    pub fn entry_dropped(&self, parent: u64, name: &str) -> Option<u64> {
        let path = join(&self.inodes.path(parent)?, name);
        let ino = match self.resolve(&self.current(), &path)? {
            Node::Blob(f) => item_ino(&path, &f.blob.sha256),
            Node::Generated(d) => d.ino,
            Node::Dir | Node::Pending(_) | Node::Link(_) => ino_of(&path),
        };
        self.inodes.dropped(ino, true);
        Some(ino)
    }

    /// The request of [`StreamFs::entry_dropped`] failed: the kernel keeps
    /// its entry leading to `ino`.
    pub fn entry_kept(&self, ino: u64) {
        self.inodes.dropped(ino, false);
    }

    /// The kernel forgot `n` of the entries it was handed for `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

    pub(super) fn attr_of(&self, view: &View, path: &str, node: &Node) -> Attr {
        let ino = self.ino_for(path, node);
        let (uid, gid) = self.owner;
        let base = Attr {
            ino,
            kind: Kind::File,
            size: 0,
            mtime: view.mtime,
            perm: 0o444,
            uid,
            gid,
            ttl_secs: CACHE_TTL_SECS,
        };
        match node {
            Node::Dir => Attr {
                kind: Kind::Dir,
                perm: 0o755,
                ..base
            },
            Node::Blob(f) => Attr {
                size: f.blob.size,
                mtime: f.mtime,
                ..base
            },
            Node::Generated(d) => Attr {
                size: d.size,
                mtime: d.mtime,
                ttl_secs: 0,
                ..base
            },
            Node::Link(target) => Attr {
                kind: Kind::Symlink,
                size: target.len() as u64,
                perm: 0o777,
                ..base
            },
            Node::Pending(size) => Attr {
                size: *size,
                perm: 0o644,
                mtime: timefmt::now().timestamp(),
                ttl_secs: 0,
                ..base
            },
        }
    }

    pub(super) fn stat_path(&self, path: &str) -> FsResult<Attr> {
        self.stat(path, false)
    }

    /// [`StreamFs::stat_path`]; `handing_out` when the answer is an entry
    /// given to the kernel (see [`StreamFs::record_handed_out`]).
    pub(super) fn stat(&self, path: &str, handing_out: bool) -> FsResult<Attr> {
        self.flush_before_metadata(path);
        let view = self.current();
        if self
            .in_flight
            .lock()
            .expect("in-flight lock")
            .links
            .remove(path)
            .is_some()
        {
            // The reply to the symlink that promoted: shown once as a link
            // (the kernel insists on it), a directory from then on.
            let (uid, gid) = self.owner;
            let ino = ino_of(path);
            if handing_out {
                self.inodes.hand_out(ino, path, None);
            }
            return Ok(Attr {
                ino,
                kind: Kind::Symlink,
                size: 0,
                mtime: view.mtime,
                perm: 0o777,
                uid,
                gid,
                ttl_secs: 0,
            });
        }
        let node = self.resolve(&view, path).ok_or(FsError::NotFound)?;
        if handing_out {
            self.record_handed_out(path, &node);
        }
        Ok(self.attr_of(&view, path, &node))
    }

    pub fn lookup(&self, parent: u64, name: impl AsRef<OsStr>) -> FsResult<Attr> {
        let name = name_to_find(name.as_ref())?;
        let p = self.path_of(parent)?;
        let path = join(&p, name);
        if self.is_unfinished_doc(&path) {
            return Err(FsError::NotFound);
        }
        self.stat(&path, true)
    }

    /// A document being written into `streams/v1/` under a name the mount
    /// does not generate. Each writer's document is its own (merged at its
    /// close), so lookups do not see it: when two builds are copied at once,
    /// the second `cp` (which saw no such file, then opens it with
    /// `O_CREAT|O_EXCL`) reaches `create` and writes a document of its own,
    /// where a visible name would make the kernel fail its open with EEXIST.
    pub(super) fn is_unfinished_doc(&self, path: &str) -> bool {
        if !split(path).is_some_and(|p| is_v1(p.rel)) {
            return false;
        }
        let view = self.current();
        if !matches!(self.resolve(&view, path), Some(Node::Pending(_))) {
            return false;
        }
        let w = self.in_flight.lock().expect("in-flight lock");
        w.meta_writers.contains_key(path) && !w.parked.contains_key(path)
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let (path, content) = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        let item = match content {
            // One generation's document, whatever the path shows now: a
            // file opened before a commit reports the size it reads.
            Some(Content::Doc(d)) => {
                return Ok(self.attr_of(&self.current(), &path, &Node::Generated(d)));
            }
            Some(Content::Item(item)) => item,
            Some(Content::Dir) | None => return self.stat_path(&path),
        };
        let now = self.stat_path(&path);
        if now.as_ref().map_or(true, |a| a.ino != ino) {
            // An item number whose path came to name other content (or
            // none): files open on it keep their attributes (`fstat` asks
            // without a handle). The kernel's entry for the path is dropped
            // by the generation watcher (`KernelHeld::Gone`), so a lookup
            // by path finds the new content.
            let node = Node::Blob(FileInfo {
                blob: BlobRef {
                    sha256: item.sha256,
                    size: item.size,
                },
                mtime: item.mtime,
            });
            let attr = self.attr_of(&self.current(), &path, &node);
            return Ok(Attr {
                ttl_secs: 0,
                ..attr
            });
        }
        now
    }

    pub fn readlink(&self, ino: u64) -> FsResult<String> {
        let path = self.path_of(ino)?;
        match self.resolve(&self.current(), &path) {
            Some(Node::Link(target)) => Ok(target),
            _ => Err(FsError::Invalid("not a symlink".into())),
        }
    }
}
