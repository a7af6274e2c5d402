//! The host's side of a transfer: ping an agent, send an image down a chain
//! of nodes (each writes it and passes it on while it arrives, as Kascade
//! does, so N nodes take about the time of one), receive a node's disk.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::image::{CHUNK_SIZE, ChunkKind, Image, Index, PackWriter};
use crate::proto::{self, Key, NodeResult, Reply, Request};

pub fn ping(addr: &str, key: &Key, timeout: Duration) -> Result<Reply> {
    let mut s = proto::connect(addr, key, timeout)?;
    proto::send(&mut s, &Request::Ping).map_err(Error::io(addr.to_string()))?;
    proto::recv(&mut s).map_err(Error::io(addr.to_string()))
}

/// Holds a sending rate under a cap: sleeps whenever the bytes sent so far
/// are ahead of the cap's schedule.
pub struct Pacer {
    start: Instant,
    bytes_per_sec: Option<f64>,
    sent: u64,
}

impl Pacer {
    /// `mbps`: megabits per second, as `-b` takes it (None: no cap).
    pub fn new(mbps: Option<f64>) -> Pacer {
        Pacer {
            start: Instant::now(),
            bytes_per_sec: mbps.map(|m| m * 1e6 / 8.0),
            sent: 0,
        }
    }

    pub fn sent(&mut self, n: usize) {
        self.sent += n as u64;
        if let Some(rate) = self.bytes_per_sec {
            let due = Duration::from_secs_f64(self.sent as f64 / rate);
            if let Some(wait) = due.checked_sub(self.start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// Sends `image` down `chain` (agent addresses); the outcome of each node,
/// in chain order. `progress` gets the stored bytes sent so far.
pub fn load_chain(
    image: &Image,
    chain: &[String],
    key: &Key,
    mbps: Option<f64>,
    timeout: Duration,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<NodeResult>> {
    let first = &chain[0];
    let io = Error::io(format!("sending to {first}"));
    let mut s = proto::connect(first, key, timeout)?;
    proto::send(
        &mut s,
        &Request::Load {
            next: chain[1..].to_vec(),
        },
    )
    .map_err(Error::io(first.clone()))?;
    let mut w = BufWriter::with_capacity(1 << 20, s.try_clone().map_err(Error::io(first.clone()))?);
    let sent = (|| -> std::io::Result<()> {
        let mut pacer = Pacer::new(mbps);
        let index = image.index.encode();
        w.write_all(&index)?;
        pacer.sent(index.len());
        let mut done = 0u64;
        for (i, c) in image.index.chunks.iter().enumerate() {
            if c.len == 0 {
                continue;
            }
            let stored = image
                .stored_chunk(i)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            w.write_all(&stored)?;
            pacer.sent(stored.len());
            done += stored.len() as u64;
            progress(done);
        }
        w.flush()
    })();
    if let Err(e) = sent {
        // The node may have refused the image and said why.
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        return match proto::recv::<Reply>(&mut s) {
            Ok(reply) if !reply.chain.is_empty() => Ok(reply.chain),
            _ => Err(io(e)),
        };
    }
    // The whole chain writes and checks before the first node answers.
    s.set_read_timeout(Some(timeout.max(Duration::from_secs(60))))
        .map_err(Error::io(first.clone()))?;
    let reply: Reply = proto::recv(&mut s).map_err(Error::io(format!("{first}: the outcome")))?;
    Ok(reply.chain)
}

/// Receives a node's disk into `out` as an image; the index (every chunk
/// checked as it arrived).
pub fn save(
    addr: &str,
    key: &Key,
    out: &mut std::fs::File,
    timeout: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Index> {
    let mut s = proto::connect(addr, key, timeout)?;
    let io = |what: &str| Error::io(format!("{addr}: {what}"));
    proto::send(&mut s, &Request::Save).map_err(io("asking for the disk"))?;
    let reply: Reply = proto::recv(&mut s).map_err(io("the answer"))?;
    let size = match (reply.ok, reply.disk_size) {
        (true, Some(n)) => n,
        _ => {
            return Err(Error::Image {
                what: addr.to_string(),
                reason: reply.error.unwrap_or_else(|| "no disk size".into()),
            });
        }
    };
    let mut r = std::io::BufReader::with_capacity(1 << 20, s);
    let mut w = PackWriter::new(addr, out, size, CHUNK_SIZE)?;
    let max = zstd::zstd_safe::compress_bound(CHUNK_SIZE as usize);
    while let Some((start, len)) = w.next_range() {
        let (kind, sha, stored) =
            proto::recv_chunk(&mut r, max).map_err(io("receiving the disk"))?;
        let kind = match kind {
            0 => ChunkKind::Zero,
            1 => ChunkKind::Zstd,
            2 => ChunkKind::Raw,
            k => {
                return Err(Error::Image {
                    what: addr.to_string(),
                    reason: format!("chunk at {start}: unknown kind {k}"),
                });
            }
        };
        w.push_stored(kind, sha, &stored)?;
        progress(start + len as u64, size);
    }
    w.finish()
}

/// Asks the agent at `addr` to fetch the image from `url` itself (nginx
/// serving the read-only mount) and write it: the per-node fallback when
/// the chain cannot reach it, or every node at once with `--http`.
pub fn pull(
    addr: &str,
    key: &Key,
    url: &str,
    mbps: Option<f64>,
    timeout: Duration,
) -> Result<NodeResult> {
    let mut s = proto::connect(addr, key, Duration::from_secs(10).min(timeout))?;
    proto::send(
        &mut s,
        &Request::Pull {
            url: url.to_string(),
            mbps,
            timeout_secs: timeout.as_secs().max(1),
        },
    )
    .map_err(Error::io(addr.to_string()))?;
    // The node writes and checks the whole disk before it answers.
    s.set_read_timeout(Some(timeout.max(Duration::from_secs(60))))
        .map_err(Error::io(addr.to_string()))?;
    let reply: Reply = proto::recv(&mut s).map_err(Error::io(format!("{addr}: the outcome")))?;
    reply.chain.into_iter().next().ok_or_else(|| Error::Image {
        what: addr.to_string(),
        reason: reply.error.unwrap_or_else(|| "no outcome".into()),
    })
}
