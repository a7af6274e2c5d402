//! The builtin builder: meph2's builder argv (`maas-cloudimg2eph2`'s) run
//! in-process, as root, with the system's tools (tar, sqfstar, dpkg-query,
//! mount, chroot, apt-get in the chroot). Steps, each a stage line:
//!
//! 0. `image`, for an ext4 image source (plain, compressed or in a
//!    tarball): mounted read-only through a loop device;
//! 1. `squashfs`: the root tarball streamed into `sqfstar -comp xz`, in
//!    the background while the next steps run (a mounted image's tree
//!    through `mksquashfs`);
//! 2. `unpack`: the root unpacked into a scratch directory (owners, modes,
//!    hard links, devices, sparse files, xattrs);
//! 3. `manifest`: `dpkg-query --show` of the root's package database;
//! 4. `kernel:PKG` per `--krd-pack`: the package installed into an overlay
//!    of the root in a chroot, kernel, initrd and dtb copied out.
//!
//! Every command's output goes to the build's log. The scratch directory
//! (`$TMPDIR/streamfs-build-*`) and every mount in it are gone when this
//! returns or unwinds.

pub mod chroot;
pub mod image;
pub mod kernel;
pub mod log;
pub mod manifest;
pub mod source;
pub mod squashfs;
pub mod unpack;

use std::path::{Path, PathBuf};

use crate::argv::{self, BuilderArgs};
use crate::error::Result;
use crate::stage::Stages;
use log::Log;

pub const NAME: &str = "builtin";

/// Settings that meph2's argv does not carry.
#[derive(Clone, Debug, Default)]
pub struct BuiltinOptions {
    /// Keep downloaded packages and package lists here between builds
    /// (`archives/` and `lists/`, bound into the chroot).
    pub apt_cache: Option<PathBuf>,
}

/// The machine's Debian architecture name, as meph2's `--arch=` says it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "x86" => "i386",
        other => other,
    }
}

/// What this builder refuses before doing any work, with the reason.
fn refusal(a: &BuilderArgs) -> Option<String> {
    if let Some(k) = &a.kernel {
        return Some(format!(
            "--kernel={k} (builtin_kernel in the config) would install a kernel into the image itself; \
             the builtin builder ships images without one"
        ));
    }
    if a.gzip {
        return Some(
            "root-image.gz (root_image: True, or trusty) is not made by the builtin builder; \
             it builds the squashfs"
                .into(),
        );
    }
    if a.proposed || a.proposed_packages.is_some() {
        return Some("--proposed (enable_proposed in the config) is not supported".into());
    }
    if let Some(p) = &a.pre_purge_packages {
        return Some(format!(
            "--pre-purge-packages {p} (pre_purge_packages in the config) is not supported"
        ));
    }
    if let Some(arch) = a.arch.as_deref().filter(|a| *a != host_arch()) {
        return Some(format!(
            "--arch={arch}: the kernel is installed in a chroot, which runs only the machine's own \
             architecture ({})",
            host_arch()
        ));
    }
    if let Some(p) = a.packs.iter().find(|p| p.kihelper.is_some()) {
        return Some(format!(
            "--krd-pack of {}: kernel helper {} is not run by the builtin builder",
            p.kpkg,
            p.kihelper.as_deref().unwrap_or_default()
        ));
    }
    None
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs the builtin builder on meph2's builder argv `args`, logging to
/// `log_path` and reporting each step on `stages`.
pub fn run(
    args: &[String],
    opts: &BuiltinOptions,
    log_path: &Path,
    stages: &mut Stages<'_>,
) -> Result<()> {
    let a = argv::parse("builtin builder", args)?;
    let mut log = Log::append(log_path)?;
    log.line(&format!("ARGS: {NAME} {}", args.join(" ")));
    if let Some(r) = refusal(&a) {
        return Err(log.fail("arguments", r));
    }
    if !is_root() {
        return Err(log.fail(
            "arguments",
            "the builtin builder must run as root (it unpacks device nodes and owners, \
             mounts overlays and runs apt in a chroot): run mountctl build as root",
        ));
    }
    let mut src = source::detect(Path::new(&a.source), a.format.as_deref())
        .map_err(|e| log.fail("source", e))?;
    log.line(&format!("# source: {src:?}"));
    let work = chroot::WorkDir::new().map_err(|e| {
        log.fail(
            "scratch",
            format!("cannot make a scratch directory in $TMPDIR: {e}"),
        )
    })?;
    log.line(&format!("# scratch: {}", work.path().display()));
    // The cache is bound by `mount`, which must not read it relative to
    // anything but where the user gave it.
    let apt_cache = opts
        .apt_cache
        .as_deref()
        .map(std::path::absolute)
        .transpose()
        .map_err(|e| log.fail("arguments", format!("the apt cache directory: {e}")))?;
    let kopts = kernel::KernelOptions {
        apt_cache: apt_cache.as_deref(),
    };
    if image::needed(&src) {
        stages.run(image::STEP, |_| {
            image::attach(&mut src, work.path(), &mut log)
        })?;
    }
    let total = 3 + a.packs.len();
    let mut done = 0;
    let mut progress = |stages: &mut Stages<'_>| {
        done += 1;
        stages.percent("builder", (done * 100 / total).min(100) as u8);
    };
    // The squashfs is made from the tarball itself, so it runs beside the
    // other steps (which work on the unpacked root): the build takes about
    // the longer of the two instead of their sum. Another step's failure
    // drops (kills) it.
    let mut squashfs_job = None;
    if a.squashfs {
        let t = stages.begin(squashfs::STEP);
        match squashfs::start(&src, &a.squashfs_path(), &mut log) {
            Ok(Some(job)) => squashfs_job = Some((t, job)),
            Ok(None) => {
                stages.end(squashfs::STEP, t, &Ok(()));
                progress(stages);
            }
            Err(e) => {
                let r: Result<()> = Err(e);
                stages.end(squashfs::STEP, t, &r);
                return r;
            }
        }
    }
    let root = work.path().join("root");
    let rest = (|| {
        stages.run(unpack::STEP, |_| unpack::unpack(&src, &root, &mut log))?;
        progress(stages);
        if let Some(m) = &a.manifest {
            stages.run(manifest::STEP, |_| manifest::manifest(&root, m, &mut log))?;
            progress(stages);
        }
        for (i, pack) in a.packs.iter().enumerate() {
            let scratch = work.path().join(format!("kernel-{i}"));
            stages.run(&kernel::step_name(pack), |_| {
                kernel::kernel(&root, &scratch, pack, &kopts, &mut log)
            })?;
            progress(stages);
        }
        Ok(())
    })();
    if let Err(e) = rest {
        if let Some((t, job)) = squashfs_job {
            drop(job);
            let stopped: Result<()> = Err(log.fail(squashfs::STEP, "stopped: another step failed"));
            stages.end(squashfs::STEP, t, &stopped);
        }
        return Err(e);
    }
    if let Some((t, job)) = squashfs_job {
        let r = log.wait(job);
        stages.end(squashfs::STEP, t, &r);
        r?;
        progress(stages);
    }
    drop(work);
    Ok(())
}
