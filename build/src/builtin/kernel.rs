//! One `--krd-pack`: the kernel package installed into a throwaway chroot
//! over the unpacked root (the shipped squashfs never sees it), with apt
//! using the root's own sources; the kernel (`/boot/vmlinuz-*`, the signed
//! one when there is one), its initrd (made with `update-initramfs` when
//! the package did not make one) and the configured dtb are copied out.

use std::path::{Path, PathBuf};

use super::chroot::Chroot;
use super::log::Log;
use crate::argv::Pack;
use crate::error::Result;

/// Where downloaded packages and package lists are kept between builds
/// (`DIR/archives` bound over the chroot's `/var/cache/apt/archives`,
/// `DIR/lists` over `/var/lib/apt/lists`), when set.
pub struct KernelOptions<'a> {
    pub apt_cache: Option<&'a Path>,
}

pub fn step_name(pack: &Pack) -> String {
    format!("kernel:{}", pack.kpkg)
}

/// The kernel version and file in `boot`: `vmlinuz-VER.efi.signed` when
/// present, else the newest `vmlinuz-VER`.
fn find_kernel(boot: &Path) -> Option<(String, PathBuf)> {
    let mut plain = Vec::new();
    let mut signed = Vec::new();
    for e in std::fs::read_dir(boot).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(ver) = name.strip_prefix("vmlinuz-") else {
            continue;
        };
        match ver.strip_suffix(".efi.signed") {
            Some(v) => signed.push((v.to_string(), e.path())),
            None => plain.push((ver.to_string(), e.path())),
        }
    }
    let newest = |mut v: Vec<(String, PathBuf)>| {
        v.sort_by(|a, b| version_cmp(&a.0, &b.0));
        v.pop()
    };
    newest(signed).or_else(|| newest(plain))
}

/// Orders kernel versions (`6.1.0-9-amd64` < `6.1.0-10-amd64`) by their
/// numeric runs.
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<(u64, String)> {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .map(|p| (p.parse().unwrap_or(0), p.to_string()))
            .collect()
    };
    key(a).cmp(&key(b))
}

/// A file named `name` under any of `dirs` (searched recursively).
fn find_file(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    fn walk(d: &Path, name: &str) -> Option<PathBuf> {
        for e in std::fs::read_dir(d).ok()?.flatten() {
            let p = e.path();
            let ft = e.file_type().ok()?;
            if ft.is_dir() {
                if let Some(f) = walk(&p, name) {
                    return Some(f);
                }
            } else if e.file_name() == name {
                return Some(p);
            }
        }
        None
    }
    dirs.iter().find_map(|d| walk(d, name))
}

fn copy_out(from: &Path, to: &Path, log: &mut Log, step: &str) -> Result<()> {
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d).map_err(|e| log.fail(step, format!("{}: {e}", d.display())))?;
    }
    std::fs::copy(from, to).map(|_| ()).map_err(|e| {
        log.fail(
            step,
            format!("copying {} to {}: {e}", from.display(), to.display()),
        )
    })
}

pub fn kernel(
    root: &Path,
    scratch: &Path,
    pack: &Pack,
    opts: &KernelOptions<'_>,
    log: &mut Log,
) -> Result<()> {
    let step = step_name(pack);
    let step = step.as_str();
    let mut chroot = Chroot::new(root, scratch, log, step)?;
    if let Some(cache) = opts.apt_cache {
        for (sub, inside) in [
            ("archives", "/var/cache/apt/archives"),
            ("lists", "/var/lib/apt/lists"),
        ] {
            let host = cache.join(sub);
            std::fs::create_dir_all(host.join("partial"))
                .map_err(|e| log.fail(step, format!("{}: {e}", host.display())))?;
            chroot.bind(&host, inside, log, step)?;
        }
    }
    chroot.run(log, step, &["apt-get", "-q", "update"])?;
    chroot.run(
        log,
        step,
        &[
            "apt-get",
            "-q",
            "-y",
            "--no-install-recommends",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "install",
            &pack.kpkg,
        ],
    )?;
    let boot = chroot.dir().join("boot");
    let (ver, vmlinuz) = find_kernel(&boot).ok_or_else(|| {
        log.fail(
            step,
            format!(
                "installing {} put no /boot/vmlinuz-* in the root",
                pack.kpkg
            ),
        )
    })?;
    log.line(&format!("# kernel {ver}: {}", vmlinuz.display()));
    let initrd = boot.join(format!("initrd.img-{ver}"));
    if !initrd.is_file() {
        chroot.run(log, step, &["update-initramfs", "-c", "-k", &ver])?;
    }
    if !initrd.is_file() {
        return Err(log.fail(
            step,
            format!("update-initramfs made no /boot/initrd.img-{ver}"),
        ));
    }
    copy_out(&vmlinuz, &pack.kernel, log, step)?;
    copy_out(&initrd, &pack.initrd, log, step)?;
    if let Some((name, out)) = &pack.dtb {
        let d = chroot.dir();
        let dirs = [
            d.join(format!("lib/firmware/{ver}/device-tree")),
            d.join(format!("usr/lib/firmware/{ver}/device-tree")),
            d.join(format!("usr/lib/linux-image-{ver}")),
            d.join(format!("boot/dtbs/{ver}")),
        ];
        let dtb = find_file(&dirs, name).ok_or_else(|| {
            log.fail(
                step,
                format!("{} has no device tree {name} (looked in /lib/firmware/{ver}/device-tree, /usr/lib/linux-image-{ver}, /boot/dtbs/{ver})", pack.kpkg),
            )
        })?;
        copy_out(&dtb, out, log, step)?;
    }
    drop(chroot);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_signed_then_the_newest_kernel() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-10-amd64",
            "config-6.1.0-10-amd64",
        ] {
            std::fs::write(d.path().join(f), b"").unwrap();
        }
        assert_eq!(find_kernel(d.path()).unwrap().0, "6.1.0-10-amd64");
        std::fs::write(d.path().join("vmlinuz-6.1.0-9-amd64.efi.signed"), b"").unwrap();
        let (v, p) = find_kernel(d.path()).unwrap();
        assert_eq!(v, "6.1.0-9-amd64");
        assert!(p.ends_with("vmlinuz-6.1.0-9-amd64.efi.signed"));
        assert!(find_kernel(&d.path().join("none")).is_none());
    }
}
