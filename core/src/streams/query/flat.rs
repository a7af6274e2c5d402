//! Items flattened as sstream-query flattens them, borrowing from the
//! parsed document, and `_aliases` expanded level by level.

use std::borrow::Cow;
use std::rc::Rc;

use serde_json::Value;

use super::pyfmt::{Entries, write_dict_pair, write_dict_repr};
use super::tree::{Node, Object};
use crate::error::Result;
use crate::streams::aliases::ALIASES;
use crate::streams::filter::ItemFilter;

/// A flattened item borrowing its strings from the document: what
/// `flatten::flatten_expanded` computes (same keys, values, order, checked
/// by a test), without an owned map per item, which dominated the cost of
/// large queries. Keys keep the position of their first appearance and
/// deeper levels overwrite values, as Python's `dict.update` does.
#[derive(Clone, Debug, Default)]
pub struct Flat<'d> {
    entries: Vec<(&'d str, Cow<'d, str>)>,
    /// `repr(key): repr(value)` of entries, where [`Flat::prerender`] made
    /// it: an upper level's pairs are rendered once for all the items below
    /// it instead of once per item (they are most of an item's text).
    rendered: Vec<Option<Rc<str>>>,
}

impl<'d> Flat<'d> {
    pub(super) fn set(&mut self, key: &'d str, value: Cow<'d, str>) {
        match self.entries.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                self.entries[i].1 = value;
                self.rendered[i] = None;
            }
            None => {
                self.entries.push((key, value));
                self.rendered.push(None);
            }
        }
    }

    /// Renders the pairs not rendered yet, for `%s`/`%r` of the items below.
    pub(super) fn prerender(&mut self) {
        for ((k, v), r) in self.entries.iter().zip(&mut self.rendered) {
            if r.is_none() {
                let mut s = String::with_capacity(k.len() + v.len() + 6);
                write_dict_pair(&mut s, k, v, false);
                *r = Some(s.into());
            }
        }
    }

    /// Adds a level's scalar attributes (`stringitems`).
    pub(super) fn add_level(&mut self, level: &Members<'d>) {
        for &(k, v) in level {
            if let Some(value) = v.python_str() {
                self.set(k, value);
            }
        }
    }

    /// The next level down: this one, then `level`'s attributes, then its
    /// name under `name_key`.
    pub(super) fn child(&self, level: &Members<'d>, name_key: &'static str, name: &'d str) -> Self {
        // Room for every key the level may add, so that it grows once.
        let room = self.entries.len() + level.len() + 2;
        let mut entries = Vec::with_capacity(room);
        entries.extend_from_slice(&self.entries);
        let mut rendered = Vec::with_capacity(room);
        rendered.extend_from_slice(&self.rendered);
        let mut f = Flat { entries, rendered };
        f.add_level(level);
        f.set(name_key, Cow::Borrowed(name));
        f
    }

    pub(super) fn matches(&self, filters: &[ItemFilter]) -> Result<bool> {
        for f in filters {
            if !f.matches_value(self.lookup(f.key()))? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub(super) fn to_json(&self) -> Value {
        Value::Object(
            self.pairs()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect(),
        )
    }
}

impl Entries for Flat<'_> {
    fn lookup(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (*k, v.as_ref()))
    }

    fn write_dict_repr(&self, out: &mut String, ascii: bool) {
        if ascii {
            return write_dict_repr(out, self.pairs(), ascii);
        }
        out.push('{');
        for (i, ((k, v), r)) in self.entries.iter().zip(&self.rendered).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match r {
                Some(r) => out.push_str(r),
                None => write_dict_pair(out, k, v, false),
            }
        }
        out.push('}');
    }
}

/// A level's members as python-simplestreams' `expand_tree` leaves them:
/// for each of the level's own keys in order, a string value with an entry
/// in `_aliases[key]` merges that entry's members in (replacing in place,
/// new keys at the end). Applied to each level as it is flattened instead of
/// rewriting the whole tree first.
pub(super) type Members<'d> = Vec<(&'d str, &'d Node<'d>)>;

pub(super) fn expanded<'d>(level: &'d Object<'d>, aliases: Option<&'d Object<'d>>) -> Members<'d> {
    let mut m: Members<'d> = level.iter().collect();
    let Some(refs) = aliases else {
        return m;
    };
    for (key, _) in level.iter() {
        if key == ALIASES {
            continue;
        }
        let Some(Node::Object(table)) = refs.get(key) else {
            continue;
        };
        if table.is_empty() {
            continue;
        }
        let Some(val) = lookup(&m, key).and_then(Node::as_str) else {
            continue;
        };
        if val.is_empty() {
            continue;
        }
        if let Some(Node::Object(add)) = table.get(val) {
            for (k, v) in add.iter() {
                match m.iter_mut().find(|(mk, _)| *mk == k) {
                    Some(slot) => slot.1 = v,
                    None => m.push((k, v)),
                }
            }
        }
    }
    m
}

pub(super) fn lookup<'d>(m: &Members<'d>, key: &str) -> Option<&'d Node<'d>> {
    m.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}
