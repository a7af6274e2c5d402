//! Layered INI settings, as rhubarbe's: `/etc/streamfs/imaging.conf`, then
//! `~/.config/streamfs/imaging.conf`, then `./imaging.conf`; a later file
//! overrides single keys of earlier ones (no need to copy a whole file).
//! `STREAMFS_IMAGING_CONF` (a `:`-separated list) replaces that list, so
//! tests and odd setups never touch `/etc`.
//!
//! `key.<hostname>` gives a value for one host only (one file shared by a
//! testbed's gateways); on that host it wins over `key` wherever each is
//! defined, as in rhubarbe.
//!
//! Values are taken as written: no interpolation, no quote removal. A quoted
//! value is refused with an error saying so, because configparser users
//! expect the quotes to be part of the value and shell users expect them
//! to be stripped; either guess loses someone's setting silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Values used when no file sets a key.
const DEFAULTS: &[(&str, &str, &str)] = &[
    ("testbed", "regularname", "fit"),
    ("testbed", "rebootname", "reboot"),
    ("testbed", "inventory", "/etc/streamfs/inventory.json"),
    ("nodes", "agent_port", "7170"),
    ("nodes", "key_file", "/etc/streamfs/node.key"),
    ("nodes", "cmc_default_timeout", "3"),
    ("nodes", "load_default_timeout", "300"),
    ("nodes", "save_default_timeout", "300"),
    ("nodes", "wait_default_timeout", "60"),
    ("nodes", "log_dir", "/var/log/streamfs/nodes"),
    ("pxelinux", "config_dir", "/tftpboot/pxelinux.cfg"),
    ("pxelinux", "loader", "streamfs-loader"),
    ("images", "stream", "images"),
    ("networking", "bandwidth", "500"),
];

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: usize },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("(built-in default)"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Value {
    pub value: String,
    pub origin: Origin,
}

/// The effective settings for one host.
#[derive(Clone, Debug)]
pub struct Settings {
    host: String,
    /// `(section, key)` -> value; `key` may carry a `.host` suffix.
    raw: BTreeMap<(String, String), Value>,
    files: Vec<PathBuf>,
}

impl Settings {
    /// The files read, in order: `STREAMFS_IMAGING_CONF` or the three
    /// standard places.
    pub fn default_files() -> Vec<PathBuf> {
        if let Some(list) = std::env::var_os("STREAMFS_IMAGING_CONF") {
            return std::env::split_paths(&list)
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
        }
        let mut files = vec![PathBuf::from("/etc/streamfs/imaging.conf")];
        if let Some(home) = std::env::var_os("HOME") {
            files.push(Path::new(&home).join(".config/streamfs/imaging.conf"));
        }
        files.push(PathBuf::from("imaging.conf"));
        files
    }

    /// This machine's hostname (`STREAMFS_HOSTNAME` overrides), short form.
    pub fn this_host() -> String {
        let name = std::env::var("STREAMFS_HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .unwrap_or_default();
        let name = name.trim();
        name.split('.').next().unwrap_or(name).to_string()
    }

    /// Reads the standard files for this host.
    pub fn load() -> Result<Settings> {
        Settings::load_files(&Settings::default_files(), &Settings::this_host())
    }

    /// Reads `files` in order (absent ones are skipped) for `host`.
    pub fn load_files(files: &[PathBuf], host: &str) -> Result<Settings> {
        let mut s = Settings {
            host: host.to_string(),
            raw: BTreeMap::new(),
            files: Vec::new(),
        };
        for &(sec, key, value) in DEFAULTS {
            s.raw.insert(
                (sec.into(), key.into()),
                Value {
                    value: value.into(),
                    origin: Origin::Default,
                },
            );
        }
        for f in files {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("reading {}", f.display()))(e)),
            };
            s.parse_into(f, &text)?;
            s.files.push(f.clone());
        }
        Ok(s)
    }

    /// Settings from one text, for tests and `-` inputs.
    pub fn from_text(file: &Path, text: &str, host: &str) -> Result<Settings> {
        let mut s = Settings::load_files(&[], host)?;
        s.parse_into(file, text)?;
        Ok(s)
    }

    fn parse_into(&mut self, file: &Path, text: &str) -> Result<()> {
        let err = |line: usize, reason: String| Error::Settings {
            file: file.to_path_buf(),
            line,
            reason,
        };
        let mut section: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| err(n, format!("unterminated section header {line:?}")))?;
                section = Some(name.trim().to_string());
                continue;
            }
            let Some(pos) = line.find(['=', ':']) else {
                return Err(err(n, format!("expected `key = value`, found {line:?}")));
            };
            let (key, value) = (line[..pos].trim(), line[pos + 1..].trim());
            let sec = section
                .clone()
                .ok_or_else(|| err(n, format!("key {key:?} before any [section]")))?;
            if key.is_empty() {
                return Err(err(n, format!("a value without a key: {line:?}")));
            }
            if is_quoted(value) {
                return Err(err(
                    n,
                    format!(
                        "[{sec}] {key}: quoted value {value}: values are taken as written, remove the quotes"
                    ),
                ));
            }
            self.raw.insert(
                (sec, key.to_string()),
                Value {
                    value: value.to_string(),
                    origin: Origin::File {
                        path: file.to_path_buf(),
                        line: n,
                    },
                },
            );
        }
        Ok(())
    }

    /// The effective value of `[section] key` on this host.
    pub fn get(&self, section: &str, key: &str) -> Option<&Value> {
        let host_key = (section.to_string(), format!("{key}.{}", self.host));
        self.raw
            .get(&host_key)
            .or_else(|| self.raw.get(&(section.to_string(), key.to_string())))
    }

    pub fn value(&self, section: &str, key: &str) -> Option<&str> {
        self.get(section, key).map(|v| v.value.as_str())
    }

    /// A value that must be there.
    pub fn required(&self, section: &str, key: &str) -> Result<&str> {
        self.value(section, key).ok_or_else(|| {
            Error::Usage(format!(
                "[{section}] {key} is not set in {}",
                self.files_read()
            ))
        })
    }

    /// A number, with the file and line of a bad one.
    pub fn number<T: std::str::FromStr>(&self, section: &str, key: &str) -> Result<Option<T>> {
        let Some(v) = self.get(section, key) else {
            return Ok(None);
        };
        v.value.parse().map(Some).map_err(|_| {
            Error::Usage(format!(
                "{}: [{section}] {key} = {}: not a number",
                v.origin, v.value
            ))
        })
    }

    /// Every effective key (host-specific ones folded into their key), in
    /// order, with its value and origin: what `node config` prints.
    pub fn effective(&self) -> Vec<(String, String, &Value)> {
        let suffix = format!(".{}", self.host);
        let mut keys: Vec<(String, String)> = Vec::new();
        for (sec, key) in self.raw.keys() {
            let base = key.strip_suffix(&suffix).unwrap_or(key);
            // Keys for other hosts are not in effect here.
            let other_host = base.contains('.') && !key.ends_with(&suffix);
            let k = (sec.clone(), base.to_string());
            if !other_host && !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys.into_iter()
            .filter_map(|(s, k)| self.get(&s, &k).map(|v| (s, k, v)))
            .collect()
    }

    /// The files that were found and read, for messages.
    pub fn files_read(&self) -> String {
        if self.files.is_empty() {
            return "no settings file (searched: built-in defaults only)".into();
        }
        self.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn host(&self) -> &str {
        &self.host
    }
}

fn is_quoted(v: &str) -> bool {
    v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_override_single_keys_and_hosts_win() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.conf");
        let b = dir.path().join("b.conf");
        std::fs::write(
            &a,
            "[testbed]\nregularname = fit\nall_scope = 1-37\nall_scope.gw = 1-8\n",
        )
        .unwrap();
        std::fs::write(&b, "[testbed]\nregularname=node\nall_scope = 1-3\n").unwrap();
        let s = Settings::load_files(&[a.clone(), b.clone()], "gw").unwrap();
        assert_eq!(s.value("testbed", "regularname"), Some("node"));
        assert_eq!(
            s.value("testbed", "all_scope"),
            Some("1-8"),
            "host key wins"
        );
        assert_eq!(
            s.get("testbed", "all_scope").unwrap().origin,
            Origin::File { path: a, line: 4 }
        );
        let s = Settings::load_files(&[dir.path().join("absent"), b], "other").unwrap();
        assert_eq!(s.value("testbed", "all_scope"), Some("1-3"));
        assert_eq!(s.value("pxelinux", "loader"), Some("streamfs-loader"));
        let shown: Vec<String> = s
            .effective()
            .iter()
            .map(|(a, b, _)| format!("{a}.{b}"))
            .collect();
        assert!(shown.contains(&"testbed.all_scope".to_string()));
        assert!(!shown.iter().any(|k| k.ends_with(".gw")));
    }

    #[test]
    fn quoted_values_and_garbage_are_errors_naming_the_line() {
        let f = Path::new("x.conf");
        let e = Settings::from_text(f, "[nodes]\nkey_file = \"/k\"\n", "h").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("x.conf:2: [nodes] key_file: quoted value"),
            "{e}"
        );
        let e = Settings::from_text(f, "key = 1\n", "h").unwrap_err();
        assert!(e.to_string().contains("before any [section]"), "{e}");
        let e = Settings::from_text(f, "[a]\njunk\n", "h").unwrap_err();
        assert!(e.to_string().starts_with("x.conf:2:"), "{e}");
        // Taken as written: inner quotes and `#` stay.
        let s = Settings::from_text(f, "[a]\nb = say \"hi\" # there\n", "h").unwrap();
        assert_eq!(s.value("a", "b"), Some("say \"hi\" # there"));
    }

    #[test]
    fn the_rhubarbe_default_file_parses() {
        let Some(dir) = std::env::var_os("STREAMFS_FIXTURES") else {
            return;
        };
        let f = Path::new(&dir).join("imaging/rhubarbe-9.0.3-default.conf");
        let s = Settings::load_files(&[f], "faraday").unwrap();
        assert_eq!(s.value("testbed", "all_scope"), Some("1-37"));
        assert_eq!(s.value("networking", "pattern_port"), Some("10000 + *"));
    }
}
