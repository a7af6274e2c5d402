//! Images in a store stream (default `images`): each image a product, each
//! save a version holding one item, the `.sfimg` file, with the disk's size
//! and sha256, the node it was saved from, the date and a comment. Inserted
//! through the store's ordinary insert, so images are content-addressed
//! like every blob: two saves of one disk cost one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use streamfs_core::ops::insert::{InsertOptions, insert};
use streamfs_core::ops::product_alias;
use streamfs_core::store::Store;

use crate::error::{Error, Result};
use crate::image::{self, Index};

/// The item name of an image's file in its version.
const ITEM: &str = "disk.sfimg";

/// `NAME` (its newest version) or `NAME@VERSION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub name: String,
    pub version: Option<String>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef> {
        let (name, version) = match s.split_once('@') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (s, None),
        };
        check_name("image name", name)?;
        if let Some(v) = &version {
            check_name("image version", v)?;
        }
        Ok(ImageRef {
            name: name.to_string(),
            version,
        })
    }
}

/// Names become paths in the stream: one component of letters, digits,
/// `.`, `_`, `-`, not starting with a dot.
fn check_name(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{what} {s:?}: use letters, digits, '.', '_' and '-' (not first '.')"
        )))
    }
}

/// One version of an image, as `node images -l` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageVersion {
    pub name: String,
    pub version: String,
    /// The `.sfimg` file's size and sha256 (the blob).
    pub size: u64,
    pub sha256: String,
    pub disk_size: u64,
    pub disk_sha256: String,
    pub node: Option<String>,
    pub date: Option<String>,
    pub comment: Option<String>,
    /// The item's path in the stream.
    pub path: String,
}

/// Who saved a version, and why.
#[derive(Clone, Debug, Default)]
pub struct SaveInfo {
    pub node: Option<String>,
    pub comment: Option<String>,
}

/// Inserts a packed image file as a new version of `name` in `stream`;
/// returns the version as listed.
pub fn insert_packed(
    store: &Store,
    stream: &str,
    name: &str,
    packed: &Path,
    index: &Index,
    info: &SaveInfo,
) -> Result<ImageVersion> {
    check_name("image name", name)?;
    let cfg = store.config().stream(stream)?.clone();
    let now = chrono::Utc::now();
    let mut version = now.format("%Y%m%d_%H%M%S").to_string();
    // Two saves within one second get distinct versions.
    let existing = list(store, stream)?;
    let mut n = 1;
    while existing
        .iter()
        .any(|v| v.name == name && v.version == version)
    {
        n += 1;
        version = format!("{}.{n}", now.format("%Y%m%d_%H%M%S"));
    }
    let src = staging_dir(store, ".node-save-")?;
    let rel = format!("{name}/{version}/{ITEM}");
    let data = src.path().join(&rel);
    std::fs::create_dir_all(data.parent().expect("has a parent"))
        .map_err(Error::io(format!("creating {}", data.display())))?;
    if std::fs::hard_link(packed, &data).is_err() {
        std::fs::copy(packed, &data).map_err(Error::io(format!("copying {}", packed.display())))?;
    }
    let blob = streamfs_core::store::pool::hash_file(&data)?;
    let mut v = Map::new();
    v.insert(
        "date".into(),
        json!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    if let Some(node) = &info.node {
        v.insert("node".into(), json!(node));
    }
    if let Some(c) = &info.comment {
        v.insert("comment".into(), json!(c));
    }
    v.insert(
        "items".into(),
        json!({ ITEM: {
            "ftype": "sfimg",
            "path": rel,
            "size": blob.size,
            "sha256": blob.sha256,
            "disk_size": index.disk_size,
            "disk_sha256": index.disk_sha256_hex(),
        }}),
    );
    let doc = json!({
        "content_id": cfg.content_id,
        "datatype": cfg.datatype,
        "format": "products:1.0",
        "products": { name: { "versions": { &version: v } } },
    });
    let meta = src.path().join("streams/v1");
    std::fs::create_dir_all(&meta).map_err(Error::io(format!("creating {}", meta.display())))?;
    let doc_file = meta.join("images.json");
    std::fs::write(
        &doc_file,
        serde_json::to_vec_pretty(&doc).expect("serializable"),
    )
    .map_err(Error::io(format!("writing {}", doc_file.display())))?;
    insert(
        store,
        stream,
        src.path(),
        InsertOptions {
            dry_run: false,
            filters: &[],
            progress: &mut |_| {},
        },
    )?;
    find(
        store,
        stream,
        &ImageRef {
            name: name.into(),
            version: Some(version),
        },
    )
}

/// Packs a raw disk image (`.img`) and inserts it as a new version.
pub fn import_raw(
    store: &Store,
    stream: &str,
    name: &str,
    raw: &Path,
    info: &SaveInfo,
) -> Result<ImageVersion> {
    check_name("image name", name)?;
    store.config().stream(stream)?;
    let tmp = staging_dir(store, ".node-pack-")?;
    let packed = tmp.path().join(ITEM);
    let index = image::pack_file(raw, &packed)?;
    insert_packed(store, stream, name, &packed, &index, info)
}

/// A directory in the store (same file system as the pool, so the insert
/// can hard-link), removed on drop.
fn staging_dir(store: &Store, prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(store.root())
        .map_err(Error::io(format!(
            "creating a staging directory in {}",
            store.root().display()
        )))
}

/// Every version of every image in `stream`, by name then version.
pub fn list(store: &Store, stream: &str) -> Result<Vec<ImageVersion>> {
    store.config().stream(stream)?;
    let snap = store.snapshot()?;
    let Some(state) = snap.streams.get(stream) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, product) in state.products.products() {
        let Some(versions) = product.get("versions").and_then(Value::as_object) else {
            continue;
        };
        for (version, v) in versions {
            let Some(item) = v.get("items").and_then(|i| i.get(ITEM)) else {
                continue;
            };
            let s = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
            let n = |k: &str| item.get(k).and_then(Value::as_u64).unwrap_or_default();
            out.push(ImageVersion {
                name: name.clone(),
                version: version.clone(),
                size: n("size"),
                sha256: s(item, "sha256").unwrap_or_default(),
                disk_size: n("disk_size"),
                disk_sha256: s(item, "disk_sha256").unwrap_or_default(),
                node: s(v, "node"),
                date: s(v, "date"),
                comment: s(v, "comment"),
                path: s(item, "path").unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    Ok(out)
}

/// Every alias of the stream's images and the image it names.
pub fn aliases(store: &Store, stream: &str) -> Result<BTreeMap<String, String>> {
    store.config().stream(stream)?;
    let snap = store.snapshot()?;
    Ok(snap
        .streams
        .get(stream)
        .map(product_alias::all)
        .unwrap_or_default())
}

/// Makes `alias` another name of image `name` (moving it from the image it
/// named before); in the mount it is the symlink `ALIAS -> NAME`.
pub fn set_alias(store: &Store, stream: &str, alias: &str, name: &str) -> Result<bool> {
    let name = resolve(store, stream, name)?;
    let mut txn = store.begin()?;
    let changed = product_alias::set(&mut txn, stream, alias, &name)?;
    txn.commit()?;
    Ok(changed)
}

/// Drops `alias`; returns the image it named.
pub fn remove_alias(store: &Store, stream: &str, alias: &str) -> Result<String> {
    let mut txn = store.begin()?;
    let name = product_alias::remove(&mut txn, stream, alias)?;
    txn.commit()?;
    Ok(name)
}

/// The image a name means: itself, or the image it is an alias of.
fn resolve(store: &Store, stream: &str, name: &str) -> Result<String> {
    if list(store, stream)?.iter().any(|v| v.name == name) {
        return Ok(name.to_string());
    }
    aliases(store, stream)?
        .remove(name)
        .ok_or_else(|| Error::Usage(format!("no image {name} in stream {stream}")))
}

/// The version an image reference means: the given one, or the newest. The
/// name may be an alias.
pub fn find(store: &Store, stream: &str, r: &ImageRef) -> Result<ImageVersion> {
    let name = resolve(store, stream, &r.name)?;
    let all = list(store, stream)?;
    let mut of_name: Vec<ImageVersion> = all.into_iter().filter(|v| v.name == name).collect();
    match &r.version {
        Some(want) => of_name
            .into_iter()
            .find(|v| &v.version == want)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "image {name} has no version {want} in stream {stream}"
                ))
            }),
        None => Ok(of_name.pop().expect("not empty")),
    }
}

/// The blob file holding a version's `.sfimg`.
pub fn blob_path(store: &Store, v: &ImageVersion) -> PathBuf {
    store.pool().path(&v.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE_TOML: &str = r#"
[[stream]]
name = "images"
content_id = "org.streamfs:node-images"
datatype = "image-downloads"
product_id = "{name}"
paths = ["{name}/{version_name}/{ftype}"]
"#;

    fn store_with(images: &[(&str, u8)]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(&dir.path().join("s"), Some(STORE_TOML)).unwrap();
        for (name, byte) in images {
            let raw = dir.path().join(format!("{name}.img"));
            std::fs::write(&raw, vec![*byte; 3 << 20]).unwrap();
            import_raw(&store, "images", name, &raw, &SaveInfo::default()).unwrap();
        }
        (dir, store)
    }

    fn newest(store: &Store, r: &str) -> Result<String> {
        find(store, "images", &ImageRef::parse(r)?).map(|v| v.name)
    }

    #[test]
    fn an_alias_resolves_to_its_image_and_moves_when_set_again() {
        let (_d, store) = store_with(&[("debian-12", 1), ("ubuntu-24.04", 2)]);
        assert!(set_alias(&store, "images", "default", "debian-12").unwrap());
        assert!(!set_alias(&store, "images", "default", "debian-12").unwrap());
        assert_eq!(newest(&store, "default").unwrap(), "debian-12");
        // An alias of an alias names the image.
        set_alias(&store, "images", "stable", "default").unwrap();
        assert_eq!(newest(&store, "stable").unwrap(), "debian-12");
        // An alias names one image: setting it elsewhere moves it.
        set_alias(&store, "images", "default", "ubuntu-24.04").unwrap();
        assert_eq!(newest(&store, "default").unwrap(), "ubuntu-24.04");
        let all = aliases(&store, "images").unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(
            remove_alias(&store, "images", "default").unwrap(),
            "ubuntu-24.04"
        );
        assert!(newest(&store, "default").is_err());
    }

    #[test]
    fn a_new_version_keeps_the_aliases_of_its_image() {
        let (d, store) = store_with(&[("debian-12", 1)]);
        set_alias(&store, "images", "debian", "debian-12").unwrap();
        let raw = d.path().join("again.img");
        std::fs::write(&raw, vec![7u8; 3 << 20]).unwrap();
        let v = import_raw(&store, "images", "debian-12", &raw, &SaveInfo::default()).unwrap();
        let found = find(&store, "images", &ImageRef::parse("debian").unwrap()).unwrap();
        assert_eq!(
            found.version, v.version,
            "the alias means the newest version"
        );
        assert_eq!(aliases(&store, "images").unwrap().len(), 1);
    }

    #[test]
    fn an_alias_may_not_take_an_image_name_or_a_path() {
        let (_d, store) = store_with(&[("debian-12", 1), ("ubuntu-24.04", 2)]);
        let e = set_alias(&store, "images", "ubuntu-24.04", "debian-12").unwrap_err();
        assert!(e.to_string().contains("ubuntu-24.04 is a product"), "{e}");
        for bad in ["../x", "a,b", ".hidden"] {
            assert!(
                set_alias(&store, "images", bad, "debian-12").is_err(),
                "{bad}"
            );
        }
        let e = set_alias(&store, "images", "x", "fedora").unwrap_err();
        assert!(e.to_string().contains("no image fedora"), "{e}");
        let e = remove_alias(&store, "images", "nope").unwrap_err();
        assert!(e.to_string().contains("no alias nope"), "{e}");
    }
}
