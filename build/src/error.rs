//! Errors of building MAAS boot images: each names the file, release, arch or
//! step that failed, so the CLI can print it as it is.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The meph2 YAML config cannot be read or does not describe releases.
    #[error("{file}: {reason}")]
    Config { file: String, reason: String },

    /// The request names something the config does not have (a release, an
    /// arch), or options that cannot go together: a usage error (exit 2).
    #[error("{0}")]
    Usage(String),

    /// The builder command failed or did not write what it was asked for.
    #[error("builder {step} failed: {reason} (log: {})", log.display())]
    Builder {
        step: String,
        reason: String,
        log: PathBuf,
    },

    /// A file operation failed.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },

    /// Metadata handling from the store's core library.
    #[error(transparent)]
    Core(#[from] streamfs_core::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
