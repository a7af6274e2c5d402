//! The downloader shared by `sync` and every part that pulls images from
//! upstream (cloudimg-sync, the build service, the mirror crawler).
//!
//! One [`Client`] is shared by any number of threads: it keeps connections
//! alive between requests (reqwest's blocking pool, over rustls), bounds the
//! time to connect and the time a stalled transfer may wait, retries with
//! exponential backoff only what can heal by itself (a reset or timed-out
//! connection, a 5xx), and follows redirects only to http(s).
//!
//! [`Client::download`] writes one file into a partial keyed by its
//! checksum (`DIR/<sha256>`), verifying size and the strongest checksum the
//! caller knows *in the same pass* as the write; a partial left by a failure
//! or a kill is hashed once and continued with `Range`. The caller gets the
//! path of a complete, verified, fsynced file and its sha256, ready to be
//! renamed into the pool. Nothing here knows about stores or streams.
//!
//! Blocking requests on a few threads were chosen over an async runtime: a
//! sync moves at most a handful of large files at once, the writes and hashing
//! are blocking work anyway, and the workspace already has reqwest's blocking
//! client (no second HTTP stack, no tokio in the core's public API).

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

use crate::error::{Error, IoContext, Result};

/// How a [`Client`] behaves; `Default` suits mirroring over the Internet.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time a request may wait for the next bytes before it fails (and is
    /// retried): a stalled server, not a slow one.
    pub read_timeout: Duration,
    /// Attempts after the first, for transient failures only.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Largest metadata document [`Client::get`] accepts.
    pub max_document: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            retries: 4,
            backoff: Duration::from_millis(500),
            max_document: 512 << 20,
        }
    }
}

/// What a downloaded file must be. At least one checksum is required: data
/// that cannot be verified is never handed out.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub sha512: Option<String>,
    pub md5: Option<String>,
}

impl Expected {
    /// The name of the partial file: the strongest checksum, prefixed by its
    /// algorithm unless it is sha256 (whose partials are `DIR/<sha256>`).
    pub fn key(&self) -> Option<String> {
        if let Some(h) = &self.sha256 {
            Some(h.to_ascii_lowercase())
        } else if let Some(h) = &self.sha512 {
            Some(format!("sha512-{}", h.to_ascii_lowercase()))
        } else {
            self.md5
                .as_ref()
                .map(|h| format!("md5-{}", h.to_ascii_lowercase()))
        }
    }
}

/// A complete, verified file.
#[derive(Debug)]
pub struct Downloaded {
    /// The file (in the partial directory), fsynced.
    pub path: PathBuf,
    /// Its sha256, computed in the pass that wrote it.
    pub sha256: String,
    pub size: u64,
    /// Bytes that came over the network for it (less than `size` when a
    /// partial was continued).
    pub fetched: u64,
}

/// Why a request failed, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connection refused/reset, timeout, 5xx, a body cut short: retried.
    #[error("{url}: {reason}")]
    Transient { url: String, reason: String },
    /// 404 and other 4xx, a redirect to another scheme: not retried.
    #[error("{url}: {reason}")]
    Permanent { url: String, reason: String },
    /// The data is not what was expected: not retried.
    #[error("{url}: {reason}")]
    Mismatch { url: String, reason: String },
    #[error(transparent)]
    Local(#[from] Error),
}

impl From<FetchError> for Error {
    fn from(e: FetchError) -> Error {
        match e {
            FetchError::Transient { url, reason } | FetchError::Permanent { url, reason } => {
                Error::io(url, std::io::Error::other(reason))
            }
            FetchError::Mismatch { url, reason } => Error::Checksum { what: url, reason },
            FetchError::Local(e) => e,
        }
    }
}

/// A shared HTTP client; cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::blocking::Client,
    opts: FetchOptions,
}

fn transient(url: &str, reason: impl std::fmt::Display) -> FetchError {
    FetchError::Transient {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

fn permanent(url: &str, reason: impl std::fmt::Display) -> FetchError {
    FetchError::Permanent {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

/// Classifies a reqwest error: a redirect refused by our policy or a bad
/// URL is permanent, everything on the wire is transient.
fn classify(url: &str, e: reqwest::Error) -> FetchError {
    // The whole chain: reqwest's own text ("error following redirect")
    // does not say why (the refused URL is in the source).
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_redirect() || e.is_builder() {
        return permanent(url, msg);
    }
    transient(url, msg)
}

const BUF: usize = 256 << 10;

impl Client {
    pub fn new(opts: FetchOptions) -> Result<Client> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if !matches!(attempt.url().scheme(), "http" | "https") {
                let to = attempt.url().to_string();
                attempt.error(format!("redirect to a non-http(s) URL refused: {to}"))
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("streamfs/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.connect_timeout)
            // The blocking client applies this to the wait for the response
            // and to each read of the body (not to the whole transfer): a
            // stalled server fails, a slow 1 GiB download does not.
            .timeout(opts.read_timeout)
            .redirect(policy)
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| Error::io("http client", std::io::Error::other(e.to_string())))?;
        Ok(Client { http, opts })
    }

    pub fn options(&self) -> &FetchOptions {
        &self.opts
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the retries
    /// are spent (waiting `backoff`, doubled each time, in between).
    fn with_retries<T>(
        &self,
        url: &str,
        mut attempt: impl FnMut() -> std::result::Result<T, FetchError>,
    ) -> std::result::Result<T, FetchError> {
        let mut wait = self.opts.backoff;
        let mut n = 0;
        loop {
            match attempt() {
                Err(FetchError::Transient { reason, .. }) if n < self.opts.retries => {
                    n += 1;
                    tracing::warn!(url, attempt = n, %reason, "transient failure, retrying");
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                other => return other,
            }
        }
    }

    /// A small document (an index or products file): its body, `None` for
    /// a 404. Bodies over `max_document` bytes are refused.
    pub fn get(&self, url: &str) -> std::result::Result<Option<Vec<u8>>, FetchError> {
        self.with_retries(url, || {
            let resp = self.http.get(url).send().map_err(|e| classify(url, e))?;
            let status = resp.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            check_status(url, &resp)?;
            let limit = self.opts.max_document;
            let mut body = Vec::new();
            resp.take(limit + 1)
                .read_to_end(&mut body)
                .map_err(|e| transient(url, e))?;
            if body.len() as u64 > limit {
                return Err(permanent(
                    url,
                    format!("document larger than {limit} bytes"),
                ));
            }
            Ok(Some(body))
        })
    }

    /// Downloads `url` into `partial_dir/<key>` (see [`Expected::key`]),
    /// continuing a partial already there with `Range`, verifying
    /// `expected` as the data is written. `progress` gets each count of
    /// bytes written (including those of a continued partial, once).
    /// On a mismatch the partial is deleted; on other failures it is kept
    /// for the next attempt.
    pub fn download(
        &self,
        url: &str,
        expected: &Expected,
        partial_dir: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> std::result::Result<Downloaded, FetchError> {
        let key = expected
            .key()
            .ok_or_else(|| permanent(url, "no sha256, sha512 or md5 to verify the data against"))?;
        fs::create_dir_all(partial_dir).at(partial_dir)?;
        let path = partial_dir.join(&key);
        let mut fetched = 0u64;
        let mut fresh_start = false;
        loop {
            let r = self.with_retries(url, || {
                self.attempt(url, expected, &path, progress, &mut fetched)
            });
            match r {
                Ok(d) => return Ok(d),
                // A partial from an earlier run may itself be bad (a byte
                // flipped on disk, another server's data): one fresh try.
                Err(FetchError::Mismatch { .. }) if !fresh_start && fetched == 0 => {
                    fresh_start = true;
                    let _ = fs::remove_file(&path);
                }
                Err(e @ FetchError::Mismatch { .. }) => {
                    let _ = fs::remove_file(&path);
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One request: hash what the partial holds, ask for the rest, append
    /// and hash it, verify.
    fn attempt(
        &self,
        url: &str,
        expected: &Expected,
        path: &Path,
        progress: &(dyn Fn(u64) + Sync),
        fetched: &mut u64,
    ) -> std::result::Result<Downloaded, FetchError> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .at(path)?;
        let mut hashes = Hashes::new(expected);
        let mut have = 0u64;
        let mut buf = vec![0u8; BUF];
        loop {
            let n = file.read(&mut buf).at(path)?;
            if n == 0 {
                break;
            }
            hashes.update(&buf[..n]);
            have += n as u64;
        }
        if let Some(size) = expected.size
            && have > size
        {
            drop(file);
            fs::remove_file(path).at(path)?;
            return Err(transient(
                url,
                "partial larger than the item: starting over",
            ));
        }
        progress(have);
        let done = expected.size.is_some_and(|s| s == have);
        if !done {
            let mut req = self.http.get(url);
            if have > 0 {
                req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
            }
            let resp = req.send().map_err(|e| classify(url, e))?;
            let status = resp.status();
            check_status(url, &resp)?;
            if have > 0 && status != reqwest::StatusCode::PARTIAL_CONTENT {
                // The server ignored the range: start over from its body.
                tracing::info!(url, "server does not resume; downloading whole");
                file.set_len(0).at(path)?;
                hashes = Hashes::new(expected);
                have = 0;
            }
            let remaining = expected.size.map(|s| s - have);
            if let (Some(rem), Some(len)) = (remaining, resp.content_length())
                && len != rem
            {
                return Err(FetchError::Mismatch {
                    url: url.to_string(),
                    reason: format!(
                        "size mismatch: metadata says {} bytes, server sends {}",
                        expected.size.unwrap_or(0),
                        len + have
                    ),
                });
            }
            let mut body = resp;
            use std::io::Seek;
            file.seek(std::io::SeekFrom::Start(have)).at(path)?;
            loop {
                let n = match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = file.flush();
                        return Err(transient(url, format!("transfer cut: {e}")));
                    }
                };
                if let Some(s) = expected.size
                    && have + n as u64 > s
                {
                    return Err(FetchError::Mismatch {
                        url: url.to_string(),
                        reason: format!(
                            "size mismatch: server sends more than the {s} bytes metadata says"
                        ),
                    });
                }
                file.write_all(&buf[..n]).at(path)?;
                hashes.update(&buf[..n]);
                have += n as u64;
                *fetched += n as u64;
                progress(n as u64);
            }
            if let Some(s) = expected.size
                && have < s
            {
                return Err(transient(
                    url,
                    format!("transfer cut at {have} of {s} bytes"),
                ));
            }
        }
        file.sync_all().at(path)?;
        let sha256 = hashes.verify(url, expected, have)?;
        Ok(Downloaded {
            path: path.to_path_buf(),
            sha256,
            size: have,
            fetched: *fetched,
        })
    }
}

fn check_status(
    url: &str,
    resp: &reqwest::blocking::Response,
) -> std::result::Result<(), FetchError> {
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else if status.is_redirection() {
        // reqwest hands back, unfollowed, a redirect whose target it
        // cannot fetch (`file:`, `ftp:`, …): name it.
        let to = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
            .unwrap_or_default();
        Err(permanent(
            url,
            format!("HTTP {status}: redirect to a non-http(s) URL refused: {to}"),
        ))
    } else if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        Err(transient(url, format!("HTTP {status}")))
    } else {
        Err(permanent(url, format!("HTTP {status}")))
    }
}

/// The sha256 (always: it names the blob) and the stronger checksum the
/// metadata declares when it has no sha256.
struct Hashes {
    sha256: Sha256,
    sha512: Option<Sha512>,
    md5: Option<Md5>,
}

impl Hashes {
    fn new(e: &Expected) -> Hashes {
        let other = e.sha256.is_none();
        Hashes {
            sha256: Sha256::new(),
            sha512: (other && e.sha512.is_some()).then(Sha512::new),
            md5: (other && e.sha512.is_none() && e.md5.is_some()).then(Md5::new),
        }
    }

    fn update(&mut self, b: &[u8]) {
        self.sha256.update(b);
        if let Some(h) = &mut self.sha512 {
            h.update(b);
        }
        if let Some(h) = &mut self.md5 {
            h.update(b);
        }
    }

    fn verify(self, url: &str, e: &Expected, size: u64) -> std::result::Result<String, FetchError> {
        let mismatch = |reason: String| FetchError::Mismatch {
            url: url.to_string(),
            reason,
        };
        if let Some(s) = e.size
            && s != size
        {
            return Err(mismatch(format!(
                "size mismatch: metadata says {s} bytes, data has {size}"
            )));
        }
        let sha256 = hex::encode(self.sha256.finalize());
        let checks = [
            ("sha256", e.sha256.as_deref(), Some(sha256.clone())),
            (
                "sha512",
                e.sha512.as_deref(),
                self.sha512.map(|h| hex::encode(h.finalize())),
            ),
            (
                "md5",
                e.md5.as_deref(),
                self.md5.map(|h| hex::encode(h.finalize())),
            ),
        ];
        for (name, want, got) in checks {
            if let (Some(want), Some(got)) = (want, got)
                && !want.eq_ignore_ascii_case(&got)
            {
                return Err(mismatch(format!(
                    "{name} mismatch: metadata says {want}, data has {got}"
                )));
            }
        }
        Ok(sha256)
    }
}
