//! Reading a mirror the way sstream-query does: where the mirror root ends
//! and the first document's path begins (`util.path_from_mirror_url`), how a
//! URL is opened (`contentsource.UrlContentSource`: plain paths and
//! `file://` locally, anything else over HTTP), the missing trailing slash
//! it tolerates (`UrlMirrorReader.source`), and the clearsign armor it strips
//! from `.sjson` documents (`util.read_signed`).
//!
//! The mirror root string matters beyond reading: sstream-query's
//! `item_url` is that string followed by the item's `path`, verbatim.

use std::cell::OnceCell;
use std::path::Path;
use std::sync::LazyLock;

use crate::error::{Error, Result};
use crate::signing::Keyring;

use super::pyfmt::split_lines;

/// Fetches an `http(s)://` URL. Kept behind a trait so the core does not
/// carry an HTTP stack: the front-end provides one.
pub trait HttpGet {
    /// The body; `Ok(None)` for a 404, which sstream-query treats like a
    /// missing file.
    fn get(&self, url: &str) -> Result<Option<Vec<u8>>>;
}

/// For front-ends without HTTP: every http(s) source is refused.
pub struct NoHttp;

impl HttpGet for NoHttp {
    fn get(&self, url: &str) -> Result<Option<Vec<u8>>> {
        Err(Error::Usage(format!(
            "{url}: http(s) sources are not supported here"
        )))
    }
}

/// sstream-query's `path_from_mirror_url`: a source naming a
/// `streams/v1/….json` or `….sjson` file is split before `streams/v1/`;
/// anything else is a mirror root whose `streams/v1/index.sjson` is read.
pub fn split_mirror_url(source: &str) -> (String, String) {
    static DOC_PATH: LazyLock<regex::Regex> = LazyLock::new(|| {
        // Python's `$` also matches before a final newline; `.` stops at one.
        regex::Regex::new(r"streams/v1/.*[.](sjson|json)\n?\z").expect("valid regex")
    });
    match DOC_PATH.find(source) {
        Some(m) => (
            source[..m.start()].to_string(),
            source[m.start()..].to_string(),
        ),
        None => (source.to_string(), "streams/v1/index.sjson".to_string()),
    }
}

/// The scheme of a URL as Python's `urlsplit` sees it (lowercased), if any.
fn url_scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// Reads a URL or path; `Ok(None)` when it does not exist.
pub fn fetch(url: &str, http: &dyn HttpGet) -> Result<Option<Vec<u8>>> {
    let local = match url_scheme(url).as_deref() {
        None => url.to_string(),
        // file://HOST/PATH: like urlparse, keep the path and drop the host.
        Some("file") => {
            let rest = &url["file:".len()..];
            match rest.strip_prefix("//") {
                Some(authority_and_path) => authority_and_path
                    .find('/')
                    .map_or(String::new(), |i| authority_and_path[i..].to_string()),
                None => rest.to_string(),
            }
        }
        Some("http" | "https") => return http.get(url),
        Some(other) => {
            return Err(Error::Usage(format!(
                "{url}: unsupported URL scheme '{other}' (use a path, file://, http:// or https://)"
            )));
        }
    };
    match std::fs::read(&local) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(local, e)),
    }
}

/// How the signatures of clearsigned (`.sjson`) documents are checked.
#[derive(Debug, Clone, Copy)]
pub enum Verify<'a> {
    /// Against the keys of this keyring (binary or armored), as
    /// sstream-query's `--keyring` does with gpgv.
    Keyring(&'a Path),
    /// Not at all (sstream-query's `--no-verify`): the armor is stripped and
    /// the body used as it is.
    Off,
}

/// A mirror being read: its root (as given, or with the `/` sstream-query
/// adds when the root alone does not lead to the first document).
pub struct Mirror<'h> {
    root: String,
    http: &'h dyn HttpGet,
    /// `.sjson` sources: every document read is clearsigned.
    signed: bool,
    verify: Verify<'h>,
    /// Loaded at the first signed document, so that an unsigned source needs
    /// no keyring at all (sstream-query only calls gpgv on signed content).
    keyring: OnceCell<Keyring>,
}

impl<'h> Mirror<'h> {
    /// Opens the mirror a source names and reads its first document.
    /// Returns the mirror, the document's path under the root and its text.
    pub fn open(
        source: &str,
        verify: Verify<'h>,
        http: &'h dyn HttpGet,
    ) -> Result<(Self, String, String)> {
        let (root, path) = split_mirror_url(source);
        let mut mirror = Mirror {
            signed: path.ends_with("sjson"),
            root,
            http,
            verify,
            keyring: OnceCell::new(),
        };
        let first = fetch(&mirror.url(&path), http)?;
        let bytes = match first {
            Some(b) => b,
            None if !mirror.root.ends_with('/') => {
                tracing::debug!(root = %mirror.root, %path, "not found, trying with a trailing /");
                mirror.root.push('/');
                fetch(&mirror.url(&path), http)?.ok_or_else(|| mirror.not_found(&path))?
            }
            None => return Err(mirror.not_found(&path)),
        };
        let text = mirror.payload(&path, bytes)?;
        Ok((mirror, path, text))
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// Root and path joined as sstream-query joins them (plain concatenation).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.root, path)
    }

    /// Reads a document referenced by the mirror's index.
    pub fn read(&self, path: &str) -> Result<String> {
        let bytes = fetch(&self.url(path), self.http)?.ok_or_else(|| self.not_found(path))?;
        self.payload(path, bytes)
    }

    fn not_found(&self, path: &str) -> Error {
        Error::Missing(format!("{}: no such file or URL", self.url(path)))
    }

    fn payload(&self, path: &str, bytes: Vec<u8>) -> Result<String> {
        let url = self.url(path);
        let text = String::from_utf8(bytes).map_err(|e| Error::Json {
            file: url.clone(),
            reason: format!("not UTF-8: {e}"),
        })?;
        if !self.signed {
            return Ok(text);
        }
        self.check_signature(&url, &text)?;
        // The body is cut out as python-simplestreams cuts it, so that what
        // is printed matches sstream-query byte for byte.
        strip_clearsign(&url, &text)
    }

    /// Checks a clearsigned document against the keyring; a document that
    /// is not clearsigned at all fails here too, as it does in
    /// sstream-query ("No signature found!").
    fn check_signature(&self, url: &str, text: &str) -> Result<()> {
        let Verify::Keyring(path) = self.verify else {
            tracing::debug!(url, "signature not checked (--no-verify)");
            return Ok(());
        };
        let keyring = match self.keyring.get() {
            Some(k) => k,
            None => {
                let loaded = Keyring::load(path).map_err(|e| {
                    Error::Signature(format!(
                        "{url}: cannot check its signature: {e} \
                         (give --keyring K, or --no-verify to read it unchecked)"
                    ))
                })?;
                self.keyring.get_or_init(|| loaded)
            }
        };
        keyring
            .verify_cleartext(text)
            .map_err(|e| Error::Signature(format!("{url}: {e}")))?;
        tracing::debug!(url, keyring = %path.display(), "good signature");
        Ok(())
    }
}

const SIGNED_MESSAGE_HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE_HEADER: &str = "-----BEGIN PGP SIGNATURE-----";
const SIGNATURE_FOOTER: &str = "-----END PGP SIGNATURE-----";

/// The signed body of a clearsigned document, extracted exactly as
/// python-simplestreams' `read_signed` does (armor headers up to and
/// including the first non-empty line skipped, dash-escaping undone, lines
/// joined with `\n` plus a final newline).
pub fn strip_clearsign(file: &str, text: &str) -> Result<String> {
    if !text.starts_with(SIGNED_MESSAGE_HEADER) {
        return Err(Error::Signature(format!(
            "{file}: not clearsigned (no '{SIGNED_MESSAGE_HEADER}')"
        )));
    }
    #[derive(PartialEq)]
    enum Mode {
        Start,
        Header,
        Body,
        Signature,
        Garbage,
    }
    let mut mode = Mode::Start;
    let mut body: Vec<&str> = Vec::new();
    for line in split_lines(text) {
        if line == SIGNED_MESSAGE_HEADER {
            mode = Mode::Header;
            continue;
        }
        if mode == Mode::Header {
            if !line.is_empty() {
                mode = Mode::Body;
            }
            continue;
        }
        if line == SIGNATURE_HEADER {
            mode = Mode::Signature;
            continue;
        }
        if line == SIGNATURE_FOOTER {
            mode = Mode::Garbage;
            continue;
        }
        match mode {
            Mode::Body => body.push(line.strip_prefix("- ").unwrap_or(line)),
            Mode::Start => {
                return Err(Error::Signature(format!(
                    "{file}: malformed clearsigned message header"
                )));
            }
            _ => {}
        }
    }
    let mut out = body.join("\n");
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_url_splits_like_path_from_mirror_url() {
        let s = |x: &str| {
            let (m, p) = split_mirror_url(x);
            (m, p)
        };
        assert_eq!(
            s("/a/maas/streams/v1/index.json"),
            ("/a/maas/".into(), "streams/v1/index.json".into())
        );
        assert_eq!(
            s("streams/v1/x:y.sjson"),
            ("".into(), "streams/v1/x:y.sjson".into())
        );
        assert_eq!(
            s("http://h/daily"),
            ("http://h/daily".into(), "streams/v1/index.sjson".into())
        );
        assert_eq!(
            s("/m/streams/v1/streams/v1/a.json"),
            ("/m/".into(), "streams/v1/streams/v1/a.json".into())
        );
        assert_eq!(
            s("/m/streams/v1/a.json.txt"),
            (
                "/m/streams/v1/a.json.txt".into(),
                "streams/v1/index.sjson".into()
            )
        );
    }

    #[test]
    fn schemes_are_recognised_like_urlsplit() {
        assert_eq!(url_scheme("HTTP://x").as_deref(), Some("http"));
        assert_eq!(url_scheme("streams/v1/com.ubuntu.maas:stable.json"), None);
        assert_eq!(url_scheme("/a:b"), None);
        assert_eq!(url_scheme("c:/x").as_deref(), Some("c"));
    }

    #[test]
    fn local_sources_and_trailing_slash() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("m/streams/v1");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("index.sjson"), "x").unwrap();
        let root = dir.path().join("m");
        let root = root.to_str().unwrap();
        // A root without its slash is fixed, as sstream-query does.
        let e = Mirror::open(root, Verify::Off, &NoHttp).err().unwrap();
        assert!(e.to_string().contains("not clearsigned"), "{e}");
        let url = format!("file://{root}/streams/v1/index.sjson");
        assert_eq!(fetch(&url, &NoHttp).unwrap().unwrap(), b"x");
        assert!(fetch(&format!("{root}/nope"), &NoHttp).unwrap().is_none());
        assert!(fetch("http://127.0.0.1/x", &NoHttp).is_err());
    }

    // Expected body: what python-simplestreams' read_signed returns.
    #[test]
    fn clearsign_armor_is_stripped_like_read_signed() {
        let signed = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{\n- -a\n \"k\": 1\n}\n-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";
        assert_eq!(
            strip_clearsign("f", signed).unwrap(),
            "\n{\n-a\n \"k\": 1\n}\n"
        );
        assert!(strip_clearsign("f", "{}").is_err());
    }
}
