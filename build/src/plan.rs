//! What one build makes, before anything runs: the products (named as
//! meph2-build names them), their items' paths and attributes, and the
//! builder's argv. Pure, so the naming is tested without building.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value};

use crate::config::{Config, expand};
use crate::error::{Error, Result};
use crate::ubuntu;

/// meph2's tags on every item.
const LABEL: &str = "candidate";
const OS: &str = "ubuntu";

/// What the caller asks for (meph2-build's arguments).
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub arch: &'a str,
    pub release: &'a str,
    pub version_name: &'a str,
    /// The source image, as given (path or URL): the builder's input.
    pub source: &'a str,
    /// Overrides the config's `enable_di` when set (`--enable-di`/`--disable-di`).
    pub enable_di: Option<bool>,
    /// `--image-format`, passed on as `--format=`.
    pub image_format: Option<&'a str>,
    /// `-v` flags passed to the builder.
    pub verbosity: u8,
}

/// One planned item of a product.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedItem {
    /// The item name, which is its ftype (`manifest` for either manifest).
    pub name: String,
    pub path: String,
    pub kpackage: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedProduct {
    pub name: String,
    /// Attributes every item of the product shares.
    pub attrs: Map<String, Value>,
    pub items: Vec<PlannedItem>,
}

/// One `--krd-pack`: a kernel package and where its boot files go.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelPack {
    pub kpkg: String,
    pub kernel: String,
    pub initrd: String,
    /// (dtb name, output path)
    pub dtb: Option<(String, String)>,
    pub kihelper: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub content_id: String,
    pub version_name: String,
    pub products: Vec<PlannedProduct>,
    /// Every file the builder must produce (relative to OUT).
    pub outputs: BTreeSet<String>,
    pub need_rootimg: bool,
    pub need_squashfs: bool,
    /// Where the builder writes the root image (removed when not wanted).
    pub rootimg_path: String,
    pub manifest_path: String,
    pub packs: Vec<KernelPack>,
    flags: Vec<String>,
    builtin_kernel: Option<String>,
    arch: String,
    source: String,
}

/// The product's subarch with a non-generic flavour added, before a trailing
/// `-edge` (`hwe-24.04-lowlatency-edge`).
pub fn product_subarch(psubarch: &str, flavor: &str) -> String {
    if flavor == "generic" {
        return psubarch.to_string();
    }
    let mut parts: Vec<&str> = psubarch.split('-').collect();
    if parts.last() == Some(&"edge") {
        parts.insert(parts.len() - 1, flavor);
    } else {
        parts.push(flavor);
    }
    parts.join("-")
}

pub fn plan(cfg: &Config, req: &Request<'_>) -> Result<Plan> {
    let rdata = cfg.release(req.release)?;
    let arches = rdata.arches();
    if !arches.contains(&req.arch) {
        return Err(Error::Usage(format!(
            "arch '{}' is not supported for release '{}' in {} (it has: {}); add kernel rows to support it",
            req.arch,
            req.release,
            cfg.file,
            arches.join(", ")
        )));
    }
    let enable_di = req.enable_di.unwrap_or(cfg.enable_di);
    if enable_di {
        return Err(Error::Usage(
            "d-i items (enable_di in the config, or --enable-di) are not built: they come from the \
             Ubuntu archive's installer images, which this builder does not scrape; pass --disable-di"
                .into(),
        ));
    }
    let version = rdata.version.as_str();
    let base = format!("{}/{}/{}", req.release, req.arch, req.version_name);
    let rootimg_path = format!("{base}/root-image.gz");
    let need_squashfs = cfg.squashfs;
    // trusty needs a root image in v3 too (meph2-build's rule).
    let need_rootimg = cfg.root_image || req.release == "trusty";
    if !(need_rootimg || need_squashfs) {
        return Err(Error::Config {
            file: cfg.file.clone(),
            reason: "neither squashfs nor root_image is enabled".into(),
        });
    }
    let mut outputs = BTreeSet::new();
    let mut base_items: Vec<(String, String)> = Vec::new();
    let mut manifest_path = String::new();
    if need_rootimg {
        base_items.push(("root-image.gz".into(), rootimg_path.clone()));
        manifest_path = format!("{base}/root-image.manifest");
        outputs.insert(rootimg_path.clone());
    }
    if need_squashfs {
        let p = format!("{base}/squashfs");
        base_items.push(("squashfs".into(), p.clone()));
        manifest_path = format!("{base}/squashfs.manifest");
        outputs.insert(p);
    }
    base_items.push(("manifest".into(), manifest_path.clone()));
    outputs.insert(manifest_path.clone());

    let rel_tags = ubuntu::release_info(req.release).map(|i| i.tags());
    let mut products: Vec<PlannedProduct> = Vec::new();
    let mut packs = Vec::new();
    for row in rdata.kernels.iter().filter(|k| k.arch == req.arch) {
        let psub = product_subarch(&row.subarch, &row.flavor);
        let subs = [
            ("release", req.release),
            ("arch", req.arch),
            ("version_name", req.version_name),
            ("version", version),
            ("krel", row.krel.as_str()),
            ("kpkg", row.kpkg.as_str()),
            ("flavor", row.flavor.as_str()),
            ("psubarch", psub.as_str()),
            ("subarch", row.subarch.as_str()),
            ("suffix", row.suffix.as_str()),
            ("product_id_pre", cfg.product_id_pre.as_str()),
        ];
        let kname = expand(&cfg.kname, &subs)?;
        let name = format!("{}:{version}:{}:{psub}", cfg.product_id_pre, req.arch);
        if products.iter().any(|p| p.name == name) {
            return Err(Error::Config {
                file: cfg.file.clone(),
                reason: format!("two kernel rows make product {name}"),
            });
        }
        let boot = format!("{base}/{kname}/{}", row.flavor);
        let kernel = format!("{boot}/boot-kernel{}", row.suffix);
        let initrd = format!("{boot}/boot-initrd{}", row.suffix);
        let dtb = row
            .dtb
            .as_ref()
            .map(|d| (d.clone(), format!("{boot}/boot-dtb{}", row.suffix)));

        let mut attrs = Map::new();
        for (k, v) in [
            ("subarches", row.subarches.join(",")),
            ("krel", row.krel.clone()),
            ("release", req.release.to_string()),
            ("version", version.to_string()),
            ("arch", req.arch.to_string()),
            ("subarch", row.subarch.clone()),
            ("kflavor", row.flavor.clone()),
            ("label", LABEL.to_string()),
            ("os", OS.to_string()),
        ] {
            attrs.insert(k.into(), v.into());
        }
        if let Some(tags) = &rel_tags {
            attrs.extend(tags.clone());
        }
        let boot_item = |name: &str, path: &str| PlannedItem {
            name: name.into(),
            path: path.into(),
            kpackage: Some(row.kpkg.clone()),
        };
        let mut items = vec![
            boot_item("boot-kernel", &kernel),
            boot_item("boot-initrd", &initrd),
        ];
        items.extend(base_items.iter().map(|(n, p)| PlannedItem {
            name: n.clone(),
            path: p.clone(),
            kpackage: None,
        }));
        if let Some((_, p)) = &dtb {
            items.push(boot_item("boot-dtb", p));
            outputs.insert(p.clone());
        }
        outputs.insert(kernel.clone());
        outputs.insert(initrd.clone());
        packs.push(KernelPack {
            kpkg: row.kpkg.clone(),
            kernel,
            initrd,
            dtb,
            kihelper: row.kihelper.clone(),
        });
        products.push(PlannedProduct { name, attrs, items });
    }

    let mut flags = Vec::new();
    if req.verbosity > 0 {
        flags.push(format!("-{}", "v".repeat(req.verbosity.into())));
    }
    if let Some(f) = req.image_format {
        flags.push(format!("--format={f}"));
    }
    if cfg.enable_proposed {
        flags.push("--proposed".into());
        if !cfg.proposed_packages.is_empty() {
            flags.push("--proposed-packages".into());
            flags.push(cfg.proposed_packages.clone());
        }
    }
    if !cfg.pre_purge_packages.is_empty() {
        flags.push("--pre-purge-packages".into());
        flags.push(cfg.pre_purge_packages.clone());
    }
    Ok(Plan {
        content_id: cfg.content_id.clone(),
        version_name: req.version_name.to_string(),
        products,
        outputs,
        need_rootimg,
        need_squashfs,
        rootimg_path,
        manifest_path,
        packs,
        flags,
        builtin_kernel: rdata.builtin_kernel.for_arch(req.arch).map(str::to_string),
        arch: req.arch.to_string(),
        source: req.source.to_string(),
    })
}

impl Plan {
    /// The builder's arguments (after the command), meph2-build's exactly,
    /// with every output under `out`.
    pub fn builder_args(&self, out: &Path) -> Vec<String> {
        let at = |p: &str| out.join(p).display().to_string();
        let mut a = self.flags.clone();
        if !self.need_rootimg {
            a.push("--no-gzip".into());
        }
        if !self.need_squashfs {
            a.push("--no-squashfs".into());
        }
        a.push(format!(
            "--kernel={}",
            self.builtin_kernel.as_deref().unwrap_or("none")
        ));
        a.push(format!("--arch={}", self.arch));
        a.push(format!("--manifest={}", at(&self.manifest_path)));
        a.push(self.source.clone());
        a.push(at(&self.rootimg_path));
        for p in &self.packs {
            let mut fields = vec![p.kpkg.clone(), at(&p.kernel), at(&p.initrd)];
            if let Some((name, path)) = &p.dtb {
                fields.push(format!("--dtb={name}={}", at(path)));
            }
            if let Some(h) = &p.kihelper {
                fields.push(format!("--kihelper={h}"));
            }
            a.push(format!("--krd-pack={}", fields.join(",")));
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavour_goes_before_edge() {
        assert_eq!(
            product_subarch("hwe-24.04-edge", "lowlatency"),
            "hwe-24.04-lowlatency-edge"
        );
        assert_eq!(
            product_subarch("ga-24.04", "lowlatency"),
            "ga-24.04-lowlatency"
        );
        assert_eq!(
            product_subarch("generic-lpae", "generic-lpae"),
            "generic-lpae-generic-lpae"
        );
        assert_eq!(product_subarch("hwe-t", "generic"), "hwe-t");
    }
}
