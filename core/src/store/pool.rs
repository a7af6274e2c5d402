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

use super::direct::{ALIGN, DirectAppender};
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
            hasher: Hasher::Inline(Sha256::new()),
            hashed: 0,
            len: 0,
            sequential: true,
            gather: Gather::Unused,
            failed: None,
        })
    }

    /// Copies `src` into a staged blob, hashing in the same pass (on the
    /// writer's hashing thread, see [`BlobWriter`]), so a large insert costs
    /// about what the slower of copying and hashing costs, not their sum.
    /// `progress` is called with the bytes copied.
    pub fn stage_file(&self, src: &Path, progress: &mut dyn FnMut(u64)) -> Result<Staged> {
        let mut input = File::open(src).at(src)?;
        let mut w = self.writer()?;
        loop {
            let mut buf = w.spare_buffer(BUF);
            buf.resize(BUF, 0);
            let n = loop {
                match input.read(&mut buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(src, e)),
                }
            };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            w.append_owned(buf)?;
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

/// Writes at least this large are hashed on a second thread (`stage_file`
/// reads 4 MiB chunks). Smaller ones, such as the mount's FUSE writes (at
/// most 1 MiB), are hashed inline: one hand-over and wake-up per chunk cost
/// more than they saved on a busy two-CPU machine (1 GiB `cp` into the
/// mount: about 5 s threaded with 128 KiB and 1 MiB chunks, against 2.6–4 s
/// inline).
const THREAD_HASH_MIN: usize = 2 << 20;
/// Blobs whose first write is at least this large are written through a
/// [`DirectAppender`]; small ones (most of a stream's files, written whole
/// in one call) go straight to the file.
const DIRECT_MIN: usize = 64 << 10;
/// Chunks queued for the hashing thread at most (backpressure: the writer
/// waits rather than buffering a whole file).
const HASH_QUEUE: usize = 8;

/// Where a sequentially written blob's sha256 is computed.
enum Hasher {
    /// In the writer's thread: small blobs, and every blob until its first
    /// large write.
    Inline(Sha256),
    /// On a thread of its own, fed copies of the chunks (returned through
    /// `spare` for reuse), so that hashing (about 1.5 GB/s with the CPU's
    /// SHA extensions) overlaps writing instead of adding to it: the mount's
    /// FUSE writes and `stage_file` both finish in about the time of the
    /// slower of the two.
    Thread {
        chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
        spare: std::sync::mpsc::Receiver<Vec<u8>>,
        done: std::thread::JoinHandle<Sha256>,
    },
}

impl Hasher {
    fn spawn(mut h: Sha256) -> Hasher {
        let (chunks, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE);
        let (back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE + 2);
        let done = std::thread::Builder::new()
            .name("blob-hash".into())
            .spawn(move || {
                for chunk in rx {
                    h.update(&chunk);
                    let _ = back.try_send(chunk);
                }
                h
            })
            .expect("spawning the hashing thread");
        Hasher::Thread {
            chunks,
            spare,
            done,
        }
    }

    /// Hashes `chunk` next (after every chunk given before).
    fn feed(&mut self, chunk: Vec<u8>) {
        match self {
            Hasher::Inline(h) => h.update(&chunk),
            Hasher::Thread { chunks, .. } => {
                // The thread only ends when `chunks` is dropped.
                chunks.send(chunk).expect("hashing thread alive");
            }
        }
    }

    /// The digest of everything fed.
    fn finalize(self) -> String {
        let h = match self {
            Hasher::Inline(h) => h,
            Hasher::Thread { chunks, done, .. } => {
                drop(chunks);
                done.join().expect("hashing thread")
            }
        };
        hex::encode(h.finalize())
    }
}

/// A blob being written into `tmp/`. Sequential writes are hashed as they
/// arrive (large ones on a second thread, see [`Hasher`]); a write out of
/// order (rare: `cp` and `rsync` write in order) makes `finish` hash the
/// file once more instead.
pub struct BlobWriter {
    file: File,
    path: Option<PathBuf>,
    hasher: Hasher,
    hashed: u64,
    len: u64,
    sequential: bool,
    gather: Gather,
    /// The errno of a write that failed (a full disk): the staged file may
    /// hold part of that write, so it is never finished into a blob.
    failed: Option<i32>,
}

/// Whether sequential appends are gathered for direct writes (see
/// [`super::direct`]).
enum Gather {
    /// Not yet: no large append so far.
    Unused,
    /// Appends not yet in the file.
    Active(Box<DirectAppender>),
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

    /// Writes out what is gathered and stops gathering for this blob.
    fn settle(&mut self) -> Result<()> {
        if let Gather::Active(a) = std::mem::replace(&mut self.gather, Gather::Off)
            && let Err(e) = a.drain(self.staging_path(), &self.file)
        {
            return Err(self.fail(e));
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

    /// An empty buffer of at least `capacity` bytes, reused from chunks
    /// already hashed where possible.
    pub fn spare_buffer(&mut self, capacity: usize) -> Vec<u8> {
        let mut buf = match &self.hasher {
            Hasher::Thread { spare, .. } => spare.try_recv().unwrap_or_default(),
            Hasher::Inline(_) => Vec::new(),
        };
        buf.clear();
        buf.reserve(capacity);
        buf
    }

    /// Appends `data`, handing the buffer itself to the hashing thread (no
    /// copy).
    pub fn append_owned(&mut self, data: Vec<u8>) -> Result<()> {
        let offset = self.len;
        self.write_file(offset, &data)?;
        self.hash_next(offset, data.len(), || data);
        Ok(())
    }

    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.write_file(offset, data)?;
        let n = data.len();
        if self.sequential && offset == self.hashed {
            if let Hasher::Inline(h) = &mut self.hasher
                && n < THREAD_HASH_MIN
            {
                h.update(data);
                self.hashed += n as u64;
                return Ok(());
            }
            let mut buf = self.spare_buffer(n);
            buf.extend_from_slice(data);
            self.hash_next(offset, n, || buf);
        } else {
            self.sequential = false;
        }
        Ok(())
    }

    fn write_file(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if let Some(code) = self.failed {
            // Data after a failed write could never be finished into a blob.
            let e = std::io::Error::from_raw_os_error(code);
            return Err(Error::io(self.staging_path(), e));
        }
        let appending = offset == self.len && self.sequential;
        if appending
            && matches!(self.gather, Gather::Unused)
            && data.len() >= DIRECT_MIN
            && offset.is_multiple_of(ALIGN as u64)
        {
            self.gather = Gather::Active(Box::new(DirectAppender::new(offset)));
        }
        if appending && let Gather::Active(a) = &mut self.gather {
            debug_assert_eq!(a.end(), offset);
            let path = self.path.as_deref().expect("present until finished");
            if let Err(e) = a.push(path, &self.file, data) {
                self.gather = Gather::Off;
                return Err(self.fail(e));
            }
            self.len += data.len() as u64;
            return Ok(());
        }
        self.settle()?;
        if let Err(e) = self.file.write_all_at(data, offset) {
            return Err(self.fail(e));
        }
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }

    /// Hashes the `n` bytes written at `offset` if they continue the
    /// sequential run; `chunk` gives them.
    fn hash_next(&mut self, offset: u64, n: usize, chunk: impl FnOnce() -> Vec<u8>) {
        if !(self.sequential && offset == self.hashed) {
            self.sequential = false;
            return;
        }
        if n >= THREAD_HASH_MIN
            && let Hasher::Inline(h) = &mut self.hasher
        {
            self.hasher = Hasher::spawn(std::mem::take(h));
        }
        self.hasher.feed(chunk());
        self.hashed += n as u64;
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
                let old = std::mem::replace(&mut self.hasher, Hasher::Inline(Sha256::new()));
                let _ = old.finalize();
                self.hashed = 0;
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
        let hasher = std::mem::replace(&mut self.hasher, Hasher::Inline(Sha256::new()));
        // The last chunks hash while the file is synced.
        self.file.sync_all().at(&path)?;
        let digest = hasher.finalize();
        let blob = if self.sequential && self.hashed == self.len {
            BlobRef {
                sha256: digest,
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
    fn large_writes_hash_on_a_thread_with_the_same_digest() {
        let d = tempfile::tempdir().unwrap();
        let pool = Pool::new(d.path());
        let data: Vec<u8> = (0..(2 * THREAD_HASH_MIN + 17))
            .map(|i| (i * 13 % 251) as u8)
            .collect();
        // Small writes first (inline), then large ones (threaded), then a
        // rewrite from the start after a truncation.
        let mut w = pool.writer().unwrap();
        w.append(b"junk").unwrap();
        w.set_len(0).unwrap();
        w.append(&data[..10]).unwrap();
        for c in data[10..].chunks(THREAD_HASH_MIN + 1) {
            w.append(c).unwrap();
        }
        assert!(matches!(w.hasher, Hasher::Thread { .. }));
        let s = w.finish().unwrap();
        let src = d.path().join("src");
        fs::write(&src, &data).unwrap();
        assert_eq!(s.blob, hash_file(&src).unwrap());
        // A truncation while threaded starts over.
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
        for n in [DIRECT_MIN + 1, 1 << 20, 3, 5 << 20, 4095, usize::MAX] {
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
