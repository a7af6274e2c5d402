use super::*;

const ROOT_CALLER: Caller = Caller::user(0);

fn fs() -> (tempfile::TempDir, StreamFs) {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(&d.path().join("store")).unwrap();
    let fs = StreamFs::new(store, None).unwrap();
    (d, fs)
}

fn mkdirs(fs: &StreamFs, path: &str) -> u64 {
    let mut ino = ROOT;
    for c in path.split('/') {
        ino = match fs.lookup(ino, c) {
            Ok(a) => a.ino,
            Err(_) => fs.mkdir(ROOT_CALLER, ino, c).unwrap().ino,
        };
    }
    ino
}

fn write_file(fs: &StreamFs, dir: u64, name: &str, data: &[u8]) -> FsResult<()> {
    let Created { opened: o, .. } = fs.create(ROOT_CALLER, dir, name)?;
    fs.write(o.fh, 0, data)?;
    fs.release(o.fh)
}

#[test]
fn the_root_lists_the_streams_and_each_stream_its_metadata() {
    let (_d, fs) = fs();
    let names: Vec<String> = fs.list(ROOT).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, [".", "..", "daily", "released"]);
    let daily = fs.lookup(ROOT, "daily").unwrap();
    let streams = fs.lookup(daily.ino, "streams").unwrap();
    let v1 = fs.lookup(streams.ino, "v1").unwrap();
    let files: Vec<String> = fs
        .list(v1.ino)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(files.contains(&"index.json".to_string()), "{files:?}");
}

#[test]
fn a_file_closed_at_a_template_path_is_inserted_and_unlinked_again() {
    let (_d, fs) = fs();
    let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
    write_file(&fs, dir, "boot-kernel", b"kernel").unwrap();
    let a = fs.lookup(dir, "boot-kernel").unwrap();
    assert_eq!((a.size, a.perm, a.kind), (6, 0o444, Kind::File));
    let o = fs.open(ROOT_CALLER, a.ino, OpenMode::default()).unwrap();
    assert_eq!(fs.read(o.fh, 0, 100).unwrap(), b"kernel");
    fs.release(o.fh).unwrap();
    // Not explained by any template: refused at create.
    let top = fs.lookup(ROOT, "daily").unwrap().ino;
    assert!(matches!(
        write_file(&fs, top, "stray", b"x").map_err(FsError::into_reason),
        Err(FsError::Denied(_))
    ));
    // Nobody but root and the owner writes.
    assert!(matches!(
        fs.create(Caller::user(4242), dir, "boot-initrd")
            .map_err(FsError::into_reason),
        Err(FsError::Denied(_))
    ));
    fs.unlink(ROOT_CALLER, dir, "boot-kernel").unwrap();
    assert_eq!(fs.list(dir).unwrap().len(), 2);
    // The name is free until the removal is committed (a copy may write it
    // anew, as `tar -x` does)…
    assert!(matches!(
        fs.lookup(dir, "boot-kernel").map_err(FsError::into_reason),
        Err(FsError::NotFound)
    ));
    // …then readable by path until reaped.
    fs.flush_removals().unwrap();
    assert_eq!(fs.lookup(dir, "boot-kernel").unwrap().size, 6);
    // The emptied directory stays until rmdir, as `rm -r` expects.
    let up = fs.ino("daily/noble/amd64/20250101/ga-24.04");
    fs.rmdir(ROOT_CALLER, up, "generic").unwrap();
    let listed: Vec<String> = fs.list(up).unwrap().into_iter().map(|e| e.name).collect();
    assert!(!listed.contains(&"generic".to_string()), "{listed:?}");
    // …while the removed path below it stays resolvable.
    let generic = fs.lookup(up, "generic").unwrap();
    assert_eq!(fs.lookup(generic.ino, "boot-kernel").unwrap().size, 6);
}

fn names(fs: &StreamFs, dir: u64) -> Vec<String> {
    fs.list(dir).unwrap().into_iter().map(|e| e.name).collect()
}

/// A version with items in two kernel directories and a shared file.
fn two_kernel_version(fs: &StreamFs) -> (u64, u64, u64) {
    let g = mkdirs(fs, "daily/noble/amd64/20250101/ga-24.04/generic");
    write_file(fs, g, "boot-kernel", b"k1").unwrap();
    write_file(fs, g, "boot-initrd", b"i1").unwrap();
    let l = mkdirs(fs, "daily/noble/amd64/20250101/ga-24.04/lowlatency");
    write_file(fs, l, "boot-kernel", b"k2").unwrap();
    write_file(fs, l, "boot-initrd", b"i2").unwrap();
    let v = fs.ino("daily/noble/amd64/20250101");
    write_file(fs, v, "squashfs", b"sq").unwrap();
    (v, g, l)
}

fn products_text(fs: &StreamFs) -> String {
    let v1 = fs.ino("daily/streams/v1");
    let a = fs
        .lookup(v1, "com.ubuntu.maas:daily:v3:download.json")
        .unwrap();
    let o = fs.open(ROOT_CALLER, a.ino, OpenMode::default()).unwrap();
    let text = String::from_utf8(fs.read(o.fh, 0, 1 << 20).unwrap()).unwrap();
    fs.release(o.fh).unwrap();
    text
}

#[test]
fn rm_r_of_a_version_directory_is_one_commit_with_listings_changed_at_once() {
    let (_d, fs) = fs();
    let (v, g, l) = two_kernel_version(&fs);
    let ga = fs.ino("daily/noble/amd64/20250101/ga-24.04");
    let amd64 = fs.ino("daily/noble/amd64");
    let before = fs.generation();
    // What `rm -r` asks for: the items, then each directory once empty.
    fs.unlink(ROOT_CALLER, v, "squashfs").unwrap();
    fs.unlink(ROOT_CALLER, g, "boot-kernel").unwrap();
    assert_eq!(names(&fs, g), [".", "..", "boot-initrd"]);
    assert!(
        fs.lookup(g, "boot-kernel").is_err(),
        "a free name until committed"
    );
    assert!(matches!(
        fs.unlink(ROOT_CALLER, g, "boot-kernel")
            .map_err(FsError::into_reason),
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        fs.rmdir(ROOT_CALLER, ga, "generic")
            .map_err(FsError::into_reason),
        Err(FsError::NotEmpty)
    ));
    fs.unlink(ROOT_CALLER, g, "boot-initrd").unwrap();
    fs.rmdir(ROOT_CALLER, ga, "generic").unwrap();
    assert_eq!(names(&fs, ga), [".", "..", "lowlatency"]);
    fs.unlink(ROOT_CALLER, l, "boot-kernel").unwrap();
    fs.unlink(ROOT_CALLER, l, "boot-initrd").unwrap();
    fs.rmdir(ROOT_CALLER, ga, "lowlatency").unwrap();
    fs.rmdir(ROOT_CALLER, v, "ga-24.04").unwrap();
    assert_eq!(
        fs.generation(),
        before,
        "nothing committed before the last rmdir"
    );
    fs.rmdir(ROOT_CALLER, amd64, "20250101").unwrap();
    assert_eq!(fs.generation(), before + 1, "one commit for the version");
    assert_eq!(names(&fs, amd64), [".", ".."]);
    assert!(!products_text(&fs).contains("20250101"));
    // Every removed path stays readable until reaped.
    assert_eq!(fs.lookup(l, "boot-initrd").unwrap().size, 2);
    assert_eq!(fs.lookup(v, "squashfs").unwrap().size, 2);
}

#[test]
fn reading_the_metadata_commits_pending_removals_first() {
    let (_d, fs) = fs();
    let (_, g, _) = two_kernel_version(&fs);
    let before = fs.generation();
    assert!(products_text(&fs).contains("ga-24.04/generic/boot-kernel"));
    fs.unlink(ROOT_CALLER, g, "boot-kernel").unwrap();
    assert_eq!(fs.generation(), before);
    let text = products_text(&fs);
    assert_eq!(fs.generation(), before + 1);
    assert!(!text.contains("ga-24.04/generic/boot-kernel"), "{text}");
    assert!(text.contains("ga-24.04/generic/boot-initrd"), "{text}");
    // A lone removal is committed by the watcher's call after the window.
    fs.unlink(ROOT_CALLER, g, "boot-initrd").unwrap();
    fs.flush_removals_older_than(Duration::from_secs(3600));
    assert_eq!(fs.generation(), before + 1);
    fs.flush_removals_older_than(Duration::ZERO);
    assert_eq!(fs.generation(), before + 2);
    assert_eq!(names(&fs, g), [".", ".."]);
}

#[test]
fn two_products_files_of_the_same_name_written_at_once_are_both_merged() {
    let (_d, fs) = fs();
    let v1 = mkdirs(&fs, "daily/streams/v1");
    let doc = |v: &str| {
        format!(
            r#"{{"format": "products:1.0", "content_id": "c", "products": {{"com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04": {{"arch": "amd64", "versions": {{"{v}": {{"items": {{"boot-kernel": {{"ftype": "boot-kernel", "path": "noble/amd64/{v}/ga-24.04/generic/boot-kernel", "size": 1, "sha256": "{}"}}}}}}}}}}}}}}"#,
            "0".repeat(64)
        )
    };
    // Copies of builds whose products files share a name.
    let Created { opened: a, .. } = fs.create(ROOT_CALLER, v1, "build.json").unwrap();
    let Created { attr, opened: b } = fs.create(ROOT_CALLER, v1, "build.json").unwrap();
    // Unfinished documents are their writers' own: a lookup does not
    // see them (a `cp` then creates its own with O_EXCL)…
    assert!(matches!(
        fs.lookup(v1, "build.json").map_err(FsError::into_reason),
        Err(FsError::NotFound)
    ));
    // …and a writer reopening the name by its inode gets one of its own.
    let c = fs
        .open(
            ROOT_CALLER,
            attr.ino,
            OpenMode {
                write: true,
                truncate: true,
            },
        )
        .unwrap();
    for (h, v) in [(a.fh, "20250101"), (b.fh, "20250102"), (c.fh, "20250103")] {
        fs.write(h, 0, doc(v).as_bytes()).unwrap();
    }
    fs.release(a.fh).unwrap();
    fs.release(b.fh).unwrap();
    fs.release(c.fh).unwrap();
    // Merged: not listed, but its name reaches what was written a moment
    // longer (the `chmod` of `install`).
    assert!(!names(&fs, v1).contains(&"build.json".to_string()));
    let merged = fs.lookup(v1, "build.json").unwrap();
    assert_eq!(merged.size, doc("20250103").len() as u64);
    fs.setattr(
        ROOT_CALLER,
        merged.ino,
        None,
        AttrChange {
            size: None,
            other: true,
        },
    )
    .unwrap();
    let snap = fs.store().snapshot().unwrap();
    let versions: BTreeSet<String> = snap.streams["daily"]
        .products
        .items()
        .map(|i| i.version.to_string())
        .collect();
    assert_eq!(versions.len(), 3, "{versions:?}");
}

#[test]
fn only_root_and_the_owner_truncate_or_touch() {
    let (_d, fs) = fs();
    let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
    let Created { attr: a, opened: o } = fs.create(ROOT_CALLER, dir, "boot-kernel").unwrap();
    fs.write(o.fh, 0, b"kernel").unwrap();
    let other = Caller::user(4242);
    assert!(!fs.can_write(other));
    // Nobody else shortens an insert in progress, by path or otherwise.
    assert!(matches!(
        fs.setattr(
            other,
            a.ino,
            None,
            AttrChange {
                size: Some(0),
                other: false
            }
        )
        .map_err(FsError::into_reason),
        Err(FsError::Denied(_))
    ));
    assert!(matches!(
        fs.setattr(
            other,
            a.ino,
            None,
            AttrChange {
                size: None,
                other: true
            }
        )
        .map_err(FsError::into_reason),
        Err(FsError::Denied(_))
    ));
    // A plain getattr-like setattr changes nothing and is anyone's.
    assert_eq!(
        fs.setattr(other, a.ino, None, AttrChange::default())
            .unwrap()
            .size,
        6
    );
    fs.release(o.fh).unwrap();
    let a = fs.lookup(dir, "boot-kernel").unwrap();
    assert_eq!(a.size, 6);
    // The owner's `cp -a` sets attributes without effect.
    assert_eq!(
        fs.setattr(
            ROOT_CALLER,
            a.ino,
            None,
            AttrChange {
                size: None,
                other: true
            }
        )
        .unwrap()
        .size,
        6
    );
}

/// `sh -c 'cmd > file'`: the shell's close after dup2 comes before any
/// write; the insert waits for data or for the last close.
#[test]
fn a_close_before_any_write_leaves_the_file_open_for_the_shell_redirect() {
    let (_d, fs) = fs();
    let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
    let Created { opened: o, .. } = fs.create(ROOT_CALLER, dir, "boot-kernel").unwrap();
    fs.flush(o.fh, ROOT_CALLER).unwrap();
    assert_eq!(fs.write(o.fh, 0, b"kernel").unwrap(), 6);
    fs.flush(o.fh, ROOT_CALLER).unwrap();
    fs.release(o.fh).unwrap();
    assert_eq!(fs.lookup(dir, "boot-kernel").unwrap().size, 6);
    // An empty file is inserted at the last close.
    let Created { opened: o, .. } = fs.create(ROOT_CALLER, dir, "boot-initrd").unwrap();
    fs.flush(o.fh, ROOT_CALLER).unwrap();
    fs.release(o.fh).unwrap();
    let a = fs.lookup(dir, "boot-initrd").unwrap();
    assert_eq!((a.size, a.perm), (0, 0o444));
}

/// A forked child's close of its inherited copy of the descriptor is
/// not the opener's: the insert waits for the opener's close.
#[test]
fn a_close_by_another_process_than_the_opener_does_not_insert() {
    let (_d, fs) = fs();
    let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
    let opener = Caller {
        uid: 0,
        process: Some(100),
    };
    let child = Caller {
        process: Some(101),
        ..opener
    };
    let Created { opened: o, .. } = fs.create(opener, dir, "boot-kernel").unwrap();
    assert_eq!(fs.write(o.fh, 0, b"first").unwrap(), 5);
    fs.flush(o.fh, child).unwrap();
    assert_eq!(fs.write(o.fh, 5, b"second").unwrap(), 6);
    fs.flush(o.fh, opener).unwrap();
    assert_eq!(fs.lookup(dir, "boot-kernel").unwrap().size, 11);
    fs.release(o.fh).unwrap();
    // An opener gone before its child: the last close inserts.
    let Created { opened: o, .. } = fs.create(opener, dir, "boot-initrd").unwrap();
    assert_eq!(fs.write(o.fh, 0, b"initrd").unwrap(), 6);
    fs.flush(o.fh, child).unwrap();
    assert_eq!(fs.write(o.fh, 6, b"!").unwrap(), 1);
    fs.release(o.fh).unwrap();
    let opened = fs
        .open(
            opener,
            fs.lookup(dir, "boot-initrd").unwrap().ino,
            OpenMode::default(),
        )
        .unwrap();
    assert_eq!(fs.read(opened.fh, 0, 64).unwrap(), b"initrd!");
    fs.release(opened.fh).unwrap();
}

#[test]
fn rsync_staging_files_are_inserted_at_their_rename() {
    let (_d, fs) = fs();
    let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
    write_file(&fs, dir, ".boot-kernel.AbC123", b"k").unwrap();
    assert!(fs.lookup(dir, "boot-kernel").is_err());
    assert_eq!(fs.lookup(dir, ".boot-kernel.AbC123").unwrap().size, 1);
    fs.rename(
        ROOT_CALLER,
        (dir, ".boot-kernel.AbC123"),
        (dir, "boot-kernel"),
        0,
    )
    .unwrap();
    assert_eq!(fs.lookup(dir, "boot-kernel").unwrap().size, 1);
    assert!(fs.lookup(dir, ".boot-kernel.AbC123").is_err());
}

#[test]
fn staging_names_are_recognised() {
    assert_eq!(staging_target(".squashfs.Xy12Zq"), Some("squashfs"));
    assert_eq!(staging_target(".a.b.json.abcdef"), Some("a.b.json"));
    assert_eq!(staging_target("squashfs"), None);
    assert_eq!(staging_target(".x.abc"), None);
}

/// A mount whose opens the kernel answers reads documents by number:
/// the number handed out before commits still reads that generation's
/// bytes and size after its generation directory was deleted, until
/// the kernel forgets it.
#[test]
fn a_document_number_reads_its_generation_until_forgotten() {
    let (_d, fs) = fs();
    let daily = fs.lookup(ROOT, "daily").unwrap().ino;
    let streams = fs.lookup(daily, "streams").unwrap().ino;
    let v1 = fs.lookup(streams, "v1").unwrap().ino;
    let old = fs.lookup(v1, "index.json").unwrap();
    let old_bytes = fs.read_by_inode(old.ino, 0, 1 << 20).unwrap();
    assert_eq!(old_bytes.len() as u64, old.size);
    // Two commits: the store keeps the previous generation only.
    for v in ["20250101", "20250102"] {
        let dir = mkdirs(&fs, &format!("daily/noble/amd64/{v}/ga-24.04/generic"));
        write_file(&fs, dir, "boot-kernel", b"kernel").unwrap();
    }
    let new = fs.lookup(v1, "index.json").unwrap();
    assert_ne!(new.ino, old.ino);
    let new_bytes = fs.read_by_inode(new.ino, 0, 1 << 20).unwrap();
    assert_ne!(new_bytes, old_bytes);
    assert_eq!(fs.read_by_inode(old.ino, 0, 1 << 20).unwrap(), old_bytes);
    assert_eq!(fs.read_by_inode(old.ino, 3, 4).unwrap(), &old_bytes[3..7]);
    assert_eq!(fs.getattr(old.ino).unwrap().size, old.size);
    // An open of the old number (a handle) reads the same bytes.
    let o = fs.open(ROOT_CALLER, old.ino, OpenMode::default()).unwrap();
    assert_eq!(fs.read(o.fh, 0, 1 << 20).unwrap(), old_bytes);
    fs.release(o.fh).unwrap();
    fs.forget(old.ino, 1);
    assert!(fs.read_by_inode(old.ino, 0, 10).is_err());
    assert_eq!(fs.read_by_inode(new.ino, 0, 1 << 20).unwrap(), new_bytes);
    // Items read by number too; directories never are.
    let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
    let kernel = fs.lookup(dir, "boot-kernel").unwrap().ino;
    assert_eq!(fs.read_by_inode(kernel, 0, 100).unwrap(), b"kernel");
    assert!(matches!(
        fs.read_by_inode(dir, 0, 10).map_err(FsError::into_reason),
        Err(FsError::BadHandle)
    ));
}

/// A READDIRPLUS reply with room for `room` entries.
struct Room {
    room: usize,
    names: Vec<String>,
}

impl DirectoryPlusReplier for Room {
    fn add(&mut self, e: &DirEntry, _attr: &Attr) -> bool {
        if self.names.len() == self.room {
            return false;
        }
        self.names.push(e.name.clone());
        true
    }
}

/// Documents the kernel holds (handed out and not forgotten).
fn docs_held(fs: &StreamFs) -> usize {
    fs.inodes
        .all()
        .into_iter()
        .filter(|n| matches!(n.content, Some(Content::Doc(_))))
        .count()
}

#[test]
fn a_listing_hands_out_only_the_entries_the_reply_took() {
    let (_d, fs) = fs();
    let daily = fs.lookup(ROOT, "daily").unwrap();
    let streams = fs.lookup(daily.ino, "streams").unwrap();
    let v1 = fs.lookup(streams.ino, "v1").unwrap().ino;
    let docs = fs.list(v1).unwrap().len() - 2;
    assert!(docs > 0);
    // Room for `.`, `..` and one document: one document held.
    let mut reply = Room {
        room: 3,
        names: vec![],
    };
    fs.readdir_plus(v1, 0, &mut reply).unwrap();
    assert_eq!(reply.names.len(), 3);
    assert_eq!(docs_held(&fs), 1);
    // The rest from where the reply stopped: every document held once.
    let mut reply = Room {
        room: usize::MAX,
        names: vec![],
    };
    fs.readdir_plus(v1, 3, &mut reply).unwrap();
    assert_eq!(reply.names.len(), docs - 1);
    assert_eq!(docs_held(&fs), docs);
}

/// `tar -x` and `install` unlink an existing file, then create theirs.
#[test]
fn a_file_unlinked_and_written_again_at_once_replaces_nothing() {
    let (_d, fs) = fs();
    let (_, g, _) = two_kernel_version(&fs);
    let before = fs.generation();
    // An item: the removal is cancelled; other content is refused.
    fs.unlink(ROOT_CALLER, g, "boot-kernel").unwrap();
    assert!(matches!(
        write_file(&fs, g, "boot-kernel", b"k9").map_err(FsError::into_reason),
        Err(FsError::Core(Error::Refused(_)))
    ));
    fs.unlink(ROOT_CALLER, g, "boot-kernel").unwrap();
    write_file(&fs, g, "boot-kernel", b"k1").unwrap();
    fs.flush_removals().unwrap();
    assert!(names(&fs, g).contains(&"boot-kernel".to_string()));
    assert_eq!(fs.generation(), before, "nothing changed");
    // A generated document: nothing is removed, the name is free for the
    // copy, and the mount's own is back once the copy is merged.
    let v1 = fs.ino("daily/streams/v1");
    let index = fs.lookup(v1, "index.json").unwrap().size;
    fs.unlink(ROOT_CALLER, v1, "index.json").unwrap();
    assert!(fs.lookup(v1, "index.json").is_err());
    write_file(
        &fs,
        v1,
        "index.json",
        br#"{"format": "index:1.0", "index": {}}"#,
    )
    .unwrap();
    assert_eq!(fs.lookup(v1, "index.json").unwrap().size, index);
    assert_eq!(fs.generation(), before);
}

#[test]
fn the_inode_table_holds_only_what_the_kernel_holds() {
    let (_d, fs) = fs();
    let dir = mkdirs(&fs, "daily/noble/amd64/20250101/ga-24.04/generic");
    write_file(&fs, dir, "boot-kernel", b"kernel").unwrap();
    // Everything mkdirs and the write handed out, forgotten as the kernel
    // would on eviction: one FORGET per number with its whole count.
    let held = fs.inodes.all();
    assert!(!held.is_empty());
    for n in &held {
        fs.forget(n.ino, u64::MAX);
    }
    assert!(fs.inodes.is_empty(), "{:?}", fs.inodes.all());
    // Looking paths up (a walk of the tree) and listing with attributes
    // (READDIRPLUS) count each hand-out; forgetting them empties the table
    // again, however many paths were seen.
    let mut walk = vec![ROOT];
    let mut handed = Vec::new();
    while let Some(d) = walk.pop() {
        for e in fs.list(d).unwrap().into_iter().skip(2) {
            let a = fs.lookup(d, &e.name).unwrap();
            handed.push(a.ino);
            if a.kind == Kind::Dir {
                walk.push(a.ino);
            }
        }
    }
    assert!(handed.len() > 10, "{handed:?}");
    let daily = fs.lookup(ROOT, "daily").unwrap().ino;
    let streams = fs.lookup(daily, "streams").unwrap().ino;
    let mut listing = Room {
        room: usize::MAX,
        names: vec![],
    };
    fs.readdir_plus(streams, 0, &mut listing).unwrap();
    assert!(
        listing.names.iter().any(|n| n == "v1"),
        "{:?}",
        listing.names
    );
    let v1 = fs.lookup(streams, "v1").unwrap().ino;
    handed.extend([daily, streams, v1, v1]);
    for ino in handed {
        fs.forget(ino, 1);
    }
    assert!(fs.inodes.is_empty(), "{:?}", fs.inodes.all());
}
