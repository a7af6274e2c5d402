//! Writing a staged blob's aligned chunks with `O_DIRECT` (see
//! [`super::append`] for how appends are gathered into them).
//!
//! Why: on the virtual machines mirrors run on, copying into the page cache
//! with `write(2)` was measured at 0.4–1 GB/s, two to three times slower
//! than the kernel's own `copy_file_range` that `cp` uses, while a direct
//! write of 4 MiB chunks ran at the speed of `cp` followed by `sync`. A blob
//! is fsynced before it is published anyway, so its pages in the cache would
//! only be written back and then sit there; writing them directly also keeps
//! a large insert from pushing the served files out of the cache.
//!
//! Only whole aligned chunks go direct; the unaligned tail, and everything
//! once a write arrives out of order, is written through the ordinary
//! (buffered) descriptor of the staging file. Where the kernel or the file
//! system refuses `O_DIRECT`, chunks are written buffered too.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

/// Offsets, lengths and buffer addresses of direct writes are multiples of
/// this: the largest logical block size in common use.
pub(super) const ALIGN: usize = 4096;
/// Bytes gathered before a direct write (4 MiB measured fastest here; 1 MiB
/// writes ran about a third slower).
pub(super) const CHUNK: usize = 4 << 20;

/// `O_DIRECT`, which std does not name and core does not link libc for;
/// `None` where its value is not known, so that such targets write buffered.
const O_DIRECT: Option<i32> = if !cfg!(target_os = "linux") {
    None
} else if cfg!(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "riscv64",
    target_arch = "s390x",
    target_arch = "loongarch64"
)) {
    Some(0o40000)
} else if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
    Some(0o200000)
} else if cfg!(any(target_arch = "powerpc64", target_arch = "powerpc")) {
    Some(0o400000)
} else {
    None
};

const EINVAL: i32 = 22;

/// Whether direct writes are tried, and how they went.
enum Mode {
    /// Not tried yet: the descriptor is opened at the first aligned chunk,
    /// so blobs that never have one never pay for a second open.
    Untried,
    Direct(File),
    /// Refused (no `O_DIRECT` here, or the file system said `EINVAL`).
    Buffered,
}

/// The writing end of a staged blob: aligned runs go direct, the rest
/// through the ordinary descriptor `file`.
pub(super) struct DirectOut {
    path: PathBuf,
    file: File,
    mode: Mode,
}

impl DirectOut {
    pub(super) fn new(path: PathBuf, file: File) -> DirectOut {
        DirectOut {
            path,
            file,
            mode: Mode::Untried,
        }
    }

    /// Writes `data` at `offset`: its longest aligned prefix directly when
    /// `data` and `offset` are aligned, the rest buffered.
    pub(super) fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        let n = data.len() & !(ALIGN - 1);
        let aligned = n > 0
            && offset.is_multiple_of(ALIGN as u64)
            && (data.as_ptr() as usize).is_multiple_of(ALIGN);
        if !aligned {
            return self.file.write_all_at(data, offset);
        }
        if let Mode::Untried = self.mode {
            self.mode = match O_DIRECT.map(|flag| {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(flag)
                    .open(&self.path)
            }) {
                Some(Ok(f)) => Mode::Direct(f),
                Some(Err(e)) => {
                    tracing::debug!(
                        "{}: no direct I/O ({e}); writing buffered",
                        self.path.display()
                    );
                    Mode::Buffered
                }
                None => Mode::Buffered,
            };
        }
        let (head, tail) = data.split_at(n);
        match &self.mode {
            Mode::Direct(d) => match d.write_all_at(head, offset) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(EINVAL) => {
                    tracing::debug!(
                        "{}: direct write refused ({e}); writing buffered",
                        self.path.display()
                    );
                    self.mode = Mode::Buffered;
                    self.file.write_all_at(head, offset)?;
                }
                Err(e) => return Err(e),
            },
            Mode::Buffered | Mode::Untried => self.file.write_all_at(head, offset)?,
        }
        self.file.write_all_at(tail, offset + n as u64)
    }
}

/// A [`CHUNK`]-sized buffer whose first byte is [`ALIGN`]ed (a plain `Vec`
/// with room to spare, so no unsafe allocation code).
pub(super) struct AlignedChunk {
    buf: Vec<u8>,
    start: usize,
}

impl AlignedChunk {
    pub(super) fn new() -> AlignedChunk {
        let buf = vec![0u8; CHUNK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        AlignedChunk { buf, start }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + CHUNK]
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + CHUNK]
    }
}
