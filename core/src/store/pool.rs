//! The content-addressed pool: `pool/sha256/ab/abcdef…`, one immutable,
//! read-only file per distinct content.
//!
//! Data enters in two steps. It is first *staged* in `tmp/` while its sha256
//! is computed in the same pass as the copy; only once the staged file is
//! complete, fsynced and (when the metadata declares one) its size and hash
//! verified is it renamed into the pool. So the pool never holds a partial or
//! wrong blob, and a blob is durable before any metadata can name it.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::append::Appender;
use super::direct::ALIGN;
use super::fsutil::sync_dir;
use crate::error::{Error, IoContext, Result};

const BUF: usize = 4 << 20;

/// A blob's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobRef {
    pub sha256: String,
    pub size: u64,
}

impl BlobRef {
    /// Checks this content against what metadata declares for it; `what`
    /// names the item in the error.
    pub fn check(&self, what: &str, size: Option<u64>, sha256: Option<&str>) -> Result<()> {
        if let Some(s) = size
            && s != self.size
        {
            return Err(Error::Checksum {
                what: what.to_string(),
                reason: format!(
                    "size mismatch: metadata says {s} bytes, data has {}",
                    self.size
                ),
            });
        }
        if let Some(h) = sha256
            && !h.eq_ignore_ascii_case(&self.sha256)
        {
            return Err(Error::Checksum {
                what: what.to_string(),
                reason: format!(
                    "sha256 mismatch: metadata says {h}, data has {}",
                    self.sha256
                ),
            });
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct Pool {
    root: PathBuf,
    tmp: PathBuf,
}

static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Pool {
    /// The pool of the store at `store_root`.
    pub fn new(store_root: &Path) -> Pool {
        Pool {
            root: store_root.join("pool").join("sha256"),
            tmp: store_root.join("tmp"),
        }
    }

    /// `pool/sha256/ab/abcdef…`, relative to the store: the key of `orphans.json`.
    pub fn rel_path(sha256: &str) -> String {
        format!("pool/sha256/{}/{}", &sha256[..2.min(sha256.len())], sha256)
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join(&sha256[..2.min(sha256.len())]).join(sha256)
    }

    pub fn contains(&self, sha256: &str) -> bool {
        valid_sha(sha256) && self.path(sha256).is_file()
    }

    /// Which of `hashes` are in the pool: the answer of [`Pool::contains`]
    /// for each, found cheaply for many. A fan-out directory asked about
    /// many times is listed once instead of stat-ing each blob (a commit of
    /// a large stream asks about every item); one asked about a few blobs
    /// among many is not listed.
    pub fn present<'h>(&self, hashes: impl IntoIterator<Item = &'h str>) -> HashSet<&'h str> {
        let mut by_dir: BTreeMap<&str, Vec<&'h str>> = BTreeMap::new();
        for h in hashes {
            if valid_sha(h) {
                by_dir.entry(&h[..2]).or_default().push(h);
            }
        }
        let mut out = HashSet::new();
        for (fan, wanted) in by_dir {
            let dir = self.root.join(fan);
            if let Some(listed) = self.list_if_cheaper(&dir, wanted.len()) {
                out.extend(wanted.into_iter().filter(|h| listed.contains(*h)));
            } else {
                out.extend(wanted.into_iter().filter(|h| self.path(h).is_file()));
            }
        }
        out
    }

    /// The regular files of a fan-out directory, when reading it costs less
    /// than `lookups` stats: at least 64 of them, and a directory not much
    /// larger than that (its size in bytes over ~96 bytes per entry).
    fn list_if_cheaper(&self, dir: &Path, lookups: usize) -> Option<HashSet<String>> {
        if lookups < 64 {
            return None;
        }
        let size = fs::metadata(dir).ok()?.len();
        if size / 96 > 16 * lookups as u64 {
            return None;
        }
        let mut names = HashSet::new();
        for e in fs::read_dir(dir).ok()? {
            let e = e.ok()?;
            if e.file_type().ok()?.is_file() {
                names.insert(e.file_name().into_string().ok()?);
            }
        }
        Some(names)
    }

    /// A fresh staging file in `tmp/`, named after this process so that a
    /// later writer can tell the leftovers of a dead one from live work.
    fn stage_path(&self) -> PathBuf {
        let n = STAGE_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{}.{n}.stage", std::process::id()))
    }

    /// Starts a staged blob that is written piecewise (the mount's inserts).
    pub fn writer(&self) -> Result<BlobWriter> {
        fs::create_dir_all(&self.tmp).at(&self.tmp)?;
        let path = self.stage_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .at(&path)?;
        Ok(BlobWriter {
            file,
            path: Some(path),
            hash: Sha256::new(),
            hashed: 0,
            len: 0,
            sequential: true,
            pipe: Pipe::Unused,
            failed: None,
        })
    }

    /// Copies `src` into a staged blob, hashing in the same pass (on the
    /// writer's threads, see [`Appender`]), so a large insert costs about
    /// what the slowest of reading, hashing and writing costs, not their sum.
    /// `progress` is called with the bytes copied.
    pub fn stage_file(&self, src: &Path, progress: &mut dyn FnMut(u64)) -> Result<Staged> {
        let mut input = File::open(src).at(src)?;
        let mut w = self.writer()?;
        let mut buf = vec![0u8; BUF];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(src, e)),
            };
            w.append(&buf[..n])?;
            progress(w.len);
        }
        w.finish()
    }

    /// Admits a verified staged blob into the pool (a no-op when the pool
    /// already has that content) and makes it durable. Admitted is not yet
    /// published: a blob is served once a commit's metadata references it
    /// ("publish" in streamfs means writing a generation's documents).
    pub fn admit(&self, mut staged: Staged) -> Result<BlobRef> {
        let dest = self.path(&staged.blob.sha256);
        let tmp = staged
            .path
            .take()
            .expect("staged file present until admitted");
        if dest.exists() {
            let _ = fs::remove_file(&tmp);
            return Ok(staged.blob.clone());
        }
        let dir = dest.parent().expect("pool path has a parent");
        let created = !dir.exists();
        fs::create_dir_all(dir).at(dir)?;
        let mut perm = fs::metadata(&tmp).at(&tmp)?.permissions();
        perm.set_readonly(true);
        fs::set_permissions(&tmp, perm).at(&tmp)?;
        fs::rename(&tmp, &dest).at(&dest)?;
        sync_dir(dir)?;
        if created {
            sync_dir(&self.root)?;
        }
        Ok(staged.blob.clone())
    }

    /// Moves a complete file that was verified while it was written (a
    /// download, see [`crate::fetch`]) into the pool under `blob`'s hash,
    /// as [`Pool::admit`] does for staged blobs. The file must be on the
    /// store's filesystem (under `tmp/`) and already fsynced.
    pub fn admit_verified(&self, path: &Path, blob: &BlobRef) -> Result<BlobRef> {
        if !valid_sha(&blob.sha256) {
            return Err(Error::Refused(format!("invalid sha256 '{}'", blob.sha256)));
        }
        self.admit(Staged {
            path: Some(path.to_path_buf()),
            blob: blob.clone(),
        })
    }

    /// Where partial downloads live, keyed by checksum: a subdirectory of
    /// `tmp/`, so that the stale-staging sweep (which only removes files
    /// named after dead processes) leaves them for the next run to continue.
    pub fn partial_dir(&self) -> PathBuf {
        self.tmp.join("partial")
    }

    /// Deletes a blob (reaping). Missing blobs are not an error.
    pub fn remove(&self, sha256: &str) -> Result<bool> {
        if !valid_sha(sha256) {
            return Ok(false);
        }
        let p = self.path(sha256);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(p, e)),
        }
    }

    /// Every blob's sha256, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(&self.root, e)),
        };
        for d in rd {
            let d = d.at(&self.root)?;
            let sub = d.path();
            if !sub.is_dir() {
                continue;
            }
            for f in fs::read_dir(&sub).at(&sub)? {
                let name = f.at(&sub)?.file_name().to_string_lossy().into_owned();
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Re-hashes a blob: `Ok(Some(actual))` when it differs from its name.
    pub fn verify(&self, sha256: &str) -> Result<Option<String>> {
        let p = self.path(sha256);
        let actual = hash_file(&p)?.sha256;
        Ok((actual != sha256).then_some(actual))
    }

    /// Removes staging files left by processes that no longer run.
    pub fn clean_stale_staging(&self) -> Result<usize> {
        let rd = match fs::read_dir(&self.tmp) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&self.tmp, e)),
        };
        let mut n = 0;
        for e in rd {
            let e = e.at(&self.tmp)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('.').next().and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| {
                p == std::process::id() || Path::new(&format!("/proc/{p}")).exists()
            });
            if !alive && fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// EIO, for a failed write that carries no errno (core does not link libc).
fn libc_eio() -> i32 {
    5
}

pub fn valid_sha(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Hashes a file.
pub fn hash_file(path: &Path) -> Result<BlobRef> {
    let mut f = File::open(path).at(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok(BlobRef {
        sha256: hex::encode(h.finalize()),
        size,
    })
}

/// Blobs whose first write is at least this large are appended through an
/// [`Appender`] (hashed and written on threads of their own); small ones
/// (most of a stream's files, written whole in one call) are hashed inline
/// and go straight to the file.
const PIPE_MIN: usize = 64 << 10;

/// A blob being written into `tmp/`. Sequential writes are hashed as they
/// arrive; a write out of order (rare: `cp` and `rsync` write in order) makes
/// `finish` hash the file once more instead.
pub struct BlobWriter {
    file: File,
    path: Option<PathBuf>,
    /// The hash of the first `hashed` bytes, while no [`Appender`] holds it.
    hash: Sha256,
    hashed: u64,
    len: u64,
    sequential: bool,
    pipe: Pipe,
    /// The errno of a write that failed (a full disk): the staged file may
    /// hold part of that write, so it is never finished into a blob.
    failed: Option<i32>,
}

/// Whether sequential appends go through an [`Appender`].
enum Pipe {
    /// Not yet: no large append so far.
    Unused,
    /// Appends not yet in the file; the appender holds the hash.
    Active(Box<Appender>),
    /// Never again for this blob: its data was read back, truncated or
    /// written out of order.
    Off,
}

impl BlobWriter {
    pub fn staging_path(&self) -> &Path {
        self.path.as_deref().expect("present until finished")
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The staging file, for reads of data not yet published: everything
    /// appended so far is written out first.
    pub fn file(&mut self) -> Result<&File> {
        self.settle()?;
        Ok(&self.file)
    }

    /// Writes out what the appender holds, takes its hash back and stops
    /// appending through it for this blob.
    fn settle(&mut self) -> Result<()> {
        if let Pipe::Active(a) = std::mem::replace(&mut self.pipe, Pipe::Off) {
            match a.finish() {
                Ok(hash) => self.hash = hash,
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(())
    }

    /// Records a failed write (see `failed`) and names the staging file.
    fn fail(&mut self, e: std::io::Error) -> Error {
        self.failed = Some(e.raw_os_error().unwrap_or(libc_eio()));
        Error::io(self.staging_path(), e)
    }

    pub fn append(&mut self, data: &[u8]) -> Result<()> {
        let off = self.len;
        self.write_at(off, data)
    }

    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if let Some(code) = self.failed {
            // Data after a failed write could never be finished into a blob.
            let e = std::io::Error::from_raw_os_error(code);
            return Err(Error::io(self.staging_path(), e));
        }
        let n = data.len() as u64;
        let in_order = self.sequential && offset == self.len && offset == self.hashed;
        if in_order
            && matches!(self.pipe, Pipe::Unused)
            && data.len() >= PIPE_MIN
            && offset.is_multiple_of(ALIGN as u64)
        {
            let file = self.file.try_clone().at(self.staging_path())?;
            let hash = std::mem::take(&mut self.hash);
            let path = self.staging_path().to_path_buf();
            self.pipe = Pipe::Active(Box::new(Appender::start(path, file, offset, hash)));
        }
        if in_order && let Pipe::Active(a) = &mut self.pipe {
            debug_assert_eq!(a.end(), offset);
            if let Err(e) = a.push(data) {
                return Err(self.fail(e));
            }
            self.len += n;
            self.hashed += n;
            return Ok(());
        }
        self.settle()?;
        if let Err(e) = self.file.write_all_at(data, offset) {
            return Err(self.fail(e));
        }
        if self.sequential && offset == self.hashed {
            self.hash.update(data);
            self.hashed += n;
        } else {
            self.sequential = false;
        }
        self.len = self.len.max(offset + n);
        Ok(())
    }

    /// Truncates or extends the staged data (`open(O_TRUNC)`, `ftruncate`).
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        if len != self.len {
            self.settle()?;
        }
        if let Err(e) = self.file.set_len(len) {
            return Err(self.fail(e));
        }
        if len < self.hashed || len > self.len {
            self.sequential = len == 0;
            if len == 0 {
                // Started over: as good as a new writer.
                self.hash = Sha256::new();
                self.hashed = 0;
                self.pipe = Pipe::Unused;
            }
        }
        self.len = len;
        Ok(())
    }

    /// Completes the blob: fsynced, hashed, ready to verify and admit into the pool.
    /// Fails, and the staged data is deleted, when an earlier write failed.
    pub fn finish(mut self) -> Result<Staged> {
        if let Some(code) = self.failed {
            let path = self.path.clone().expect("present until finished");
            return Err(Error::io(path, std::io::Error::from_raw_os_error(code)));
        }
        self.settle()?;
        let path = self.path.take().expect("present until finished");
        self.file.sync_all().at(&path)?;
        let blob = if self.sequential && self.hashed == self.len {
            BlobRef {
                sha256: hex::encode(std::mem::take(&mut self.hash).finalize()),
                size: self.len,
            }
        } else {
            hash_file(&path)?
        };
        Ok(Staged {
            path: Some(path),
            blob,
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// A complete blob in `tmp/`, not yet in the pool. Dropping it deletes it.
#[derive(Debug)]
pub struct Staged {
    path: Option<PathBuf>,
    pub blob: BlobRef,
}

impl Staged {
    /// The staged file in `tmp/` (the mount lets an rsync staging file be
    /// read back before its rename).
    pub fn staging_path(&self) -> &Path {
        self.path.as_deref().expect("present until published")
    }

    /// Checks the staged data against what the metadata declares.
    pub fn verify(&self, what: &str, size: Option<u64>, sha256: Option<&str>) -> Result<()> {
        self.blob.check(what, size, sha256)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_presence_by_listing_answers_as_stat_does() {
        let d = tempfile::tempdir().unwrap();
        let pool = Pool::new(d.path());
        // 300 blobs in one fan-out directory (listed) and a few in another
        // (stat-ed), half of each present; plus names that are not hashes.
        let hashes: Vec<String> = (0..300)
            .map(|i| format!("ab{i:062x}"))
            .chain((0..6).map(|i| format!("cd{i:062x}")))
            .collect();
        for h in hashes.iter().step_by(2) {
            fs::create_dir_all(pool.path(h).parent().unwrap()).unwrap();
            fs::write(pool.path(h), b"").unwrap();
        }
        // A directory where a blob should be is not a blob.
        fs::create_dir(pool.path(&hashes[1])).unwrap();
        let asked: Vec<&str> = hashes
            .iter()
            .map(String::as_str)
            .chain(["../etc", "ab"])
            .collect();
        let present = pool.present(asked.iter().copied());
        for h in &asked {
            assert_eq!(present.contains(h), pool.contains(h), "{h}");
        }
        assert_eq!(present.len(), 153);
    }

    #[test]
    fn staged_blobs_enter_the_pool_read_only_under_their_hash() {
        let d = tempfile::tempdir().unwrap();
        let pool = Pool::new(d.path());
        let src = d.path().join("src");
        fs::write(&src, b"hello").unwrap();
        let staged = pool.stage_file(&src, &mut |_| {}).unwrap();
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(staged.blob.sha256, sha);
        staged.verify("x", Some(5), Some(sha)).unwrap();
        assert!(
            staged
                .verify("x", Some(6), None)
                .unwrap_err()
                .to_string()
                .contains("size mismatch")
        );
        pool.admit(staged).unwrap();
        assert!(pool.contains(sha));
        assert!(
            fs::metadata(pool.path(sha))
                .unwrap()
                .permissions()
                .readonly()
        );
        assert_eq!(pool.list().unwrap(), vec![sha.to_string()]);
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn files_of_many_chunks_hash_as_a_whole() {
        let d = tempfile::tempdir().unwrap();
        let pool = Pool::new(d.path());
        let src = d.path().join("big");
        let data: Vec<u8> = (0..(2 * BUF + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        fs::write(&src, &data).unwrap();
        let mut seen = Vec::new();
        let staged = pool.stage_file(&src, &mut |n| seen.push(n)).unwrap();
        assert_eq!(staged.blob, hash_file(&src).unwrap());
        assert_eq!(fs::read(staged.staging_path()).unwrap(), data);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&(data.len() as u64)));
    }

    #[test]
    fn out_of_order_writes_are_hashed_at_finish() {
        let d = tempfile::tempdir().unwrap();
        let pool = Pool::new(d.path());
        let mut w = pool.writer().unwrap();
        w.write_at(3, b"lo").unwrap();
        w.write_at(0, b"hel").unwrap();
        let s = w.finish().unwrap();
        assert_eq!(
            s.blob.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn large_writes_hash_on_threads_with_the_same_digest() {
        let d = tempfile::tempdir().unwrap();
        let pool = Pool::new(d.path());
        let data: Vec<u8> = (0..(3 * super::super::direct::CHUNK + 17))
            .map(|i| (i * 13 % 251) as u8)
            .collect();
        let src = d.path().join("src");
        fs::write(&src, &data).unwrap();
        // Small writes first (inline), then, once a truncation starts over,
        // large ones (through the appender) from the start.
        let mut w = pool.writer().unwrap();
        w.append(b"junk").unwrap();
        w.set_len(0).unwrap();
        for c in data.chunks(PIPE_MIN + 1) {
            w.append(c).unwrap();
        }
        assert!(matches!(w.pipe, Pipe::Active(_)));
        assert_eq!(w.finish().unwrap().blob, hash_file(&src).unwrap());
        // Small writes before the large ones: the appender never starts, the
        // digest is the same.
        let mut w = pool.writer().unwrap();
        w.append(&data[..10]).unwrap();
        w.append(&data[10..]).unwrap();
        assert!(!matches!(w.pipe, Pipe::Active(_)));
        assert_eq!(w.finish().unwrap().blob, hash_file(&src).unwrap());
        // A truncation while appending through threads starts over.
        let mut w = pool.writer().unwrap();
        w.append(&data).unwrap();
        w.set_len(0).unwrap();
        w.append(&data).unwrap();
        assert_eq!(w.finish().unwrap().blob, hash_file(&src).unwrap());
    }

    /// Appends gathered for direct writes must reach the file whole and in
    /// place, whatever comes between them: unaligned sizes, a read of the
    /// staged data, a write out of order, a truncation.
    #[test]
    fn gathered_appends_land_in_place_around_reads_rewrites_and_truncations() {
        let d = tempfile::tempdir().unwrap();
        let pool = Pool::new(d.path());
        let data: Vec<u8> = (0..(3 * super::super::direct::CHUNK + 5000))
            .map(|i| (i * 31 % 253) as u8)
            .collect();
        let check = |s: Staged, want: &[u8]| {
            let got = fs::read(s.staging_path()).unwrap();
            let diff = got.iter().zip(want).position(|(a, b)| a != b);
            assert!(
                got.len() == want.len() && diff.is_none(),
                "staged {} bytes, want {}; first difference at {diff:?}",
                got.len(),
                want.len()
            );
            let src = d.path().join("want");
            fs::write(&src, want).unwrap();
            assert_eq!(s.blob, hash_file(&src).unwrap());
        };
        // Unaligned sizes only, the last one a short tail.
        let mut w = pool.writer().unwrap();
        let mut at = 0;
        for n in [PIPE_MIN + 1, 1 << 20, 3, 5 << 20, 4095, usize::MAX] {
            let end = at + n.min(data.len() - at);
            w.append(&data[at..end]).unwrap();
            at = end;
        }
        check(w.finish().unwrap(), &data);
        // A read in the middle sees everything appended so far.
        let mut w = pool.writer().unwrap();
        w.append(&data[..(5 << 20) + 7]).unwrap();
        let mut back = vec![0u8; 100];
        let n = w.file().unwrap().read_at(&mut back, 5 << 20).unwrap();
        assert_eq!(&back[..n], &data[5 << 20..(5 << 20) + 7]);
        w.append(&data[(5 << 20) + 7..]).unwrap();
        check(w.finish().unwrap(), &data);
        // A rewrite of gathered bytes, then more appends.
        let mut w = pool.writer().unwrap();
        w.append(&data[..1 << 20]).unwrap();
        w.write_at(10, b"rewritten").unwrap();
        w.append(&data[1 << 20..]).unwrap();
        let mut want = data.clone();
        want[10..19].copy_from_slice(b"rewritten");
        check(w.finish().unwrap(), &want);
        // A truncation below what was gathered.
        let mut w = pool.writer().unwrap();
        w.append(&data[..6 << 20]).unwrap();
        w.set_len(1000).unwrap();
        w.append(&data[1000..2000]).unwrap();
        check(w.finish().unwrap(), &data[..2000]);
    }

    #[test]
    fn a_dropped_writer_leaves_nothing_in_tmp() {
        let d = tempfile::tempdir().unwrap();
        let pool = Pool::new(d.path());
        let mut w = pool.writer().unwrap();
        w.append(b"partial").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }
}
