//! The insert path: files written, closed and committed; `mkdir`, rsync's renames, `setattr`.

use super::*;

impl StreamFs {
    pub(super) fn open_writer(&self, path: &str, caller: Caller) -> FsResult<Opened> {
        let writer = self.store.pool().writer()?;
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .writing
            .insert(path.to_string(), 0);
        Ok(Opened {
            fh: self.new_handle(Handle::Write {
                path: path.to_string(),
                writer: Some(writer),
                opener: caller.process,
            }),
            backing: None,
            // Writes go straight to the daemon (no copy into the mount's
            // page cache first, which cost as much as the staging write
            // itself); the data is read back from the pool afterwards.
            direct_io: true,
        })
    }

    /// Checks that data written at `path` could be inserted: a pending item
    /// declared by metadata, or a path the stream's templates explain.
    pub(super) fn check_insertable(&self, path: &str) -> FsResult<()> {
        let Some(StreamPath { stream, rel }) = split(path) else {
            return Err(FsError::Denied("the root holds only streams".into()));
        };
        let cfg = self
            .store
            .config()
            .stream(stream)
            .map_err(|_| FsError::NotFound)?;
        let target = match rel.rsplit_once('/') {
            Some((d, n)) => join(d, staging_target(n).unwrap_or(n)),
            None => staging_target(rel).unwrap_or(rel).to_string(),
        };
        let view = self.current();
        let declared = view.snapshot.streams[stream]
            .products
            .items()
            .any(|i| i.path() == Some(target.as_str()));
        if declared || (RelPath::new(&target).is_ok() && cfg.layout.place(&target).is_some()) {
            Ok(())
        } else {
            Err(FsError::Denied(format!(
                "no path template of stream {stream} and no pending item explains '{target}'"
            )))
        }
    }

    /// The checks every new name passes: the caller may write, the name is
    /// free, its parent is a directory. Returns the new path and the view.
    pub(super) fn new_entry(
        &self,
        caller: Caller,
        parent: u64,
        name: &str,
        op: &'static str,
    ) -> FsResult<(String, Arc<View>)> {
        let p = self.path_of(parent)?;
        let path = join(&p, name);
        self.may_write(caller, op, &path)?;
        let view = self.current();
        if self.resolve(&view, &path).is_some() {
            return Err(FsError::Exists);
        }
        match self.resolve(&view, &p) {
            Some(Node::Dir) => {}
            Some(_) => return Err(FsError::NotDir),
            None => return Err(FsError::NotFound),
        }
        Ok((path, view))
    }

    /// A handle writing a document into `streams/v1/` (see
    /// `InFlight::meta_writers`).
    pub(super) fn open_meta(&self, path: &str, caller: Caller) -> Opened {
        {
            let mut w = self.in_flight.lock().expect("in-flight lock");
            w.writing_doc(path);
            *w.meta_writers.entry(path.to_string()).or_default() += 1;
            w.writing.entry(path.to_string()).or_insert(0);
        }
        Opened {
            fh: self.new_handle(Handle::Meta {
                path: path.to_string(),
                buf: Vec::new(),
                opener: caller.process,
            }),
            backing: None,
            direct_io: true,
        }
    }

    /// `creat`/`open(O_CREAT)` of a new file.
    pub fn create(
        &self,
        caller: Caller,
        parent: u64,
        name: impl AsRef<OsStr>,
    ) -> FsResult<Created> {
        let name = name_to_create(name.as_ref())?;
        let path = join(&self.path_of(parent)?, name);
        let concurrent_doc = split(&path).is_some_and(|p| is_v1(p.rel)) && {
            let w = self.in_flight.lock().expect("in-flight lock");
            w.meta_writers.contains_key(&path) || w.merged(&path).is_some()
        };
        if concurrent_doc {
            // Another build's document of the same name is being written,
            // or was merged moments ago.
            self.may_write(caller, "create", &path)?;
            let view = self.current();
            let opened = self.open_meta(&path, caller);
            self.record_handed_out(&path, &Node::Pending(0));
            return Ok(Created {
                attr: self.attr_of(&view, &path, &Node::Pending(0)),
                opened,
            });
        }
        let (path, view) = self.new_entry(caller, parent, name, "create")?;
        let Some(StreamPath { rel, .. }) = split(&path) else {
            return Err(refuse(
                FsError::Denied("the root holds only streams".into()),
                "create",
                &path,
            ));
        };
        let opened = if is_v1(rel) {
            self.open_meta(&path, caller)
        } else {
            self.check_insertable(&path)
                .map_err(|e| refuse(e, "create", &path))?;
            // A file written again right after its `unlink` (`tar -x`,
            // `install` replace files so): the removal is cancelled, and the
            // file must get the content it has (items are immutable), so an
            // identical copy changes nothing and loses nothing.
            let mut w = self.in_flight.lock().expect("in-flight lock");
            if w.removing.get(&path) == Some(&false) {
                w.removing.remove(&path);
                if w.removing.is_empty() {
                    w.removing_since = None;
                }
                info!("{path}: written again right after its unlink; the removal is cancelled");
            }
            drop(w);
            self.open_writer(&path, caller)?
        };
        let attr = self.attr_of(&view, &path, &Node::Pending(0));
        self.record_handed_out(&path, &Node::Pending(0));
        Ok(Created { attr, opened })
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.handle(fh).ok_or(FsError::BadHandle)?;
        let mut h = h.lock().expect("handle lock");
        match &mut *h {
            Handle::Write {
                path,
                writer: Some(w),
                ..
            } => {
                w.write_at(offset, data)?;
                self.in_flight
                    .lock()
                    .expect("in-flight lock")
                    .writing
                    .insert(path.clone(), w.len());
            }
            Handle::Meta { path, buf, .. } => {
                let end = offset as usize + data.len();
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[offset as usize..end].copy_from_slice(data);
                self.in_flight
                    .lock()
                    .expect("in-flight lock")
                    .writing
                    .insert(path.clone(), buf.len() as u64);
            }
            _ => return Err(FsError::BadHandle),
        }
        Ok(data.len() as u32)
    }

    /// `close` (FLUSH): the insert happens here, so the writer learns of a
    /// refusal or a checksum mismatch from `close` itself.
    ///
    /// Every `close` of a descriptor sends a FLUSH, also the one a shell
    /// makes right after `dup2` when it sets up `cmd > file`, before `cmd`
    /// writes anything: a FLUSH of a handle that holds no data yet leaves it
    /// open, and the RELEASE after the last close inserts what it holds
    /// (an empty file included).
    ///
    /// A FLUSH also comes from every other process that closes a copy of
    /// the descriptor: a child forked while the file was open (its `exec`
    /// closes the inherited copy), or each command of `{ a; b; } > file`.
    /// Only the opener's close inserts; the others' leave the file open,
    /// and when the opener is gone first, the RELEASE after the last close
    /// inserts. A caller of unknown process (one in another pid namespace)
    /// is taken for the opener.
    pub fn flush(&self, fh: u64, caller: Caller) -> FsResult<()> {
        self.insert_at_close(fh, Some(caller))
    }

    /// Inserts what handle `fh` holds: at a FLUSH from `closer`, or at the
    /// RELEASE (`closer` None).
    pub(super) fn insert_at_close(&self, fh: u64, closer: Option<Caller>) -> FsResult<()> {
        let Some(h) = self.handle(fh) else {
            return Ok(());
        };
        let mut h = h.lock().expect("handle lock");
        let (empty, opener) = match &*h {
            Handle::Write { writer, opener, .. } => {
                (writer.as_ref().is_none_or(|w| w.is_empty()), *opener)
            }
            Handle::Meta { buf, opener, .. } => (buf.is_empty(), *opener),
            _ => return Ok(()),
        };
        if let Some(closer) = closer {
            if empty {
                return Ok(());
            }
            if let (Some(o), Some(c)) = (opener, closer.process)
                && o != c
            {
                debug!("close of handle {fh} by process {c}, not its opener {o}: insert deferred");
                return Ok(());
            }
        }
        let taken = std::mem::replace(&mut *h, Handle::Done);
        // The path stays "being written" until its commit is shown: a
        // second writer racing for it gets EBUSY, never a moment where the
        // path is missing.
        let (path, r) = match taken {
            Handle::Write { path, writer, .. } => {
                let r = writer
                    .expect("writer until flushed")
                    .finish()
                    .map_err(FsError::from)
                    .and_then(|staged| self.insert_closed(&path, Parked::Blob(staged)));
                (path, r)
            }
            Handle::Meta { path, buf, .. } => {
                let r = self.insert_closed(&path, Parked::Meta(buf));
                // Copies of the same products file may be written at once
                // (`InFlight::meta_writers`): the path is free when the last ends.
                let mut w = self.in_flight.lock().expect("in-flight lock");
                let n = w.meta_writers.get(&path).map_or(0, |n| n.saturating_sub(1));
                if n == 0 {
                    w.meta_writers.remove(&path);
                    w.writing.remove(&path);
                } else {
                    w.meta_writers.insert(path.clone(), n);
                }
                return r;
            }
            _ => return Ok(()),
        };
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .writing
            .remove(&path);
        r
    }

    /// A file closed by its opener: under an rsync staging name it is
    /// parked until its rename; otherwise its data (a blob) or document (a
    /// `streams/v1` file) is inserted now.
    pub(super) fn insert_closed(&self, path: &str, written: Parked) -> FsResult<()> {
        let name = path.rsplit('/').next().unwrap_or(path);
        if staging_target(name).is_some() {
            self.in_flight
                .lock()
                .expect("in-flight lock")
                .parked
                .insert(path.to_string(), written);
            return Ok(());
        }
        match written {
            Parked::Blob(staged) => self
                .insert_blob(path, staged)
                .map_err(|e| refuse(e, "insert", path)),
            Parked::Meta(buf) => {
                self.insert_meta(path, &buf)
                    .map_err(|e| refuse(e, "metadata insert", path))?;
                self.note_merged(path, buf);
                Ok(())
            }
        }
    }

    pub(super) fn insert_blob(&self, path: &str, staged: Staged) -> FsResult<()> {
        let Some(StreamPath { stream, rel }) = split(path) else {
            return Err(FsError::NotFound);
        };
        let rel = RelPath::new(rel).map_err(FsError::Invalid)?;
        let sha = staged.blob.sha256.clone();
        let Committed {
            value: (new_blob, outcome),
            report,
        } = self.commit(|txn| {
            // Under the lock: when the pool lacks the blob, what enters it
            // is the staged file, hashed as it was written.
            let new_blob = !self.store.pool().contains(&sha);
            Ok((new_blob, put_blob(txn, stream, &rel, staged)?))
        })?;
        if new_blob {
            self.blobs.trust(self.store.pool(), &sha);
        }
        info!(
            "inserted {path}: {outcome:?} (generation {})",
            report.generation
        );
        Ok(())
    }

    /// A document written into `streams/v1/`: a products file is inserted
    /// by metadata; an index (a build's own) and signatures are accepted and
    /// ignored, since the mount generates and signs its own.
    pub(super) fn insert_meta(&self, path: &str, buf: &[u8]) -> FsResult<()> {
        let Some(StreamPath { stream, .. }) = split(path) else {
            return Err(FsError::NotFound);
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        if !name.ends_with(".json") {
            info!("{path}: ignored (signatures are generated by the mount)");
            return Ok(());
        }
        if buf.is_empty() {
            return Ok(());
        }
        let doc = streamfs_core::json::parse_object(path, buf)?;
        match doc.get("format").and_then(serde_json::Value::as_str) {
            Some("index:1.0") => {
                info!("{path}: a build's index, ignored (the mount generates its own)");
                return Ok(());
            }
            Some("products:1.0") | None => {}
            Some(other) => {
                return Err(FsError::Invalid(format!(
                    "format '{other}' is neither products:1.0 nor index:1.0"
                )));
            }
        }
        let products = Products::from_map(path, doc)?;
        let Committed {
            value: report,
            report: c,
        } = self.commit(|txn| Ok(insert_metadata(txn, stream, &products)?))?;
        info!(
            "inserted metadata {path}: {} versions added, {} existing, {} superseded, {} items pending (generation {})",
            report.added.len(),
            report.existing.len(),
            report.superseded.len(),
            report.pending,
            c.generation
        );
        Ok(())
    }

    /// A document written at `path` was merged: when the mount does not
    /// generate that name, it stays reachable for a moment (see
    /// `InFlight::merged`).
    fn note_merged(&self, path: &str, written: Vec<u8>) {
        let generated = split(path).is_some_and(|StreamPath { stream, rel }| {
            let name = rel.strip_prefix("streams/v1/").unwrap_or(rel);
            self.current()
                .streams
                .get(stream)
                .is_some_and(|sv| sv.generated.contains_key(name))
        });
        if !generated {
            self.in_flight
                .lock()
                .expect("in-flight lock")
                .note_merged(path, written);
        }
    }

    pub fn mkdir(&self, caller: Caller, parent: u64, name: impl AsRef<OsStr>) -> FsResult<Attr> {
        let name = name_to_create(name.as_ref())?;
        let (path, view) = self.new_entry(caller, parent, name, "mkdir")?;
        let ok = match split(&path) {
            None => false,
            Some(StreamPath { stream, rel }) => {
                !rel.is_empty()
                    && !rel.starts_with("streams/")
                    && rel != "streams"
                    && self
                        .store
                        .config()
                        .stream(stream)
                        .is_ok_and(|c| c.layout.allows_dir(rel))
            }
        };
        if !ok {
            return Err(refuse(
                FsError::Denied("no path template of the stream has such a directory".into()),
                "mkdir",
                &path,
            ));
        }
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .dirs
            .insert(path.clone());
        self.record_handed_out(&path, &Node::Dir);
        Ok(self.attr_of(&view, &path, &Node::Dir))
    }

    /// `rename`: rsync's staging file onto its final name is the insert.
    /// `flags` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`, …) are refused: an
    /// insert replaces nothing and exchanges nothing.
    pub fn rename(
        &self,
        caller: Caller,
        (parent, name): (u64, impl AsRef<OsStr>),
        (newparent, newname): (u64, impl AsRef<OsStr>),
        flags: u32,
    ) -> FsResult<()> {
        let (name, newname) = (
            name_to_create(name.as_ref())?,
            name_to_create(newname.as_ref())?,
        );
        if flags != 0 {
            return Err(refuse(
                FsError::Invalid(format!("flags {flags:#x} are not supported")),
                "rename",
                &join(&self.path_of(parent)?, name),
            ));
        }
        let from = join(&self.path_of(parent)?, name);
        let to = join(&self.path_of(newparent)?, newname);
        self.may_write(caller, "rename", &from)?;
        let same_stream = split(&from).map(|p| p.stream) == split(&to).map(|p| p.stream);
        let parked = if same_stream {
            self.in_flight
                .lock()
                .expect("in-flight lock")
                .parked
                .remove(&from)
        } else {
            None
        };
        let what = format!("{from} -> {to}");
        match parked {
            Some(Parked::Blob(staged)) => {
                self.check_insertable(&to)
                    .map_err(|e| refuse(e, "rename", &what))?;
                self.insert_blob(&to, staged)
                    .map_err(|e| refuse(e, "rename", &what))
            }
            Some(Parked::Meta(buf)) => {
                if !split(&to).is_some_and(|p| is_v1(p.rel)) {
                    return Err(refuse(
                        FsError::NotPermitted("metadata stays in streams/v1".into()),
                        "rename",
                        &what,
                    ));
                }
                self.insert_meta(&to, &buf)
                    .map_err(|e| refuse(e, "rename", &what))?;
                self.note_merged(&to, buf);
                Ok(())
            }
            None => Err(refuse(
                FsError::NotPermitted(
                    "only a staging file written through the mount can be renamed (onto its final name)".into(),
                ),
                "rename",
                &what,
            )),
        }
    }

    /// `chmod`, `chown`, `utimes` ([`AttrChange::other`]) succeed without
    /// effect; a size change is only possible on data being written. Either
    /// is a write: refused to whoever may not write, so that nobody else
    /// truncates an insert in progress or sees a `touch` succeed.
    pub fn setattr(
        &self,
        caller: Caller,
        ino: u64,
        fh: Option<u64>,
        AttrChange { size, other }: AttrChange,
    ) -> FsResult<Attr> {
        let path = self.path_of(ino)?;
        if size.is_some() || other {
            let op = if size.is_some() {
                "truncate"
            } else {
                "setattr"
            };
            self.may_write(caller, op, &path)?;
        }
        if let Some(size) = size {
            let h = match fh.and_then(|fh| self.handle(fh)) {
                Some(h) => Some(h),
                None => self.writer_of(&path),
            };
            let mut done = false;
            if let Some(h) = h {
                let mut h = h.lock().expect("handle lock");
                match &mut *h {
                    Handle::Write {
                        writer: Some(w), ..
                    } => {
                        w.set_len(size)?;
                        self.in_flight
                            .lock()
                            .expect("in-flight lock")
                            .writing
                            .insert(path.clone(), size);
                        done = true;
                    }
                    Handle::Meta { buf, .. } => {
                        buf.resize(size as usize, 0);
                        done = true;
                    }
                    _ => {}
                }
            }
            if !done && self.stat_path(&path)?.size != size {
                return Err(refuse(
                    FsError::NotPermitted("published items are immutable".into()),
                    "truncate",
                    &path,
                ));
            }
        }
        self.getattr(ino)
    }
}
