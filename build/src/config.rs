//! meph2's YAML config (`conf/meph-v3.yaml`, `conf/meph-v2.yaml`), read as
//! meph2-build reads it, so the files Canonical keeps work unchanged.
//!
//! The kernel rows are heterogeneous lists (`[krel, arch, primary-subarch,
//! flavor, kpkg, [subarches], {khdata}]`) built with YAML anchors, so the file
//! is loaded as a YAML tree (aliases resolved) and interpreted here rather
//! than through a derived schema.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

use crate::error::{Error, Result};

/// The kernel to leave in the image itself (`builtin_kernel`): meph2 passes
/// it as `--kernel=` to the builder; none means `--kernel=none`.
#[derive(Clone, Debug, PartialEq)]
pub enum BuiltinKernel {
    None,
    All(String),
    /// Per arch, with `default` (linux-generic when absent) for the others.
    PerArch {
        arches: Vec<(String, String)>,
        default: String,
    },
}

impl BuiltinKernel {
    pub fn for_arch(&self, arch: &str) -> Option<&str> {
        match self {
            BuiltinKernel::None => None,
            BuiltinKernel::All(k) => Some(k),
            BuiltinKernel::PerArch { arches, default } => Some(
                arches
                    .iter()
                    .find(|(a, _)| a == arch)
                    .map_or(default.as_str(), |(_, k)| k.as_str()),
            ),
        }
    }
}

/// One kernel row of a release.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelRow {
    pub krel: String,
    pub arch: String,
    /// The primary subarch (`ga-24.04`, `hwe-24.04-edge`, `xgene-uboot`).
    pub subarch: String,
    pub flavor: String,
    pub kpkg: String,
    pub subarches: Vec<String>,
    /// File name suffix of the boot files (`.xgene`), empty by default.
    pub suffix: String,
    /// Device tree to ship as `boot-dtb`, when the row names one.
    pub dtb: Option<String>,
    /// Helper the builder runs on kernel and initrd (`kh-xgene`).
    pub kihelper: Option<String>,
    pub di_format: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    /// `24.04`: must be a string in the YAML (meph2 refuses floats).
    pub version: String,
    pub release: String,
    pub builtin_kernel: BuiltinKernel,
    pub kernels: Vec<KernelRow>,
}

impl Release {
    /// The arches this release has kernel rows for, in row order.
    pub fn arches(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for k in &self.kernels {
            if !v.contains(&k.arch.as_str()) {
                v.push(&k.arch);
            }
        }
        v
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it was read from, for messages.
    pub file: String,
    pub releases: Vec<Release>,
    pub squashfs: bool,
    pub root_image: bool,
    pub enable_di: bool,
    pub enable_proposed: bool,
    pub proposed_packages: String,
    pub pre_purge_packages: String,
    pub content_id: String,
    pub product_id_pre: String,
    /// Template of the kernel directory (`%(subarch)s` in v3, `%(krel)s`).
    pub kname: String,
    pub default_target: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::parse(&path.display().to_string(), &text)
    }

    pub fn parse(file: &str, text: &str) -> Result<Config> {
        let bad = |reason: String| Error::Config {
            file: file.to_string(),
            reason,
        };
        let docs = YamlLoader::load_from_str(text).map_err(|e| bad(e.to_string()))?;
        let doc = docs
            .into_iter()
            .next()
            .ok_or_else(|| bad("empty document".into()))?;
        if doc.as_hash().is_none() {
            return Err(bad("the top level is not a mapping".into()));
        }
        let req_str = |key: &str| -> Result<String> {
            scalar(&doc[key]).ok_or_else(|| bad(format!("`{key}` is missing or not a string")))
        };
        let releases = doc["releases"]
            .as_vec()
            .ok_or_else(|| bad("`releases` is missing or not a list".into()))?
            .iter()
            .enumerate()
            .map(|(i, r)| parse_release(r).map_err(|e| bad(format!("releases[{i}]: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Config {
            file: file.to_string(),
            releases,
            squashfs: flag(&doc["squashfs"]).map_err(&bad)?,
            root_image: flag(&doc["root_image"]).map_err(&bad)?,
            enable_di: flag(&doc["enable_di"]).map_err(&bad)?,
            enable_proposed: flag(&doc["enable_proposed"]).map_err(&bad)?,
            proposed_packages: scalar(&doc["proposed_packages"]).unwrap_or_default(),
            pre_purge_packages: scalar(&doc["pre_purge_packages"]).unwrap_or_default(),
            content_id: req_str("content_id")?,
            product_id_pre: req_str("product_id_pre")?,
            kname: scalar(&doc["kname"]).unwrap_or_else(|| "%(krel)s".into()),
            default_target: scalar(&doc["default_target"]),
        })
    }

    /// The release entry named `release`, or a usage error listing those
    /// the config has.
    pub fn release(&self, release: &str) -> Result<&Release> {
        let found: Vec<&Release> = self
            .releases
            .iter()
            .filter(|r| r.release == release)
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::Usage(format!(
                "release '{release}' is not in {} (it has: {})",
                self.file,
                self.releases
                    .iter()
                    .map(|r| r.release.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            _ => Err(Error::Config {
                file: self.file.clone(),
                reason: format!("several entries with release={release}"),
            }),
        }
    }
}

/// A scalar as meph2 (Python) would see it in a string context.
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(if *b { "True" } else { "False" }.into()),
        _ => None,
    }
}

/// A boolean key: absent is false; YAML 1.1 spellings (`True`) accepted, as
/// PyYAML reads them.
fn flag(y: &Yaml) -> std::result::Result<bool, String> {
    match y {
        Yaml::BadValue | Yaml::Null => Ok(false),
        Yaml::Boolean(b) => Ok(*b),
        Yaml::String(s) => match s.as_str() {
            "True" | "TRUE" | "true" | "yes" | "Yes" | "on" => Ok(true),
            "False" | "FALSE" | "false" | "no" | "No" | "off" => Ok(false),
            _ => Err(format!("'{s}' is not a boolean")),
        },
        other => Err(format!("{other:?} is not a boolean")),
    }
}

fn parse_release(r: &Yaml) -> std::result::Result<Release, String> {
    let release = scalar(&r["release"]).ok_or("`release` is missing")?;
    let version = match &r["version"] {
        Yaml::String(s) => s.clone(),
        Yaml::Real(f) => {
            return Err(format!(
                "release '{release}' has version as a float ({f}): quote it"
            ));
        }
        _ => return Err(format!("release '{release}' has no string `version`")),
    };
    let builtin_kernel = match &r["builtin_kernel"] {
        Yaml::BadValue | Yaml::Null => BuiltinKernel::None,
        Yaml::String(s) => BuiltinKernel::All(s.clone()),
        Yaml::Hash(h) => {
            let mut arches = Vec::new();
            let mut default = "linux-generic".to_string();
            for (k, v) in h {
                let (Some(k), Some(v)) = (scalar(k), scalar(v)) else {
                    return Err(format!("release '{release}': bad builtin_kernel"));
                };
                if k == "default" {
                    default = v;
                } else {
                    arches.push((k, v));
                }
            }
            BuiltinKernel::PerArch { arches, default }
        }
        _ => return Err(format!("release '{release}': bad builtin_kernel")),
    };
    let kernels = match &r["kernels"] {
        Yaml::Array(rows) => rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                parse_kernel_row(row).map_err(|e| format!("release '{release}' kernels[{i}]: {e}"))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?,
        Yaml::BadValue | Yaml::Null => Vec::new(),
        _ => return Err(format!("release '{release}': `kernels` is not a list")),
    };
    Ok(Release {
        version,
        release,
        builtin_kernel,
        kernels,
    })
}

fn parse_kernel_row(row: &Yaml) -> std::result::Result<KernelRow, String> {
    let cols = row.as_vec().ok_or("not a list")?;
    if !(6..=7).contains(&cols.len()) {
        return Err(format!("has {} fields, wants 6 or 7", cols.len()));
    }
    let s = |i: usize, name: &str| scalar(&cols[i]).ok_or(format!("{name} is not a string"));
    let subarches = cols[5]
        .as_vec()
        .ok_or("subarches is not a list")?
        .iter()
        .map(|y| scalar(y).ok_or("a subarch is not a string"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let kdata = cols.get(6).cloned().unwrap_or(Yaml::BadValue);
    if !matches!(kdata, Yaml::Hash(_) | Yaml::BadValue) {
        return Err("khdata is not a mapping".into());
    }
    Ok(KernelRow {
        krel: s(0, "krel")?,
        arch: s(1, "arch")?,
        subarch: s(2, "primary-subarch")?,
        flavor: s(3, "flavor")?,
        kpkg: s(4, "kernel package")?,
        subarches,
        suffix: scalar(&kdata["suffix"]).unwrap_or_default(),
        dtb: scalar(&kdata["dtb"]).filter(|d| !d.is_empty()),
        kihelper: scalar(&kdata["kihelper"]),
        di_format: scalar(&kdata["di-format"]).unwrap_or_else(|| "default".into()),
    })
}

/// Python's `template % subs` for `%(name)s` fields (meph2's `kname`).
pub fn expand(template: &str, subs: &[(&str, &str)]) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("%(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find(")s")
            .ok_or_else(|| Error::Usage(format!("bad template '{template}'")))?;
        let key = &after[..end];
        let value = subs
            .iter()
            .find(|(k, _)| *k == key)
            .ok_or_else(|| Error::Usage(format!("template '{template}': unknown field '{key}'")))?;
        out.push_str(value.1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
subarches:
 - &sa [generic, hwe-p]
misc:
 - &kh {suffix: .xgene, kihelper: kh-xgene, dtb: 'a.dtb'}
releases:
 - version: "24.04"
   release: noble
   builtin_kernel: {armhf: linux-highbank}
   kernels:
    - [noble, amd64, ga-24.04, generic, linux-generic, *sa]
    - [noble, arm64, xgene-uboot, generic, linux-generic, [xgene-uboot], *kh]
squashfs: True
root_image: False
content_id: c:id
product_id_pre: p:pre
kname: '%(subarch)s'
"#;

    #[test]
    fn reads_anchors_rows_and_flags() {
        let c = Config::parse("t.yaml", SAMPLE).unwrap();
        let r = c.release("noble").unwrap();
        assert_eq!(r.kernels[0].subarches, ["generic", "hwe-p"]);
        assert_eq!(r.kernels[1].suffix, ".xgene");
        assert_eq!(r.kernels[1].dtb.as_deref(), Some("a.dtb"));
        assert_eq!(r.kernels[0].di_format, "default");
        assert_eq!(r.arches(), ["amd64", "arm64"]);
        assert_eq!(r.builtin_kernel.for_arch("amd64"), Some("linux-generic"));
        assert_eq!(r.builtin_kernel.for_arch("armhf"), Some("linux-highbank"));
        assert!(c.squashfs && !c.root_image && !c.enable_di);
    }

    #[test]
    fn refuses_float_versions_and_unknown_releases() {
        let e = Config::parse("t.yaml", &SAMPLE.replace("\"24.04\"", "24.04")).unwrap_err();
        assert!(e.to_string().contains("float"), "{e}");
        let c = Config::parse("t.yaml", SAMPLE).unwrap();
        let e = c.release("plucky").unwrap_err();
        assert!(e.to_string().contains("plucky") && e.to_string().contains("noble"));
    }

    #[test]
    fn expands_python_templates() {
        let s = expand("%(subarch)s-x", &[("subarch", "ga")]).unwrap();
        assert_eq!(s, "ga-x");
        assert!(expand("%(nope)s", &[]).is_err());
    }
}
