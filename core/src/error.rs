//! One error type for the whole core. Front-ends map it: `mountctl` to exit
//! codes, the mount to errno (in one exhaustive `match`), so a new variant
//! forces a decision in both places.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file of the store or of the input.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        // Not a `source`: the message already says it, and error chains
        // would print it twice.
        error: std::io::Error,
    },

    /// A file that should hold JSON does not, or holds the wrong shape.
    #[error("{file}: invalid JSON: {reason}")]
    Json { file: String, reason: String },

    /// A simplestreams document that parses but breaks the format's rules
    /// (a path escaping the mirror root, an item without sha256, …). `what`
    /// names the product/version/item.
    #[error("{file}: {what}: {reason}")]
    Invalid {
        file: String,
        what: String,
        reason: String,
    },

    /// `store.toml` is missing, unreadable or inconsistent.
    #[error("{file}: {reason}")]
    Config { file: String, reason: String },

    #[error("unknown stream '{0}'")]
    UnknownStream(String),

    /// Data whose size or sha256 differs from what its metadata declares.
    #[error("{what}: {reason}")]
    Checksum { what: String, reason: String },

    /// A file the metadata names is not there.
    #[error("{what}: data file missing: {path}")]
    MissingData { what: String, path: PathBuf },

    /// A path that no path template of the stream (and no pending item)
    /// explains, or a file that belongs to no product: the input has no
    /// place in the stream.
    #[error("{0}")]
    Unexplained(String),

    /// Something asked for by name is not there: a version to promote, a
    /// file or URL of a mirror, a content id of an index.
    #[error("{0}")]
    Missing(String),

    /// No store at this directory (no `store.toml`).
    #[error("{}: no store here (store.toml missing; create one with `mountctl init`)", .0.display())]
    NoStore(PathBuf),

    /// The operation is not allowed on that object (writing into a published
    /// item, promoting onto an existing version, …).
    #[error("{0}")]
    Refused(String),

    /// Bad user input that is not a file: a filter, a duration, a template.
    #[error("{0}")]
    Usage(String),

    /// OpenPGP: a bad key, a bad signature, no signature.
    #[error("{0}")]
    Signature(String),

    /// Another process holds the store's writer lock.
    #[error("store is locked by another writer: {0}")]
    Locked(PathBuf),

    /// The store's filesystem is full.
    #[error("{path}: no space left on device")]
    NoSpace { path: PathBuf },

    /// The store lives on a read-only filesystem.
    #[error("{path}: read-only filesystem")]
    ReadOnly { path: PathBuf },
}

impl Error {
    /// Wraps an I/O error with the path it concerns, keeping ENOSPC and EROFS
    /// apart so front-ends can report them precisely.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::StorageFull => Error::NoSpace { path },
            std::io::ErrorKind::ReadOnlyFilesystem => Error::ReadOnly { path },
            _ => Error::Io {
                path,
                error: source,
            },
        }
    }

    pub fn invalid(
        file: impl Into<String>,
        what: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            file: file.into(),
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// True for errors caused by what the user gave (input files, arguments),
    /// as opposed to failures of the store or the machine.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Json { .. }
            | Error::Invalid { .. }
            | Error::Config { .. }
            | Error::UnknownStream(_)
            | Error::Checksum { .. }
            | Error::MissingData { .. }
            | Error::Unexplained(_)
            | Error::Missing(_)
            | Error::NoStore(_)
            | Error::Refused(_)
            | Error::Usage(_)
            | Error::Signature(_)
            | Error::Locked(_) => true,
            Error::Io { .. } | Error::NoSpace { .. } | Error::ReadOnly { .. } => false,
        }
    }
}

/// Adds a path to `std::io::Result`s.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<std::path::Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<std::path::Path>) -> Result<T> {
        self.map_err(|e| Error::io(path.as_ref(), e))
    }
}
