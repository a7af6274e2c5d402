//! Path templates: how a file's path inside a stream names its product,
//! version and item when no metadata declares it.
//!
//! The language, documented in the README:
//! - a template is a `/`-separated path; `{name}` binds the attribute `name`
//!   to (part of) one component, literal text must match exactly;
//! - `{version_name}` binds the version, `{ftype}` the item's ftype (the file
//!   name, unless the stream's `ftype` table maps it, e.g.
//!   `squashfs.manifest` → `manifest`); the item is named after its ftype;
//! - templates are tried in order, the first that matches wins;
//! - `product_id` is rendered from the bound attributes plus the stream's
//!   `release` table for the bound `release`; `{a+b}` renders `a` with `b`
//!   joined meph2-build style: nothing when `b` is `generic` or absent,
//!   `-b` before a trailing `-edge` of `a`, else `-b` appended;
//! - a path that binds every attribute `product_id` needs names one product;
//!   one that binds fewer (the `squashfs` shared by every kernel of a
//!   release) belongs to every product of the stream at that version whose
//!   attributes agree with what it binds.

use std::collections::BTreeMap;

use regex::Regex;

/// One compiled path template.
#[derive(Clone, Debug)]
pub struct Template {
    source: String,
    regex: Regex,
    vars: Vec<String>,
}

#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    Var(String),
    /// `{a+b}`: `a` with the kernel flavour `b` joined meph2-build style.
    Flavored(String, String),
}

/// What a stream's templates and tables say about its paths.
#[derive(Clone, Debug)]
pub struct Layout {
    product_id: Vec<Piece>,
    product_prefix: String,
    templates: Vec<Template>,
    ftypes: BTreeMap<String, String>,
    releases: BTreeMap<String, BTreeMap<String, String>>,
}

/// A path matched against the templates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Attributes bound by the path (without `version_name` and `ftype`),
    /// plus the release table's attributes for the bound release.
    pub attrs: BTreeMap<String, String>,
    pub version: String,
    pub ftype: String,
    /// The product id when the path binds all it needs; `None` for a file
    /// shared by every matching product at its version.
    pub product: Option<String>,
}

impl Placement {
    /// Whether a product's attributes agree with what this path binds (an
    /// attribute the product lacks does not disagree): the products a shared
    /// file belongs to.
    pub fn agrees_with(&self, product: &serde_json::Map<String, serde_json::Value>) -> bool {
        self.attrs.iter().all(|(k, v)| {
            product
                .get(k)
                .and_then(|x| x.as_str())
                .is_none_or(|pv| pv == v)
        })
    }
}

impl Layout {
    pub fn new(
        product_id: &str,
        paths: &[String],
        ftypes: BTreeMap<String, String>,
        releases: BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Layout, String> {
        let product_id_pieces = parse_pieces(product_id).map_err(|e| format!("product_id: {e}"))?;
        let product_prefix = product_id.split('{').next().unwrap_or("").to_string();
        let templates = paths
            .iter()
            .map(|p| Template::new(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Layout {
            product_id: product_id_pieces,
            product_prefix,
            templates,
            ftypes,
            releases,
        })
    }

    pub fn product_prefix(&self) -> &str {
        &self.product_prefix
    }

    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// The release table's attributes for `release`.
    pub fn release_attrs(&self, release: &str) -> Option<&BTreeMap<String, String>> {
        self.releases.get(release)
    }

    /// Matches a stream-relative path; `None` when no template explains it.
    pub fn place(&self, path: &str) -> Option<Placement> {
        let mut bound = self.templates.iter().find_map(|t| t.bind(path))?;
        let version = bound.remove("version_name")?;
        let file = path.rsplit('/').next().unwrap_or(path);
        let ftype = match bound.remove("ftype") {
            Some(f) => self.ftypes.get(&f).cloned().unwrap_or(f),
            None => self
                .ftypes
                .get(file)
                .cloned()
                .unwrap_or_else(|| file.to_string()),
        };
        let mut attrs = BTreeMap::new();
        if let Some(rel) = bound.get("release").and_then(|r| self.releases.get(r)) {
            attrs.extend(rel.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        attrs.extend(bound);
        let product = self.render_product_id(&attrs);
        Some(Placement {
            attrs,
            version,
            ftype,
            product,
        })
    }

    /// Renders `product_id`; `None` when an attribute it needs is missing
    /// (`{a+b}` needs only `a`).
    pub fn render_product_id(&self, attrs: &BTreeMap<String, String>) -> Option<String> {
        let mut out = String::new();
        for p in &self.product_id {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => out.push_str(attrs.get(v)?),
                Piece::Flavored(a, b) => {
                    let a = attrs.get(a)?;
                    out.push_str(&flavored(a, attrs.get(b).map(String::as_str)));
                }
            }
        }
        Some(out)
    }

    /// The number of components of the deepest version directory the
    /// templates name (3 for `{release}/{arch}/{version_name}/…`): a
    /// directory no deeper holds whole versions.
    pub fn version_depth(&self) -> usize {
        self.templates
            .iter()
            .filter_map(|t| {
                t.source
                    .split('/')
                    .position(|c| c.contains("{version_name}"))
            })
            .map(|i| i + 1)
            .max()
            .unwrap_or(0)
    }

    /// Whether the directory `dir` (stream-relative, possibly empty) could
    /// hold files some template explains: every component matches the
    /// corresponding component of at least one template.
    pub fn allows_dir(&self, dir: &str) -> bool {
        let comps: Vec<&str> = if dir.is_empty() {
            vec![]
        } else {
            dir.split('/').collect()
        };
        self.templates.iter().any(|t| t.allows_prefix(&comps))
    }
}

/// meph2-build's naming of a kernel subarch with its flavour.
pub fn flavored(subarch: &str, flavor: Option<&str>) -> String {
    match flavor {
        None | Some("") | Some("generic") => subarch.to_string(),
        Some(f) => match subarch.strip_suffix("-edge") {
            Some(base) => format!("{base}-{f}-edge"),
            None => format!("{subarch}-{f}"),
        },
    }
}

fn parse_pieces(s: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push(Piece::Text(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in '{s}'"))?
            + open;
        let name = &rest[open + 1..close];
        let valid =
            |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match name.split_once('+') {
            Some((a, b)) if valid(a) && valid(b) => out.push(Piece::Flavored(a.into(), b.into())),
            None if valid(name) => out.push(Piece::Var(name.into())),
            _ => return Err(format!("bad placeholder '{{{name}}}' in '{s}'")),
        }
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched '}}' in '{s}'"));
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

impl Template {
    pub fn new(source: &str) -> Result<Template, String> {
        let mut re = String::from("^");
        let mut vars = Vec::new();
        let mut comp_res = Vec::new();
        for (i, comp) in source.split('/').enumerate() {
            if comp.is_empty() || comp == "." || comp == ".." {
                return Err(format!("path template '{source}': bad component {}", i + 1));
            }
            let mut cre = String::new();
            for p in parse_pieces(comp).map_err(|e| format!("path template: {e}"))? {
                match p {
                    Piece::Text(t) => cre.push_str(&regex::escape(&t)),
                    Piece::Var(v) => {
                        if vars.contains(&v) {
                            return Err(format!(
                                "path template '{source}': '{{{v}}}' appears twice"
                            ));
                        }
                        cre.push_str(&format!("(?P<{v}>[^/]+)"));
                        vars.push(v);
                    }
                    Piece::Flavored(..) => {
                        return Err(format!(
                            "path template '{source}': '{{a+b}}' is for product_id only"
                        ));
                    }
                }
            }
            comp_res.push(cre);
        }
        if !vars.iter().any(|v| v == "version_name") {
            return Err(format!(
                "path template '{source}' must bind {{version_name}}"
            ));
        }
        re.push_str(&comp_res.join("/"));
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| format!("path template '{source}': {e}"))?;
        Ok(Template {
            source: source.to_string(),
            regex,
            vars,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    fn bind(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let caps = self.regex.captures(path)?;
        Some(
            self.vars
                .iter()
                .map(|v| (v.clone(), caps[v.as_str()].to_string()))
                .collect(),
        )
    }

    /// Whether `comps` could be the leading directories of a matching path.
    fn allows_prefix(&self, comps: &[&str]) -> bool {
        let tcomps: Vec<&str> = self.source.split('/').collect();
        if comps.len() >= tcomps.len() {
            return false;
        }
        comps.iter().zip(&tcomps).all(|(c, t)| {
            let Ok(pieces) = parse_pieces(t) else {
                return false;
            };
            let mut re = String::from("^");
            for p in pieces {
                match p {
                    Piece::Text(x) => re.push_str(&regex::escape(&x)),
                    _ => re.push_str("[^/]+"),
                }
            }
            re.push('$');
            Regex::new(&re).is_ok_and(|r| r.is_match(c))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::config::{Config, DEFAULT_CONFIG};

    fn daily() -> Layout {
        Config::parse("default", DEFAULT_CONFIG)
            .unwrap()
            .stream("daily")
            .unwrap()
            .layout
            .clone()
    }

    #[test]
    fn kernels_of_different_flavours_land_in_the_products_meph2_build_names() {
        let l = daily();
        let generic = l
            .place("noble/amd64/20250101/ga-24.04/generic/boot-kernel")
            .unwrap();
        let low = l
            .place("noble/amd64/20250101/ga-24.04/lowlatency/boot-kernel")
            .unwrap();
        let edge = l
            .place("noble/amd64/20250101/hwe-24.04-edge/lowlatency/boot-initrd")
            .unwrap();
        assert_eq!(
            generic.product.as_deref(),
            Some("com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04")
        );
        assert_eq!(
            low.product.as_deref(),
            Some("com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04-lowlatency")
        );
        assert_eq!(
            edge.product.as_deref(),
            Some("com.ubuntu.maas.daily:v3:boot:24.04:amd64:hwe-24.04-lowlatency-edge")
        );
        assert_eq!(low.version, "20250101");
        assert_eq!(low.ftype, "boot-kernel");
        assert_eq!(low.attrs["release_title"], "24.04 LTS");
    }

    #[test]
    fn the_shared_squashfs_binds_no_product_and_the_manifest_is_a_manifest() {
        let l = daily();
        let sq = l.place("noble/amd64/20250101/squashfs").unwrap();
        assert_eq!(sq.product, None);
        assert_eq!(sq.ftype, "squashfs");
        assert_eq!(sq.attrs["arch"], "amd64");
        assert_eq!(
            l.place("noble/amd64/20250101/squashfs.manifest")
                .unwrap()
                .ftype,
            "manifest"
        );
    }

    #[test]
    fn paths_no_template_explains_are_not_placed() {
        let l = daily();
        assert!(l.place("noble/amd64").is_none());
        assert!(l.place("noble/amd64/2025/a/b/c/d").is_none());
        assert_eq!(l.version_depth(), 3);
        assert!(l.allows_dir("noble/amd64/20250101/ga-24.04"));
        assert!(!l.allows_dir("noble/amd64/20250101/ga-24.04/generic/x"));
    }

    #[test]
    fn flavour_naming_matches_meph2_build() {
        assert_eq!(flavored("ga-24.04", Some("generic")), "ga-24.04");
        assert_eq!(
            flavored("generic-lpae", Some("generic-lpae")),
            "generic-lpae-generic-lpae"
        );
        assert_eq!(
            flavored("hwe-24.04-edge", Some("lowlatency")),
            "hwe-24.04-lowlatency-edge"
        );
    }
}
