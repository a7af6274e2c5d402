//! Item filters as sstream-query parses and applies them
//! (`simplestreams/filters.py`): `key=value`, `key!=value`, `key~regex`,
//! `key!~regex` on flattened items, a missing key comparing as the empty
//! string, every filter having to match.
//!
//! The parsing reproduces python-simplestreams' regular expression
//! `([\w|\-]+)[ ]*([!]{0,1}[=~])[ ]*(.*)[ ]*$` applied with `re.match`, so a
//! filter that one tool accepts the other accepts too, with the same key,
//! operator and value (spaces after the value are part of it, as there).
//! Regular expressions are compiled with `fancy-regex`, which understands the
//! Python syntax users paste from sstream-query command lines (lookarounds,
//! backreferences, `(?P<name>…)`).

use std::fmt;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// How a filter compares the item's value with its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`: string equality.
    Eq,
    /// `!=`
    Ne,
    /// `~`: unanchored regular expression search.
    Match,
    /// `!~`
    NotMatch,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Match => "~",
            Op::NotMatch => "!~",
        }
    }

    fn negated(self) -> bool {
        matches!(self, Op::Ne | Op::NotMatch)
    }
}

/// One parsed filter.
#[derive(Clone, Debug)]
pub struct ItemFilter {
    key: String,
    op: Op,
    value: String,
    regex: Option<fancy_regex::Regex>,
}

/// simplestreams' filter syntax. Python's `$` (without MULTILINE) also
/// matches before a final newline, hence `\n?\z`; `.` stops at newlines in
/// both dialects, so a value spanning lines does not parse, as there.
static FILTER_SYNTAX: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"\A([\w|\-]+)[ ]*([!]{0,1}[=~])[ ]*(.*)[ ]*\n?\z").expect("valid regex")
});

/// fancy-regex gives up on a search after this many backtracking steps;
/// Python never does. Generous, so only pathological patterns hit it.
const BACKTRACK_LIMIT: usize = 10_000_000;

impl ItemFilter {
    /// Parses `key=value`, `key!=value`, `key~regex` or `key!~regex`.
    pub fn parse(text: &str) -> Result<Self> {
        let caps = FILTER_SYNTAX.captures(text).ok_or_else(|| {
            Error::Usage(format!(
                "invalid filter '{}': expected KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX",
                text.escape_debug()
            ))
        })?;
        let key = caps[1].to_string();
        let op = match &caps[2] {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            "~" => Op::Match,
            _ => Op::NotMatch,
        };
        let value = caps[3].to_string();
        let regex = match op {
            Op::Match | Op::NotMatch => Some(
                fancy_regex::RegexBuilder::new(&value)
                    .backtrack_limit(BACKTRACK_LIMIT)
                    .build()
                    .map_err(|e| {
                        Error::Usage(format!(
                            "invalid filter '{}': bad regular expression: {e}",
                            text.escape_debug()
                        ))
                    })?,
            ),
            Op::Eq | Op::Ne => None,
        };
        Ok(ItemFilter {
            key,
            op,
            value,
            regex,
        })
    }

    /// Parses every filter, failing on the first bad one.
    pub fn parse_all<S: AsRef<str>>(texts: &[S]) -> Result<Vec<Self>> {
        texts.iter().map(|t| Self::parse(t.as_ref())).collect()
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn op(&self) -> Op {
        self.op
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the filter accepts an item whose value for the key is `value`
    /// (`None`, a missing key, compares as the empty string).
    pub fn matches_value(&self, value: Option<&str>) -> Result<bool> {
        let value = value.unwrap_or("");
        let hit = match &self.regex {
            None => value == self.value,
            Some(re) => re.is_match(value).map_err(|e| {
                Error::Usage(format!(
                    "filter '{self}': regular expression failed on '{}': {e}",
                    value.escape_debug()
                ))
            })?,
        };
        Ok(hit != self.op.negated())
    }

    /// Whether the filter accepts a flattened item (string values).
    pub fn matches(&self, item: &Map<String, Value>) -> Result<bool> {
        self.matches_value(item.get(&self.key).and_then(Value::as_str))
    }
}

impl fmt::Display for ItemFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.key, self.op.as_str(), self.value)
    }
}

/// True when every filter accepts the item (so an empty list accepts all).
pub fn all_match(filters: &[ItemFilter], item: &Map<String, Value>) -> Result<bool> {
    for f in filters {
        if !f.matches(item)? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    fn parts(text: &str) -> (String, Op, String) {
        let f = ItemFilter::parse(text).unwrap();
        (f.key, f.op, f.value)
    }

    #[test]
    fn parses_like_simplestreams() {
        assert_eq!(parts("arch=amd64"), ("arch".into(), Op::Eq, "amd64".into()));
        assert_eq!(
            parts("arch != amd64"),
            ("arch".into(), Op::Ne, "amd64".into())
        );
        assert_eq!(parts("a~b=c"), ("a".into(), Op::Match, "b=c".into()));
        assert_eq!(parts("a=~b"), ("a".into(), Op::Eq, "~b".into()));
        assert_eq!(parts("a!~"), ("a".into(), Op::NotMatch, "".into()));
        // Trailing spaces belong to the value, the final newline does not.
        assert_eq!(parts("k=v  "), ("k".into(), Op::Eq, "v  ".into()));
        assert_eq!(parts("k=v\n"), ("k".into(), Op::Eq, "v".into()));
        assert_eq!(
            parts("bootloader-type=uefi"),
            ("bootloader-type".into(), Op::Eq, "uefi".into())
        );
    }

    #[test]
    fn bad_filters_are_usage_errors_naming_the_filter() {
        for bad in ["arch", "=x", "a b=c", "k=a\nb", "x.y=1"] {
            let e = ItemFilter::parse(bad).unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{bad:?}: {e:?}");
            assert!(
                e.to_string().contains(&bad.escape_debug().to_string()),
                "{e}"
            );
        }
        let e = ItemFilter::parse("product_name~(unclosed").unwrap_err();
        assert!(e.to_string().contains("product_name~(unclosed"), "{e}");
    }

    #[test]
    fn operators_and_missing_keys() {
        let i = item(&[("arch", "amd64"), ("release", "noble")]);
        let m = |t: &str| ItemFilter::parse(t).unwrap().matches(&i).unwrap();
        assert!(m("arch=amd64"));
        assert!(!m("arch!=amd64"));
        assert!(m("arch~md6"), "~ is an unanchored search");
        assert!(!m("arch~^md6"));
        assert!(m("arch!~arm"));
        assert!(m("subarch="), "a missing key compares as the empty string");
        assert!(!m("subarch!="));
        assert!(m("subarch~^$"));
        assert!(m("missing~"), "an empty regex matches anything");
        assert!(m("release~^(?!jammy)"), "Python lookarounds work");
        assert!(m(r"release~(?P<c>o)b(?P=c)|n(o)b"));
    }

    #[test]
    fn all_filters_must_match() {
        let i = item(&[("arch", "amd64"), ("release", "noble")]);
        let fs = ItemFilter::parse_all(&["arch=amd64", "release~no"]).unwrap();
        assert!(all_match(&fs, &i).unwrap());
        let fs = ItemFilter::parse_all(&["arch=amd64", "release~jam"]).unwrap();
        assert!(!all_match(&fs, &i).unwrap());
        assert!(all_match(&[], &i).unwrap());
    }
}
