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
    /// A name longer than a directory entry may be (`NAME_MAX`).
    #[error("name longer than 255 bytes")]
    NameTooLong,
    #[error("{0}")]
    Busy(String),
    /// An inode number that no longer stands for what its path holds.
    #[error("stale inode: the path holds other content now")]
    Stale,
    #[error("bad file handle")]
    BadHandle,
    /// A symlink (a product alias) where a file was opened without
    /// following links.
    #[error("a symbolic link")]
    Loop,
    /// The data or metadata written could not be inserted.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Core(#[from] Error),
    /// A request refused, with what was refused: the adapter logs it once
    /// (one line: the operation, the path, the reason) and maps `reason`.
    #[error("refused {op} {path}: {reason}")]
    Refused {
        op: &'static str,
        path: String,
        reason: Box<FsError>,
    },
}

impl FsError {
    /// Why the operation failed, without the refusal's context.
    pub fn into_reason(self) -> FsError {
        match self {
            FsError::Refused { reason, .. } => reason.into_reason(),
            e => e,
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// `e` as the refusal of `op` on `path`, for the adapter to log once.
pub(super) fn refuse(e: FsError, op: &'static str, path: &str) -> FsError {
    match e {
        // Refused further down already: that refusal names the path.
        e @ FsError::Refused { .. } => e,
        e => FsError::Refused {
            op,
            path: path.to_string(),
            reason: Box::new(e),
        },
    }
}
