//! Mount paths: split at the stream, joined, rsync's staging names.

/// A mount path split at its stream.
pub(super) struct Place<'a> {
    pub(super) stream: &'a str,
    pub(super) rel: &'a str,
}

pub(super) fn split(path: &str) -> Option<Place<'_>> {
    if path.is_empty() {
        return None;
    }
    let (stream, rel) = path.split_once('/').unwrap_or((path, ""));
    Some(Place { stream, rel })
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
