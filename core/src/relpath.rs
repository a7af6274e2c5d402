//! Paths from metadata and from the mount, validated once.
//!
//! Every `path` in a simplestreams document is relative to the mirror root;
//! one that is absolute or climbs with `..` would let a products file make
//! the store read or serve files outside itself, so it is refused wherever it
//! comes from.

use std::fmt;

/// A validated relative path: non-empty `/`-separated components, none of
/// them empty, `.`, `..`, or containing NUL.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

impl RelPath {
    pub fn new(s: &str) -> Result<Self, String> {
        Self::check(s)?;
        Ok(RelPath(s.to_string()))
    }

    /// What [`RelPath::new`] checks, without keeping the path.
    pub fn check(s: &str) -> Result<(), String> {
        if s.is_empty() {
            return Err("empty path".into());
        }
        if s.starts_with('/') {
            return Err(format!(
                "absolute path '{}' (paths must be relative to the mirror root)",
                s.escape_debug()
            ));
        }
        for comp in s.split('/') {
            match comp {
                "" => return Err(format!("empty component in path '{}'", s.escape_debug())),
                "." | ".." => {
                    return Err(format!("'{comp}' component in path '{}'", s.escape_debug()));
                }
                c if c.contains('\0') => {
                    return Err(format!("NUL byte in path '{}'", s.escape_debug()));
                }
                c if c.len() > 255 => {
                    return Err(format!(
                        "component longer than 255 bytes in path '{}'",
                        s.escape_debug()
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The parent directory, `None` at the top.
    pub fn parent(&self) -> Option<&str> {
        self.0.rsplit_once('/').map(|(p, _)| p)
    }

    pub fn file_name(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(_, n)| n)
    }

    /// True when `self` is `dir` or lies below it.
    pub fn is_under(&self, dir: &str) -> bool {
        dir.is_empty()
            || self.0 == dir
            || (self.0.starts_with(dir) && self.0.as_bytes().get(dir.len()) == Some(&b'/'))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "a/./b",
            "a/",
            "a\0b",
        ] {
            assert!(RelPath::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RelPath::new("noble/amd64/20250101/squashfs").is_ok());
        assert!(RelPath::new("a/..b/c..").is_ok());
    }

    #[test]
    fn is_under_respects_component_boundaries() {
        let p = RelPath::new("noble/amd64/20250101/squashfs").unwrap();
        assert!(p.is_under("noble/amd64"));
        assert!(p.is_under("noble/amd64/20250101/squashfs"));
        assert!(!p.is_under("noble/amd"));
        assert!(p.is_under(""));
    }
}
