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
    Expander {
        refs: &refs,
        budget: Budget::default(),
    }
    .map(doc, 0)
}

/// Whether [`expand_aliases`] would succeed on `doc`, found by walking what
/// it would build without building it: validating a large document costs
/// no copy of it.
pub fn check_aliases(doc: &Map<String, Value>) -> Result<(), String> {
    let Some(Value::Object(refs)) = doc.get(ALIASES) else {
        return Ok(());
    };
    Checker {
        refs,
        budget: Budget::default(),
    }
    .map(doc, 0)
}

/// The limits of an expansion, counted as it visits objects.
#[derive(Default)]
struct Budget {
    objects: usize,
}

impl Budget {
    fn visit(&mut self, depth: usize) -> Result<(), String> {
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
        Ok(())
    }
}

/// The attributes the alias tables `refs` merge into an object for its
/// `key` holding `val`.
fn merged<'r>(
    refs: &'r Map<String, Value>,
    key: &str,
    val: Option<&Value>,
) -> Option<&'r Map<String, Value>> {
    if key == ALIASES {
        return None;
    }
    let Some(Value::Object(table)) = refs.get(key) else {
        return None;
    };
    match val {
        Some(Value::String(v)) if !v.is_empty() && !table.is_empty() => {
            table.get(v.as_str()).and_then(Value::as_object)
        }
        _ => None,
    }
}

struct Expander<'a> {
    refs: &'a Map<String, Value>,
    budget: Budget,
}

impl Expander<'_> {
    fn map(&mut self, data: &mut Map<String, Value>, depth: usize) -> Result<(), String> {
        self.budget.visit(depth)?;
        let keys: Vec<String> = data.keys().cloned().collect();
        for key in &keys {
            if let Some(add) = merged(self.refs, key, data.get(key)) {
                for (k, v) in add {
                    data.insert(k.clone(), v.clone());
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

/// [`Expander`] without the writes: the attributes merged into an object
/// are kept as references beside its own, in the expander's order (a merge
/// that replaces a later key's value is what that key is looked up with).
struct Checker<'a> {
    refs: &'a Map<String, Value>,
    budget: Budget,
}

impl<'a> Checker<'a> {
    fn map(&mut self, data: &'a Map<String, Value>, depth: usize) -> Result<(), String> {
        self.budget.visit(depth)?;
        // Merged attributes, latest last.
        let mut added: Vec<(&'a str, &'a Value)> = Vec::new();
        for key in data.keys() {
            let current = added
                .iter()
                .rev()
                .find(|(k, _)| *k == key.as_str())
                .map(|(_, v)| *v)
                .or_else(|| data.get(key));
            if let Some(add) = merged(self.refs, key, current) {
                added.extend(add.iter().map(|(k, v)| (k.as_str(), v)));
            }
        }
        // The expanded object's values: the latest merge of a key, else its own.
        let mut replaced = std::collections::BTreeSet::new();
        for (k, v) in added.iter().rev() {
            if replaced.insert(*k) {
                self.value(v, depth + 1)?;
            }
        }
        for (k, v) in data {
            if !replaced.contains(k.as_str()) {
                self.value(v, depth + 1)?;
            }
        }
        Ok(())
    }

    fn value(&mut self, v: &'a Value, depth: usize) -> Result<(), String> {
        match v {
            Value::Object(m) => self.map(m, depth),
            Value::Array(a) => a.iter().try_for_each(|x| self.value(x, depth + 1)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// Small objects over a few keys, whose string values the alias tables
    /// may name, so merges chain, replace each other and recurse.
    fn object(depth: u32) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![Just(json!("x")), Just(json!("y")), Just(json!(""))];
        leaf.prop_recursive(depth, 24, 3, |inner| {
            prop::collection::btree_map(
                prop_oneof![
                    Just("a".to_string()),
                    Just("b".to_string()),
                    Just("c".to_string())
                ],
                inner,
                0..3,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    fn doc() -> impl Strategy<Value = Map<String, Value>> {
        let table = prop::collection::btree_map(
            prop_oneof![Just("x".to_string()), Just("y".to_string())],
            object(2),
            0..2,
        );
        (
            prop::collection::btree_map(
                prop_oneof![Just("a".to_string()), Just("b".to_string())],
                table,
                0..2,
            ),
            object(3),
        )
            .prop_map(|(refs, body)| {
                let mut d = match body {
                    Value::Object(m) => m,
                    other => Map::from_iter([("c".to_string(), other)]),
                };
                d.insert(ALIASES.into(), serde_json::to_value(refs).expect("a map"));
                d
            })
    }

    proptest! {
        // About 1 in 60 cases runs away (an alias that includes itself).
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Validation without a copy accepts exactly what expansion can do.
        #[test]
        fn checking_agrees_with_expanding(d in doc()) {
            let checked = check_aliases(&d);
            let expanded = expand_aliases(&mut d.clone());
            prop_assert_eq!(checked.is_ok(), expanded.is_ok(), "{:?} vs {:?}", checked, expanded);
        }
    }

    #[test]
    fn an_alias_that_includes_itself_is_refused_by_both() {
        let mut d = json!({
            "_aliases": {"a": {"x": {"k": {"a": "x"}}}},
            "a": "x"
        })
        .as_object()
        .cloned()
        .unwrap();
        let e = check_aliases(&d).unwrap_err();
        assert!(e.contains("nests deeper"), "{e}");
        assert!(expand_aliases(&mut d).is_err());
    }
}
