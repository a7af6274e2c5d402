//! JSON as the simplestreams tools write and read it.
//!
//! Output follows meph2-util (`json.dumps(indent=1, sort_keys=True,
//! separators=(',', ': '))` plus a trailing newline, ASCII-only) so that files
//! we generate diff cleanly against the ones Canonical's tools generate, and
//! `python_str` renders a value the way python-simplestreams' `str()` does
//! when it flattens items, which filters and query output depend on.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Parses a JSON document, naming `file` in the error.
///
/// A key that appears twice in one object is an error: parsers disagree on
/// which occurrence counts (the first, the last, both), so a signed document
/// with duplicates could mean one thing to the signer's reviewer and another
/// to a client. Nesting deeper than 128 levels is an error too (serde_json's
/// limit), so no document exhausts the stack.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict::deserialize(&mut de).and_then(|v| de.end().map(|()| v.0));
    parsed.map_err(|e| Error::Json {
        file: file.to_string(),
        reason: e.to_string(),
    })
}

/// A JSON value read like `serde_json::Value`, refusing duplicate keys.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key \"{}\"",
                    key.escape_debug()
                )));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses a JSON document whose top level must be an object.
pub fn parse_object(file: &str, bytes: &[u8]) -> Result<Map<String, Value>> {
    match parse(file, bytes)? {
        Value::Object(m) => Ok(m),
        other => Err(Error::Json {
            file: file.to_string(),
            reason: format!(
                "expected an object at the top level, found {}",
                kind(&other)
            ),
        }),
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Serializes in meph2-util's style, with the trailing newline it adds.
pub fn to_meph2(v: &Value) -> Vec<u8> {
    let mut out = String::with_capacity(4096);
    write_value(&mut out, v, 1, 0, ": ");
    out.push('\n');
    out.into_bytes()
}

/// Serializes as `json.dumps(v, indent=2, sort_keys=True, separators=(',', ': '))`
/// (sstream-query's `--json`), without trailing newline.
pub fn to_indented(v: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_value(&mut out, v, indent, 0, ": ");
    out
}

fn newline(out: &mut String, indent: usize, level: usize) {
    out.push('\n');
    for _ in 0..indent * level {
        out.push(' ');
    }
}

fn write_value(out: &mut String, v: &Value, indent: usize, level: usize, sep: &str) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_repr(n)),
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, level + 1);
                write_value(out, x, indent, level + 1, sep);
            }
            newline(out, indent, level);
            out.push(']');
        }
        Value::Object(m) => write_map(out, m, indent, level, sep),
    }
}

fn write_map(out: &mut String, m: &Map<String, Value>, indent: usize, level: usize, sep: &str) {
    if m.is_empty() {
        out.push_str("{}");
        return;
    }
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_unstable();
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        newline(out, indent, level + 1);
        write_str(out, k);
        out.push_str(sep);
        write_value(out, &m[k.as_str()], indent, level + 1, sep);
    }
    newline(out, indent, level);
    out.push('}');
}

/// Serializes an object in meph2-util's style, as [`to_meph2`] does, without
/// first wrapping (and so copying) it into a `Value`.
pub fn map_to_meph2(m: &Map<String, Value>) -> Vec<u8> {
    let mut out = String::with_capacity(4096);
    write_map(&mut out, m, 1, 0, ": ");
    out.push('\n');
    out.into_bytes()
}

/// One member of a document written by [`fields_to_meph2`]: a value or an
/// object borrowed from where it lives, or members made on the fly (in
/// sorted key order) so that a large derived object is never built whole.
pub enum Field<'a> {
    Value(&'a Value),
    Map(&'a Map<String, Value>),
    Made(Box<dyn Iterator<Item = (&'a str, Value)> + 'a>),
}

/// Serializes an object given as its members, in meph2-util's style. The
/// members are sorted by key here; a `Made` field must yield its own members
/// sorted. `capacity` is a guess of the output size, to spare regrowing.
pub fn fields_to_meph2(mut fields: Vec<(&str, Field<'_>)>, capacity: usize) -> Vec<u8> {
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(capacity);
    if fields.is_empty() {
        out.push_str("{}");
    } else {
        out.push('{');
        for (i, (k, f)) in fields.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            newline(&mut out, 1, 1);
            write_str(&mut out, k);
            out.push_str(": ");
            match f {
                Field::Value(v) => write_value(&mut out, v, 1, 1, ": "),
                Field::Map(m) => write_map(&mut out, m, 1, 1, ": "),
                Field::Made(members) => write_members(&mut out, members, 1, 1),
            }
        }
        newline(&mut out, 1, 0);
        out.push('}');
    }
    out.push('\n');
    out.into_bytes()
}

fn write_members<'a>(
    out: &mut String,
    members: impl Iterator<Item = (&'a str, Value)>,
    indent: usize,
    level: usize,
) {
    let mut any = false;
    for (k, v) in members {
        out.push(if any { ',' } else { '{' });
        any = true;
        newline(out, indent, level + 1);
        write_str(out, k);
        out.push_str(": ");
        write_value(out, &v, indent, level + 1, ": ");
    }
    if any {
        newline(out, indent, level);
        out.push('}');
    } else {
        out.push_str("{}");
    }
}

/// A JSON string with Python's `ensure_ascii` escaping.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    while !rest.is_empty() {
        // Most text is printable ASCII needing no escape: copy it in runs.
        let run = rest
            .bytes()
            .position(|b| !(b' '..=b'~').contains(&b) || b == b'"' || b == b'\\')
            .unwrap_or(rest.len());
        out.push_str(&rest[..run]);
        rest = &rest[run..];
        let Some(c) = rest.chars().next() else { break };
        rest = &rest[c.len_utf8()..];
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A number as Python prints it: integers in full, floats as `repr(float)`.
pub fn number_repr(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        float_repr(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Python's `repr(float)`: shortest round-trip digits, scientific notation
/// when the exponent is below -4 or at least 16 (as Rust's `{:?}` does too),
/// with Python's `e+NN` / `e-NN` exponent spelling.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let s = format!("{f:?}");
    match s.split_once('e') {
        None => s,
        Some((mant, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            let mant = mant.strip_suffix(".0").unwrap_or(mant);
            format!("{mant}e{sign}{digits:0>2}")
        }
    }
}

/// What Python's `str()` gives for the scalar values simplestreams keeps when
/// flattening (`stringitems`): strings as they are, numbers, and booleans
/// (which Python counts as integers) as `True`/`False`. Other values are
/// dropped by the flattening, hence `None`.
pub fn python_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(number_repr(n)),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn meph2_style_matches_python_dumps() {
        let v = json!({"b": [1, {"x": "é"}], "a": {}, "c": []});
        let s = String::from_utf8(to_meph2(&v)).unwrap();
        assert_eq!(
            s,
            "{\n \"a\": {},\n \"b\": [\n  1,\n  {\n   \"x\": \"\\u00e9\"\n  }\n ],\n \"c\": []\n}\n"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_naming_the_key() {
        let e = parse("f.json", br#"{"products": {"p": 1, "q": 2, "p": 3}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.json") && e.contains("duplicate key \"p\""),
            "{e}"
        );
        assert!(parse("f.json", br#"{"a": {"p": 1}, "b": {"p": 1}}"#).is_ok());
    }

    #[test]
    fn nesting_too_deep_for_the_stack_is_refused() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse("f.json", deep.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("recursion limit"), "{e}");
        let e = parse("f.json", b"{} x").unwrap_err().to_string();
        assert!(e.contains("trailing characters"), "{e}");
    }

    #[test]
    fn parsing_gives_what_serde_json_gives() {
        let text = br#"{"b": [1, -2, 3.5, 1e300, true, null, "\u00e9"], "a": {}, "c": 18446744073709551615}"#;
        let want: Value = serde_json::from_slice(text).unwrap();
        let got = parse("f", text).unwrap();
        assert_eq!(got, want);
        let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["b", "a", "c"], "document order kept");
    }

    #[test]
    fn floats_print_as_python_repr() {
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(0.1), "0.1");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e-7), "1.5e-07");
        assert_eq!(float_repr(1e15), "1000000000000000.0");
    }

    #[test]
    fn a_document_written_by_fields_equals_the_same_document_as_a_value() {
        let inner = json!({"z": [1, 2.5, null], "a\"\\": "t\u{e9}\n\u{1}x"});
        let made: Vec<(String, Value)> = vec![("k1".into(), json!(1)), ("k2".into(), json!({}))];
        let got = fields_to_meph2(
            vec![
                (
                    "m",
                    Field::Made(Box::new(made.iter().map(|(k, v)| (k.as_str(), v.clone())))),
                ),
                ("e", Field::Made(Box::new(std::iter::empty()))),
                ("b", Field::Map(inner.as_object().unwrap())),
                ("a", Field::Value(&inner["z"])),
            ],
            0,
        );
        let want =
            to_meph2(&json!({"m": {"k1": 1, "k2": {}}, "e": {}, "b": inner, "a": inner["z"]}));
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(want).unwrap()
        );
        assert_eq!(map_to_meph2(inner.as_object().unwrap()), to_meph2(&inner));
        assert_eq!(fields_to_meph2(vec![], 0), b"{}\n");
    }

    #[test]
    fn non_bmp_characters_escape_as_surrogate_pairs() {
        let mut s = String::new();
        write_str(&mut s, "😀\u{7f}");
        assert_eq!(s, "\"\\ud83d\\ude00\\u007f\"");
    }
}
