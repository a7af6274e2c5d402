//! The real side: a streamfs mount of a fresh store, and `mountctl` beside it.

use super::*;

pub(crate) fn meta_file(arch: usize, version: usize, sub: usize, i: usize) -> FileRef {
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

pub(crate) fn errno_of(e: &std::io::Error) -> Outcome {
    Outcome::Err(e.raw_os_error())
}

/// Writes a file and closes it: `close`'s own result included.
pub(crate) fn write_file(path: &Path, data: &[u8]) -> Outcome {
    match write_closed(path, data) {
        Ok(()) => Outcome::Ok,
        Err(e) => errno_of(&e),
    }
}

/// The real side: a store on tmpfs (this test checks semantics, not
/// durability: fsync costs nothing there) and its mount.
pub(crate) struct Real {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) store: PathBuf,
    pub(crate) mount: Option<Mount>,
    /// A read-only mount of the same store, as a mirror serves it (opens
    /// answered by the kernel, pages kept): read along after every step,
    /// so its caches hold every intermediate state, and compared with the
    /// model at the end of the case.
    pub(crate) served: Option<Mount>,
    pub(crate) builds: usize,
}

pub(crate) fn products_doc(
    s: usize,
    arch: usize,
    version: usize,
    sub: usize,
    c: [Content; 3],
) -> String {
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
    pub(crate) fn new() -> Real {
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

    pub(crate) fn mnt(&self) -> &Path {
        self.mount.as_ref().expect("mounted").path()
    }

    pub(crate) fn served(&self) -> &Path {
        self.served.as_ref().expect("mounted").path()
    }

    pub(crate) fn at(&self, s: usize, rel: &str) -> PathBuf {
        self.mnt().join(STREAMS[s]).join(rel)
    }

    pub(crate) fn mountctl(&self, args: &[&str]) -> Outcome {
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
    pub(crate) fn await_refresh(&self) {
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

    pub(crate) fn put(&self, s: usize, f: FileRef, c: Content, rsync: bool) -> Outcome {
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

    pub(crate) fn apply(&mut self, op: &Op) -> Outcome {
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
                    let r = self.put(s, meta_file(arch, version, sub, i), c[i], false);
                    if r != Outcome::Ok {
                        return r;
                    }
                }
                let doc = products_doc(s, arch, version, sub, c);
                write_file(&self.at(s, "streams/v1/build.json"), doc.as_bytes())
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

    pub(crate) fn log(&self) -> String {
        self.mount.as_ref().map(Mount::log_text).unwrap_or_default()
    }

    pub(crate) fn fsck(&self) -> Result<(), String> {
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
