//! What `cloudimg-sync` builds, decided before anything is downloaded or
//! built (pure, so the choice is tested without a builder), after
//! meph2-cloudimg-sync:
//!
//! - The source is a cloud-images products file (`com.ubuntu.cloud:candidate`
//!   or `:daily` download). Its products are kept when their release is in
//!   the config and still supported (standard or ESM support, by
//!   distro-info's dates), their arch has kernel rows in that release and is
//!   one of the requested arches; a version is usable when it has a
//!   `squashfs` item (a `tar.gz` one only when it has no squashfs), and
//!   the filters accept that item.
//! - The target is a MAAS stream. Its versions count per (release version,
//!   arch), from the products whose `krel` is their `release` (the primary
//!   kernel's), as meph2 reads them. meph2 matched those by a product name it
//!   rewrote from the target's; matching by (version, arch) says the same for
//!   a candidate source and also works for a daily one.
//! - Of each source product, the `max` newest usable serials are wanted; the
//!   ones the target lacks are built, newest first. `--rebuild A:B` makes
//!   serial A count as absent and builds it as version B.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use streamfs_core::ops::expanded;
use streamfs_core::streams::Products;
use streamfs_core::streams::filter::{ItemFilter, all_match};
use streamfs_core::streams::flatten::{FlatItem, flatten_expanded};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ubuntu;

/// The cloud-images content ids meph2-cloudimg-sync accepts as a source.
pub const SOURCE_CONTENT_IDS: [&str; 2] = [
    "com.ubuntu.cloud:candidate:download",
    "com.ubuntu.cloud:daily:download",
];

/// What is asked beyond the config and the two documents.
pub struct Options<'a> {
    /// Arches to build (meph2's `--arches`, by default those the host can
    /// build for).
    pub arches: &'a [String],
    pub filters: &'a [ItemFilter],
    /// Source serial -> version name to build it as.
    pub rebuilds: &'a BTreeMap<String, String>,
    /// The newest serials considered per source product.
    pub max: usize,
    /// Today as `YYYY-MM-DD`, for support dates.
    pub today: &'a str,
}

/// One build to run: a source image and the version it becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub release: String,
    pub arch: String,
    /// The cloud image's serial in the source.
    pub serial: String,
    /// The version name in the target (the serial, or its `--rebuild` name).
    pub version_name: String,
    /// The source item: its path under the source's mirror root, ftype
    /// (`squashfs` or `tar.gz`) and checksums.
    pub path: String,
    pub ftype: String,
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

impl Wanted {
    /// `--image-format` for the builder, from the source item's ftype.
    pub fn image_format(&self) -> &'static str {
        if self.ftype == "squashfs" {
            "squashfs-image"
        } else {
            "img-tar"
        }
    }
}

#[derive(Debug, Default)]
pub struct SyncPlan {
    /// Newest first within each source product, products in source order.
    pub wanted: Vec<Wanted>,
    /// Source products left out, and why (one line each).
    pub skipped: Vec<String>,
}

/// Why `release` is not built any more, or None while it is supported
/// (standard or ESM support by distro-info's dates, as meph2's
/// `SUPPORTED`/`SUPPORTED_ESM`).
fn unsupported(release: &str, today: &str) -> Option<String> {
    match ubuntu::release_info(release) {
        Some(info) if info.support_esm_eol.as_str() >= today => None,
        Some(info) => Some(format!(
            "release '{release}' is no longer supported (ended {})",
            info.support_esm_eol
        )),
        None => Some(format!(
            "release '{release}' is unknown to distro-info, so not supported"
        )),
    }
}

/// The target's versions per (release version, arch), from its primary
/// kernel's products.
fn target_versions(target: &Products) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for item in flatten_expanded(&expanded(target)) {
        let get = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default();
        if get("krel") != get("release") || get("krel").is_empty() {
            continue;
        }
        out.entry((get("version").to_string(), get("arch").to_string()))
            .or_default()
            .insert(get("version_name").to_string());
    }
    out
}

fn field<'a>(item: &'a FlatItem, key: &str) -> &'a str {
    item.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Decides what to build; see the module documentation.
pub fn plan(
    cfg: &Config,
    source: &Products,
    target: &Products,
    o: &Options<'_>,
) -> Result<SyncPlan> {
    let cid = source.content_id();
    if !SOURCE_CONTENT_IDS.contains(&cid) {
        return Err(Error::Usage(format!(
            "the source's content id is '{cid}': cloudimg-sync reads cloud images ({})",
            SOURCE_CONTENT_IDS.join(" or ")
        )));
    }
    let mut out = SyncPlan::default();
    let have = target_versions(target);
    // Source items per product, then per serial: (item, flattened).
    let mut by_product: BTreeMap<String, BTreeMap<String, Vec<FlatItem>>> = BTreeMap::new();
    let mut order = Vec::new();
    for item in flatten_expanded(&expanded(source)) {
        let product = field(&item, "product_name").to_string();
        if !by_product.contains_key(&product) {
            order.push(product.clone());
        }
        by_product
            .entry(product)
            .or_default()
            .entry(field(&item, "version_name").to_string())
            .or_default()
            .push(item);
    }
    for product in order {
        let versions = &by_product[&product];
        let Some(first) = versions.values().flat_map(|v| v.first()).next() else {
            continue;
        };
        let (release, arch) = (field(first, "release"), field(first, "arch"));
        let Ok(rel) = cfg.release(release) else {
            out.skipped.push(format!(
                "{product}: release '{release}' is not in the config"
            ));
            continue;
        };
        if let Some(why) = unsupported(release, o.today) {
            out.skipped.push(format!("{product}: {why}"));
            continue;
        }
        if !rel.arches().contains(&arch) {
            out.skipped.push(format!(
                "{product}: the config has no {release} kernels for arch '{arch}'"
            ));
            continue;
        }
        if !o.arches.iter().any(|a| a == arch) {
            out.skipped
                .push(format!("{product}: arch '{arch}' not requested (--arches)"));
            continue;
        }
        let mut usable = Vec::new();
        for (serial, items) in versions {
            let has_squashfs = items.iter().any(|i| field(i, "ftype") == "squashfs");
            let pick = items.iter().find(|i| match field(i, "ftype") {
                "squashfs" => true,
                "tar.gz" => !has_squashfs,
                _ => false,
            });
            if let Some(item) = pick
                && all_match(o.filters, item)?
            {
                usable.push((serial.clone(), item));
            }
        }
        // Serials are dates (YYYYMMDD[.N]): newest last in string order.
        usable.sort_by(|a, b| b.0.cmp(&a.0));
        let key = (rel.version.clone(), arch.to_string());
        let present = have.get(&key);
        for (serial, item) in usable.into_iter().take(o.max) {
            let rebuilt = o.rebuilds.get(&serial);
            if rebuilt.is_none() && present.is_some_and(|p| p.contains(&serial)) {
                continue;
            }
            out.wanted.push(Wanted {
                release: release.to_string(),
                arch: arch.to_string(),
                version_name: rebuilt.cloned().unwrap_or_else(|| serial.clone()),
                serial,
                path: field(item, "path").to_string(),
                ftype: field(item, "ftype").to_string(),
                sha256: item
                    .get("sha256")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                size: field(item, "size").parse().ok(),
            });
        }
    }
    Ok(out)
}

/// `--rebuild A:B` values as a map, refusing what is not `SERIAL:VERSION`.
pub fn parse_rebuilds<S: AsRef<str>>(args: &[S]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in args {
        let a = a.as_ref();
        match a.split_once(':') {
            Some((from, to)) if !from.is_empty() && !to.is_empty() && !to.contains(':') => {
                out.insert(from.to_string(), to.to_string());
            }
            _ => {
                return Err(Error::Usage(format!(
                    "--rebuild '{a}': expected SERIAL:VERSION, e.g. 20250105:20250105.1"
                )));
            }
        }
    }
    Ok(out)
}

/// meph2's default arches for the host's kernel arch (`uname -m`).
pub fn default_arches(machine: &str) -> Option<&'static [&'static str]> {
    Some(match machine {
        "i386" | "i586" | "i686" => &["i386"],
        "x86_64" => &["i386", "amd64", "armhf", "arm64"],
        "ppc64le" => &["ppc64el"],
        "armhf" => &["armhf"],
        "aarch64" => &["arm64", "armhf"],
        "s390x" => &["s390x"],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
releases:
  - release: noble
    version: "24.04"
    kernels:
      - [noble, amd64, ga-24.04, generic, linux-generic, [generic]]
      - [noble, arm64, ga-24.04, generic, linux-generic, [generic]]
  - release: precise
    version: "12.04"
    kernels:
      - [precise, amd64, generic, generic, linux-generic, [generic]]
content_id: com.ubuntu.maas:candidate:v3:download
product_id_pre: com.ubuntu.maas.candidate:v3:boot
squashfs: true
kname: ga-24.04
"#;

    fn source() -> Products {
        let item = |serial: &str, ftype: &str| {
            serde_json::json!({"ftype": ftype, "path": format!("server/noble/{serial}.{ftype}"),
                               "sha256": "a".repeat(64), "size": 18})
        };
        let doc = serde_json::json!({
            "format": "products:1.0",
            "content_id": "com.ubuntu.cloud:candidate:download",
            "datatype": "image-downloads",
            "products": {
                "com.ubuntu.cloud.candidate:server:24.04:amd64": {
                    "arch": "amd64", "release": "noble", "version": "24.04",
                    "versions": {
                        "20250103": {"items": {"squashfs": item("20250103", "squashfs")}},
                        "20250105": {"items": {"squashfs": item("20250105", "squashfs"),
                                               "root.tar.gz": item("20250105", "tar.gz")}},
                        "20250107": {"items": {"root.tar.gz": item("20250107", "tar.gz")}},
                    }
                },
                "com.ubuntu.cloud.candidate:server:24.04:arm64": {
                    "arch": "arm64", "release": "noble", "version": "24.04",
                    "versions": {"20250105": {"items": {"squashfs": item("20250105", "squashfs")}}}
                },
                "com.ubuntu.cloud.candidate:server:12.04:amd64": {
                    "arch": "amd64", "release": "precise", "version": "12.04",
                    "versions": {"20170502": {"items": {"squashfs": item("20170502", "squashfs")}}}
                }
            }
        });
        Products::parse("source.json", doc.to_string().as_bytes()).unwrap()
    }

    fn target(versions: &[&str]) -> Products {
        let mut v = serde_json::Map::new();
        for name in versions {
            v.insert(
                (*name).into(),
                serde_json::json!({"items": {"squashfs": {"ftype": "squashfs",
                    "path": format!("noble/amd64/{name}/squashfs"), "sha256": "b".repeat(64), "size": 1}}}),
            );
        }
        let doc = serde_json::json!({
            "format": "products:1.0",
            "content_id": "com.ubuntu.maas:candidate:v3:download",
            "datatype": "image-downloads",
            "products": {
                "com.ubuntu.maas.candidate:v3:boot:24.04:amd64:ga-24.04": {
                    "arch": "amd64", "release": "noble", "krel": "noble", "version": "24.04",
                    "versions": v
                },
                // Not the primary kernel: its versions do not count.
                "com.ubuntu.maas.candidate:v3:boot:24.04:amd64:hwe-24.04": {
                    "arch": "amd64", "release": "noble", "krel": "oracular", "version": "24.04",
                    "versions": {"20250109": {"items": {"x": {"ftype": "squashfs",
                        "path": "noble/amd64/20250109/squashfs", "sha256": "b".repeat(64), "size": 1}}}}
                }
            }
        });
        Products::parse("target.json", doc.to_string().as_bytes()).unwrap()
    }

    fn run(target: &Products, max: usize, rebuild: &[&str], arches: &[&str]) -> SyncPlan {
        let cfg = Config::parse("meph.yaml", CONFIG).unwrap();
        let arches: Vec<String> = arches.iter().map(|s| s.to_string()).collect();
        let rebuilds = parse_rebuilds(rebuild).unwrap();
        plan(
            &cfg,
            &source(),
            target,
            &Options {
                arches: &arches,
                filters: &[],
                rebuilds: &rebuilds,
                max,
                today: "2026-12-03",
            },
        )
        .unwrap()
    }

    fn names(p: &SyncPlan) -> Vec<(String, String, String)> {
        p.wanted
            .iter()
            .map(|w| (w.arch.clone(), w.serial.clone(), w.version_name.clone()))
            .collect()
    }

    fn w(arch: &str, serial: &str, version: &str) -> (String, String, String) {
        (arch.into(), serial.into(), version.into())
    }

    #[test]
    fn builds_the_newest_serial_the_target_lacks() {
        let p = run(&target(&["20250103"]), 1, &[], &["amd64"]);
        assert_eq!(names(&p), [w("amd64", "20250107", "20250107")]);
        // A tar.gz only where the version has no squashfs.
        assert_eq!(p.wanted[0].ftype, "tar.gz");
        assert_eq!(p.wanted[0].image_format(), "img-tar");
        assert!(
            p.skipped.iter().any(|s| s.contains("arm64")),
            "{:?}",
            p.skipped
        );
        assert!(
            p.skipped
                .iter()
                .any(|s| s.contains("'precise' is no longer supported")),
            "{:?}",
            p.skipped
        );
    }

    #[test]
    fn up_to_date_builds_nothing_and_max_reaches_older_serials() {
        assert!(
            run(&target(&["20250107"]), 1, &[], &["amd64"])
                .wanted
                .is_empty()
        );
        let p = run(&target(&["20250107"]), 3, &[], &["amd64", "arm64"]);
        assert_eq!(
            names(&p),
            [
                w("amd64", "20250105", "20250105"),
                w("amd64", "20250103", "20250103"),
                w("arm64", "20250105", "20250105"),
            ]
        );
        assert_eq!(p.wanted[0].ftype, "squashfs");
    }

    #[test]
    fn rebuild_builds_a_present_serial_under_its_new_name() {
        let p = run(
            &target(&["20250107"]),
            1,
            &["20250107:20250107.1"],
            &["amd64"],
        );
        assert_eq!(names(&p), [w("amd64", "20250107", "20250107.1")]);
    }

    #[test]
    fn an_empty_target_wants_the_newest_of_each_product() {
        let empty = Products::new("com.ubuntu.maas:candidate:v3:download", "image-downloads");
        let p = run(&empty, 1, &[], &["amd64", "arm64"]);
        assert_eq!(
            names(&p),
            [
                w("amd64", "20250107", "20250107"),
                w("arm64", "20250105", "20250105")
            ]
        );
    }

    #[test]
    fn bad_rebuilds_and_foreign_sources_are_usage_errors() {
        for bad in ["20250101", ":x", "a:", "a:b:c"] {
            assert!(
                matches!(parse_rebuilds(&[bad]), Err(Error::Usage(_))),
                "{bad}"
            );
        }
        let cfg = Config::parse("meph.yaml", CONFIG).unwrap();
        let other = Products::new("com.ubuntu.maas:candidate:v3:download", "image-downloads");
        let e = plan(
            &cfg,
            &other,
            &other,
            &Options {
                arches: &[],
                filters: &[],
                rebuilds: &BTreeMap::new(),
                max: 1,
                today: "2026-12-03",
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("cloudimg-sync reads cloud images"),
            "{e}"
        );
    }
}
