//! Directory listings (`readdir`, `readdirplus`), driven into a replier
//! (the adapter's kernel reply): an entry is handed out (see
//! [`StreamFs::record_handed_out`]) only once the replier took it, so what the
//! kernel holds is counted in this layer alone.

use super::*;

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: String,
    /// Where the next listing starts when this entry is the last one sent.
    pub next_offset: u64,
}

/// Where a plain listing goes.
pub trait DirectoryReplier {
    /// Whether `entry` was taken: false when the reply is full, and neither
    /// it nor any later entry is sent.
    fn add(&mut self, entry: &DirEntry) -> bool;
}

/// Where a listing with attributes (READDIRPLUS) goes: each entry taken is
/// an entry the kernel holds until it forgets it.
pub trait DirectoryPlusReplier {
    /// As [`DirectoryReplier::add`].
    fn add(&mut self, entry: &DirEntry, attr: &Attr) -> bool;
}

/// A replier that keeps every entry (tests, and callers that want a list).
impl DirectoryReplier for Vec<DirEntry> {
    fn add(&mut self, entry: &DirEntry) -> bool {
        self.push(entry.clone());
        true
    }
}

impl StreamFs {
    /// The entries of directory `ino` from position `offset` on, into
    /// `replier` until it is full.
    pub fn readdir(
        &self,
        ino: u64,
        offset: u64,
        replier: &mut impl DirectoryReplier,
    ) -> FsResult<()> {
        for e in self.entries(ino)?.iter().skip(offset as usize) {
            if !replier.add(e) {
                break;
            }
        }
        Ok(())
    }

    /// Every entry of directory `ino` (`.` and `..` included).
    pub fn list(&self, ino: u64) -> FsResult<Vec<DirEntry>> {
        self.entries(ino)
    }

    /// [`StreamFs::readdir`] with each entry's attributes, for READDIRPLUS:
    /// the kernel learns every child's entry and attributes with the
    /// listing, so `find` and `ls -l` need no `lookup` per name afterwards.
    /// Same entries in the same order as `readdir` (the kernel may switch
    /// between the two within one listing, by offset). An entry that
    /// vanished since the listing was taken (a concurrent removal) is
    /// listed with attributes the kernel may not keep (a zero lifetime).
    pub fn readdir_plus(
        &self,
        ino: u64,
        offset: u64,
        replier: &mut impl DirectoryPlusReplier,
    ) -> FsResult<()> {
        let path = self.path_of(ino)?;
        let entries = self.entries(ino)?;
        let view = self.current();
        let parent = parent_of(&path).to_string();
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            let p = match i {
                0 => path.clone(),
                1 => parent.clone(),
                _ => join(&path, &e.name),
            };
            let node = self.resolve(&view, &p);
            let attr = match &node {
                Some(node) => self.attr_of(&view, &p, node),
                None => vanished(e),
            };
            if !replier.add(e, &attr) {
                break;
            }
            // The kernel takes no reference for `.` and `..`. It takes one
            // for a vanished entry too: counted, so that its FORGET leaves
            // the count of a number it also holds otherwise right.
            if i > 1 {
                match node {
                    Some(node) => self.record_handed_out(&p, &node),
                    None => self.inodes.hand_out(attr.ino, &p, None),
                }
            }
        }
        Ok(())
    }

    /// Directory entries (`.` and `..` included).
    fn entries(&self, ino: u64) -> FsResult<Vec<DirEntry>> {
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
            Some(StreamPath { stream, rel }) => {
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
                    let w = self.in_flight.lock().expect("in-flight lock");
                    for (n, is_dir) in sv.children.get(rel).into_iter().flatten() {
                        if !w.removing.is_empty() && w.removing.contains_key(&join(&path, n)) {
                            continue;
                        }
                        let kind = if *is_dir {
                            Kind::Dir
                        } else if !sv.links.is_empty() && sv.links.contains_key(&join(rel, n)) {
                            Kind::Symlink
                        } else {
                            Kind::File
                        };
                        names.insert(n.clone(), kind);
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
            (ino_of(&parent), Kind::Dir, "..".to_string()),
        ];
        for (n, k) in names {
            let child = join(&path, &n);
            let ino = match (k, self.resolve(&view, &child)) {
                (Kind::File, Some(node)) => self.ino_for(&child, &node),
                _ => ino_of(&child),
            };
            out.push((ino, k, n));
        }
        Ok(out
            .into_iter()
            .zip(1..)
            .map(|((ino, kind, name), next_offset)| DirEntry {
                ino,
                kind,
                name,
                next_offset,
            })
            .collect())
    }
}

/// The attributes of an entry that vanished since its listing was taken.
fn vanished(e: &DirEntry) -> Attr {
    Attr {
        ino: e.ino,
        kind: e.kind,
        size: 0,
        mtime: 0,
        perm: 0o444,
        uid: 0,
        gid: 0,
        ttl_secs: 0,
    }
}
