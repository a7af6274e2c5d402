//! The in-memory model of the streams: what each operation should do.

use super::*;

/// How an operation ended: success, or failure (with the errno when the
/// model predicts one; `mountctl` failures have none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Err(Option<i32>),
}

pub(crate) fn same_outcome(model: Outcome, real: Outcome) -> bool {
    match (model, real) {
        (Outcome::Ok, Outcome::Ok) => true,
        (Outcome::Err(None), Outcome::Err(_)) => true,
        (Outcome::Err(Some(a)), Outcome::Err(Some(b))) => a == b,
        _ => false,
    }
}

/// An item: its path and content.
pub(crate) type Items = BTreeMap<String, (String, Content)>;

/// One stream.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamModel {
    /// (product, version) → item name → (path, content): every version,
    /// published or waiting for data.
    pub(crate) versions: BTreeMap<(String, String), Items>,
    /// Removed paths, readable by path until their blob is reaped.
    pub(crate) removed: BTreeMap<String, Content>,
    /// Shared files (`squashfs`) inserted before any product of their
    /// version: kept (and readable by path) until one exists.
    pub(crate) shared: BTreeMap<String, Content>,
    /// Label of each version (what `flatten` shows).
    pub(crate) labels: BTreeMap<(String, String), String>,
}

/// The reference model. Rules, from ARCHITECTURE.md §2-§4:
/// - a file written at a path the templates explain becomes an item of the
///   product its path names, at its version; a shared file (`squashfs`)
///   belongs to every product of its stream with files under its directory
///   at that version, also those that arrive later; with no such product
///   yet, it is kept until one exists (and counts as referenced);
/// - a path declared by metadata takes only its declared content (`EIO`
///   otherwise); a published path only its own (items are immutable,
///   `EPERM`); one path never has two contents in a stream;
/// - a version is published when all its items have their data;
/// - insert and promote are additive; promote of a version with missing
///   data is refused;
/// - a products file written into the mount is additive too, except for a
///   version the stream has exactly as the templates made it, every path of
///   which it declares: the declaration replaces it (so the order in which
///   a build's files arrive never changes the result). Every item of the
///   model is what the templates make of its path (no attribute beyond
///   ftype, path, sha256 and size), so that is any version whose paths the
///   declaration covers;
/// - removal takes items out at once; their paths stay readable until
///   reaped; blobs nothing references are recorded as orphans and reaped.
#[derive(Clone, Debug, Default)]
pub(crate) struct Model {
    pub(crate) st: [StreamModel; 2],
    pub(crate) pool: BTreeSet<Content>,
    pub(crate) orphans: BTreeSet<Content>,
    /// Directories the mount keeps without items (made by `mkdir`, or
    /// emptied by a removal), as mount paths; gone at remount.
    pub(crate) dirs: BTreeSet<String>,
}

pub(crate) fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&format!("{dir}/"))
}

pub(crate) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut cur = path;
    std::iter::from_fn(move || {
        let p = parent(cur);
        if p.is_empty() {
            return None;
        }
        cur = p;
        Some(p)
    })
}

impl StreamModel {
    pub(crate) fn items(&self) -> impl Iterator<Item = (&(String, String), &str, &str, Content)> {
        self.versions.iter().flat_map(|(k, items)| {
            items
                .iter()
                .map(move |(n, (p, c))| (k, n.as_str(), p.as_str(), *c))
        })
    }

    pub(crate) fn live_paths(&self) -> BTreeSet<String> {
        self.items()
            .map(|(_, _, p, _)| p.to_string())
            .chain(self.shared.keys().cloned())
            .collect()
    }

    /// The content a path has in this stream (an item or a kept shared
    /// file).
    pub(crate) fn content_at(&self, path: &str) -> Option<Content> {
        self.items()
            .find(|(_, _, p, _)| *p == path)
            .map(|(_, _, _, c)| c)
            .or_else(|| self.shared.get(path).copied())
    }

    pub(crate) fn add_item(
        &mut self,
        key: (String, String),
        name: &str,
        path: &str,
        c: Content,
        label: &str,
    ) {
        self.labels.entry(key.clone()).or_insert(label.to_string());
        self.versions
            .entry(key)
            .or_default()
            .insert(name.to_string(), (path.to_string(), c));
    }

    /// Gives the shared file at `path` to every version with files under its
    /// directory that lacks one.
    pub(crate) fn attach_shared(&mut self, path: &str, c: Content) -> bool {
        let dir = parent(path).to_string();
        let mut any = false;
        for items in self.versions.values_mut() {
            if !items.contains_key("squashfs") && items.values().any(|(p, _)| is_under(p, &dir)) {
                items.insert("squashfs".into(), (path.to_string(), c));
                any = true;
            }
        }
        any
    }

    pub(crate) fn remove_path(&mut self, dir: &str) -> Vec<Content> {
        let mut gone = Vec::new();
        for items in self.versions.values_mut() {
            items.retain(|_, (p, c)| {
                if is_under(p, dir) {
                    gone.push((p.clone(), *c));
                    false
                } else {
                    true
                }
            });
        }
        self.versions.retain(|_, items| !items.is_empty());
        self.labels.retain(|k, _| self.versions.contains_key(k));
        for (p, c) in &gone {
            self.removed.insert(p.clone(), *c);
        }
        gone.into_iter().map(|(_, c)| c).collect()
    }
}

impl Model {
    pub(crate) fn referenced(&self, c: Content) -> bool {
        self.st
            .iter()
            .any(|s| s.items().any(|(_, _, _, x)| x == c) || s.shared.values().any(|x| *x == c))
    }

    pub(crate) fn published(&self, s: usize) -> BTreeMap<(String, String), &Items> {
        self.st[s]
            .versions
            .iter()
            .filter(|(_, items)| items.values().all(|(_, c)| self.pool.contains(c)))
            .map(|(k, v)| (k.clone(), v))
            .collect()
    }

    /// Listed files: stream-relative path → content.
    pub(crate) fn files(&self, s: usize) -> BTreeMap<String, Content> {
        self.published(s)
            .values()
            .flat_map(|items| items.values().map(|(p, c)| (p.clone(), *c)))
            .collect()
    }

    /// Readable by path, not listed: data of versions not published yet,
    /// removed paths until reaped, kept shared files.
    pub(crate) fn hidden(&self, s: usize) -> BTreeMap<String, Content> {
        let files = self.files(s);
        let mut out = BTreeMap::new();
        for (k, items) in &self.st[s].versions {
            if self.published(s).contains_key(k) {
                continue;
            }
            for (p, c) in items.values() {
                if self.pool.contains(c) && !files.contains_key(p) {
                    out.insert(p.clone(), *c);
                }
            }
        }
        for (p, c) in self.st[s].removed.iter().chain(&self.st[s].shared) {
            if !files.contains_key(p) {
                out.entry(p.clone()).or_insert(*c);
            }
        }
        out
    }

    /// Whether a stream-relative directory resolves in the mount.
    pub(crate) fn dir_resolves(&self, s: usize, rel: &str) -> bool {
        rel.is_empty()
            || self
                .files(s)
                .keys()
                .any(|p| p.starts_with(&format!("{rel}/")))
            || self
                .hidden(s)
                .keys()
                .any(|p| p.starts_with(&format!("{rel}/")))
            || self.dirs.contains(&format!("{}/{rel}", STREAMS[s]))
    }

    /// Listed directories of a stream (stream-relative), found by walking
    /// from its root as `find` does; `made`: with the directories made by
    /// `mkdir` that hold no item yet, which only the mount that made them
    /// shows.
    pub(crate) fn listed_dirs(&self, s: usize, made: bool) -> BTreeSet<String> {
        let files = self.files(s);
        let mut all: BTreeSet<String> = files
            .keys()
            .flat_map(|p| ancestors(p).map(String::from).collect::<Vec<_>>())
            .collect();
        let prefix = format!("{}/", STREAMS[s]);
        let extra: BTreeSet<String> = self
            .dirs
            .iter()
            .filter(|_| made)
            .filter_map(|d| d.strip_prefix(&prefix).map(String::from))
            .collect();
        // A kept directory is listed when its parent is.
        let mut grew = true;
        while grew {
            grew = false;
            for d in &extra {
                let p = parent(d);
                if !all.contains(d) && (p.is_empty() || all.contains(p)) {
                    all.insert(d.clone());
                    grew = true;
                }
            }
        }
        all
    }

    /// Every commit: removed paths that are live again or whose blob is gone
    /// stop being readable; orphans referenced again are dropped; shared
    /// files that became items need no keeping.
    pub(crate) fn after_commit(&mut self) {
        for st in &mut self.st {
            let live = st.live_paths();
            let items: BTreeSet<String> = st.items().map(|(_, _, p, _)| p.to_string()).collect();
            st.shared.retain(|p, _| !items.contains(p));
            st.removed
                .retain(|p, c| !live.contains(p) && self.pool.contains(c));
        }
        // A kept directory that comes to hold listed files exists through
        // them from then on: it goes when they go (keep retention,
        // clean-md), as the mount forgets it at every reload.
        for (s, stream) in STREAMS.iter().enumerate() {
            let holding: BTreeSet<String> = self
                .files(s)
                .keys()
                .flat_map(|p| {
                    ancestors(p)
                        .map(|a| format!("{stream}/{a}"))
                        .collect::<Vec<_>>()
                })
                .collect();
            self.dirs.retain(|d| !holding.contains(d));
        }
        let orphans = std::mem::take(&mut self.orphans);
        self.orphans = orphans
            .into_iter()
            .filter(|c| !self.referenced(*c) && self.pool.contains(c))
            .collect();
    }

    pub(crate) fn note_removed(&mut self, gone: Vec<Content>) {
        for c in gone {
            if !self.referenced(c) && self.pool.contains(&c) {
                self.orphans.insert(c);
            }
        }
    }

    /// `mkdir -p` of a mount path: each directory that does not resolve is
    /// made (and kept).
    pub(crate) fn mkdir_p(&mut self, s: usize, rel_dir: &str) {
        let mut comps = String::new();
        for c in rel_dir.split('/') {
            if !comps.is_empty() {
                comps.push('/');
            }
            comps.push_str(c);
            if !self.dir_resolves(s, &comps) {
                self.dirs.insert(format!("{}/{comps}", STREAMS[s]));
            }
        }
    }

    /// Data written at `f`'s path in stream `s` (after `mkdir -p` of its
    /// directory), and closed (or renamed onto its name).
    pub(crate) fn put(&mut self, s: usize, f: FileRef, c: Content) -> Outcome {
        let path = f.path();
        self.mkdir_p(s, parent(&path));
        let st = &self.st[s];
        let declared: Vec<Content> = st
            .items()
            .filter(|(_, _, p, _)| *p == path)
            .map(|(_, _, _, x)| x)
            .collect();
        if !declared.is_empty() {
            if declared.iter().any(|d| *d != c && self.pool.contains(d)) {
                return Outcome::Err(Some(libc::EPERM));
            }
            if declared.iter().any(|d| *d != c) {
                return Outcome::Err(Some(libc::EIO));
            }
            self.pool.insert(c);
            self.after_commit();
            return Outcome::Ok;
        }
        self.pool.insert(c);
        let st = &mut self.st[s];
        match f.slot {
            Slot::Kernel { sub, file } => {
                let key = (product(s, f.arch, sub), VERSIONS[f.version].to_string());
                st.add_item(key, KERNEL_FILES[file], &path, c, LABEL[s]);
                let shared = format!("{}/squashfs", version_dir(f.arch, f.version));
                if let Some(sc) = st.content_at(&shared) {
                    st.attach_shared(&shared, sc);
                }
            }
            Slot::Squashfs => {
                if !st.attach_shared(&path, c)
                    && let Some(old) = st.shared.insert(path.clone(), c)
                    && old != c
                {
                    self.note_removed(vec![old]);
                }
            }
        }
        self.after_commit();
        Outcome::Ok
    }

    /// Versions `(key, items)` that an insert adds to stream `s`: additive,
    /// and refused when a path would get a second content. `with_data`: the
    /// insert brings the data of the versions it adds (`mountctl insert`).
    pub(crate) fn add_versions(
        &mut self,
        s: usize,
        new: Vec<((String, String), Items)>,
        label: &str,
        with_data: bool,
    ) -> Outcome {
        let new: Vec<_> = new
            .into_iter()
            .filter(|(k, _)| !self.st[s].versions.contains_key(k))
            .collect();
        self.put_versions(s, new, label, with_data)
    }

    /// A products file written into stream `s`: its version is added, or
    /// replaces the stream's version of the same key whose paths it all
    /// declares (see the rules above); refused when a path would get a
    /// second content.
    pub(crate) fn declare(
        &mut self,
        s: usize,
        key: (String, String),
        items: Items,
        label: &str,
    ) -> Outcome {
        let covered = self.st[s].versions.get(&key).is_none_or(|have| {
            have.values()
                .all(|(p, _)| items.values().any(|(d, _)| d == p))
        });
        if !covered {
            return self.add_versions(s, vec![(key, items)], label, false);
        }
        self.put_versions(s, vec![(key, items)], label, false)
    }

    /// Puts `new` into stream `s` (replacing versions of the same keys),
    /// unless a path would get a second content.
    fn put_versions(
        &mut self,
        s: usize,
        new: Vec<((String, String), Items)>,
        label: &str,
        with_data: bool,
    ) -> Outcome {
        for (_, items) in &new {
            for (p, c) in items.values() {
                if self.st[s].content_at(p).is_some_and(|x| x != *c) {
                    return Outcome::Err(Some(libc::EPERM));
                }
            }
        }
        for (k, items) in new {
            if with_data {
                self.pool.extend(items.values().map(|(_, c)| *c));
            }
            self.st[s].labels.insert(k.clone(), label.to_string());
            self.st[s].versions.insert(k, items);
        }
        self.after_commit();
        Outcome::Ok
    }

    pub(crate) fn build_items(arch: usize, version: usize, sub: usize, c: [Content; 3]) -> Items {
        let mut items = Items::new();
        for (i, name) in KERNEL_FILES.iter().enumerate() {
            let f = FileRef {
                arch,
                version,
                slot: Slot::Kernel { sub, file: i },
            };
            items.insert(name.to_string(), (f.path(), c[i]));
        }
        let sq = FileRef {
            arch,
            version,
            slot: Slot::Squashfs,
        };
        items.insert("squashfs".into(), (sq.path(), c[2]));
        items
    }

    /// Promotes every product of daily with files under `dir` at `version`.
    pub(crate) fn promote(&mut self, version: &str, dir: Option<&str>) -> Outcome {
        let src: Vec<((String, String), Items)> = self.st[0]
            .versions
            .iter()
            .filter(|((_, v), items)| {
                v == version && dir.is_none_or(|d| items.values().any(|(p, _)| is_under(p, d)))
            })
            .map(|(k, i)| (k.clone(), i.clone()))
            .collect();
        if src.is_empty() {
            return Outcome::Err(Some(if dir.is_some() {
                libc::EPERM
            } else {
                libc::ENOENT
            }));
        }
        if src
            .iter()
            .any(|(_, items)| items.values().any(|(_, c)| !self.pool.contains(c)))
        {
            return Outcome::Err(Some(libc::EPERM));
        }
        let new: Vec<_> = src
            .into_iter()
            .map(|((p, v), items)| ((p.replacen(PREFIX[0], PREFIX[1], 1), v), items))
            .filter(|(k, _)| !self.st[1].versions.contains_key(k))
            .collect();
        if new.is_empty() {
            return Outcome::Err(Some(libc::EEXIST));
        }
        self.add_versions(1, new, LABEL[1], false)
    }

    pub(crate) fn remove(&mut self, s: usize, path: &str) -> Outcome {
        if let Some(c) = self.st[s].shared.remove(path) {
            // Never published: it goes without staying readable, and
            // without changing any listing.
            self.note_removed(vec![c]);
        } else if self.files(s).contains_key(path) {
            let gone = self.st[s].remove_path(path);
            self.note_removed(gone);
            for a in ancestors(&format!("{}/{path}", STREAMS[s])) {
                if a.contains('/') {
                    self.dirs.insert(a.to_string());
                }
            }
        } else {
            return Outcome::Err(Some(libc::ENOENT));
        }
        self.after_commit();
        Outcome::Ok
    }

    pub(crate) fn remove_dir(&mut self, s: usize, dir: &str) -> Outcome {
        if !self.dir_resolves(s, dir) {
            return Outcome::Err(Some(libc::ENOENT));
        }
        let victims: Vec<String> = self
            .files(s)
            .keys()
            .filter(|p| is_under(p, dir))
            .cloned()
            .collect();
        for p in &victims {
            // An earlier unlink (of a squashfs) may have taken it already.
            if self.files(s).contains_key(p) {
                self.remove(s, p);
            }
        }
        let mount_dir = format!("{}/{dir}", STREAMS[s]);
        self.dirs.retain(|d| !is_under(d, &mount_dir));
        Outcome::Ok
    }

    pub(crate) fn clean_md(&mut self, s: usize, keep: usize) -> Outcome {
        let mut by_product: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (p, v) in self.st[s].versions.keys() {
            by_product.entry(p.clone()).or_default().push(v.clone());
        }
        let mut gone = Vec::new();
        for (p, mut vs) in by_product {
            vs.sort();
            vs.reverse();
            for v in vs.into_iter().skip(keep) {
                let key = (p.clone(), v);
                if let Some(items) = self.st[s].versions.remove(&key) {
                    self.st[s].labels.remove(&key);
                    for (path, c) in items.into_values() {
                        self.st[s].removed.insert(path, c);
                        gone.push(c);
                    }
                }
            }
        }
        self.note_removed(gone);
        self.after_commit();
        Outcome::Ok
    }

    pub(crate) fn reap(&mut self) -> Outcome {
        for c in std::mem::take(&mut self.orphans) {
            if !self.referenced(c) {
                self.pool.remove(&c);
            }
        }
        self.after_commit();
        Outcome::Ok
    }

    pub(crate) fn apply(&mut self, op: &Op) -> Outcome {
        match *op {
            Op::Copy { s, f, c } | Op::Rsync { s, f, c } => self.put(s, f, c),
            Op::Meta {
                s,
                arch,
                version,
                sub,
                c,
                write,
            } => {
                let key = (product(s, arch, sub), VERSIONS[version].to_string());
                let r = self.declare(s, key, Self::build_items(arch, version, sub, c), LABEL[s]);
                if r != Outcome::Ok {
                    return r;
                }
                // The data files: the outcome of the last one written.
                let mut out = Outcome::Ok;
                for (i, w) in write.iter().enumerate() {
                    if *w {
                        out = self.put(s, meta_file(arch, version, sub, i), c[i]);
                    }
                }
                out
            }
            Op::DataFirst {
                s,
                arch,
                version,
                sub,
                c,
                first,
                reversed,
            } => {
                for i in data_order(first, reversed) {
                    let r = self.put(s, meta_file(arch, version, sub, i), c[i]);
                    if r != Outcome::Ok {
                        return r;
                    }
                }
                let key = (product(s, arch, sub), VERSIONS[version].to_string());
                self.declare(s, key, Self::build_items(arch, version, sub, c), LABEL[s])
            }
            Op::Promote { arch, version } => {
                let dir = version_dir(arch, version);
                self.mkdir_p(1, parent(&dir));
                if self.dir_resolves(1, &dir) {
                    return Outcome::Err(Some(libc::EEXIST));
                }
                self.promote(VERSIONS[version], Some(&dir))
            }
            Op::CtlPromote { version } => match self.promote(VERSIONS[version], None) {
                // mountctl promote of versions all present: nothing to do.
                Outcome::Err(Some(libc::EEXIST)) => Outcome::Ok,
                Outcome::Err(_) => Outcome::Err(None),
                ok => ok,
            },
            Op::Remove { s, f } => self.remove(s, &f.path()),
            Op::RemoveVersion { s, arch, version } => {
                self.remove_dir(s, &version_dir(arch, version))
            }
            Op::CtlInsert {
                s,
                arch,
                version,
                sub,
                c,
            } => {
                let key = (product(s, arch, sub), VERSIONS[version].to_string());
                let items = Self::build_items(arch, version, sub, c);
                match self.add_versions(s, vec![(key, items)], LABEL[s], true) {
                    Outcome::Ok => Outcome::Ok,
                    Outcome::Err(_) => Outcome::Err(None),
                }
            }
            Op::CleanMd { s, keep } => self.clean_md(s, keep),
            Op::Reap => self.reap(),
            Op::Remount => {
                self.dirs.clear();
                Outcome::Ok
            }
        }
    }
}
