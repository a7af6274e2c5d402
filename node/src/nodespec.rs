//! Node specs as rhubarbe reads them: `1-12 fit15-reboot18 ~4-6`, `1-10-2`,
//! `1,3,5`, `~` to exclude. Arguments are applied in order to one set, so
//! `~3 1-5` keeps 3 (nothing to remove yet) while `1-5 ~3` drops it; the
//! result is sorted.
//!
//! An argument that is not a range (`fedora-23`, typically an image name
//! whose `-i` was forgotten) is an error: acting on another set of nodes
//! than the user meant would overwrite the wrong disks.

use std::collections::BTreeSet;

use crate::error::{Error, Result};

/// How nodes are named: `regularname` for the nodes (`fit01`), `rebootname`
/// for their CMC cards (`reboot01`). Both prefixes are accepted in specs.
#[derive(Clone, Debug)]
pub struct Naming {
    pub regular: String,
    pub reboot: String,
}

impl Naming {
    /// The hostname of node `n`: the prefix and at least two digits.
    pub fn node_name(&self, n: u32) -> String {
        format!("{}{n:02}", self.regular)
    }

    pub fn cmc_name(&self, n: u32) -> String {
        format!("{}{n:02}", self.reboot)
    }
}

/// A set of node numbers being built from specs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    nodes: BTreeSet<u32>,
}

impl Selection {
    /// Applies one spec argument (which may hold commas) to the set.
    pub fn apply(&mut self, naming: &Naming, arg: &str) -> Result<()> {
        let misformed = || Error::Usage(format!("Misformed node range '{arg}'"));
        let mut spec = arg.to_string();
        for prefix in [&naming.regular, &naming.reboot] {
            if !prefix.is_empty() {
                spec = spec.replace(prefix.as_str(), "");
            }
        }
        for part in spec.split(',') {
            let (adding, range) = match part.strip_prefix('~') {
                Some(rest) => (false, rest),
                None => (true, part),
            };
            let numbers = range
                .split('-')
                .map(|x| parse_number(x).ok_or_else(misformed))
                .collect::<Result<Vec<u32>>>()?;
            let (from, to, step) = match numbers[..] {
                [n] => (n, n, 1),
                [a, b] => (a, b, 1),
                [a, b, c] => (a, b, c),
                // rhubarbe ignores `a-b-c-d` rather than failing.
                _ => continue,
            };
            if step == 0 {
                return Err(misformed());
            }
            for n in (from..=to).step_by(step as usize) {
                if adding {
                    self.nodes.insert(n);
                } else {
                    self.nodes.remove(&n);
                }
            }
        }
        Ok(())
    }

    /// Builds the selection of a command line: `-a` starts from `all_scope`,
    /// then the arguments apply in order; with neither, `$NODES`
    /// (whitespace-separated specs).
    pub fn from_args(
        naming: &Naming,
        all_scope: Option<&str>,
        all: bool,
        args: &[String],
        env_nodes: Option<&str>,
    ) -> Result<Selection> {
        let mut sel = Selection::default();
        if all {
            let scope = all_scope.ok_or_else(|| {
                Error::Usage("-a needs [testbed] all_scope in the settings".into())
            })?;
            for s in scope.split_whitespace() {
                sel.apply(naming, s)?;
            }
        }
        if !all && args.is_empty() {
            let nodes = env_nodes.filter(|n| !n.trim().is_empty()).ok_or_else(|| {
                Error::Usage("no node given: name nodes, use -a, or set NODES".into())
            })?;
            for s in nodes.split_whitespace() {
                sel.apply(naming, s)?;
            }
        }
        for a in args {
            sel.apply(naming, a)?;
        }
        Ok(sel)
    }

    /// The node numbers, in increasing order.
    pub fn numbers(&self) -> Vec<u32> {
        self.nodes.iter().copied().collect()
    }

    pub fn names(&self, naming: &Naming) -> Vec<String> {
        self.nodes.iter().map(|&n| naming.node_name(n)).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// A decimal number as Python's `int()` takes it from a spec (leading
/// zeros allowed: `004`).
fn parse_number(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming {
            regular: "fit".into(),
            reboot: "reboot".into(),
        }
    }

    fn resolve(args: &[&str]) -> Result<Vec<u32>> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Ok(Selection::from_args(&naming(), None, false, &args, None)?.numbers())
    }

    #[test]
    fn excluding_before_adding_keeps_the_node() {
        assert_eq!(resolve(&["~3", "1-5"]).unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(resolve(&["1-5", "~3"]).unwrap(), vec![1, 2, 4, 5]);
    }

    #[test]
    fn an_image_name_is_refused() {
        let e = resolve(&["fedora-21"]).unwrap_err();
        assert_eq!(e.to_string(), "Misformed node range 'fedora-21'");
        assert!(resolve(&["1,"]).is_err(), "an empty part is not a node");
        assert!(resolve(&["1-5-0"]).is_err(), "a zero step never ends");
    }

    #[test]
    fn nodes_from_the_environment_only_without_arguments() {
        let n = naming();
        let s = Selection::from_args(&n, None, false, &[], Some("1 3-4")).unwrap();
        assert_eq!(s.numbers(), vec![1, 3, 4]);
        let s = Selection::from_args(&n, None, false, &["7".into()], Some("1")).unwrap();
        assert_eq!(s.numbers(), vec![7]);
        assert!(Selection::from_args(&n, None, false, &[], None).is_err());
        assert!(Selection::from_args(&n, None, true, &[], None).is_err());
    }
}
