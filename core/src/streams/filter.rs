//! Item filters as sstream-query parses and applies them.

use fancy_regex::Regex;
use serde_json::Value;

use super::FlatItem;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct ItemFilter {
    key: String,
    negate: bool,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Eq(String),
    Re(Regex),
}

impl ItemFilter {
    pub fn parse(s: &str) -> Result<ItemFilter> {
        let re = regex::Regex::new(r"^([\w|\-]+)[ ]*(!?[=~])[ ]*(.*)[ ]*$").expect("static regex");
        let c = re
            .captures(s)
            .ok_or_else(|| Error::Usage(format!("unable to parse filter '{s}': expected KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX")))?;
        let (key, op, val) = (&c[1], &c[2], &c[3]);
        let negate = op.starts_with('!');
        let op = if op.ends_with('=') {
            Op::Eq(val.to_string())
        } else {
            Op::Re(
                Regex::new(val)
                    .map_err(|e| Error::Usage(format!("filter '{s}': bad regex: {e}")))?,
            )
        };
        Ok(ItemFilter {
            key: key.to_string(),
            negate,
            op,
        })
    }

    pub fn matches(&self, item: &FlatItem) -> bool {
        let v = item.get(&self.key).and_then(Value::as_str).unwrap_or("");
        let m = match &self.op {
            Op::Eq(x) => v == x,
            Op::Re(r) => r.is_match(v).unwrap_or(false),
        };
        m != self.negate
    }
}

pub fn parse_all(filters: &[String]) -> Result<Vec<ItemFilter>> {
    filters.iter().map(|f| ItemFilter::parse(f)).collect()
}

pub fn matches_all(filters: &[ItemFilter], item: &FlatItem) -> bool {
    filters.iter().all(|f| f.matches(item))
}
