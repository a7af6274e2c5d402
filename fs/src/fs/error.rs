//! Why an operation of the mount failed, decided where its meaning is known;
//! `errno.rs` maps each variant to the one errno the kernel gets.

use super::*;

/// Why an operation failed; `errno.rs` maps it.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("already exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    /// Refused: the caller may not write, or no template explains the path.
    #[error("{0}")]
    Denied(String),
    /// Refused: the operation has no meaning on this object.
    #[error("{0}")]
    NotPermitted(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Busy(String),
    /// An inode number that no longer stands for what its path holds.
    #[error("stale inode: the path holds other content now")]
    Stale,
    #[error("bad file handle")]
    BadHandle,
    /// The data or metadata written could not be inserted.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Core(#[from] Error),
}

pub type FsResult<T> = Result<T, FsError>;

/// Logs a refusal (one line, what and why) and returns it.
pub(super) fn refuse(e: FsError, op: &str, path: &str) -> FsError {
    warn!("refused {op} {path}: {e}");
    e
}
