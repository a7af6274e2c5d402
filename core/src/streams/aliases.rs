//! `_aliases`: tables at a document's top level that expand into every
//! object carrying the aliased key (`simplestreams.util.expand_tree`). Its
//! own module, below both `products` (which refuses documents whose
//! expansion runs away) and `flatten` (which expands before flattening).

use serde_json::{Map, Value};

/// The top-level key whose tables expand into every dict carrying the aliased key.
pub(crate) const ALIASES: &str = "_aliases";

/// How deep alias expansion may nest: as deep as a document may be parsed
/// (serde_json's limit). Deeper means an alias that brings in itself.
const MAX_ALIAS_DEPTH: usize = 128;

/// How many objects alias expansion may visit: ten times what a stream of
/// 40,000 items holds. More means aliases that multiply at every level.
const MAX_ALIAS_OBJECTS: usize = 1_000_000;

/// Expands `_aliases` in place as `simplestreams.util.expand_tree` does: in
/// every object, a string-valued key that has an alias table gets the aliased
/// attributes merged in.
///
/// Expansion recurses into what it merged, so a hostile alias table can
/// include itself (python-simplestreams dies of a RecursionError there) or
/// double at every level; past [`MAX_ALIAS_DEPTH`] levels or
/// [`MAX_ALIAS_OBJECTS`] objects it stops with the reason, the document half
/// expanded. `Products::parse` refuses such documents, so expanding a
/// parsed `Products` always succeeds.
pub fn expand_aliases(doc: &mut Map<String, Value>) -> Result<(), String> {
    let Some(Value::Object(refs)) = doc.get(ALIASES).cloned() else {
        return Ok(());
    };
    let mut e = Expander {
        refs: &refs,
        objects: 0,
    };
    e.map(doc, 0)
}

struct Expander<'a> {
    refs: &'a Map<String, Value>,
    objects: usize,
}

impl Expander<'_> {
    fn map(&mut self, data: &mut Map<String, Value>, depth: usize) -> Result<(), String> {
        self.objects += 1;
        if depth > MAX_ALIAS_DEPTH {
            return Err(format!(
                "_aliases: expansion nests deeper than {MAX_ALIAS_DEPTH} levels (an alias that includes itself)"
            ));
        }
        if self.objects > MAX_ALIAS_OBJECTS {
            return Err(format!(
                "_aliases: expansion grows past {MAX_ALIAS_OBJECTS} objects"
            ));
        }
        let keys: Vec<String> = data.keys().cloned().collect();
        for key in &keys {
            if key == ALIASES {
                continue;
            }
            let Some(Value::Object(table)) = self.refs.get(key) else {
                continue;
            };
            if table.is_empty() {
                continue;
            }
            let Some(Value::String(val)) = data.get(key) else {
                continue;
            };
            if val.is_empty() {
                continue;
            }
            if let Some(Value::Object(add)) = table.get(val.as_str()) {
                for (k, v) in add.clone() {
                    data.insert(k, v);
                }
            }
        }
        for v in data.values_mut() {
            self.value(v, depth + 1)?;
        }
        Ok(())
    }

    fn value(&mut self, v: &mut Value, depth: usize) -> Result<(), String> {
        match v {
            Value::Object(m) => self.map(m, depth),
            Value::Array(a) => a.iter_mut().try_for_each(|x| self.value(x, depth + 1)),
            _ => Ok(()),
        }
    }
}
