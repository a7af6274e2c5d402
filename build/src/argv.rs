//! meph2's builder argv (`maas-cloudimg2eph2`'s), read once for every
//! builder that accepts it (the fake and the builtin one):
//!
//! ```text
//! -v --format=F --no-gzip --no-squashfs --kernel=K --arch=A --manifest=M
//! [--proposed] [--proposed-packages P] [--pre-purge-packages P]
//! SOURCE ROOT_IMAGE_GZ --krd-pack=PKG,KERNEL,INITRD[,--dtb=NAME=OUT][,--kihelper=H]…
//! ```

use std::path::PathBuf;

use crate::error::{Error, Result};

/// One `--krd-pack`: a kernel package and where its boot files go.
#[derive(Clone, Debug, PartialEq)]
pub struct Pack {
    pub kpkg: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// (dtb file name, output path)
    pub dtb: Option<(String, PathBuf)>,
    pub kihelper: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BuilderArgs {
    /// `--format=`: `auto` (or absent) detects the source's format.
    pub format: Option<String>,
    /// Write ROOT_IMAGE_GZ (false with `--no-gzip`).
    pub gzip: bool,
    /// Write `squashfs` next to ROOT_IMAGE_GZ (false with `--no-squashfs`).
    pub squashfs: bool,
    /// `--kernel=`: a kernel to install in the image itself; `None` for `none`.
    pub kernel: Option<String>,
    pub arch: Option<String>,
    pub manifest: Option<PathBuf>,
    pub proposed: bool,
    pub proposed_packages: Option<String>,
    pub pre_purge_packages: Option<String>,
    pub source: String,
    pub root_image_gz: PathBuf,
    pub packs: Vec<Pack>,
}

impl BuilderArgs {
    /// The squashfs output: `squashfs` in ROOT_IMAGE_GZ's directory.
    pub fn squashfs_path(&self) -> PathBuf {
        self.root_image_gz
            .parent()
            .map_or_else(|| PathBuf::from("squashfs"), |d| d.join("squashfs"))
    }
}

fn usage(who: &str, msg: String) -> Error {
    Error::Usage(format!("{who}: {msg}"))
}

fn parse_pack(who: &str, pack: &str) -> Result<Pack> {
    let mut fields = pack.split(',');
    let (Some(kpkg), Some(kernel), Some(initrd)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(usage(who, format!("bad --krd-pack={pack}")));
    };
    let mut p = Pack {
        kpkg: kpkg.to_string(),
        kernel: kernel.into(),
        initrd: initrd.into(),
        dtb: None,
        kihelper: None,
    };
    for f in fields {
        if let Some(d) = f.strip_prefix("--dtb=") {
            let (dtb, out) = d
                .split_once('=')
                .ok_or_else(|| usage(who, format!("bad --dtb in --krd-pack={pack}")))?;
            p.dtb = Some((dtb.to_string(), out.into()));
        } else if let Some(h) = f.strip_prefix("--kihelper=") {
            p.kihelper = Some(h.to_string());
        } else {
            return Err(usage(
                who,
                format!("unknown field '{f}' in --krd-pack={pack}"),
            ));
        }
    }
    Ok(p)
}

/// Parses `args` (without the program name); `who` names the builder in
/// messages.
pub fn parse(who: &str, args: &[String]) -> Result<BuilderArgs> {
    let mut a = BuilderArgs {
        format: None,
        gzip: true,
        squashfs: true,
        kernel: None,
        arch: None,
        manifest: None,
        proposed: false,
        proposed_packages: None,
        pre_purge_packages: None,
        source: String::new(),
        root_image_gz: PathBuf::new(),
        packs: Vec::new(),
    };
    let mut positional: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(who, format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--no-gzip" => a.gzip = false,
            "--no-squashfs" => a.squashfs = false,
            "--proposed" => a.proposed = true,
            "--proposed-packages" => a.proposed_packages = Some(value(arg)?),
            "--pre-purge-packages" => a.pre_purge_packages = Some(value(arg)?),
            s if s.starts_with("--format=") => a.format = Some(s["--format=".len()..].into()),
            s if s.starts_with("--kernel=") => {
                let k = &s["--kernel=".len()..];
                a.kernel = (k != "none").then(|| k.to_string());
            }
            s if s.starts_with("--arch=") => a.arch = Some(s["--arch=".len()..].into()),
            s if s.starts_with("--manifest=") => a.manifest = Some(s["--manifest=".len()..].into()),
            s if s.starts_with("--krd-pack=") => {
                a.packs.push(parse_pack(who, &s["--krd-pack=".len()..])?)
            }
            s if s.starts_with("-v") && s[1..].chars().all(|c| c == 'v') => {}
            s if s.starts_with('-') => return Err(usage(who, format!("unknown option {s}"))),
            s => positional.push(s),
        }
    }
    let [src, root_gz] = positional[..] else {
        return Err(usage(
            who,
            format!("wants SOURCE and ROOT_IMAGE_GZ, got {positional:?}"),
        ));
    };
    a.source = src.to_string();
    a.root_image_gz = root_gz.into();
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_meph2s_argv() {
        let a = parse(
            "t",
            &strs(&[
                "-v",
                "--format=squashfs-image",
                "--no-gzip",
                "--kernel=none",
                "--arch=arm64",
                "--manifest=o/squashfs.manifest",
                "--pre-purge-packages",
                "snapd lxd",
                "IMG",
                "o/root-image.gz",
                "--krd-pack=linux-generic,o/k,o/i",
                "--krd-pack=linux-xgene,o/k.x,o/i.x,--dtb=apm-mustang.dtb=o/d.x,--kihelper=kh-xgene",
            ]),
        )
        .unwrap();
        assert!(!a.gzip && a.squashfs && a.kernel.is_none());
        assert_eq!(a.arch.as_deref(), Some("arm64"));
        assert_eq!(a.pre_purge_packages.as_deref(), Some("snapd lxd"));
        assert_eq!(a.source, "IMG");
        assert_eq!(a.squashfs_path(), PathBuf::from("o/squashfs"));
        assert_eq!(a.packs.len(), 2);
        assert_eq!(
            a.packs[1].dtb,
            Some(("apm-mustang.dtb".into(), "o/d.x".into()))
        );
        assert_eq!(a.packs[1].kihelper.as_deref(), Some("kh-xgene"));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            &["IMG"][..],
            &["--bogus", "IMG", "o/r.gz"],
            &["IMG", "o/r.gz", "--krd-pack=onlypkg"],
            &["IMG", "o/r.gz", "--krd-pack=p,k,i,--dtb=nodest"],
            &["IMG", "o/r.gz", "--proposed-packages"],
        ] {
            let e = parse("t", &strs(bad)).unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{bad:?}: {e}");
        }
    }
}
