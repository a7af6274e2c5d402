//! `unlink` and `rmdir`: removals, batched into one commit per `rm -r`.

use super::*;

impl StreamFs {
    /// Commits the removals acknowledged so far (`unlink` and `rmdir` of
    /// the mount), as one generation.
    ///
    /// `rm -r` of a version directory unlinks each of its items (14 in a
    /// meph2 build) and removes each of its directories; a commit per
    /// `unlink` would cost as many generations, each rewriting and
    /// re-signing the whole stream's metadata. So `unlink` only records the
    /// removal (the path leaves listings at once and stays readable by path,
    /// as removed paths do), and the batch is committed:
    /// - at the `rmdir` of a version directory (or one above it, per the
    ///   stream's path templates) that holds every pending removal: the last
    ///   step of `rm -r`, so one commit per version removed;
    /// - before anything reads the generated metadata (`streams/v1`, looked
    ///   up or opened through the mount), so removed paths also leave the
    ///   metadata at once for every client;
    /// - before any other commit of the mount's own (ordering);
    /// - by the generation watcher once the oldest removal is
    ///   [`REMOVAL_WINDOW`] old (a lone `rm FILE`, or `rm -r` below a
    ///   version directory), and at unmount.
    ///
    /// The price: an acknowledged removal not committed yet is lost if the
    /// daemon dies within that window (the items stay published); inserts,
    /// which a crash must not lose, still commit before `close` returns.
    pub fn flush_removals(&self) -> FsResult<()> {
        let _one = self.flushing.lock().expect("flush lock");
        let batch: Vec<(String, bool)> = {
            let w = self.in_flight.lock().expect("in-flight lock");
            w.removing.iter().map(|(p, d)| (p.clone(), *d)).collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        let files: Vec<&str> = batch
            .iter()
            .filter(|(_, is_dir)| !is_dir)
            .map(|(p, _)| p.as_str())
            .collect();
        // Only listed paths leave their directories listed: removing a kept
        // shared file (never published, not listed) changes no listing.
        let listed: Vec<&str> = {
            let view = self.current();
            files
                .iter()
                .copied()
                .filter(|f| {
                    split(f).is_some_and(|StreamPath { stream, rel }| {
                        view.streams
                            .get(stream)
                            .is_some_and(|sv| sv.files.contains_key(rel))
                    })
                })
                .collect()
        };
        let result = if files.is_empty() {
            Ok(())
        } else {
            self.commit_removals(&files)
        };
        let mut w = self.in_flight.lock().expect("in-flight lock");
        for (p, _) in &batch {
            w.removing.remove(p);
        }
        if w.removing.is_empty() {
            w.removing_since = None;
        }
        if result.is_ok() {
            // Keep the emptied directories until `rm -r` removes them
            // (those it removed already stay gone).
            for f in &listed {
                let mut d = parent_of(f);
                while d.contains('/') {
                    if !batch.iter().any(|(p, is_dir)| *is_dir && p == d) {
                        w.dirs.insert(d.to_string());
                    }
                    d = parent_of(d);
                }
            }
        }
        result
    }

    pub(super) fn commit_removals(&self, files: &[&str]) -> FsResult<()> {
        let Committed {
            value: n,
            report: c,
        } = self
            .commit_now(|txn| {
                let mut n = 0;
                for path in files {
                    if let Some(StreamPath { stream, rel }) = split(path) {
                        n += remove_path(txn, stream, rel)?;
                    }
                }
                Ok(n)
            })
            .inspect_err(|e| {
                warn!(
                    "committing the removal of {} paths failed, they stay published: {e}",
                    files.len()
                );
            })?;
        info!(
            "removed {} paths ({} items), {} new orphans (generation {})",
            files.len(),
            n,
            c.new_orphans.len(),
            c.generation
        );
        Ok(())
    }

    /// Commits pending removals once the oldest is `window` old (the
    /// generation watcher calls this).
    pub fn flush_removals_older_than(&self, window: Duration) {
        let due = self
            .in_flight
            .lock()
            .expect("in-flight lock")
            .removing_since
            .is_some_and(|t| t.elapsed() >= window);
        if due && let Err(e) = self.flush_removals() {
            warn!("committing removals: {e}");
        }
    }

    /// Reading generated metadata commits pending removals first.
    pub(super) fn flush_before_metadata(&self, path: &str) {
        if split(path).is_some_and(|p| is_v1(p.rel))
            && !self
                .in_flight
                .lock()
                .expect("in-flight lock")
                .removing
                .is_empty()
            && let Err(e) = self.flush_removals()
        {
            warn!("committing removals before reading {path}: {e}");
        }
    }

    pub fn unlink(&self, caller: Caller, parent: u64, name: impl AsRef<OsStr>) -> FsResult<()> {
        let name = name_to_create(name.as_ref())?;
        let p = self.path_of(parent)?;
        let path = join(&p, name);
        self.may_write(caller, "unlink", &path)?;
        {
            let mut w = self.in_flight.lock().expect("in-flight lock");
            if w.parked.remove(&path).is_some() || w.merged.remove(&path).is_some() {
                return Ok(());
            }
        }
        let view = self.current();
        let Some(StreamPath { stream, rel }) = split(&path) else {
            return Err(FsError::NotPermitted("the root holds only streams".into()));
        };
        match self.resolve(&view, &path) {
            None => return Err(FsError::NotFound),
            Some(Node::Dir) => return Err(FsError::IsDir),
            Some(Node::Generated(..)) if is_v1(rel) => {
                // `tar -x` and `install` unlink a file before they write
                // theirs: the copy that follows is merged as any document
                // written here, and the mount keeps generating its own.
                // The name resolves to nothing until it is created again
                // (or `DOC_GRACE` passes); nothing is removed.
                self.in_flight
                    .lock()
                    .expect("in-flight lock")
                    .replacing
                    .insert(path.clone(), Instant::now());
                info!("{path}: unlinked ahead of a copy; the mount keeps generating it");
                return Ok(());
            }
            Some(Node::Generated(..)) => {
                return Err(refuse(
                    FsError::NotPermitted("generated metadata cannot be removed".into()),
                    "unlink",
                    &path,
                ));
            }
            Some(Node::Pending(_)) => {
                return Err(refuse(
                    FsError::Busy("being written".into()),
                    "unlink",
                    &path,
                ));
            }
            Some(Node::Link(_)) => {
                let alias = rel.rsplit('/').next().unwrap_or(rel).to_string();
                let Committed {
                    value: product,
                    report,
                } = self
                    .commit(|txn| Ok(product_alias::remove(txn, stream, &alias)?))
                    .map_err(|e| refuse(e, "unlink", &path))?;
                info!(
                    "{path}: alias of {product} dropped (generation {})",
                    report.generation
                );
                return Ok(());
            }
            Some(Node::Blob(_)) => {}
        }
        let kept = view
            .snapshot
            .streams
            .get(stream)
            .is_some_and(|st| st.shared.contains_key(rel));
        let mut w = self.in_flight.lock().expect("in-flight lock");
        if (!view.streams[stream].files.contains_key(rel) && !kept)
            || w.removing.contains_key(&path)
        {
            // A removed path, still readable until reaped, or an item of a
            // version not published yet.
            return Err(FsError::NotFound);
        }
        // Committed with the removals that follow (`rm -r`): see
        // `flush_removals`.
        w.removing.insert(path, false);
        w.removing_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    pub fn rmdir(&self, caller: Caller, parent: u64, name: impl AsRef<OsStr>) -> FsResult<()> {
        let name = name_to_create(name.as_ref())?;
        let p = self.path_of(parent)?;
        let path = join(&p, name);
        self.may_write(caller, "rmdir", &path)?;
        let view = self.current();
        let Some(StreamPath { stream, rel }) = split(&path) else {
            return Err(FsError::NotPermitted("the root holds only streams".into()));
        };
        match self.resolve(&view, &path) {
            None => return Err(FsError::NotFound),
            Some(Node::Dir) => {}
            Some(_) => return Err(FsError::NotDir),
        }
        if rel.is_empty() || rel == "streams" || rel == "streams/v1" {
            return Err(refuse(
                FsError::NotPermitted("streams and their metadata directories stay".into()),
                "rmdir",
                &path,
            ));
        }
        let flush = {
            let mut w = self.in_flight.lock().expect("in-flight lock");
            if w.removing.contains_key(&path) {
                return Err(FsError::NotFound);
            }
            let has_sub = w.dirs.iter().any(|d| parent_of(d) == path);
            let listed = view.streams[stream].children.get(rel);
            let has_items = listed
                .into_iter()
                .flatten()
                .any(|(n, _)| !w.removing.contains_key(&join(&path, n)));
            if has_items || has_sub {
                return Err(FsError::NotEmpty);
            }
            w.dirs.remove(&path);
            if listed.is_some() {
                // Emptied by pending removals: gone from its parent's
                // listing now, from the view at their commit.
                w.removing.insert(path.clone(), true);
            }
            // The end of `rm -r` of a version directory (or one above):
            // commit its removals now if they are all there is. Below a
            // version (`rm -r` visits kernel directories before the
            // version's own files) the batch goes on.
            let below = format!("{path}/");
            let version_depth = self
                .store
                .config()
                .stream(stream)
                .map_or(0, |c| c.layout.version_depth());
            rel.split('/').count() <= version_depth
                && !w.removing.is_empty()
                && w.removing
                    .keys()
                    .all(|p| *p == path || p.starts_with(&below))
        };
        if flush {
            self.flush_removals()?;
        }
        Ok(())
    }
}
