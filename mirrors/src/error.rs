//! Errors of the mirrors crate; `mountctl` maps `Usage` to exit code 2.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the store could not be read or written.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// `mirrors.toml` or the crawl state does not parse or breaks a rule.
    #[error("{file}: {reason}")]
    Config { file: String, reason: String },

    /// A command-line value that cannot be used (a URL of another scheme, a
    /// duplicate or unknown mirror name, a path escaping the stream).
    #[error("{0}")]
    Usage(String),

    /// The file a metalink was asked for does not exist.
    #[error("{0}")]
    NotFound(String),

    #[error(transparent)]
    Store(#[from] streamfs_core::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }

    /// True for errors in what the user typed (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Usage(_))
    }
}
