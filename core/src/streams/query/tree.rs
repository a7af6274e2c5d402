//! A JSON document borrowed from the bytes it was parsed from: what a query
//! reads a products file into.
//!
//! A query touches every item of a file once and keeps nothing, so building
//! a `serde_json::Value` (an owned `String` per key and string, a hash table
//! per object) was most of its cost (BENCHMARKS.md). Here strings without
//! escapes point into the file's bytes and objects are plain member lists.
//! The store keeps using `serde_json::Value` (via `Products`), which it edits.
//!
//! Objects keep their members in document order; a key repeated within one
//! object is an error, as everywhere streamfs reads JSON.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use crate::error::{Error, Result};
use crate::json::number_repr;
use crate::streams::products::JsonNode;

#[derive(Clone, Debug, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Object<'a>),
}

/// An object's members, in document order, keys unique.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Object<'a> {
    members: Vec<(Cow<'a, str>, Node<'a>)>,
}

/// Parses a document whose top level must be an object; `file` names it in
/// errors, worded as [`crate::json::parse_object`] words them.
pub fn parse_object<'a>(file: &str, bytes: &'a [u8]) -> Result<Object<'a>> {
    // Text checked as UTF-8 once, as a whole, is not checked again string by
    // string (a tenth of the parse); invalid UTF-8 is left to serde_json,
    // whose error gives the position.
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    };
    let node: Node<'a> = parsed.map_err(|e| Error::Json {
        file: file.to_string(),
        reason: e.to_string(),
    })?;
    match node {
        Node::Object(o) => Ok(o),
        other => Err(Error::Json {
            file: file.to_string(),
            reason: format!(
                "expected an object at the top level, found {}",
                other.kind()
            ),
        }),
    }
}

impl<'a> Node<'a> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Node::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Node::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// As in [`crate::json::kind`].
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }

    /// Python's `str()` of a scalar, as [`crate::json::python_str`]; `None`
    /// for null, arrays and objects, which flattening skips.
    pub fn python_str(&self) -> Option<Cow<'_, str>> {
        match self {
            Node::String(s) => Some(Cow::Borrowed(s)),
            Node::Number(n) => Some(Cow::Owned(number_repr(n))),
            Node::Bool(b) => Some(Cow::Borrowed(if *b { "True" } else { "False" })),
            _ => None,
        }
    }
}

/// JSON text, for error messages.
impl fmt::Display for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Null => f.write_str("null"),
            Node::Bool(b) => write!(f, "{b}"),
            Node::Number(n) => write!(f, "{n}"),
            Node::String(s) => write!(f, "{}", serde_json::Value::from(s.as_ref())),
            Node::Array(a) => {
                f.write_str("[")?;
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            Node::Object(o) => {
                f.write_str("{")?;
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}:{v}", serde_json::Value::from(k))?;
                }
                f.write_str("}")
            }
        }
    }
}

impl JsonNode for Node<'_> {
    fn as_str(&self) -> Option<&str> {
        Node::as_str(self)
    }

    fn as_u64(&self) -> Option<u64> {
        Node::as_u64(self)
    }

    fn kind(&self) -> &'static str {
        Node::kind(self)
    }

    fn is_object(&self) -> bool {
        matches!(self, Node::Object(_))
    }

    fn member(&self, key: &str) -> Option<&Self> {
        self.as_object()?.get(key)
    }

    fn try_members(&self, f: &mut dyn FnMut(&str, &Self) -> Result<()>) -> Result<()> {
        self.as_object()
            .into_iter()
            .flat_map(Object::iter)
            .try_for_each(|(k, v)| f(k, v))
    }
}

impl<'a> Object<'a> {
    /// Objects are small (an item's attributes) or iterated whole (the
    /// products and versions maps), so lookups scan.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node<'a>)> {
        self.members.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// A key that appears twice, if any. Refused as [`crate::json::parse`]
    /// refuses it: parsers disagree on which occurrence counts.
    fn duplicate_key<'m>(members: &'m [(Cow<'a, str>, Node<'a>)]) -> Option<&'m str> {
        const SCAN: usize = 16;
        if members.len() <= SCAN {
            return (1..members.len())
                .find(|&i| members[..i].iter().any(|(k, _)| *k == members[i].0))
                .map(|i| members[i].0.as_ref());
        }
        let mut order: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
        order.sort_unstable();
        order.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> std::result::Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, b: bool) -> std::result::Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }

    /// As serde_json's `Value`: a float JSON cannot hold becomes null.
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Node<'de>, E> {
        Ok(Number::from_f64(v).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(x) = seq.next_element()? {
            items.push(x);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Node<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Key(k)) = map.next_key()? {
            members.push((k, map.next_value()?));
        }
        if let Some(k) = Object::duplicate_key(&members) {
            return Err(de::Error::custom(format_args!(
                "duplicate key \"{}\"",
                k.escape_debug()
            )));
        }
        Ok(Node::Object(Object { members }))
    }
}

/// An object key, borrowed when it has no escapes (serde's own `Cow<str>`
/// always copies).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The tree holds what serde_json's order-preserving `Value` holds.
    fn to_value(n: &Node) -> Value {
        match n {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(x) => Value::Number(x.clone()),
            Node::String(s) => Value::String(s.to_string()),
            Node::Array(a) => Value::Array(a.iter().map(to_value).collect()),
            Node::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.to_string(), to_value(v)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn parses_as_serde_json_value_does() {
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        let text = format!(
            r#"{{"b":[1,-2,3.5,1e300,18446744073709551616,true,null,"x\"y\u00e9"],"a":{{"z":1,"y":{{}}}},{many}"é":"\ud83d\ude00"}}"#
        );
        let ours = parse_object("t", text.as_bytes()).unwrap();
        let theirs: Value = serde_json::from_str(&text).unwrap();
        let ours = to_value(&Node::Object(ours));
        assert_eq!(ours, theirs);
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&ours), keys(&theirs));
        assert_eq!(keys(&ours["a"]), ["z", "y"]);
    }

    #[test]
    fn duplicate_keys_are_refused_naming_the_key() {
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        for text in [
            r#"{"a":{"z":1,"z":2}}"#.to_string(),
            format!(r#"{{{many}"k7":0}}"#),
        ] {
            let e = parse_object("f.json", text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains("f.json") && e.contains("duplicate key"), "{e}");
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let text = br#"{"plain":"abc","esc\u0041":"a\nb"}"#;
        let o = parse_object("t", text).unwrap();
        let (k, v) = &o.members[0];
        assert!(matches!(k, Cow::Borrowed(_)) && matches!(v, Node::String(Cow::Borrowed(_))));
        let (k, v) = &o.members[1];
        assert_eq!((k.as_ref(), v.as_str()), ("escA", Some("a\nb")));
    }

    #[test]
    fn errors_name_the_file() {
        let e = parse_object("f.json", b"[1]").unwrap_err().to_string();
        assert!(e.contains("f.json") && e.contains("found an array"), "{e}");
        let e = parse_object("f.json", b"{\"a\":").unwrap_err().to_string();
        assert!(e.contains("f.json"), "{e}");
        let deep = "[".repeat(200) + &"]".repeat(200);
        let text = format!("{{\"a\":{deep}}}");
        let e = parse_object("f.json", text.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
    }

    #[test]
    fn display_is_json_text() {
        let o = parse_object("t", br#"{"a":[1,"x\"",null,{"b":true}]}"#).unwrap();
        assert_eq!(
            Node::Object(o).to_string(),
            r#"{"a":[1,"x\"",null,{"b":true}]}"#
        );
    }
}
