//! The mount's view of one generation of the store: what each path shows.

use super::*;

/// A file's content when the store is not the place to read it from.
#[derive(Clone, Debug)]
pub(super) struct FileInfo {
    pub(super) blob: BlobRef,
    pub(super) mtime: i64,
}

/// One stream as the current generation shows it.
#[derive(Debug, Default)]
pub(super) struct StreamView {
    /// Items of published versions, by stream-relative path.
    pub(super) files: BTreeMap<String, FileInfo>,
    /// Directory (stream-relative, `""` the stream's root) → name → is a
    /// directory.
    pub(super) children: BTreeMap<String, BTreeMap<String, bool>>,
    /// Readable by path, not listed: removed paths until reaped, items of
    /// versions not published yet whose data is present, and shared files
    /// kept until a product of their version exists.
    pub(super) hidden: BTreeMap<String, FileInfo>,
    /// The directories of hidden paths: resolvable, so the paths are.
    pub(super) hidden_dirs: BTreeSet<String>,
    /// Generated `streams/v1` documents, by name.
    pub(super) generated: BTreeMap<String, Doc>,
    /// Product aliases: the symlink's stream-relative path (beside the
    /// product's directory) → its target (that directory's name).
    pub(super) links: BTreeMap<String, String>,
}

#[derive(Debug)]
pub(super) struct View {
    pub(super) generation: u64,
    pub(super) snapshot: Snapshot,
    /// Modification time of the generation: that of directories.
    pub(super) mtime: i64,
    pub(super) streams: BTreeMap<String, StreamView>,
}

impl View {
    pub(super) fn build(store: &Store) -> FsResult<View> {
        View::from_snapshot(store, store.snapshot()?)
    }

    /// The view of a generation whose state is already in hand (the one a
    /// commit of the mount's own just made).
    pub(super) fn from_snapshot(store: &Store, snapshot: Snapshot) -> FsResult<View> {
        let mtime = std::fs::metadata(&snapshot.dir)
            .map(|m| m.mtime())
            .unwrap_or(0);
        let pool = store.pool();
        let mut streams = BTreeMap::new();
        for (name, st) in &snapshot.streams {
            let mut v = StreamView::default();
            let hold = unpublishable_versions(st, pool);
            for item in st.products.items() {
                let (Some(path), Some(sha)) = (item.path(), item.sha256()) else {
                    continue;
                };
                let info = FileInfo {
                    blob: BlobRef {
                        sha256: sha.to_string(),
                        size: item.size().unwrap_or(0),
                    },
                    mtime: st.mtimes.get(path).copied().unwrap_or(mtime),
                };
                if !hold.is_empty()
                    && hold.contains(&(item.product.to_string(), item.version.to_string()))
                {
                    if pool.contains(sha) {
                        v.hidden.insert(path.to_string(), info);
                    }
                    continue;
                }
                v.files.insert(path.to_string(), info);
            }
            for (path, r) in &st.removed {
                if !v.files.contains_key(path) {
                    v.hidden.entry(path.clone()).or_insert(FileInfo {
                        blob: r.blob.clone(),
                        mtime: r.at,
                    });
                }
            }
            for (path, b) in &st.shared {
                if !v.files.contains_key(path) {
                    v.hidden.entry(path.clone()).or_insert(FileInfo {
                        blob: b.clone(),
                        mtime: st.mtimes.get(path).copied().unwrap_or(mtime),
                    });
                }
            }
            for path in v.hidden.keys() {
                let mut d = parent_of(path);
                while !d.is_empty() {
                    v.hidden_dirs.insert(d.to_string());
                    d = parent_of(d);
                }
            }
            // Paths come sorted, so most share their directory with the one
            // before: only the names past the shared directories are new.
            let mut last_dir = None::<&str>;
            for path in v.files.keys() {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
                if last_dir != Some(dir) {
                    add_dirs(&mut v.children, dir);
                    last_dir = Some(dir);
                }
                let names = v.children.get_mut(dir).expect("added");
                if !names.contains_key(name) {
                    names.insert(name.to_string(), false);
                }
            }
            let aliases = product_alias::all(st);
            let dirs = if aliases.is_empty() {
                BTreeMap::new()
            } else {
                product_alias::product_dirs(&st.products)
            };
            for (alias, product) in aliases {
                let Some(dir) = dirs.get(&product) else {
                    continue;
                };
                let (parent, target) = match dir.rsplit_once('/') {
                    Some((parent, base)) => (parent, base),
                    None => ("", dir.as_str()),
                };
                let Some(siblings) = v.children.get_mut(parent) else {
                    continue;
                };
                if siblings.contains_key(&alias) {
                    continue;
                }
                siblings.insert(alias.clone(), false);
                let link = if parent.is_empty() {
                    alias
                } else {
                    format!("{parent}/{alias}")
                };
                v.links.insert(link, target.to_string());
            }
            let v1 = snapshot.streams_v1(name);
            if let Ok(rd) = std::fs::read_dir(&v1) {
                for e in rd.flatten() {
                    let doc = e.file_name().to_string_lossy().into_owned();
                    let file = File::open(e.path())?;
                    let m = file.metadata()?;
                    let path = format!("{name}/streams/v1/{doc}");
                    v.generated.insert(
                        doc,
                        Doc {
                            ino: doc_ino(&path, Doc::file_id(&m)),
                            file: Arc::new(file),
                            size: m.len(),
                            mtime: m.mtime(),
                        },
                    );
                }
            }
            streams.insert(name.clone(), v);
        }
        Ok(View {
            generation: snapshot.generation,
            snapshot,
            mtime,
            streams,
        })
    }
}

/// Records directory `dir` (stream-relative, `""` the root) and every
/// directory above it in `children`, each in its parent's names.
fn add_dirs(children: &mut BTreeMap<String, BTreeMap<String, bool>>, dir: &str) {
    if children.contains_key(dir) {
        return;
    }
    children.insert(dir.to_string(), BTreeMap::new());
    if dir.is_empty() {
        return;
    }
    let (parent, name) = dir.rsplit_once('/').unwrap_or(("", dir));
    add_dirs(children, parent);
    children
        .get_mut(parent)
        .expect("added")
        .entry(name.to_string())
        .or_insert(true);
}

/// What a mount path names.
#[derive(Clone, Debug)]
pub(super) enum Node {
    Dir,
    Blob(FileInfo),
    Generated(Doc),
    /// A file being written, or written and waiting for its rename.
    Pending(u64),
    /// A product alias: a symlink to the product's directory.
    Link(String),
}

impl StreamFs {
    pub(super) fn reload(&self) -> Option<Arc<View>> {
        self.reload_from(None)
    }

    /// Moves the view to the current generation, built from `state` when
    /// the caller holds that generation's state (its own commit), else read
    /// from the store.
    pub(super) fn reload_from(&self, state: Option<Snapshot>) -> Option<Arc<View>> {
        let _one = self.reloading.lock().expect("reload lock");
        let cur = self.current();
        if self
            .store
            .current_generation()
            .is_ok_and(|g| g == cur.generation)
        {
            // Another reload got there first.
            return Some(cur);
        }
        let built = match state {
            Some(snap) => View::from_snapshot(&self.store, snap),
            None => View::build(&self.store),
        };
        match built {
            Ok(nv) => {
                let nv = Arc::new(nv);
                {
                    let mut v = self.view.lock().expect("view lock");
                    if nv.generation < v.generation {
                        return Some(v.clone());
                    }
                    *v = nv.clone();
                }
                self.view_changed.notify_all();
                let mut w = self.in_flight.lock().expect("in-flight lock");
                // Directories made by mkdir that now hold items exist
                // through them: forgetting them lets a directory go when
                // its items go without `rmdir` (keep retention, clean-md).
                w.dirs.retain(|d| {
                    split(d).is_none_or(|pl| {
                        nv.streams
                            .get(pl.stream)
                            .is_none_or(|s| !s.children.contains_key(pl.rel))
                    })
                });
                Some(nv)
            }
            Err(e) => {
                warn!("reloading the store failed: {e}");
                None
            }
        }
    }
}
