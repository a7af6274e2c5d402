//! A build's source image as a verified local file: a path is used in
//! place; an http(s) URL is downloaded (resumable, checked against a known
//! sha256 as it is written) into a cache kept by sha256, shared by `build`
//! and `cloudimg-sync`, so the same image is never downloaded twice.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use streamfs_core::fetch::{Client, Expected};
use streamfs_core::store::pool::hash_file;

/// The image cache: `given`, else `$XDG_CACHE_HOME/streamfs/cloudimg`
/// (`~/.cache/streamfs/cloudimg`).
pub fn cache_dir(given: Option<&Path>) -> PathBuf {
    given.map(Path::to_path_buf).unwrap_or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        base.join("streamfs/cloudimg")
    })
}

pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// `source` (a path, `file://` URL or http(s) URL) as a local file whose
/// sha256 (and size, when known) are the given ones. `what` names the
/// image in messages.
pub fn fetch(
    client: &Client,
    source: &str,
    what: &str,
    sha256: &str,
    size: Option<u64>,
    cache: &Path,
) -> Result<PathBuf> {
    let check = |p: &Path| -> Result<bool> {
        let b = hash_file(p)?;
        Ok(b.sha256 == sha256 && size.is_none_or(|s| s == b.size))
    };
    if !is_url(source) {
        let p = PathBuf::from(source.strip_prefix("file://").unwrap_or(source));
        if !check(&p).with_context(|| what.to_string())? {
            bail!("{what}: its sha256 or size differs from what its source declares");
        }
        return Ok(p);
    }
    let cached = cache.join(sha256);
    if cached.is_file() && check(&cached)? {
        eprintln!("{what}: in the cache ({})", cached.display());
        return Ok(cached);
    }
    eprintln!("{what}: downloading");
    let got = client
        .download(
            source,
            &Expected {
                size,
                sha256: Some(sha256.to_string()),
                sha512: None,
                md5: None,
            },
            cache,
            &|_| {},
        )
        .with_context(|| what.to_string())?;
    Ok(got.path)
}

/// The sha256 that the `SHA256SUMS` file beside `url` gives its file (as
/// cloud-images.ubuntu.com and most image servers publish), `None` when
/// there is no such file or it does not list the name.
pub fn sha256_beside(client: &Client, url: &str) -> Result<Option<String>> {
    let Some((dir, name)) = url.rsplit_once('/') else {
        return Ok(None);
    };
    let sums_url = format!("{dir}/SHA256SUMS");
    let Some(sums) = client
        .get(&sums_url)
        .with_context(|| format!("reading {sums_url}"))?
    else {
        return Ok(None);
    };
    Ok(sha256_of(&String::from_utf8_lossy(&sums), name))
}

/// `name`'s sha256 in a `sha256sum` listing (`HEX  name` or `HEX *name`).
fn sha256_of(sums: &str, name: &str) -> Option<String> {
    sums.lines().find_map(|l| {
        let (hex, file) = l.split_once(char::is_whitespace)?;
        let file = file.trim_start().trim_start_matches('*');
        (file == name && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hex.to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sums_file_gives_the_named_file_its_sha256() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let sums = format!("{a} *noble-root.tar.xz\n{b}  noble.img\nnot a line\n");
        assert_eq!(sha256_of(&sums, "noble-root.tar.xz"), Some(a));
        assert_eq!(sha256_of(&sums, "noble.img"), Some("b".repeat(64)));
        assert_eq!(sha256_of(&sums, "noble"), None);
        assert_eq!(sha256_of("abc  x\n", "x"), None, "not a sha256");
    }
}
