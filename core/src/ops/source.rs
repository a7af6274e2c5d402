//! What `insert` reads: a build output directory (data files plus, usually,
//! its `streams/v1` metadata), or a products/index file inside a mirror tree.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, IoContext, Result};
use crate::relpath::RelPath;
use crate::store::config::StreamConfig;
use crate::streams::Products;
use crate::streams::index::parse_index;

/// Products documents and the directory their item paths are relative to.
#[derive(Debug)]
pub struct Source {
    pub root: PathBuf,
    pub docs: Vec<(String, Products)>,
    /// True when the products were derived from file paths through the
    /// stream's templates (no metadata in the source).
    pub derived: bool,
}

impl Source {
    /// The file holding the data of the item at `path` (`what` names the
    /// item in errors). It must lie below the source root, symlinks
    /// resolved: a build directory whose `squashfs` is a symlink to
    /// `/etc/shadow` must not publish that file to every client.
    pub fn data_file(&self, what: &str, path: &str) -> Result<PathBuf> {
        let file = self.root.join(path);
        let real = fs::canonicalize(&file).map_err(|_| Error::MissingData {
            what: what.to_string(),
            path: file.clone(),
        })?;
        let root = fs::canonicalize(&self.root).at(&self.root)?;
        if !real.starts_with(&root) {
            return Err(Error::Refused(format!(
                "{what}: {} leads outside {} (to {}); data files must lie in the source",
                file.display(),
                self.root.display(),
                real.display()
            )));
        }
        Ok(file)
    }
}

/// The mirror root of a file at `ROOT/streams/v1/NAME`.
fn mirror_root_of(file: &Path) -> Option<PathBuf> {
    let v1 = file.parent()?;
    let streams = v1.parent()?;
    if v1.file_name()? == "v1" && streams.file_name()? == "streams" {
        Some(streams.parent()?.to_path_buf())
    } else {
        None
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).at(path)
}

/// Loads a products file, or every products file an index names.
fn load_metadata_file(file: &Path) -> Result<Source> {
    let root = mirror_root_of(file)
        .or_else(|| file.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let bytes = read(file)?;
    let name = file.display().to_string();
    let doc = crate::json::parse_object(&name, &bytes)?;
    let docs = match doc.get("format").and_then(Value::as_str) {
        Some("index:1.0") => {
            let mut docs = Vec::new();
            for e in parse_index(&name, &bytes)? {
                let fmt = e
                    .data
                    .get("format")
                    .and_then(Value::as_str)
                    .unwrap_or("products:1.0");
                if fmt != "products:1.0" {
                    continue;
                }
                let p = root.join(&e.path);
                let pb = read(&p)?;
                docs.push((
                    p.display().to_string(),
                    Products::parse(&p.display().to_string(), &pb)?,
                ));
            }
            docs
        }
        _ => vec![(name.clone(), Products::from_map(&name, doc)?)],
    };
    Ok(Source {
        root,
        docs,
        derived: false,
    })
}

/// Loads what `insert SRC` names. A directory with `streams/v1/index.json`
/// is read through its index; one with only products files in
/// `streams/v1/` through those; one without metadata is laid out by the
/// target stream's path templates (`layout`).
pub fn load(src: &Path, cfg: &StreamConfig) -> Result<Source> {
    let meta = fs::metadata(src).at(src)?;
    if meta.is_file() {
        return load_metadata_file(src);
    }
    let v1 = src.join("streams").join("v1");
    let index = v1.join("index.json");
    if index.is_file() {
        let mut s = load_metadata_file(&index)?;
        s.root = src.to_path_buf();
        return Ok(s);
    }
    if v1.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(&v1)
            .at(&v1)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        if !files.is_empty() {
            let mut docs = Vec::new();
            for f in files {
                let mut s = load_metadata_file(&f)?;
                docs.append(&mut s.docs);
            }
            return Ok(Source {
                root: src.to_path_buf(),
                docs,
                derived: false,
            });
        }
    }
    derive_from_files(src, cfg)
}

/// Builds products from a tree of data files and the stream's templates.
/// Items carry a path but no sha256 yet: insert hashes them as it copies.
/// The stream's `label` is set on every derived product.
pub fn derive_from_files(root: &Path, cfg: &StreamConfig) -> Result<Source> {
    let layout = &cfg.layout;
    let mut files = Vec::new();
    walk(root, root, &mut files)?;
    files.sort();
    let mut products = Products::new(&cfg.content_id, &cfg.datatype);
    // Files that name their product, then the shared ones.
    let mut shared = Vec::new();
    for rel in files {
        let placement = layout.place(rel.as_str()).ok_or_else(|| {
            Error::Unexplained(format!(
                "{}: no path template of the stream explains '{rel}'",
                root.join(rel.as_str()).display()
            ))
        })?;
        let mut item = Map::new();
        item.insert("ftype".into(), placement.ftype.clone().into());
        item.insert("path".into(), rel.as_str().into());
        match &placement.product {
            Some(pid) => {
                let mut attrs: Map<String, Value> = placement
                    .attrs
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                if let Some(l) = &cfg.label {
                    attrs.insert("label".into(), l.as_str().into());
                }
                add_item(
                    &mut products,
                    pid,
                    &attrs,
                    &placement.version,
                    &placement.ftype,
                    item,
                );
            }
            None => shared.push((placement, item)),
        }
    }
    for (placement, item) in shared {
        let targets: Vec<(String, Map<String, Value>)> = products
            .products()
            .iter()
            .filter(|(_, p)| p.as_object().is_some_and(|p| placement.agrees_with(p)))
            .filter(|(name, _)| products.has_version(name, &placement.version))
            .map(|(n, p)| (n.clone(), p.as_object().cloned().unwrap_or_default()))
            .collect();
        if targets.is_empty() {
            return Err(Error::Unexplained(format!(
                "{}: '{}' belongs to no product (no kernel of that release and arch at version {})",
                root.display(),
                item["path"].as_str().unwrap_or_default(),
                placement.version
            )));
        }
        for (pid, attrs) in targets {
            add_item(
                &mut products,
                &pid,
                &attrs,
                &placement.version,
                &placement.ftype,
                item.clone(),
            );
        }
    }
    Ok(Source {
        root: root.to_path_buf(),
        docs: vec![(root.display().to_string(), products)],
        derived: true,
    })
}

pub(crate) fn add_item(
    products: &mut Products,
    pid: &str,
    attrs: &Map<String, Value>,
    version: &str,
    name: &str,
    item: Map<String, Value>,
) {
    let mut vdata = products.version(pid, version).cloned().unwrap_or_default();
    if vdata.is_empty()
        && let Some(p) = products.product(pid)
    {
        // A new version of an existing product: the attributes the product
        // does not carry itself (one inserted by metadata keeps them on its
        // versions) go on the version, so its items flatten to them.
        for (k, v) in attrs {
            if k != "versions" && p.get(k) != Some(v) {
                vdata.insert(k.clone(), v.clone());
            }
        }
    }
    let items = vdata
        .entry("items")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = items {
        m.insert(name.to_string(), Value::Object(item));
    }
    products.set_version(pid, attrs, version, vdata);
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<RelPath>) -> Result<()> {
    for e in fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        let p = e.path();
        let ft = e.file_type().at(&p)?;
        if ft.is_dir() {
            walk(root, &p, out)?;
        } else if ft.is_file() || (ft.is_symlink() && fs::metadata(&p).is_ok_and(|m| m.is_file())) {
            // Symlinks count as the files they lead to; insert refuses the
            // ones that leave the source (`Source::data_file`).
            let rel = p.strip_prefix(root).expect("below root");
            let name = p.display().to_string();
            let rel = rel.to_str().ok_or_else(|| {
                Error::invalid(
                    &name,
                    "file name",
                    "not valid UTF-8 (simplestreams paths are JSON strings)",
                )
            })?;
            let rel = RelPath::new(rel).map_err(|r| Error::invalid(&name, "path", r))?;
            out.push(rel);
        }
    }
    Ok(())
}
