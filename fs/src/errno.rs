//! The one place where errors become errno values. Every variant of
//! [`FsError`] and of core's [`Error`] is matched explicitly, so a new
//! variant does not compile until someone decides what the kernel returns.

use streamfs_core::Error;

use crate::fs::FsError;

/// The errno the kernel returns to the caller for `e`.
pub fn errno(e: &FsError) -> i32 {
    match e {
        FsError::NotFound => libc::ENOENT,
        FsError::Exists => libc::EEXIST,
        FsError::NotDir => libc::ENOTDIR,
        FsError::IsDir => libc::EISDIR,
        FsError::NotEmpty => libc::ENOTEMPTY,
        FsError::Denied(_) => libc::EACCES,
        FsError::NotPermitted(_) => libc::EPERM,
        FsError::Invalid(_) => libc::EINVAL,
        FsError::NameTooLong => libc::ENAMETOOLONG,
        FsError::Busy(_) => libc::EBUSY,
        FsError::BadHandle => libc::EBADF,
        FsError::Loop => libc::ELOOP,
        FsError::Stale => libc::ESTALE,
        FsError::Failed(_) => libc::EIO,
        FsError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        FsError::Core(c) => core_errno(c),
        FsError::Refused { reason, .. } => errno(reason),
    }
}

fn core_errno(e: &Error) -> i32 {
    match e {
        Error::Io { error, .. } => error.raw_os_error().unwrap_or(libc::EIO),
        // A products file written into streams/v1 that does not parse.
        Error::Json { .. } | Error::Invalid { .. } | Error::Usage(_) => libc::EINVAL,
        Error::Config { .. } | Error::Signature(_) => libc::EIO,
        Error::UnknownStream(_) => libc::ENOENT,
        // Data that does not match its declared size or sha256: the writer
        // learns it at close (ARCHITECTURE.md §3).
        Error::Checksum { .. } | Error::MissingData { .. } => libc::EIO,
        // A path no template or pending item explains: the write is
        // refused, whoever makes it.
        Error::Unexplained(_) => libc::EACCES,
        Error::Missing(_) | Error::NoStore(_) => libc::ENOENT,
        Error::Refused(_) => libc::EPERM,
        Error::Locked(_) => libc::EBUSY,
        Error::NoSpace { .. } => libc::ENOSPC,
        Error::ReadOnly { .. } => libc::EROFS,
    }
}
