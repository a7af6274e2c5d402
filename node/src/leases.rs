//! Leases: when `[leases] file` names a file or `[leases] url` an HTTP URL,
//! commands that change nodes (`load`, `save`, `on`, `off`, `reset`) check
//! that the caller holds the testbed now; root is exempt (as rhubarbe's
//! privileged accounts). Either is a JSON list of `{"login", "from",
//! "until"}` (RFC 3339 times), as a lease service would publish it. A URL
//! that cannot be read refuses the command: no answer is not a lease.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
struct Lease {
    login: String,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
}

/// Where the leases are published.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    File(&'a Path),
    Url(&'a str),
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Url(u) => f.write_str(u),
        }
    }
}

impl Source<'_> {
    fn read(&self, timeout: std::time::Duration) -> Result<String> {
        match self {
            Source::File(p) => std::fs::read_to_string(p)
                .map_err(Error::io(format!("reading leases {}", p.display()))),
            Source::Url(u) => {
                let fail = |reason: String| Error::Image {
                    what: format!("leases {u}"),
                    reason,
                };
                if !u.starts_with("http://") && !u.starts_with("https://") {
                    return Err(Error::Usage(format!(
                        "[leases] url {u:?}: an http:// or https:// URL is needed"
                    )));
                }
                let resp = reqwest::blocking::Client::builder()
                    .timeout(timeout)
                    .build()
                    .and_then(|c| c.get(*u).send())
                    .map_err(|e| fail(e.to_string()))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(fail(format!("HTTP {status}")));
                }
                resp.text().map_err(|e| fail(e.to_string()))
            }
        }
    }
}

/// Ok when `login` (uid `uid`) may act on the testbed at `now`.
pub fn check(from: Source<'_>, login: &str, uid: u32, now: DateTime<Utc>) -> Result<()> {
    if uid == 0 {
        return Ok(());
    }
    let text = from.read(std::time::Duration::from_secs(10))?;
    let file = from;
    let leases: Vec<Lease> = serde_json::from_str(&text).map_err(|e| Error::Image {
        what: file.to_string(),
        reason: format!("not a JSON list of {{login, from, until}}: {e}"),
    })?;
    let current = leases.iter().find(|l| l.from <= now && now < l.until);
    match current {
        Some(l) if l.login == login => Ok(()),
        Some(l) => Err(Error::Usage(format!(
            "the testbed is leased to {} until {} ({}); {login} holds no lease now",
            l.login,
            l.until.to_rfc3339(),
            file
        ))),
        None => Err(Error::Usage(format!(
            "no lease is current ({file}); {login} holds no lease now"
        ))),
    }
}

/// The caller's uid and login name, from the kernel (the owner of
/// `/proc/self`) and `/etc/passwd`: not from the environment, which the
/// caller controls.
pub fn caller() -> Result<(u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map_err(Error::io("reading /proc/self"))?
        .uid();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == uid.to_string())
        .map(|f| f[0].to_string())
        .unwrap_or_else(|| uid.to_string());
    Ok((uid, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_lease_holder_or_root_may_act() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("leases.json");
        std::fs::write(
            &f,
            r#"[{"login": "alice", "from": "2026-01-01T10:00:00Z", "until": "2026-01-01T12:00:00Z"},
                {"login": "bob", "from": "2026-01-01T12:00:00Z", "until": "2026-01-01T14:00:00Z"}]"#,
        )
        .unwrap();
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        let f = &Source::File(&f);
        assert!(check(*f, "alice", 1000, at("2026-01-01T11:00:00Z")).is_ok());
        let e = check(*f, "alice", 1000, at("2026-01-01T12:00:00Z")).unwrap_err();
        assert!(
            e.to_string().starts_with("the testbed is leased to bob"),
            "{e}"
        );
        assert!(check(*f, "alice", 1000, at("2026-01-02T00:00:00Z")).is_err());
        assert!(
            check(*f, "anyone", 0, at("2026-01-02T00:00:00Z")).is_ok(),
            "root"
        );
        std::fs::write(dir.path().join("leases.json"), "{").unwrap();
        assert!(check(*f, "alice", 1000, at("2026-01-01T11:00:00Z")).is_err());
    }
}

#[cfg(test)]
mod url_tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// An HTTP server on 127.0.0.1 answering every request with `body`
    /// (status `code`); its URL.
    fn serve(code: u16, body: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/leases.json", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    #[test]
    fn leases_from_a_url_are_checked_as_from_a_file() {
        let url = serve(
            200,
            r#"[{"login": "alice", "from": "2026-01-01T10:00:00Z", "until": "2026-01-01T12:00:00Z"}]"#,
        );
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        let src = Source::Url(&url);
        assert!(check(src, "alice", 1000, at("2026-01-01T11:00:00Z")).is_ok());
        let e = check(src, "bob", 1001, at("2026-01-01T11:00:00Z")).unwrap_err();
        assert!(e.to_string().contains("leased to alice"), "{e}");
        assert!(e.to_string().contains(&url), "{e}");
        assert!(check(src, "root", 0, at("2026-01-01T11:00:00Z")).is_ok());

        // A server that fails is no lease: refused, saying why.
        let bad = serve(500, "oops");
        let e = check(Source::Url(&bad), "alice", 1000, at("2026-01-01T11:00:00Z")).unwrap_err();
        assert!(e.to_string().contains("HTTP 500"), "{e}");
        let e = check(
            Source::Url("ftp://x/leases"),
            "alice",
            1000,
            at("2026-01-01T11:00:00Z"),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
    }
}
