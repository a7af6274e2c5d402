//! Directory listings (`readdir`, `readdirplus`).

use super::*;

impl StreamFs {
    /// Directory entries (`.` and `..` included): (inode, kind, name).
    pub fn readdir(&self, ino: u64) -> FsResult<Vec<(u64, Kind, String)>> {
        let path = self.path_of(ino)?;
        let view = self.current();
        match self.resolve(&view, &path) {
            Some(Node::Dir) => {}
            Some(_) => return Err(FsError::NotDir),
            None => return Err(FsError::NotFound),
        }
        let mut names: BTreeMap<String, Kind> = BTreeMap::new();
        match split(&path) {
            None => {
                for s in view.streams.keys() {
                    names.insert(s.clone(), Kind::Dir);
                }
            }
            Some(Place { stream, rel }) => {
                let sv = &view.streams[stream];
                if rel.is_empty() {
                    names.insert("streams".into(), Kind::Dir);
                }
                if rel == "streams" {
                    names.insert("v1".into(), Kind::Dir);
                } else if rel == "streams/v1" {
                    for n in sv.generated.keys() {
                        names.insert(n.clone(), Kind::File);
                    }
                } else {
                    let w = self.work.lock().expect("work lock");
                    for (n, is_dir) in sv.children.get(rel).into_iter().flatten() {
                        if !w.removing.is_empty() && w.removing.contains_key(&join(&path, n)) {
                            continue;
                        }
                        names.insert(n.clone(), if *is_dir { Kind::Dir } else { Kind::File });
                    }
                    for d in &w.dirs {
                        if parent_of(d) == path {
                            let n = d.rsplit('/').next().unwrap_or(d);
                            names.entry(n.to_string()).or_insert(Kind::Dir);
                        }
                    }
                }
            }
        }
        let parent = parent_of(&path).to_string();
        let mut out = vec![
            (ino, Kind::Dir, ".".to_string()),
            (self.inodes.register(&parent), Kind::Dir, "..".to_string()),
        ];
        for (n, k) in names {
            let child = join(&path, &n);
            let ino = match (k, self.resolve(&view, &child)) {
                (Kind::File, Some(node)) => self.ino_for(&child, &node),
                _ => self.inodes.register(&child),
            };
            out.push((ino, k, n));
        }
        Ok(out)
    }

    /// [`StreamFs::readdir`] with each entry's attributes, for READDIRPLUS:
    /// the kernel learns every child's entry and attributes with the
    /// listing, so `find` and `ls -l` need no `lookup` per name afterwards.
    /// Same entries in the same order as `readdir` (the kernel may switch
    /// between the two within one listing, by offset); an entry that
    /// vanished since the listing was taken (a concurrent removal) gets no
    /// attributes, and the adapter lists it without. Entries from position
    /// `offset` on, each handed to the kernel (see [`StreamFs::hand_out`]):
    /// the adapter forgets those it finds no room for.
    pub fn readdir_plus(&self, ino: u64, offset: usize) -> FsResult<Vec<PlusEntry>> {
        let path = self.path_of(ino)?;
        let entries = self.readdir(ino)?;
        let view = self.current();
        let parent = parent_of(&path).to_string();
        Ok(entries
            .into_iter()
            .enumerate()
            .skip(offset)
            .map(|(i, (ino, kind, name))| {
                let p = match i {
                    0 => path.clone(),
                    1 => parent.clone(),
                    _ => join(&path, &name),
                };
                let attr = self.resolve(&view, &p).map(|node| {
                    // The kernel takes no reference for `.` and `..`.
                    if i > 1 {
                        self.hand_out(&p, &node);
                    }
                    self.attr_of(&view, &p, &node)
                });
                (ino, kind, name, attr)
            })
            .collect())
    }
}
