//! The agent's control channel: TCP, authenticated by an HMAC-SHA256
//! challenge (the agent sends a random nonce, the caller answers with
//! HMAC(key, nonce)), so only holders of the testbed key can make a node
//! write its disk; the key never crosses the network. Then JSON messages,
//! each a 4-byte length and the text, and for a load or save the chunk
//! bytes of the image format.
//!
//! Every size read from the network is bounded before anything is
//! allocated or written.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};

const HELLO: &[u8; 16] = b"streamfs-node/1\n";
/// The longest JSON message accepted.
const MAX_MESSAGE: u32 = 1 << 20;

/// The testbed key, read from `[nodes] key_file`.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    /// At least 16 bytes once trimmed: a short key is a mistake to refuse,
    /// not a secret.
    pub fn load(path: &Path) -> Result<Key> {
        let text =
            std::fs::read(path).map_err(Error::io(format!("reading key {}", path.display())))?;
        let key = text.trim_ascii().to_vec();
        if key.len() < 16 {
            return Err(Error::Usage(format!(
                "key file {}: {} bytes, at least 16 are needed",
                path.display(),
                key.len()
            )));
        }
        Ok(Key(key))
    }

    fn mac(&self, nonce: &[u8]) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(HELLO);
        m.update(nonce);
        m
    }
}

/// What a caller asks an agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Is the agent there, and how big is its disk.
    Ping,
    /// Receive an image (its index, then the stored bytes of each non-zero
    /// chunk in order), pass it on to `next[0]` asking it to pass it on to
    /// the rest: the chain.
    Load { next: Vec<String> },
    /// Send the disk, chunk by chunk.
    Save,
    /// Fetch the image file from `url` (nginx serving the read-only mount)
    /// and write it, every chunk checked as from a chain: the fallback for
    /// a node that cannot join the chain. `mbps` caps the reading rate;
    /// `timeout_secs` bounds the whole pull.
    Pull {
        url: String,
        mbps: Option<f64>,
        timeout_secs: u64,
    },
}

/// An agent's answer to a ping or at the end of a load.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub disk_size: Option<u64>,
    /// For a load: the outcome of each node of the chain, this one first.
    #[serde(default)]
    pub chain: Vec<NodeResult>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeResult {
    pub addr: String,
    pub ok: bool,
    pub error: Option<String>,
    /// The sha256 of the disk as written, when it was.
    pub disk_sha256: Option<String>,
}

pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let b = serde_json::to_vec(msg).expect("serializable");
    w.write_all(&(b.len() as u32).to_le_bytes())?;
    w.write_all(&b)?;
    w.flush()
}

pub fn recv<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> std::io::Result<T> {
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    let n = u32::from_le_bytes(n);
    if n > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a message of {n} bytes (at most {MAX_MESSAGE})"),
        ));
    }
    let mut b = vec![0u8; n as usize];
    r.read_exact(&mut b)?;
    serde_json::from_slice(&b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The agent's side of the handshake: true when the caller holds the key.
pub fn accept(s: &mut TcpStream, key: &Key) -> std::io::Result<bool> {
    let nonce: [u8; 32] = rand::random();
    s.write_all(HELLO)?;
    s.write_all(&nonce)?;
    let mut answer = [0u8; 32];
    s.read_exact(&mut answer)?;
    // verify_slice compares in constant time.
    let ok = key.mac(&nonce).verify_slice(&answer).is_ok();
    s.write_all(&[u8::from(ok)])?;
    Ok(ok)
}

/// The caller's side: connects to an agent and proves it holds the key.
pub fn connect(addr: &str, key: &Key, timeout: std::time::Duration) -> Result<TcpStream> {
    let io = |e: std::io::Error| Error::Io {
        what: format!("agent {addr}"),
        error: e,
    };
    let sa: std::net::SocketAddr = addr
        .parse()
        .map_err(|_| Error::Usage(format!("agent address {addr:?} is not IP:PORT")))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_nodelay(true).map_err(io)?;
    let mut hello = [0u8; 48];
    s.read_exact(&mut hello).map_err(io)?;
    if &hello[..16] != HELLO {
        return Err(Error::Image {
            what: format!("agent {addr}"),
            reason: "not a streamfs-node agent".into(),
        });
    }
    let answer = key.mac(&hello[16..]).finalize().into_bytes();
    s.write_all(&answer).map_err(io)?;
    let mut ok = [0u8; 1];
    s.read_exact(&mut ok).map_err(io)?;
    if ok[0] != 1 {
        return Err(Error::Usage(format!(
            "agent {addr} refused our key ([nodes] key_file differs from the node's)"
        )));
    }
    Ok(s)
}

/// One chunk as a node sends its disk: kind, stored length, sha256, bytes.
pub fn send_chunk(
    w: &mut impl Write,
    kind: u8,
    sha256: &[u8; 32],
    stored: &[u8],
) -> std::io::Result<()> {
    w.write_all(&[kind])?;
    w.write_all(&(stored.len() as u32).to_le_bytes())?;
    w.write_all(sha256)?;
    w.write_all(stored)
}

/// Reads one chunk written by [`send_chunk`]; `max_len` bounds its length.
pub fn recv_chunk(r: &mut impl Read, max_len: usize) -> std::io::Result<(u8, [u8; 32], Vec<u8>)> {
    let mut h = [0u8; 37];
    r.read_exact(&mut h)?;
    let len = u32::from_le_bytes(h[1..5].try_into().expect("4 bytes")) as usize;
    if len > max_len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a chunk of {len} bytes (at most {max_len})"),
        ));
    }
    let mut b = vec![0u8; len];
    r.read_exact(&mut b)?;
    Ok((h[0], h[5..37].try_into().expect("32 bytes"), b))
}
