//! Errors of node imaging. `Usage` is the caller's mistake (a bad spec, a
//! bad settings value) and maps to exit 2; everything else to exit 1.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{file}:{line}: {reason}")]
    Settings {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}: {reason}", file.display())]
    Inventory { file: PathBuf, reason: String },
    #[error("{what}: {error}")]
    Io {
        what: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{what}: {reason}")]
    Image { what: String, reason: String },
    #[error(transparent)]
    Store(#[from] streamfs_core::Error),
}

impl Error {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |error| Error::Io { what, error }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
