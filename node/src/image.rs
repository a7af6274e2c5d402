//! The chunked disk image format (`.sfimg`): a disk cut into fixed-size
//! chunks (1 MiB), each zstd-compressed (or kept raw when that does not
//! shrink it) with the sha256 of its uncompressed bytes, chunks of zeros
//! stored as nothing. A receiver checks every chunk on its own, so one that
//! joins late or gets chunks out of order still ends with an exact disk,
//! and a bad chunk is named, not discovered at the end.
//!
//! Layout: a 64-byte header, the index (48 bytes per chunk), then the chunk
//! data. The index comes first so a sender can announce every chunk before
//! sending any, and a reader checks every offset and length against the
//! file before reading: an image from the network or a damaged store can
//! make the reader fail, never read or write out of bounds.
//!
//! The writer is deterministic (same disk, same bytes), so two saves of one
//! disk are one blob in the content-addressed pool.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const CHUNK_SIZE: u32 = 1 << 20;
const MAGIC: &[u8; 8] = b"SFIMG01\n";
const HEADER_LEN: u64 = 64;
const ENTRY_LEN: u64 = 48;
/// The largest chunk size a reader accepts: bounds the memory a hostile
/// header can make it allocate.
const MAX_CHUNK_SIZE: u32 = 64 << 20;
const ZSTD_LEVEL: i32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    Zero = 0,
    Zstd = 1,
    Raw = 2,
}

/// One chunk of the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub kind: ChunkKind,
    /// Where its data starts in the image file.
    pub offset: u64,
    /// Its stored (compressed) length.
    pub len: u32,
    /// The sha256 of its uncompressed bytes.
    pub sha256: [u8; 32],
}

/// An image's header and index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    pub chunk_size: u32,
    pub disk_size: u64,
    /// The sha256 of the whole disk: what a loaded disk hashes to.
    pub disk_sha256: [u8; 32],
    pub chunks: Vec<Chunk>,
}

impl Index {
    /// The disk bytes chunk `i` covers.
    pub fn chunk_range(&self, i: usize) -> (u64, usize) {
        let start = i as u64 * u64::from(self.chunk_size);
        let len = (self.disk_size - start).min(u64::from(self.chunk_size));
        (start, len as usize)
    }

    /// Bytes of chunk data (what a transfer sends).
    pub fn stored_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.len)).sum()
    }

    pub fn disk_sha256_hex(&self) -> String {
        hex::encode(self.disk_sha256)
    }

    /// Where chunk data starts in an image file: after the header and index.
    pub fn data_start(&self) -> u64 {
        Index::encoded_len(self.chunks.len())
    }

    fn encoded_len(chunks: usize) -> u64 {
        HEADER_LEN + ENTRY_LEN * chunks as u64
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Index::encoded_len(self.chunks.len()) as usize);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.chunk_size.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&self.disk_size.to_le_bytes());
        b.extend_from_slice(&(self.chunks.len() as u64).to_le_bytes());
        b.extend_from_slice(&self.disk_sha256);
        for c in &self.chunks {
            b.extend_from_slice(&c.offset.to_le_bytes());
            b.extend_from_slice(&c.len.to_le_bytes());
            b.extend_from_slice(&[c.kind as u8, 0, 0, 0]);
            b.extend_from_slice(&c.sha256);
        }
        b
    }

    /// Reads and checks a header and index from `r`; `file_len` (when the
    /// data follows in the same file) bounds every chunk's extent.
    pub fn decode(what: &str, r: &mut impl Read, file_len: Option<u64>) -> Result<Index> {
        let bad = |reason: String| Error::Image {
            what: what.to_string(),
            reason,
        };
        let mut h = [0u8; HEADER_LEN as usize];
        r.read_exact(&mut h)
            .map_err(|e| bad(format!("reading the header: {e}")))?;
        if &h[..8] != MAGIC {
            return Err(bad("not a streamfs chunked image (bad magic)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
        let chunk_size = u32_at(8);
        let disk_size = u64_at(16);
        let count = u64_at(24);
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(bad(format!("chunk size {chunk_size} out of range")));
        }
        if count != disk_size.div_ceil(u64::from(chunk_size)) {
            return Err(bad(format!(
                "{count} chunks cannot hold a disk of {disk_size} bytes"
            )));
        }
        let data_start = Index::encoded_len(count as usize);
        if let Some(len) = file_len
            && data_start > len
        {
            return Err(bad(format!("index of {count} chunks longer than the file")));
        }
        let mut index = Index {
            chunk_size,
            disk_size,
            disk_sha256: h[32..64].try_into().expect("32 bytes"),
            chunks: Vec::new(),
        };
        let mut e = [0u8; ENTRY_LEN as usize];
        for i in 0..count as usize {
            r.read_exact(&mut e)
                .map_err(|err| bad(format!("reading index entry {i}: {err}")))?;
            let offset = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
            let len = u32::from_le_bytes(e[8..12].try_into().expect("4 bytes"));
            let kind = match e[12] {
                0 => ChunkKind::Zero,
                1 => ChunkKind::Zstd,
                2 => ChunkKind::Raw,
                k => return Err(bad(format!("chunk {i}: unknown kind {k}"))),
            };
            let (_, raw_len) = index.chunk_range(i);
            let len_ok = match kind {
                ChunkKind::Zero => len == 0,
                ChunkKind::Raw => len as usize == raw_len,
                ChunkKind::Zstd => (len as usize) <= zstd::zstd_safe::compress_bound(raw_len),
            };
            let end = offset.checked_add(u64::from(len));
            let in_file = match (file_len, end) {
                (_, None) => false,
                (Some(fl), Some(end)) => len == 0 || (offset >= data_start && end <= fl),
                (None, Some(_)) => true,
            };
            if !len_ok || !in_file {
                return Err(bad(format!(
                    "chunk {i}: {kind:?} of {len} bytes at {offset} does not fit (chunk of {raw_len} bytes)"
                )));
            }
            index.chunks.push(Chunk {
                kind,
                offset,
                len,
                sha256: e[16..48].try_into().expect("32 bytes"),
            });
        }
        Ok(index)
    }

    /// Turns the stored bytes of chunk `i` into disk bytes, checking their
    /// length and sha256.
    pub fn unpack_chunk(&self, what: &str, i: usize, stored: &[u8]) -> Result<Vec<u8>> {
        let c = &self.chunks[i];
        let (_, raw_len) = self.chunk_range(i);
        let bad = |reason: String| Error::Image {
            what: what.to_string(),
            reason: format!("chunk {i}: {reason}"),
        };
        if stored.len() != c.len as usize {
            return Err(bad(format!(
                "{} bytes, the index says {}",
                stored.len(),
                c.len
            )));
        }
        unpack(what, i, c.kind, &c.sha256, stored, raw_len)
    }
}

/// Disk bytes from stored bytes, their length and sha256 checked.
fn unpack(
    what: &str,
    i: usize,
    kind: ChunkKind,
    sha256: &[u8; 32],
    stored: &[u8],
    raw_len: usize,
) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::Image {
        what: what.to_string(),
        reason: format!("chunk {i}: {reason}"),
    };
    let data = match kind {
        ChunkKind::Zero if stored.is_empty() => vec![0; raw_len],
        ChunkKind::Zero => return Err(bad("a zero chunk with data".into())),
        ChunkKind::Raw => stored.to_vec(),
        ChunkKind::Zstd => {
            zstd::bulk::decompress(stored, raw_len).map_err(|e| bad(format!("zstd: {e}")))?
        }
    };
    if data.len() != raw_len {
        return Err(bad(format!(
            "{} bytes once unpacked, not {raw_len}",
            data.len()
        )));
    }
    if kind != ChunkKind::Zero && Sha256::digest(&data)[..] != sha256[..] {
        return Err(bad("sha256 mismatch".into()));
    }
    Ok(data)
}

/// Writes an image file chunk by chunk, in disk order, then its index: the
/// writer of `pack` and of a node streaming its disk to the host, which
/// checks every chunk it is given.
pub struct PackWriter<'f> {
    what: String,
    out: &'f mut File,
    index: Index,
    whole: Sha256,
    offset: u64,
    count: usize,
}

impl<'f> PackWriter<'f> {
    pub fn new(what: &str, out: &'f mut File, disk_size: u64, chunk_size: u32) -> Result<Self> {
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(Error::Image {
                what: what.to_string(),
                reason: format!("chunk size {chunk_size} out of range"),
            });
        }
        let count = disk_size.div_ceil(u64::from(chunk_size)) as usize;
        let offset = Index::encoded_len(count);
        out.seek(SeekFrom::Start(offset))
            .map_err(Error::io(what.to_string()))?;
        Ok(PackWriter {
            what: what.to_string(),
            out,
            index: Index {
                chunk_size,
                disk_size,
                disk_sha256: [0; 32],
                chunks: Vec::with_capacity(count),
            },
            whole: Sha256::new(),
            offset,
            count,
        })
    }

    /// The disk range of the next chunk, or `None` when all are written.
    pub fn next_range(&self) -> Option<(u64, usize)> {
        let i = self.index.chunks.len();
        (i < self.count).then(|| self.index.chunk_range(i))
    }

    /// Adds the next chunk from its disk bytes (compressing it).
    pub fn push_raw(
        &mut self,
        data: &[u8],
        compressor: &mut zstd::bulk::Compressor<'_>,
    ) -> Result<()> {
        let (kind, stored) =
            encode_chunk(data, compressor).map_err(Error::io(self.what.clone()))?;
        let sha256: [u8; 32] = Sha256::digest(data).into();
        self.push_checked(kind, sha256, &stored, data)
    }

    /// Adds the next chunk as stored by someone else (a node): unpacked
    /// and checked against its sha256 before it is written.
    pub fn push_stored(&mut self, kind: ChunkKind, sha256: [u8; 32], stored: &[u8]) -> Result<()> {
        let i = self.index.chunks.len();
        let Some((_, raw_len)) = self.next_range() else {
            return Err(Error::Image {
                what: self.what.clone(),
                reason: format!("chunk {i} beyond the disk's {} chunks", self.count),
            });
        };
        if stored.len() > zstd::zstd_safe::compress_bound(raw_len) {
            return Err(Error::Image {
                what: self.what.clone(),
                reason: format!("chunk {i}: {} stored bytes for {raw_len}", stored.len()),
            });
        }
        let data = unpack(&self.what, i, kind, &sha256, stored, raw_len)?;
        // Zero chunks carry the sha256 of their zeros, as `pack` writes them.
        let sha256 = if kind == ChunkKind::Zero {
            Sha256::digest(&data).into()
        } else {
            sha256
        };
        self.push_checked(kind, sha256, stored, &data)
    }

    fn push_checked(
        &mut self,
        kind: ChunkKind,
        sha256: [u8; 32],
        stored: &[u8],
        data: &[u8],
    ) -> Result<()> {
        if self.next_range().is_none() {
            return Err(Error::Image {
                what: self.what.clone(),
                reason: "more chunks than the disk holds".into(),
            });
        }
        self.whole.update(data);
        self.out
            .write_all(stored)
            .map_err(Error::io(self.what.clone()))?;
        self.index.chunks.push(Chunk {
            kind,
            offset: if kind == ChunkKind::Zero {
                0
            } else {
                self.offset
            },
            len: stored.len() as u32,
            sha256,
        });
        self.offset += stored.len() as u64;
        Ok(())
    }

    /// Writes the index once every chunk is in.
    pub fn finish(mut self) -> Result<Index> {
        if let Some((start, _)) = self.next_range() {
            return Err(Error::Image {
                what: self.what.clone(),
                reason: format!("ended at byte {start} of {}", self.index.disk_size),
            });
        }
        self.index.disk_sha256 = self.whole.finalize().into();
        let io = Error::io(self.what.clone());
        self.out
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.out.write_all(&self.index.encode()))
            .and_then(|()| self.out.sync_all())
            .map_err(io)?;
        Ok(self.index)
    }
}

/// How a chunk is stored: nothing for zeros, zstd when it shrinks it, raw
/// otherwise.
pub fn encode_chunk(
    data: &[u8],
    compressor: &mut zstd::bulk::Compressor<'_>,
) -> std::io::Result<(ChunkKind, Vec<u8>)> {
    if data.iter().all(|&b| b == 0) {
        return Ok((ChunkKind::Zero, Vec::new()));
    }
    let z = compressor.compress(data)?;
    Ok(if z.len() < data.len() {
        (ChunkKind::Zstd, z)
    } else {
        (ChunkKind::Raw, data.to_vec())
    })
}

pub fn compressor() -> std::io::Result<zstd::bulk::Compressor<'static>> {
    zstd::bulk::Compressor::new(ZSTD_LEVEL)
}

/// Packs `disk_size` bytes of `disk` into `out` (a new file), returning the
/// index; `progress` gets the disk bytes read so far.
pub fn pack(
    what: &str,
    disk: &mut impl Read,
    disk_size: u64,
    out: &mut File,
    progress: &mut dyn FnMut(u64),
) -> Result<Index> {
    let mut w = PackWriter::new(what, out, disk_size, CHUNK_SIZE)?;
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    let mut compressor = compressor().map_err(Error::io(what.to_string()))?;
    while let Some((start, len)) = w.next_range() {
        let data = &mut buf[..len];
        disk.read_exact(data).map_err(|e| Error::Image {
            what: what.to_string(),
            reason: format!(
                "reading {len} bytes at {start}: {e} (the disk is shorter than {disk_size} bytes?)"
            ),
        })?;
        w.push_raw(data, &mut compressor)?;
        progress(start + len as u64);
    }
    w.finish()
}

/// Packs a raw disk image file (`.img`) into `out`.
pub fn pack_file(raw: &Path, out: &Path) -> Result<Index> {
    let what = raw.display().to_string();
    let mut f = File::open(raw).map_err(Error::io(format!("opening {what}")))?;
    let size = f
        .metadata()
        .map_err(Error::io(format!("reading {what}")))?
        .len();
    let mut o = File::create(out).map_err(Error::io(format!("creating {}", out.display())))?;
    pack(&what, &mut f, size, &mut o, &mut |_| {})
}

/// An image file open for reading.
pub struct Image {
    what: String,
    file: File,
    pub index: Index,
}

impl Image {
    pub fn open(path: &Path) -> Result<Image> {
        let what = path.display().to_string();
        let mut file = File::open(path).map_err(Error::io(format!("opening {what}")))?;
        let len = file
            .metadata()
            .map_err(Error::io(format!("reading {what}")))?
            .len();
        let index = Index::decode(&what, &mut std::io::BufReader::new(&mut file), Some(len))?;
        Ok(Image { what, file, index })
    }

    /// The stored bytes of chunk `i`, as a transfer sends them.
    pub fn stored_chunk(&self, i: usize) -> Result<Vec<u8>> {
        let c = &self.index.chunks[i];
        let mut b = vec![0u8; c.len as usize];
        self.file
            .read_exact_at(&mut b, c.offset)
            .map_err(Error::io(format!("{}: reading chunk {i}", self.what)))?;
        Ok(b)
    }

    /// Chunk `i` as disk bytes, checked.
    pub fn chunk(&self, i: usize) -> Result<Vec<u8>> {
        let stored = self.stored_chunk(i)?;
        self.index.unpack_chunk(&self.what, i, &stored)
    }

    /// Writes the disk into `disk` (a file, resized to the disk's size, or
    /// a block device), checking every chunk and the whole disk's sha256.
    pub fn restore(&self, disk: &Path) -> Result<()> {
        let what = disk.display().to_string();
        let mut out = DiskWriter::open(disk, self.index.disk_size)?;
        let mut whole = Sha256::new();
        for i in 0..self.index.chunks.len() {
            let data = self.chunk(i)?;
            whole.update(&data);
            out.write_chunk(&self.index, i, &data)?;
        }
        if whole.finalize()[..] != self.index.disk_sha256 {
            return Err(Error::Image {
                what,
                reason: "the disk's sha256 differs from the image's".into(),
            });
        }
        out.finish()
    }
}

/// Writes chunks to a disk at their offsets. On a regular file the file is
/// emptied and resized first, so zero chunks are holes and cost no write;
/// on a device they are written.
pub struct DiskWriter {
    what: String,
    file: File,
    sparse: bool,
}

impl DiskWriter {
    pub fn open(path: &Path, disk_size: u64) -> Result<DiskWriter> {
        let what = path.display().to_string();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(Error::io(format!("opening disk {what}")))?;
        let meta = file
            .metadata()
            .map_err(Error::io(format!("reading {what}")))?;
        let sparse = meta.is_file();
        if sparse {
            file.set_len(0)
                .and_then(|()| file.set_len(disk_size))
                .map_err(Error::io(format!("resizing {what}")))?;
        }
        Ok(DiskWriter { what, file, sparse })
    }

    pub fn write_chunk(&mut self, index: &Index, i: usize, data: &[u8]) -> Result<()> {
        let (start, len) = index.chunk_range(i);
        if data.len() != len {
            return Err(Error::Image {
                what: self.what.clone(),
                reason: format!("chunk {i}: {} bytes for a chunk of {len}", data.len()),
            });
        }
        if self.sparse && index.chunks[i].kind == ChunkKind::Zero {
            return Ok(());
        }
        self.file
            .write_all_at(data, start)
            .map_err(Error::io(format!("writing {} at {start}", self.what)))
    }

    pub fn finish(self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(Error::io(format!("syncing {}", self.what)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(p: &Path) -> Result<String> {
        Ok(streamfs_core::store::pool::hash_file(p)?.sha256)
    }

    /// A disk of `size` bytes: text, zeros and random-looking bytes.
    fn disk(size: usize) -> Vec<u8> {
        let mut d = vec![0u8; size];
        let mut x = 0x9e37_79b9_u32;
        for (i, b) in d.iter_mut().enumerate() {
            let region = i / CHUNK_SIZE as usize % 3;
            *b = match region {
                0 => b"streamfs node image "[i % 20],
                1 => 0,
                _ => {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                }
            };
        }
        d
    }

    #[test]
    fn a_disk_round_trips_exactly_and_zeros_cost_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.img");
        let size = 5 * CHUNK_SIZE as usize + 12345;
        std::fs::write(&raw, disk(size)).unwrap();
        let img = dir.path().join("d.sfimg");
        let index = pack_file(&raw, &img).unwrap();
        let kinds: Vec<ChunkKind> = index.chunks.iter().map(|c| c.kind).collect();
        use ChunkKind::*;
        assert_eq!(kinds, [Zstd, Zero, Raw, Zstd, Zero, Raw]);
        assert_eq!(index.disk_sha256_hex(), hash(&raw).unwrap());
        let out = dir.path().join("out");
        std::fs::write(&out, b"old contents that must go").unwrap();
        let opened = Image::open(&img).unwrap();
        assert_eq!(opened.index, index);
        opened.restore(&out).unwrap();
        assert_eq!(hash(&out).unwrap(), hash(&raw).unwrap());
        // Deterministic: a second pack is the same bytes.
        let img2 = dir.path().join("d2.sfimg");
        pack_file(&raw, &img2).unwrap();
        assert_eq!(std::fs::read(&img).unwrap(), std::fs::read(&img2).unwrap());
    }

    #[test]
    fn a_damaged_image_names_the_chunk_and_writes_nothing_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.img");
        std::fs::write(&raw, disk(3 * CHUNK_SIZE as usize)).unwrap();
        let img = dir.path().join("d.sfimg");
        let index = pack_file(&raw, &img).unwrap();
        let mut bytes = std::fs::read(&img).unwrap();
        let c = &index.chunks[2];
        bytes[c.offset as usize + 7] ^= 1;
        std::fs::write(&img, &bytes).unwrap();
        let e = Image::open(&img).unwrap().chunk(2).unwrap_err().to_string();
        assert!(e.ends_with("chunk 2: sha256 mismatch"), "{e}");

        // An index entry pointing past the file is refused at open.
        let mut bytes = std::fs::read(&img).unwrap();
        let entry = HEADER_LEN as usize + ENTRY_LEN as usize * 2;
        bytes[entry..entry + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&img, &bytes).unwrap();
        let e = Image::open(&img).err().unwrap().to_string();
        assert!(e.contains("chunk 2: Raw of"), "{e}");
        // So is a header claiming a huge chunk size, and a truncated file.
        let mut bytes = std::fs::read(&img).unwrap();
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&img, &bytes).unwrap();
        assert!(
            Image::open(&img)
                .err()
                .unwrap()
                .to_string()
                .contains("chunk size")
        );
        std::fs::write(&img, &bytes[..100]).unwrap();
        assert!(Image::open(&img).is_err());
    }
}
