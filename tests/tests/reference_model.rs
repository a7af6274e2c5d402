//! Reference-model property tests of the mount, after awslabs/mountpoint-s3's
//! reftests: random sequences of operations are applied both to a real
//! streamfs mount and to a small in-memory model of the streams, and after
//! every step the mount's listings, file contents, paths readable but not
//! listed, and flattened metadata must equal what the model predicts.
//!
//! The operations are what an operator does (DESIGN §3, §4): insert by copy,
//! by rename of an rsync staging file and by writing a products file into
//! `streams/v1/` followed by its data; promote by `ln -s`; remove by `rm` and
//! `rm -r`; and, beside the mount, `mountctl insert`, `promote`, `clean-md`
//! and `reap-orphans --now`; and remounting. A case ends with `mountctl
//! fsck`, which must find the store clean.
//!
//! The model (see [`Model`]) holds each stream's product versions and their
//! items (path and content), the removed paths still readable, the shared
//! files kept until a product of their version exists, the pool's contents
//! and the recorded orphans. Its rules are the DESIGN's, stated in its
//! methods; where the mount disagrees, one of the two is wrong and the
//! failing sequence becomes a regression test at the end of this file.
//!
//! Figures: `STREAMFS_MODEL_CASES` (default 500) cases of up to
//! `STREAMFS_MODEL_STEPS` (default 8) steps. A longer run:
//! `STREAMFS_MODEL_CASES=5000 STREAMFS_MODEL_STEPS=30 cargo test -p
//! streamfs-tests --test reference_model -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sha2::{Digest, Sha256};
use streamfs_tests::mount::{Mount, can_mount, write_closed};
use streamfs_tests::store::flat_items;
use streamfs_tests::{mountctl_bin, run_in};

const STREAMS: [&str; 2] = ["daily", "released"];
const PREFIX: [&str; 2] = ["com.ubuntu.maas.daily:v3:boot:", "com.ubuntu.maas:v3:boot:"];
const CONTENT_ID: [&str; 2] = [
    "com.ubuntu.maas:daily:v3:download",
    "com.ubuntu.maas:stable:v3:download",
];
const LABEL: [&str; 2] = ["daily", "release"];
const ARCHES: [&str; 2] = ["amd64", "arm64"];
const VERSIONS: [&str; 3] = ["20250101", "20250102", "20250103"];
const SUBARCHES: [&str; 2] = ["ga-24.04", "hwe-24.04"];
const KERNEL_FILES: [&str; 2] = ["boot-kernel", "boot-initrd"];
/// Distinct contents: few, so that paths share blobs and blobs are
/// orphaned, referenced again and reaped.
const CONTENTS: u8 = 4;

type Content = u8;

fn bytes(c: Content) -> Vec<u8> {
    format!("content {c}\n")
        .repeat(1 + 3 * c as usize)
        .into_bytes()
}

fn sha(c: Content) -> String {
    hex::encode(Sha256::digest(bytes(c)))
}

/// A file of a version: a kernel file of one subarch, or the `squashfs`
/// shared by every kernel of the version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Kernel { sub: usize, file: usize },
    Squashfs,
}

#[derive(Clone, Copy, Debug)]
struct FileRef {
    arch: usize,
    version: usize,
    slot: Slot,
}

fn version_dir(arch: usize, version: usize) -> String {
    format!("noble/{}/{}", ARCHES[arch], VERSIONS[version])
}

impl FileRef {
    fn path(&self) -> String {
        let dir = version_dir(self.arch, self.version);
        match self.slot {
            Slot::Kernel { sub, file } => {
                format!("{dir}/{}/generic/{}", SUBARCHES[sub], KERNEL_FILES[file])
            }
            Slot::Squashfs => format!("{dir}/squashfs"),
        }
    }
}

fn product(s: usize, arch: usize, sub: usize) -> String {
    format!("{}24.04:{}:{}", PREFIX[s], ARCHES[arch], SUBARCHES[sub])
}

#[derive(Clone, Debug)]
enum Op {
    /// `cp` (open, write, close) through the mount.
    Copy {
        s: usize,
        f: FileRef,
        c: Content,
    },
    /// rsync's way: write `.name.XXXXXX`, then rename it onto `name`.
    Rsync {
        s: usize,
        f: FileRef,
        c: Content,
    },
    /// A build's products file written into `streams/v1/` (one product at
    /// one version: kernel, initrd and squashfs), then the data of the items
    /// picked by `write`.
    Meta {
        s: usize,
        arch: usize,
        version: usize,
        sub: usize,
        c: [Content; 3],
        write: [bool; 3],
    },
    /// `ln -s ../../../daily/noble/ARCH/V released/noble/ARCH/V`.
    Promote {
        arch: usize,
        version: usize,
    },
    /// `rm` of a file.
    Remove {
        s: usize,
        f: FileRef,
    },
    /// `rm -r` of a version directory.
    RemoveVersion {
        s: usize,
        arch: usize,
        version: usize,
    },
    /// `mountctl insert BUILD STREAM` beside the mount: a data-only build of
    /// one kernel and the squashfs.
    CtlInsert {
        s: usize,
        arch: usize,
        version: usize,
        sub: usize,
        c: [Content; 3],
    },
    /// `mountctl promote daily released V` beside the mount.
    CtlPromote {
        version: usize,
    },
    /// `mountctl clean-md KEEP STREAM` beside the mount.
    CleanMd {
        s: usize,
        keep: usize,
    },
    /// `mountctl reap-orphans --now` beside the mount.
    Reap,
    Remount,
}

fn file_ref() -> impl Strategy<Value = FileRef> {
    let slot = prop_oneof![
        4 => (0..2usize, 0..2usize).prop_map(|(sub, file)| Slot::Kernel { sub, file }),
        1 => Just(Slot::Squashfs),
    ];
    (0..ARCHES.len(), 0..VERSIONS.len(), slot).prop_map(|(arch, version, slot)| FileRef {
        arch,
        version,
        slot,
    })
}

fn op() -> impl Strategy<Value = Op> {
    let s = || prop_oneof![3 => Just(0usize), 1 => Just(1usize)];
    let c = || 0..CONTENTS;
    let av = || (0..ARCHES.len(), 0..VERSIONS.len());
    prop_oneof![
        8 => (s(), file_ref(), c()).prop_map(|(s, f, c)| Op::Copy { s, f, c }),
        3 => (s(), file_ref(), c()).prop_map(|(s, f, c)| Op::Rsync { s, f, c }),
        3 => (s(), av(), 0..2usize, [c(), c(), c()], any::<[bool; 3]>()).prop_map(
            |(s, (arch, version), sub, c, write)| Op::Meta { s, arch, version, sub, c, write }
        ),
        3 => av().prop_map(|(arch, version)| Op::Promote { arch, version }),
        3 => (s(), file_ref()).prop_map(|(s, f)| Op::Remove { s, f }),
        2 => (s(), av()).prop_map(|(s, (arch, version))| Op::RemoveVersion { s, arch, version }),
        1 => (s(), av(), 0..2usize, [c(), c(), c()]).prop_map(
            |(s, (arch, version), sub, c)| Op::CtlInsert { s, arch, version, sub, c }
        ),
        1 => (0..VERSIONS.len()).prop_map(|version| Op::CtlPromote { version }),
        1 => (s(), 1..3usize).prop_map(|(s, keep)| Op::CleanMd { s, keep }),
        1 => Just(Op::Reap),
        1 => Just(Op::Remount),
    ]
}

/// How an operation ended: success, or failure (with the errno when the
/// model predicts one; `mountctl` failures have none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Err(Option<i32>),
}

fn same_outcome(model: Outcome, real: Outcome) -> bool {
    match (model, real) {
        (Outcome::Ok, Outcome::Ok) => true,
        (Outcome::Err(None), Outcome::Err(_)) => true,
        (Outcome::Err(Some(a)), Outcome::Err(Some(b))) => a == b,
        _ => false,
    }
}

/// An item: its path and content.
type Items = BTreeMap<String, (String, Content)>;

/// One stream.
#[derive(Clone, Debug, Default)]
struct StreamModel {
    /// (product, version) → item name → (path, content): every version,
    /// published or waiting for data.
    versions: BTreeMap<(String, String), Items>,
    /// Removed paths, readable by path until their blob is reaped.
    removed: BTreeMap<String, Content>,
    /// Shared files (`squashfs`) inserted before any product of their
    /// version: kept (and readable by path) until one exists.
    shared: BTreeMap<String, Content>,
    /// Label of each version (what `flatten` shows).
    labels: BTreeMap<(String, String), String>,
}

/// The reference model. Rules, from DESIGN §2-§4:
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
/// - removal takes items out at once; their paths stay readable until
///   reaped; blobs nothing references are recorded as orphans and reaped.
#[derive(Clone, Debug, Default)]
struct Model {
    st: [StreamModel; 2],
    pool: BTreeSet<Content>,
    orphans: BTreeSet<Content>,
    /// Directories the mount keeps without items (made by `mkdir`, or
    /// emptied by a removal), as mount paths; gone at remount.
    dirs: BTreeSet<String>,
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn is_under(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&format!("{dir}/"))
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
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
    fn items(&self) -> impl Iterator<Item = (&(String, String), &str, &str, Content)> {
        self.versions.iter().flat_map(|(k, items)| {
            items
                .iter()
                .map(move |(n, (p, c))| (k, n.as_str(), p.as_str(), *c))
        })
    }

    fn live_paths(&self) -> BTreeSet<String> {
        self.items()
            .map(|(_, _, p, _)| p.to_string())
            .chain(self.shared.keys().cloned())
            .collect()
    }

    /// The content a path has in this stream (an item or a kept shared
    /// file).
    fn content_at(&self, path: &str) -> Option<Content> {
        self.items()
            .find(|(_, _, p, _)| *p == path)
            .map(|(_, _, _, c)| c)
            .or_else(|| self.shared.get(path).copied())
    }

    fn add_item(&mut self, key: (String, String), name: &str, path: &str, c: Content, label: &str) {
        self.labels.entry(key.clone()).or_insert(label.to_string());
        self.versions
            .entry(key)
            .or_default()
            .insert(name.to_string(), (path.to_string(), c));
    }

    /// Gives the shared file at `path` to every version with files under its
    /// directory that lacks one.
    fn attach_shared(&mut self, path: &str, c: Content) -> bool {
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

    fn remove_path(&mut self, dir: &str) -> Vec<Content> {
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
    fn referenced(&self, c: Content) -> bool {
        self.st
            .iter()
            .any(|s| s.items().any(|(_, _, _, x)| x == c) || s.shared.values().any(|x| *x == c))
    }

    fn published(&self, s: usize) -> BTreeMap<(String, String), &Items> {
        self.st[s]
            .versions
            .iter()
            .filter(|(_, items)| items.values().all(|(_, c)| self.pool.contains(c)))
            .map(|(k, v)| (k.clone(), v))
            .collect()
    }

    /// Listed files: stream-relative path → content.
    fn files(&self, s: usize) -> BTreeMap<String, Content> {
        self.published(s)
            .values()
            .flat_map(|items| items.values().map(|(p, c)| (p.clone(), *c)))
            .collect()
    }

    /// Readable by path, not listed: data of versions not published yet,
    /// removed paths until reaped, kept shared files.
    fn hidden(&self, s: usize) -> BTreeMap<String, Content> {
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
    fn dir_resolves(&self, s: usize, rel: &str) -> bool {
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
    fn listed_dirs(&self, s: usize, made: bool) -> BTreeSet<String> {
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
    fn after_commit(&mut self) {
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

    fn note_removed(&mut self, gone: Vec<Content>) {
        for c in gone {
            if !self.referenced(c) && self.pool.contains(&c) {
                self.orphans.insert(c);
            }
        }
    }

    /// `mkdir -p` of a mount path: each directory that does not resolve is
    /// made (and kept).
    fn mkdir_p(&mut self, s: usize, rel_dir: &str) {
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
    fn put(&mut self, s: usize, f: FileRef, c: Content) -> Outcome {
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
    fn add_versions(
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

    fn build_items(arch: usize, version: usize, sub: usize, c: [Content; 3]) -> Items {
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
    fn promote(&mut self, version: &str, dir: Option<&str>) -> Outcome {
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

    fn remove(&mut self, s: usize, path: &str) -> Outcome {
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

    fn remove_dir(&mut self, s: usize, dir: &str) -> Outcome {
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

    fn clean_md(&mut self, s: usize, keep: usize) -> Outcome {
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

    fn reap(&mut self) -> Outcome {
        for c in std::mem::take(&mut self.orphans) {
            if !self.referenced(c) {
                self.pool.remove(&c);
            }
        }
        self.after_commit();
        Outcome::Ok
    }

    fn apply(&mut self, op: &Op) -> Outcome {
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
                let r = self.add_versions(
                    s,
                    vec![(key, Self::build_items(arch, version, sub, c))],
                    LABEL[s],
                    false,
                );
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

fn meta_file(arch: usize, version: usize, sub: usize, i: usize) -> FileRef {
    FileRef {
        arch,
        version,
        slot: if i < 2 {
            Slot::Kernel { sub, file: i }
        } else {
            Slot::Squashfs
        },
    }
}

fn errno_of(e: &std::io::Error) -> Outcome {
    Outcome::Err(e.raw_os_error())
}

/// Writes a file and closes it: `close`'s own result included.
fn write_file(path: &Path, data: &[u8]) -> Outcome {
    match write_closed(path, data) {
        Ok(()) => Outcome::Ok,
        Err(e) => errno_of(&e),
    }
}

/// The real side: a store on tmpfs (this test checks semantics, not
/// durability: fsync costs nothing there) and its mount.
struct Real {
    tmp: tempfile::TempDir,
    store: PathBuf,
    mount: Option<Mount>,
    /// A read-only mount of the same store, as a mirror serves it (opens
    /// answered by the kernel, pages kept): read along after every step,
    /// so its caches hold every intermediate state, and compared with the
    /// model at the end of the case.
    served: Option<Mount>,
    builds: usize,
}

fn products_doc(s: usize, arch: usize, version: usize, sub: usize, c: [Content; 3]) -> String {
    let items: serde_json::Map<String, serde_json::Value> =
        Model::build_items(arch, version, sub, c)
            .into_iter()
            .map(|(name, (path, c))| {
                (
                    name.clone(),
                    serde_json::json!({
                        "ftype": name, "path": path, "sha256": sha(c), "size": bytes(c).len(),
                    }),
                )
            })
            .collect();
    serde_json::json!({
        "format": "products:1.0",
        "content_id": CONTENT_ID[s],
        "datatype": "image-downloads",
        "products": {
            product(s, arch, sub): {
                "arch": ARCHES[arch], "release": "noble", "subarch": SUBARCHES[sub],
                "kflavor": "generic", "label": LABEL[s],
                "versions": { VERSIONS[version]: { "items": items } }
            }
        }
    })
    .to_string()
}

impl Real {
    fn new() -> Real {
        let base = Path::new("/dev/shm");
        let tmp = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        }
        .expect("tempdir");
        let store = tmp.path().join("store");
        let mount = Some(Mount::new(&store));
        let served = Some(Mount::with_options(&store, &["ro"]));
        Real {
            tmp,
            store,
            mount,
            served,
            builds: 0,
        }
    }

    fn mnt(&self) -> &Path {
        self.mount.as_ref().expect("mounted").path()
    }

    fn served(&self) -> &Path {
        self.served.as_ref().expect("mounted").path()
    }

    fn at(&self, s: usize, rel: &str) -> PathBuf {
        self.mnt().join(STREAMS[s]).join(rel)
    }

    fn mountctl(&self, args: &[&str]) -> Outcome {
        let store = self.store.display().to_string();
        let mut all = vec!["--store", store.as_str()];
        all.extend_from_slice(args);
        let out = run_in(self.tmp.path(), &mountctl_bin(), &all);
        if out.code == Some(0) {
            Outcome::Ok
        } else {
            Outcome::Err(None)
        }
    }

    /// Waits until the mount serves the store's current generation (it
    /// notices commits made beside it on its own).
    fn await_refresh(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let current = self.store.join("meta/current");
            let same = (0..2).all(|s| {
                let name = format!("streams/v1/{}.json", CONTENT_ID[s]);
                let want = std::fs::read(current.join(STREAMS[s]).join(&name));
                let got = std::fs::read(self.at(s, &name));
                matches!((want, got), (Ok(a), Ok(b)) if a == b)
            });
            if same {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the mount did not pick up a commit made beside it within 10s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn put(&self, s: usize, f: FileRef, c: Content, rsync: bool) -> Outcome {
        let path = self.at(s, &f.path());
        let dir = path.parent().expect("parent");
        if let Err(e) = std::fs::create_dir_all(dir) {
            return errno_of(&e);
        }
        if !rsync {
            return write_file(&path, &bytes(c));
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let staging = dir.join(format!(".{name}.Xy12Zq"));
        match write_file(&staging, &bytes(c)) {
            Outcome::Ok => {}
            e => return e,
        }
        match std::fs::rename(&staging, &path) {
            Ok(()) => Outcome::Ok,
            Err(e) => errno_of(&e),
        }
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match *op {
            Op::Copy { s, f, c } => self.put(s, f, c, false),
            Op::Rsync { s, f, c } => self.put(s, f, c, true),
            Op::Meta {
                s,
                arch,
                version,
                sub,
                c,
                write,
            } => {
                let doc = products_doc(s, arch, version, sub, c);
                let r = write_file(&self.at(s, "streams/v1/build.json"), doc.as_bytes());
                if r != Outcome::Ok {
                    return r;
                }
                let mut out = Outcome::Ok;
                for (i, w) in write.iter().enumerate() {
                    if *w {
                        out = self.put(s, meta_file(arch, version, sub, i), c[i], false);
                    }
                }
                out
            }
            Op::Promote { arch, version } => {
                let dir = version_dir(arch, version);
                let link = self.at(1, &dir);
                if let Err(e) = std::fs::create_dir_all(link.parent().unwrap()) {
                    return errno_of(&e);
                }
                let target = format!("../../../daily/{dir}");
                match std::os::unix::fs::symlink(&target, &link) {
                    Ok(()) => Outcome::Ok,
                    Err(e) => errno_of(&e),
                }
            }
            Op::Remove { s, f } => match std::fs::remove_file(self.at(s, &f.path())) {
                Ok(()) => Outcome::Ok,
                Err(e) => errno_of(&e),
            },
            Op::RemoveVersion { s, arch, version } => {
                match std::fs::remove_dir_all(self.at(s, &version_dir(arch, version))) {
                    Ok(()) => Outcome::Ok,
                    Err(e) => errno_of(&e),
                }
            }
            Op::CtlInsert {
                s,
                arch,
                version,
                sub,
                c,
            } => {
                self.builds += 1;
                let build = self.tmp.path().join(format!("build-{}", self.builds));
                for (_, (path, x)) in Model::build_items(arch, version, sub, c) {
                    let p = build.join(path);
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, bytes(x)).unwrap();
                }
                let r = self.mountctl(&["insert", &build.display().to_string(), STREAMS[s]]);
                self.await_refresh();
                r
            }
            Op::CtlPromote { version } => {
                let r = self.mountctl(&["promote", "daily", "released", VERSIONS[version]]);
                self.await_refresh();
                r
            }
            Op::CleanMd { s, keep } => {
                let r = self.mountctl(&["clean-md", &keep.to_string(), STREAMS[s]]);
                self.await_refresh();
                r
            }
            Op::Reap => {
                let r = self.mountctl(&["reap-orphans", "--now"]);
                self.await_refresh();
                r
            }
            Op::Remount => {
                self.mount.take().expect("mounted").unmount();
                self.mount = Some(Mount::new(&self.store));
                Outcome::Ok
            }
        }
    }

    fn log(&self) -> String {
        self.mount.as_ref().map(Mount::log_text).unwrap_or_default()
    }

    fn fsck(&self) -> Result<(), String> {
        let store = self.store.display().to_string();
        let out = run_in(
            self.tmp.path(),
            &mountctl_bin(),
            &["--store", &store, "fsck"],
        );
        if out.code == Some(0) {
            Ok(())
        } else {
            Err(format!("{}{}", out.stdout_text(), out.stderr_text()))
        }
    }
}

/// What the mount shows of a stream: listed files with their bytes, listed
/// directories.
fn walk(root: &Path) -> (BTreeMap<String, Vec<u8>>, BTreeSet<String>) {
    fn go(
        root: &Path,
        dir: &Path,
        files: &mut BTreeMap<String, Vec<u8>>,
        dirs: &mut BTreeSet<String>,
    ) {
        for e in std::fs::read_dir(dir).expect("readdir").flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == "streams" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                dirs.insert(rel);
                go(root, &p, files, dirs);
            } else {
                let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
                files.insert(rel, b);
            }
        }
    }
    let (mut files, mut dirs) = (BTreeMap::new(), BTreeSet::new());
    go(root, root, &mut files, &mut dirs);
    (files, dirs)
}

/// (product, version, item, path, sha256, size, label) of every published
/// item.
type Row = (String, String, String, String, String, String, String);

fn model_rows(m: &Model, s: usize) -> BTreeSet<Row> {
    let mut out = BTreeSet::new();
    for ((p, v), items) in m.published(s) {
        let label = m.st[s]
            .labels
            .get(&(p.clone(), v.clone()))
            .cloned()
            .unwrap_or_default();
        for (name, (path, c)) in items {
            out.insert((
                p.clone(),
                v.clone(),
                name.clone(),
                path.clone(),
                sha(*c),
                bytes(*c).len().to_string(),
                label.clone(),
            ));
        }
    }
    out
}

fn mount_rows(mnt: &Path, s: usize) -> BTreeSet<Row> {
    let file = mnt
        .join(STREAMS[s])
        .join(format!("streams/v1/{}.json", CONTENT_ID[s]));
    flat_items(&file)
        .into_iter()
        .map(|i| {
            let g = |k: &str| i.get(k).cloned().unwrap_or_default();
            (
                g("product_name"),
                g("version_name"),
                g("item_name"),
                g("path"),
                g("sha256"),
                g("size"),
                g("label"),
            )
        })
        .collect()
}

/// Compares everything the mount shows with the model.
/// The mount at `mnt` shows what the model holds; `writer`: it is the
/// mount the operations went through (see [`Model::listed_dirs`]).
fn check(m: &Model, mnt: &Path, writer: bool) -> Result<(), String> {
    for (s, stream) in STREAMS.iter().enumerate() {
        let root = mnt.join(stream);
        let (files, dirs) = walk(&root);
        let want: BTreeMap<String, Vec<u8>> =
            m.files(s).into_iter().map(|(p, c)| (p, bytes(c))).collect();
        if files != want {
            let got: BTreeSet<&String> = files.keys().collect();
            let exp: BTreeSet<&String> = want.keys().collect();
            return Err(format!(
                "{}: listed files differ: mount has {:?}, model {:?}",
                stream,
                got.difference(&exp).collect::<Vec<_>>(),
                exp.difference(&got).collect::<Vec<_>>()
            ));
        }
        let want_dirs = m.listed_dirs(s, writer);
        if dirs != want_dirs {
            return Err(format!(
                "{}: listed directories differ: mount has {:?} more, {:?} fewer",
                stream,
                dirs.difference(&want_dirs).collect::<Vec<_>>(),
                want_dirs.difference(&dirs).collect::<Vec<_>>()
            ));
        }
        for (p, c) in m.hidden(s) {
            match std::fs::read(root.join(&p)) {
                Ok(b) if b == bytes(c) => {}
                Ok(_) => return Err(format!("{}/{p}: readable with the wrong bytes", stream)),
                Err(e) => {
                    return Err(format!("{}/{p}: should stay readable by path: {e}", stream));
                }
            }
        }
        let (got, want) = (mount_rows(mnt, s), model_rows(m, s));
        if got != want {
            return Err(format!(
                "{}: flattened metadata differs: mount has {:?}, model {:?}",
                stream,
                got.difference(&want).collect::<Vec<_>>(),
                want.difference(&got).collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

static STEPS: AtomicUsize = AtomicUsize::new(0);

/// Runs one sequence on a fresh store and mount.
fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut real = Real::new();
    for (i, op) in ops.iter().enumerate() {
        STEPS.fetch_add(1, Ordering::Relaxed);
        let want = model.apply(op);
        let got = real.apply(op);
        if !same_outcome(want, got) {
            return Err(TestCaseError::fail(format!(
                "step {i} {op:?}: model {want:?}, mount {got:?}\n{}",
                real.log()
            )));
        }
        if let Err(e) = check(&model, real.mnt(), true) {
            return Err(TestCaseError::fail(format!(
                "after step {i} {op:?}: {e}\n{}",
                real.log()
            )));
        }
        // Whatever generation the served mount shows now, read all of it.
        let _ = walk(real.served());
    }
    // The served mount shows the last commit within a second (it notices
    // commits made beside it), whatever its caches held before.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = check(&model, real.served(), false) {
        if Instant::now() > deadline {
            let log = real.served.as_ref().map(Mount::log_text);
            return Err(TestCaseError::fail(format!(
                "the read-only mount after {} steps: {e}\n{}",
                ops.len(),
                log.unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    real.fsck()
        .map_err(|e| TestCaseError::fail(format!("fsck after {} steps: {e}", ops.len())))?;
    if let Some(m) = real.served.take() {
        m.unmount();
    }
    if let Some(m) = real.mount.take() {
        m.unmount();
    }
    Ok(())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_operation_sequences_agree_with_the_model() {
    if !can_mount() {
        return;
    }
    let cases = env_usize("STREAMFS_MODEL_CASES", 500) as u32;
    let steps = env_usize("STREAMFS_MODEL_STEPS", 8).max(1);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..=steps), |ops| {
        run_case(&ops)
    });
    streamfs_tests::report(&format!(
        "reference model: {cases} cases, {} steps, each compared with the mount",
        STEPS.load(Ordering::Relaxed)
    ));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Runs a fixed sequence (a regression found by the random ones).
fn regression(ops: &[Op]) {
    if !can_mount() {
        return;
    }
    if let Err(e) = run_case(ops) {
        panic!("{e}");
    }
}

// Regression tests: sequences the random runs found failing, each named
// after what it guards.

const fn kernel(arch: usize, version: usize, sub: usize, file: usize) -> FileRef {
    FileRef {
        arch,
        version,
        slot: Slot::Kernel { sub, file },
    }
}

const fn squashfs(arch: usize, version: usize) -> FileRef {
    FileRef {
        arch,
        version,
        slot: Slot::Squashfs,
    }
}

#[test]
fn a_copied_file_carries_its_streams_label() {
    regression(&[Op::Copy {
        s: 0,
        f: kernel(0, 0, 0, 0),
        c: 0,
    }]);
}

#[test]
fn a_shared_file_written_before_its_kernels_survives_a_remount_and_is_attached_later() {
    regression(&[
        Op::Copy {
            s: 0,
            f: squashfs(0, 0),
            c: 0,
        },
        Op::Remount,
        Op::Reap,
        Op::Copy {
            s: 0,
            f: kernel(0, 0, 0, 0),
            c: 1,
        },
    ]);
}

#[test]
fn a_shared_file_belongs_to_kernels_that_arrive_after_it() {
    regression(&[
        Op::Copy {
            s: 0,
            f: kernel(0, 0, 0, 0),
            c: 0,
        },
        Op::Copy {
            s: 0,
            f: squashfs(0, 0),
            c: 1,
        },
        Op::Copy {
            s: 0,
            f: kernel(0, 0, 1, 0),
            c: 2,
        },
    ]);
}

#[test]
fn data_for_a_declared_item_whose_blob_is_already_present_is_accepted() {
    regression(&[
        Op::Copy {
            s: 0,
            f: kernel(0, 0, 0, 0),
            c: 2,
        },
        Op::Meta {
            s: 0,
            arch: 0,
            version: 1,
            sub: 0,
            c: [0, 0, 2],
            write: [false, false, true],
        },
    ]);
}

#[test]
fn metadata_giving_a_kept_shared_path_other_content_is_refused() {
    regression(&[
        Op::Copy {
            s: 0,
            f: squashfs(0, 2),
            c: 1,
        },
        Op::Meta {
            s: 0,
            arch: 0,
            version: 2,
            sub: 0,
            c: [0, 0, 0],
            write: [false, false, false],
        },
    ]);
}

#[test]
fn a_copied_kernel_of_a_new_version_of_a_declared_product_keeps_its_attributes() {
    regression(&[
        Op::Meta {
            s: 0,
            arch: 0,
            version: 0,
            sub: 0,
            c: [0, 0, 1],
            write: [false, false, true],
        },
        Op::Rsync {
            s: 0,
            f: kernel(0, 1, 0, 0),
            c: 0,
        },
    ]);
}

#[test]
fn data_arriving_through_one_stream_publishes_a_version_another_was_waiting_for() {
    regression(&[
        Op::Meta {
            s: 0,
            arch: 0,
            version: 0,
            sub: 0,
            c: [0, 1, 0],
            write: [false, true, false],
        },
        Op::Copy {
            s: 1,
            f: kernel(0, 0, 0, 0),
            c: 0,
        },
    ]);
}

/// `echo x > file` in a shell: the descriptor is duplicated onto stdout
/// and the original closed (a flush) before anything is written.
#[test]
fn a_shell_redirect_inserts_what_is_written_after_the_descriptor_is_duplicated() {
    if !can_mount() {
        return;
    }
    let real = Real::new();
    let mut model = Model::default();
    let f = kernel(0, 0, 0, 0);
    let path = real.at(0, &f.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text = String::from_utf8(bytes(1)).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' '{text}' > '{}'", path.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        real.log()
    );
    assert_eq!(model.apply(&Op::Copy { s: 0, f, c: 1 }), Outcome::Ok);
    if let Err(e) = check(&model, real.mnt(), true) {
        panic!("{e}\n{}", real.log());
    }
}

#[test]
fn a_shared_file_attached_to_a_product_with_declared_versions_keeps_their_attributes() {
    regression(&[
        Op::Rsync {
            s: 0,
            f: kernel(0, 0, 1, 0),
            c: 0,
        },
        Op::Meta {
            s: 0,
            arch: 0,
            version: 1,
            sub: 1,
            c: [0, 0, 0],
            write: [false, false, false],
        },
        Op::Meta {
            s: 0,
            arch: 0,
            version: 0,
            sub: 1,
            c: [0, 0, 0],
            write: [false, false, true],
        },
    ]);
}

/// A products file declaring a version the stream has (nothing added) does
/// not attach a kept shared squashfs to it.
#[test]
fn a_products_file_that_adds_nothing_attaches_no_kept_shared_file() {
    regression(&[
        Op::Copy {
            s: 0,
            f: FileRef {
                arch: 0,
                version: 0,
                slot: Slot::Kernel { sub: 0, file: 1 },
            },
            c: 0,
        },
        Op::Copy {
            s: 1,
            f: FileRef {
                arch: 0,
                version: 0,
                slot: Slot::Squashfs,
            },
            c: 0,
        },
        Op::CtlPromote { version: 0 },
        Op::Meta {
            s: 1,
            arch: 0,
            version: 0,
            sub: 0,
            c: [0, 0, 1],
            write: [false, false, false],
        },
    ]);
}

/// A directory made by `mkdir -p` for a copy goes with its items when
/// `clean-md` retires them beside the mount.
#[test]
fn directories_made_for_a_copy_go_with_their_items_at_clean_md() {
    regression(&[
        Op::Copy {
            s: 0,
            f: FileRef {
                arch: 0,
                version: 1,
                slot: Slot::Kernel { sub: 1, file: 0 },
            },
            c: 0,
        },
        Op::Copy {
            s: 0,
            f: FileRef {
                arch: 0,
                version: 0,
                slot: Slot::Kernel { sub: 1, file: 0 },
            },
            c: 0,
        },
        Op::CleanMd { s: 0, keep: 1 },
    ]);
}

/// Removing a kept shared file (never listed) leaves the listings as they
/// were: its directories do not appear.
#[test]
fn removing_an_unlisted_shared_file_changes_no_listing() {
    regression(&[
        Op::Copy {
            s: 0,
            f: FileRef {
                arch: 1,
                version: 2,
                slot: Slot::Squashfs,
            },
            c: 0,
        },
        Op::Remount,
        Op::Remove {
            s: 0,
            f: FileRef {
                arch: 1,
                version: 2,
                slot: Slot::Squashfs,
            },
        },
    ]);
}

/// A products file whose data are all in the pool publishes its version at
/// `close`, in directories the kernel listed (and cached) just before: a
/// listing right after `close` shows the version, because the mount drops
/// the kernel's caches before it answers.
#[test]
fn a_listing_right_after_a_products_file_shows_the_version_it_published() {
    let squashfs = FileRef {
        arch: 0,
        version: 0,
        slot: Slot::Squashfs,
    };
    let mut ops = vec![
        Op::Copy {
            s: 1,
            f: kernel(0, 0, 0, 0),
            c: 3,
        },
        Op::Copy {
            s: 1,
            f: kernel(0, 0, 0, 1),
            c: 3,
        },
        Op::Copy {
            s: 1,
            f: squashfs,
            c: 3,
        },
    ];
    for arch in 0..2 {
        for version in 0..3 {
            ops.push(Op::Meta {
                s: 0,
                arch,
                version,
                sub: 0,
                c: [3, 3, 3],
                write: [false, false, false],
            });
        }
    }
    // Four mounts at once: the CPUs are busy, as in a full run, where the
    // generation watcher (which drops the caches too, a moment later) lags.
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| regression(&ops));
        }
    });
}
