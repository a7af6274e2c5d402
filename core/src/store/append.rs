//! Sequential appends to a large staged blob, in three stages that run side
//! by side: the caller copies each append into an aligned chunk, one thread
//! hashes full chunks in order, another writes them out (directly, see
//! [`super::direct`]).
//!
//! Why: the mount's FUSE writes arrive 1 MiB at a time, and `cp` waits for
//! each reply before it sends the next. When a request hashed its data and
//! wrote a gathered chunk to disk before replying, `cp` waited for both at
//! every MiB: 1 GiB took 1.7 s into the mount against 0.69 s for `cp` +
//! `sync` on the same disk. Hashing (about 1.8 GB/s with the CPU's SHA
//! extensions) is the slowest stage; with the disk and the caller's copy
//! beside it instead of after it, an append costs the caller one `memcpy`
//! and a large insert about what hashing alone costs.
//!
//! Memory is bounded: at most [`BUFFERS`] chunks exist per blob; an append
//! that finds them all in flight waits for the writer to return one.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::direct::{AlignedChunk, CHUNK, DirectOut};

/// Chunks per blob at most (16 MiB): enough to keep both threads busy while
/// the caller fills the next one.
const BUFFERS: usize = 4;

/// A chunk on its way through the stages.
struct Chunk {
    buf: AlignedChunk,
    len: usize,
    offset: u64,
}

/// The first write error, kept by the writing thread for the caller.
type Failure = Arc<Mutex<Option<io::Error>>>;

pub(super) struct Appender {
    /// The chunk being filled, starting at file offset `base`.
    cur: AlignedChunk,
    fill: usize,
    base: u64,
    made: usize,
    to_hash: SyncSender<Chunk>,
    free: Receiver<AlignedChunk>,
    hashing: JoinHandle<Sha256>,
    writing: JoinHandle<()>,
    failure: Failure,
}

impl Appender {
    /// An appender for the file at `path` (open as `file`) whose first `base`
    /// bytes, a multiple of the direct-I/O alignment, are written and hashed
    /// into `hash`.
    pub(super) fn start(path: PathBuf, file: File, base: u64, hash: Sha256) -> Appender {
        let (to_hash, hash_rx) = sync_channel::<Chunk>(BUFFERS);
        let (to_write, write_rx) = sync_channel::<Chunk>(BUFFERS);
        let (give_back, free) = sync_channel::<AlignedChunk>(BUFFERS);
        let failure = Failure::default();
        let hashing = std::thread::Builder::new()
            .name("blob-hash".into())
            .spawn(move || {
                let mut hash = hash;
                for c in hash_rx {
                    hash.update(&c.buf.bytes()[..c.len]);
                    if to_write.send(c).is_err() {
                        break;
                    }
                }
                hash
            })
            .expect("spawning the hashing thread");
        let failed = failure.clone();
        let writing = std::thread::Builder::new()
            .name("blob-write".into())
            .spawn(move || {
                let mut out = DirectOut::new(path, file);
                let mut ok = true;
                for c in write_rx {
                    // After a failure the rest is only drained: the blob is
                    // never finished, and no stage may block on this one.
                    if ok && let Err(e) = out.write_at(&c.buf.bytes()[..c.len], c.offset) {
                        *failed.lock().expect("failure lock") = Some(e);
                        ok = false;
                    }
                    let _ = give_back.try_send(c.buf);
                }
            })
            .expect("spawning the writing thread");
        Appender {
            cur: AlignedChunk::new(),
            fill: 0,
            base,
            made: 1,
            to_hash,
            free,
            hashing,
            writing,
            failure,
        }
    }

    /// Where the next appended byte goes.
    pub(super) fn end(&self) -> u64 {
        self.base + self.fill as u64
    }

    /// Appends `data`. An error is that of an earlier chunk's write (a full
    /// disk): the blob cannot be finished.
    pub(super) fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        if let Some(e) = self.failure.lock().expect("failure lock").take() {
            return Err(e);
        }
        while !data.is_empty() {
            let n = data.len().min(CHUNK - self.fill);
            self.cur.bytes_mut()[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == CHUNK {
                let next = if self.made < BUFFERS {
                    self.made += 1;
                    AlignedChunk::new()
                } else {
                    // The writer gives every chunk back, also after a failure.
                    self.free.recv().expect("writing thread alive")
                };
                let full = std::mem::replace(&mut self.cur, next);
                self.send(full, CHUNK);
                self.base += CHUNK as u64;
                self.fill = 0;
            }
        }
        Ok(())
    }

    fn send(&self, buf: AlignedChunk, len: usize) {
        let chunk = Chunk {
            buf,
            len,
            offset: self.base,
        };
        self.to_hash.send(chunk).expect("hashing thread alive");
    }

    /// Writes out everything appended and waits for both threads: the hash
    /// of everything appended, or the first write error.
    pub(super) fn finish(self) -> io::Result<Sha256> {
        let Appender {
            cur,
            fill,
            base,
            to_hash,
            hashing,
            writing,
            failure,
            ..
        } = self;
        if fill > 0 {
            to_hash
                .send(Chunk {
                    buf: cur,
                    len: fill,
                    offset: base,
                })
                .expect("hashing thread alive");
        }
        drop(to_hash);
        let hash = hashing.join().expect("hashing thread");
        writing.join().expect("writing thread");
        match failure.lock().expect("failure lock").take() {
            Some(e) => Err(e),
            None => Ok(hash),
        }
    }
}
