//! Mount paths: split at the stream, joined, rsync's staging names, and
//! which names an entry may have.

use std::ffi::OsStr;

use super::FsError;

/// Longest name a directory entry may have, as on every Linux filesystem
/// (the kernel lets FUSE names up to 1024 bytes through).
const NAME_MAX: usize = 255;

/// A name to create: `ENAMETOOLONG` past [`NAME_MAX`], `EINVAL` when not
/// UTF-8 (simplestreams paths are JSON strings).
pub(super) fn name_to_create(name: &OsStr) -> Result<&str, FsError> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    name.to_str()
        .ok_or_else(|| FsError::Invalid("names are UTF-8".into()))
}

/// A name to look up: one that could never have been created is simply
/// not there, except that an overlong one is `ENAMETOOLONG` as elsewhere.
pub(super) fn name_to_find(name: &OsStr) -> Result<&str, FsError> {
    match name_to_create(name) {
        Err(FsError::Invalid(_)) => Err(FsError::NotFound),
        r => r,
    }
}

/// A mount path split at its stream.
pub(super) struct StreamPath<'a> {
    pub(super) stream: &'a str,
    pub(super) rel: &'a str,
}

pub(super) fn split(path: &str) -> Option<StreamPath<'_>> {
    if path.is_empty() {
        return None;
    }
    let (stream, rel) = path.split_once('/').unwrap_or((path, ""));
    Some(StreamPath { stream, rel })
}

pub(super) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

pub(super) fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// rsync's temporary name for `name`: `.name.XXXXXX`.
pub fn staging_target(name: &str) -> Option<&str> {
    let inner = name.strip_prefix('.')?;
    let (base, suffix) = inner.rsplit_once('.')?;
    (suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()) && !base.is_empty())
        .then_some(base)
}

pub(super) fn is_v1(rel: &str) -> bool {
    rel.starts_with("streams/v1/")
}
