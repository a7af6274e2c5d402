//! Blobs are checked against their names before they are served (by the
//! mount, which keeps one [`BlobVerifier`] while mounted).
//!
//! A pool blob is named by its sha256, and the mount must never hand out
//! bytes that do not hash to it (a flipped bit on disk, a file edited
//! behind the store's back). Hashing on every open would make every read
//! cost a full pass over the blob, so a blob is hashed:
//!
//! - on its first open after the mount started, and
//! - again whenever its file changed since it was last verified: another
//!   inode, size, or ctime (any write or `chmod` of the file moves its
//!   ctime, and `rename`/`cp` over it makes another inode).
//!
//! Blobs the mount itself put into the pool are trusted from the insert,
//! which hashed them as they were written. A verified open is the file
//! itself, handed to the kernel for passthrough: reads then run at native
//! speed. A mismatch fails the open with `EIO` (and a log line naming the
//! blob and pointing at `mountctl fsck --repair`) rather than serving wrong
//! bytes.
//!
//! Cost: the first open of an unverified blob reads it once in the daemon,
//! at the speed of SHA-256 (about 1.5 GB/s with the CPU's SHA extensions,
//! so under a second for a 1 GiB squashfs), on the request's worker
//! thread. Later opens cost one `fstat`. Damage that changes neither size
//! nor ctime (bit rot under the filesystem) is not seen until the next
//! mount; `mountctl fsck` hashes every blob whenever it runs.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use tracing::error;

use crate::error::{Error, IoContext, Result};
use crate::store::Pool;
use crate::store::pool::hash_file;

/// What identifies a blob file's content without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        }
    }
}

/// The blobs verified since the mount started, by sha256.
#[derive(Debug, Default)]
pub struct BlobVerifier {
    verified: Mutex<HashMap<String, Stamp>>,
}

impl BlobVerifier {
    /// Opens a pool blob for reading, hashing it first unless it was
    /// verified and has not changed since.
    pub fn open(&self, pool: &Pool, sha256: &str) -> Result<File> {
        let path = pool.path(sha256);
        let file = File::open(&path).at(&path)?;
        let stamp = Stamp::of(&file.metadata().at(&path)?);
        if self.verified.lock().expect("verified lock").get(sha256) == Some(&stamp) {
            return Ok(file);
        }
        let actual = hash_file(&path)?;
        if actual.sha256 != sha256 || actual.size != stamp.size {
            self.verified.lock().expect("verified lock").remove(sha256);
            error!(
                "corrupt blob {}: its content hashes to {}; refusing to serve it (run `mountctl fsck --repair`)",
                path.display(),
                actual.sha256
            );
            return Err(Error::Checksum {
                what: format!("corrupt blob {}", Pool::rel_path(sha256)),
                reason: format!("its content hashes to {}", actual.sha256),
            });
        }
        self.verified
            .lock()
            .expect("verified lock")
            .insert(sha256.to_string(), stamp);
        Ok(file)
    }

    /// Records a blob the mount has just put into the pool (hashed as it
    /// was written) as verified.
    pub fn trust(&self, pool: &Pool, sha256: &str) {
        if let Ok(m) = std::fs::metadata(pool.path(sha256)) {
            self.verified
                .lock()
                .expect("verified lock")
                .insert(sha256.to_string(), Stamp::of(&m));
        }
    }
}
