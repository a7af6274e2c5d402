//! Leases: when `[leases] file` names a file, commands that change nodes
//! (`load`, `save`, `on`, `off`, `reset`) check that the caller holds the
//! testbed now; root is exempt (as rhubarbe's privileged accounts). The
//! file is a JSON list of `{"login", "from", "until"}` (RFC 3339 times), as
//! a lease service would publish it.

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

/// Ok when `login` (uid `uid`) may act on the testbed at `now`.
pub fn check(file: &Path, login: &str, uid: u32, now: DateTime<Utc>) -> Result<()> {
    if uid == 0 {
        return Ok(());
    }
    let text = std::fs::read_to_string(file)
        .map_err(Error::io(format!("reading leases {}", file.display())))?;
    let leases: Vec<Lease> = serde_json::from_str(&text).map_err(|e| Error::Image {
        what: file.display().to_string(),
        reason: format!("not a JSON list of {{login, from, until}}: {e}"),
    })?;
    let current = leases.iter().find(|l| l.from <= now && now < l.until);
    match current {
        Some(l) if l.login == login => Ok(()),
        Some(l) => Err(Error::Usage(format!(
            "the testbed is leased to {} until {} ({}); {login} holds no lease now",
            l.login,
            l.until.to_rfc3339(),
            file.display()
        ))),
        None => Err(Error::Usage(format!(
            "no lease is current ({}); {login} holds no lease now",
            file.display()
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
        assert!(check(&f, "alice", 1000, at("2026-01-01T11:00:00Z")).is_ok());
        let e = check(&f, "alice", 1000, at("2026-01-01T12:00:00Z")).unwrap_err();
        assert!(
            e.to_string().starts_with("the testbed is leased to bob"),
            "{e}"
        );
        assert!(check(&f, "alice", 1000, at("2026-01-02T00:00:00Z")).is_err());
        assert!(
            check(&f, "anyone", 0, at("2026-01-02T00:00:00Z")).is_ok(),
            "root"
        );
        std::fs::write(&f, "{").unwrap();
        assert!(check(&f, "alice", 1000, at("2026-01-01T11:00:00Z")).is_err());
    }
}
