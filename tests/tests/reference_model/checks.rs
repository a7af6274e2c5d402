//! The comparison of the mount with the model after every step.

use super::*;

/// What the mount shows of a stream: listed files with their bytes, listed
/// directories.
pub(crate) fn walk(root: &Path) -> (BTreeMap<String, Vec<u8>>, BTreeSet<String>) {
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
pub(crate) type Row = (String, String, String, String, String, String, String);

pub(crate) fn model_rows(m: &Model, s: usize) -> BTreeSet<Row> {
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

pub(crate) fn mount_rows(mnt: &Path, s: usize) -> BTreeSet<Row> {
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
pub(crate) fn check(m: &Model, mnt: &Path, writer: bool) -> Result<(), String> {
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
        // Read first: reading a stream's metadata commits the removals
        // acknowledged so far, and a path unlinked moments ago names nothing
        // until then (the mount's rule for `unlink`).
        let rows = mount_rows(mnt, s);
        for (p, c) in m.hidden(s) {
            match std::fs::read(root.join(&p)) {
                Ok(b) if b == bytes(c) => {}
                Ok(_) => return Err(format!("{}/{p}: readable with the wrong bytes", stream)),
                Err(e) => {
                    return Err(format!("{}/{p}: should stay readable by path: {e}", stream));
                }
            }
        }
        let (got, want) = (rows, model_rows(m, s));
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
