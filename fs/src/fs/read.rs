//! The read path: pool blobs and generated documents.

use super::*;

/// Up to `size` bytes at `offset`: fewer only at the end of the file.
pub(super) fn read_full(f: &File, offset: u64, size: u32) -> FsResult<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

impl StreamFs {
    /// A reader of one generation's document.
    pub(super) fn open_doc(&self, d: &Doc) -> FsResult<Opened> {
        Ok(Opened {
            fh: self.new_handle(Handle::Read(d.file.try_clone()?)),
            backing: None,
            direct_io: true,
        })
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.handle(fh).ok_or(FsError::BadHandle)?;
        let mut h = h.lock().expect("handle lock");
        match &mut *h {
            Handle::Read(f) => read_full(f, offset, size),
            Handle::Write {
                writer: Some(w), ..
            } => {
                let mut buf = vec![0u8; size as usize];
                let n = w.file()?.read_at(&mut buf, offset)?;
                buf.truncate(n);
                Ok(buf)
            }
            Handle::Meta { buf, .. } | Handle::Bytes(buf) => {
                let start = (offset as usize).min(buf.len());
                let end = (start + size as usize).min(buf.len());
                Ok(buf[start..end].to_vec())
            }
            _ => Err(FsError::BadHandle),
        }
    }

    /// A read of a file the kernel opened without asking (a mount whose
    /// opens the kernel answers, see `FuseFs`): by content number, so the
    /// bytes are those of the item or document the kernel was handed, even
    /// after a commit.
    pub fn read_by_inode(&self, ino: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        match self.inodes.content(ino) {
            Some(Content::Doc(d)) => read_full(&d.file, offset, size),
            Some(Content::Item(item)) => {
                let file = self
                    .blob_file(&item.sha256)
                    .map_err(|e| refuse(e, "read", &self.inodes.path(ino).unwrap_or_default()))?;
                read_full(&file, offset, size)
            }
            // Only content is ever read without an open.
            _ => Err(FsError::BadHandle),
        }
    }

    /// An open, verified pool blob, from the last ones read.
    pub(super) fn blob_file(&self, sha256: &str) -> FsResult<Arc<File>> {
        if let Some(f) = self.open_blobs.lock().expect("open blobs lock").get(sha256) {
            return Ok(f.clone());
        }
        let f = Arc::new(self.blobs.open(self.store.pool(), sha256)?);
        self.open_blobs
            .lock()
            .expect("open blobs lock")
            .put(sha256.to_string(), f.clone());
        Ok(f)
    }
}
