//! The agent that runs on a node (in the imaging environment): it answers
//! pings, receives an image and writes it to the disk while passing it on
//! to the next node of the chain, and sends the disk back for a save.
//!
//! Only callers proving they hold the key reach any of it, one load or save
//! at a time; the index of an image from the network is checked (chunk
//! sizes, a disk no bigger than this one) before the disk is opened.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::image::{self, CHUNK_SIZE, DiskWriter, Index};
use crate::proto::{self, Key, NodeResult, Reply, Request};

/// How long a peer may stay silent before the transfer is given up.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a caller has to prove it holds the key: a connection that
/// says nothing is dropped soon, not after [`IO_TIMEOUT`].
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once (a load, its relay, pings, a save): more
/// are closed at once, so a flood costs neither threads nor memory.
const MAX_CONNECTIONS: usize = 16;
/// How long the end of a load may take below this node (disk syncs).
const REPLY_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Agent {
    pub key: Key,
    pub disk: PathBuf,
    busy: Mutex<()>,
    /// Connections being served now.
    live: Arc<AtomicUsize>,
    max_connections: usize,
    handshake_timeout: Duration,
}

/// Counts a connection as live until dropped.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Agent {
    pub fn new(key: Key, disk: PathBuf) -> Agent {
        Agent {
            key,
            disk,
            busy: Mutex::new(()),
            live: Arc::new(AtomicUsize::new(0)),
            max_connections: MAX_CONNECTIONS,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// Other bounds than the defaults (tests use small ones).
    pub fn with_limits(mut self, max_connections: usize, handshake_timeout: Duration) -> Agent {
        self.max_connections = max_connections.max(1);
        self.handshake_timeout = handshake_timeout;
        self
    }

    /// Serves until the process is killed, one thread per connection, at
    /// most `max_connections` at once: a connection beyond is closed
    /// before any thread or buffer is spent on it.
    pub fn serve(self: Arc<Self>, listener: TcpListener) -> Result<()> {
        for conn in listener.incoming() {
            let Ok(s) = conn else { continue };
            if self.live.fetch_add(1, Ordering::SeqCst) >= self.max_connections {
                self.live.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!(
                    "{}: refused, {} connections already",
                    s.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
                    self.max_connections
                );
                drop(s);
                continue;
            }
            let live = Live(Arc::clone(&self.live));
            let agent = Arc::clone(&self);
            std::thread::spawn(move || {
                let _live = live;
                let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                if let Err(e) = agent.handle(s) {
                    tracing::warn!("{peer}: {e}");
                }
            });
        }
        Ok(())
    }

    fn handle(&self, mut s: TcpStream) -> Result<()> {
        let io = |e: std::io::Error| Error::Io {
            what: "caller".into(),
            error: e,
        };
        s.set_read_timeout(Some(self.handshake_timeout))
            .map_err(io)?;
        s.set_write_timeout(Some(self.handshake_timeout))
            .map_err(io)?;
        s.set_nodelay(true).map_err(io)?;
        if !proto::accept(&mut s, &self.key).map_err(io)? {
            return Err(Error::Usage("a caller without the key was refused".into()));
        }
        let req: Request = proto::recv(&mut s).map_err(io)?;
        s.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        s.set_write_timeout(None).map_err(io)?;
        let size = disk_capacity(&self.disk);
        match req {
            Request::Ping => {
                let reply = match size {
                    Ok(n) => ok_reply(Some(n), Vec::new()),
                    Err(e) => err_reply(e.to_string()),
                };
                proto::send(&mut s, &reply).map_err(io)
            }
            Request::Load { next } => {
                let Ok(_guard) = self.busy.try_lock() else {
                    return proto::send(
                        &mut s,
                        &err_reply("busy with another load or save".into()),
                    )
                    .map_err(io);
                };
                let chain = self.load(&mut s, &next);
                let ok = chain.iter().all(|r| r.ok);
                let mut reply = ok_reply(None, chain);
                reply.ok = ok;
                proto::send(&mut s, &reply).map_err(io)?;
                if !ok {
                    // A load refused early: read what the caller still
                    // sends, so that closing does not reset the connection
                    // and lose the reply that says why.
                    let _ = s.shutdown(Shutdown::Write);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = std::io::copy(&mut s, &mut std::io::sink());
                }
                Ok(())
            }
            Request::Pull {
                url,
                mbps,
                timeout_secs,
            } => {
                // A pull is the fallback after a broken chain: this node
                // may still be winding down its part of it for a moment.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                let mut guard = self.busy.try_lock();
                while guard.is_err() && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                    guard = self.busy.try_lock();
                }
                let Ok(_guard) = guard else {
                    return proto::send(
                        &mut s,
                        &err_reply("busy with another load or save".into()),
                    )
                    .map_err(io);
                };
                let me = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
                let r = self.pull(&url, mbps, Duration::from_secs(timeout_secs));
                if let Err(e) = &r {
                    tracing::warn!("pulling {url}: {e}");
                }
                let result = NodeResult {
                    addr: me,
                    ok: r.is_ok(),
                    error: r.as_ref().err().map(ToString::to_string),
                    disk_sha256: r.ok(),
                };
                let mut reply = ok_reply(None, vec![result]);
                reply.ok = reply.chain[0].ok;
                proto::send(&mut s, &reply).map_err(io)
            }
            Request::Save => {
                let Ok(_guard) = self.busy.try_lock() else {
                    return proto::send(
                        &mut s,
                        &err_reply("busy with another load or save".into()),
                    )
                    .map_err(io);
                };
                self.save(&mut s, size?)
            }
        }
    }

    /// Receives an image from `up`, writes it, passes it to `next`; the
    /// outcome of this node and of every node below it.
    fn load(&self, up: &mut TcpStream, next: &[String]) -> Vec<NodeResult> {
        let me = up.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut down: Option<TcpStream> = None;
        let mut down_err: Option<String> = None;
        let result = (|| -> Result<String> {
            let mut r =
                BufReader::with_capacity(1 << 20, up.try_clone().map_err(Error::io("caller"))?);
            let index = Index::decode("the image from the caller", &mut r, None)?;
            self.check_fits(&index)?;
            if let Some(first) = next.first() {
                match open_next(first, &next[1..], &self.key, &index) {
                    Ok(d) => down = Some(d),
                    Err(e) => down_err = Some(format!("{first} unreachable: {e}")),
                }
            }
            self.receive(&index, |i, c| {
                let mut stored = vec![0u8; c.len as usize];
                r.read_exact(&mut stored)
                    .map_err(Error::io(format!("receiving chunk {i}")))?;
                if let Some(d) = &mut down
                    && let Err(e) = d.write_all(&stored)
                {
                    down_err = Some(format!("{}: sending chunk {i}: {e}", next[0]));
                    down = None;
                }
                Ok(stored)
            })
        })();
        let broke = result.is_err();
        let mut out = vec![NodeResult {
            addr: me,
            ok: result.is_ok(),
            error: result.as_ref().err().map(ToString::to_string),
            disk_sha256: result.ok(),
        }];
        let below = match down {
            Some(mut d) => {
                if broke {
                    // The image stopped arriving: end it early below too,
                    // so the rest of the chain fails now (and is free for a
                    // fallback) rather than after its timeout.
                    let _ = d.shutdown(Shutdown::Write);
                }
                let _ = d.flush();
                let _ = d.set_read_timeout(Some(REPLY_TIMEOUT));
                proto::recv::<Reply>(&mut d).map_err(|e| format!("{}: no outcome: {e}", next[0]))
            }
            None => Err(down_err.unwrap_or_else(|| "the chain broke above".into())),
        };
        match below {
            Ok(reply) => out.extend(reply.chain),
            Err(e) if !next.is_empty() => out.extend(next.iter().map(|a| NodeResult {
                addr: a.clone(),
                ok: false,
                error: Some(e.clone()),
                disk_sha256: None,
            })),
            Err(_) => {}
        }
        out
    }

    /// Fetches the image file over HTTP and writes it: the index first
    /// (checked against this disk), then each chunk's stored bytes where
    /// the index puts them, checked as from a chain. The file is read once,
    /// front to back, so nginx streams it; the disk's sha256 when exact.
    fn pull(&self, url: &str, mbps: Option<f64>, timeout: Duration) -> Result<String> {
        let fail = |reason: String| Error::Image {
            what: url.to_string(),
            reason,
        };
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(fail("not an http:// or https:// URL".into()));
        }
        let resp = reqwest::blocking::Client::builder()
            .connect_timeout(IO_TIMEOUT)
            .timeout(timeout)
            .build()
            .and_then(|c| c.get(url).send())
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let mut r = BufReader::with_capacity(1 << 20, resp);
        let index = Index::decode(url, &mut r, None)?;
        self.check_fits(&index)?;
        let mut pos = index.data_start();
        let mut pacer = crate::transfer::Pacer::new(mbps);
        self.receive(&index, |i, c| {
            if c.len == 0 {
                return Ok(Vec::new());
            }
            let skip = c.offset.checked_sub(pos).ok_or_else(|| {
                fail(format!(
                    "chunk {i} at {} is before {pos}: not in file order",
                    c.offset
                ))
            })?;
            std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink())
                .map_err(Error::io(format!("{url}: receiving chunk {i}")))?;
            let mut stored = vec![0u8; c.len as usize];
            r.read_exact(&mut stored)
                .map_err(Error::io(format!("{url}: receiving chunk {i}")))?;
            pos = c.offset + u64::from(c.len);
            pacer.sent(stored.len() + skip as usize);
            Ok(stored)
        })
    }

    /// Refuses an image bigger than this node's disk, before writing.
    fn check_fits(&self, index: &Index) -> Result<()> {
        let capacity = disk_capacity(&self.disk)?;
        if index.disk_size > capacity {
            return Err(Error::Image {
                what: self.disk.display().to_string(),
                reason: format!(
                    "an image of {} bytes does not fit a disk of {capacity}",
                    index.disk_size
                ),
            });
        }
        Ok(())
    }

    /// Gets each chunk's stored bytes from `next_chunk` (in index order)
    /// and writes them on a thread of its own, so receiving and writing
    /// overlap; the disk's sha256 once every chunk and the whole checked.
    fn receive(
        &self,
        index: &Index,
        mut next_chunk: impl FnMut(usize, &image::Chunk) -> Result<Vec<u8>>,
    ) -> Result<String> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(16);
        let disk = self.disk.clone();
        let windex = index.clone();
        let writer = std::thread::spawn(move || write_disk(&disk, &windex, rx));
        let mut got = Ok(());
        for (i, c) in index.chunks.iter().enumerate() {
            match next_chunk(i, c) {
                Ok(stored) => {
                    if tx.send((i, stored)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    got = Err(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer.join().map_err(|_| Error::Image {
            what: self.disk.display().to_string(),
            reason: "the disk writer panicked".into(),
        })?;
        got?;
        written
    }

    /// Sends the disk chunk by chunk, zeros as nothing, the rest compressed.
    fn save(&self, s: &mut TcpStream, size: u64) -> Result<()> {
        proto::send(s, &ok_reply(Some(size), Vec::new())).map_err(Error::io("caller"))?;
        let mut f = std::fs::File::open(&self.disk)
            .map_err(Error::io(format!("opening {}", self.disk.display())))?;
        let mut c = image::compressor().map_err(Error::io("zstd"))?;
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        let mut w =
            std::io::BufWriter::with_capacity(1 << 20, s.try_clone().map_err(Error::io("caller"))?);
        let mut left = size;
        while left > 0 {
            let n = left.min(u64::from(CHUNK_SIZE)) as usize;
            f.read_exact(&mut buf[..n])
                .map_err(Error::io(format!("reading {}", self.disk.display())))?;
            let (kind, stored) =
                image::encode_chunk(&buf[..n], &mut c).map_err(Error::io("zstd"))?;
            let sha: [u8; 32] = Sha256::digest(&buf[..n]).into();
            proto::send_chunk(&mut w, kind as u8, &sha, &stored)
                .map_err(Error::io("sending the disk"))?;
            left -= n as u64;
        }
        w.flush().map_err(Error::io("sending the disk"))?;
        let _ = s.shutdown(Shutdown::Write);
        Ok(())
    }
}

fn open_next(addr: &str, rest: &[String], key: &Key, index: &Index) -> Result<TcpStream> {
    let mut d = proto::connect(addr, key, IO_TIMEOUT)?;
    proto::send(
        &mut d,
        &Request::Load {
            next: rest.to_vec(),
        },
    )
    .map_err(Error::io(addr.to_string()))?;
    d.write_all(&index.encode())
        .map_err(Error::io(addr.to_string()))?;
    Ok(d)
}

/// Unpacks and writes chunks as they come; the disk's sha256 when every
/// chunk was checked and the whole matches the image.
fn write_disk(
    disk: &Path,
    index: &Index,
    rx: std::sync::mpsc::Receiver<(usize, Vec<u8>)>,
) -> Result<String> {
    let what = disk.display().to_string();
    let mut out = DiskWriter::open(disk, index.disk_size)?;
    let mut whole = Sha256::new();
    let mut done = 0;
    for (i, stored) in rx {
        let data = index.unpack_chunk(&what, i, &stored)?;
        whole.update(&data);
        out.write_chunk(index, i, &data)?;
        done += 1;
    }
    if done != index.chunks.len() {
        return Err(Error::Image {
            what,
            reason: format!(
                "the transfer ended after {done} of {} chunks",
                index.chunks.len()
            ),
        });
    }
    out.finish()?;
    let sha: [u8; 32] = whole.finalize().into();
    if sha != index.disk_sha256 {
        return Err(Error::Image {
            what,
            reason: "the disk's sha256 differs from the image's".into(),
        });
    }
    Ok(hex::encode(sha))
}

/// The disk's size: a file's length, a block device's size.
pub fn disk_capacity(disk: &Path) -> Result<u64> {
    use std::io::Seek;
    let mut f =
        std::fs::File::open(disk).map_err(Error::io(format!("opening disk {}", disk.display())))?;
    f.seek(std::io::SeekFrom::End(0))
        .map_err(Error::io(format!("sizing disk {}", disk.display())))
}

fn ok_reply(disk_size: Option<u64>, chain: Vec<NodeResult>) -> Reply {
    Reply {
        ok: true,
        error: None,
        disk_size,
        chain,
    }
}

fn err_reply(e: String) -> Reply {
    Reply {
        ok: false,
        error: Some(e),
        disk_size: None,
        chain: Vec::new(),
    }
}
