//! Opening files and the table of open handles.

use super::*;

impl StreamFs {
    pub(super) fn new_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .expect("handles lock")
            .insert(fh, Arc::new(Mutex::new(h)));
        fh
    }

    pub(super) fn handle(&self, fh: u64) -> Option<Arc<Mutex<Handle>>> {
        self.handles.lock().expect("handles lock").get(&fh).cloned()
    }

    pub fn open(&self, caller: Caller, ino: u64, mode: OpenMode) -> FsResult<Opened> {
        let (path, content) = self.inodes.get(ino).ok_or(FsError::NotFound)?;
        if !mode.write
            && let Some(Content::Doc(d)) = &content
        {
            // That generation's document, even after a commit.
            return self.open_doc(d);
        }
        self.flush_before_metadata(&path);
        let view = self.current();
        let node = self.resolve(&view, &path).ok_or(FsError::NotFound)?;
        if let (Some(Content::Item(item)), Node::Blob(f)) = (&content, &node)
            && f.blob.sha256 != item.sha256
        {
            // The kernel looks the path up again and opens its new inode.
            return Err(FsError::Stale);
        }
        if !mode.write {
            // rsync reads its staging file back before the rename.
            let parked = match self
                .in_flight
                .lock()
                .expect("in-flight lock")
                .parked
                .get(&path)
            {
                Some(Parked::Blob(st)) => Some(Handle::Read(File::open(st.staging_path())?)),
                Some(Parked::Meta(b)) => Some(Handle::Bytes(b.clone())),
                None => None,
            };
            // A document merged moments ago reads as it was written.
            let parked = parked.or_else(|| {
                let w = self.in_flight.lock().expect("in-flight lock");
                w.merged(&path).map(|b| Handle::Bytes(b.to_vec()))
            });
            if let Some(h) = parked {
                return Ok(Opened {
                    fh: self.new_handle(h),
                    backing: None,
                    direct_io: true,
                });
            }
            return match node {
                Node::Dir => Err(FsError::IsDir),
                Node::Blob(f) => {
                    let file = self
                        .blobs
                        .open(self.store.pool(), &f.blob.sha256)
                        .map_err(|e| refuse(e.into(), "open", &path))?;
                    let backing = file.try_clone().ok().map(|file| BlobFile {
                        file,
                        sha256: f.blob.sha256.clone(),
                    });
                    Ok(Opened {
                        fh: self.new_handle(Handle::Read(file)),
                        backing,
                        direct_io: false,
                    })
                }
                Node::Generated(d) => self.open_doc(&d),
                Node::Pending(_) => {
                    Err(refuse(FsError::Busy("being written".into()), "open", &path))
                }
                // The kernel follows links itself: an open reaching one
                // asked not to (O_NOFOLLOW).
                Node::Link(_) => Err(FsError::Loop),
            };
        }
        self.may_write(caller, "open for writing", &path)?;
        match node {
            Node::Dir => Err(FsError::IsDir),
            Node::Generated(..) => Ok(self.open_meta(&path, caller)),
            Node::Pending(_) if split(&path).is_some_and(|p| is_v1(p.rel)) => {
                Ok(self.open_meta(&path, caller))
            }
            Node::Blob(_) if mode.truncate => self.open_writer(&path, caller),
            Node::Blob(_) => Err(refuse(
                FsError::NotPermitted(
                    "published items are immutable (only a rewrite from the start, O_TRUNC, with identical content is accepted)".into(),
                ),
                "open for writing",
                &path,
            )),
            Node::Pending(_) => Err(refuse(
                FsError::Busy("already being written".into()),
                "open for writing",
                &path,
            )),
            Node::Link(_) => Err(FsError::Loop),
        }
    }

    pub fn release(&self, fh: u64) -> FsResult<()> {
        let r = self.insert_at_close(fh, None);
        self.handles.lock().expect("handles lock").remove(&fh);
        r
    }

    pub(super) fn writer_of(&self, path: &str) -> Option<Arc<Mutex<Handle>>> {
        let handles = self.handles.lock().expect("handles lock");
        handles
            .values()
            .find(|h| {
                h.try_lock().is_ok_and(|h| match &*h {
                    Handle::Write { path: p, .. } | Handle::Meta { path: p, .. } => p == path,
                    _ => false,
                })
            })
            .cloned()
    }
}
