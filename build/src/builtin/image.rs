//! Filesystem-image sources (meph2's `root-image`, `root-image-gz` and
//! `img-tar`): the ext4 image is mounted read-only through a loop device
//! inside the scratch directory, and the squashfs and the unpacked root are
//! made from that tree. A compressed image, or one inside a tarball, is
//! first written out to the scratch directory (sparse). The mount goes with
//! the scratch directory (see [`super::chroot::WorkDir`]).

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use super::log::Log;
use super::source::{Compression, Kind, Source};
use crate::error::Result;

pub const STEP: &str = "image";

/// Whether `src` needs [`attach`] before the other steps.
pub fn needed(src: &Source) -> bool {
    matches!(src.kind, Kind::Ext4 | Kind::ImageTar)
}

/// Mounts the filesystem image of `src` read-only under `work` and records
/// the tree in `src.tree`.
pub fn attach(src: &mut Source, work: &Path, log: &mut Log) -> Result<()> {
    let image = match (src.kind, src.compression) {
        (Kind::Ext4, Compression::None) => src.path.clone(),
        (Kind::Ext4, _) => {
            let out = work.join("source.img");
            log.pipe(STEP, &mut src.reader(), &mut sparse_writer(&out))?;
            out
        }
        (Kind::ImageTar, _) => extract_member(src, work, log)?,
        (Kind::RootTar | Kind::Squashfs, _) => return Ok(()),
    };
    if !is_ext4(&image) {
        return Err(log.fail(
            STEP,
            format!(
                "{}: not an ext4 filesystem image (a whole-disk image with a partition table, or qcow2, is not read)",
                image.display()
            ),
        ));
    }
    let mnt = work.join("image");
    std::fs::create_dir_all(&mnt).map_err(|e| log.fail(STEP, format!("{}: {e}", mnt.display())))?;
    // `noload`: a read-only mount that does not replay the journal, so an
    // image taken from a running system is read as it is, never written.
    log.run(
        STEP,
        Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,ro,noload"])
            .arg(&image)
            .arg(&mnt),
    )?;
    src.tree = Some(mnt);
    Ok(())
}

/// `dd` writing its stdin to `out`, leaving zero blocks as holes.
fn sparse_writer(out: &Path) -> Command {
    let mut c = Command::new("dd");
    c.arg(format!("of={}", out.display()))
        .args(["bs=1M", "conv=sparse", "status=none"]);
    c
}

/// Writes the tarball's image member (named at detection) to the scratch
/// directory and returns its path.
fn extract_member(src: &Source, work: &Path, log: &mut Log) -> Result<PathBuf> {
    let Some(member) = src.image_member.as_deref() else {
        return Err(log.fail(STEP, "no .img member found in the tarball's first blocks"));
    };
    let rel = Path::new(member);
    let safe = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !safe {
        return Err(log.fail(
            STEP,
            format!("the tarball's image member {member:?} is not a relative path inside it"),
        ));
    }
    let dir = work.join("image-tar");
    std::fs::create_dir_all(&dir).map_err(|e| log.fail(STEP, format!("{}: {e}", dir.display())))?;
    log.pipe(
        STEP,
        &mut src.reader(),
        Command::new("tar")
            .args(["-x", "--sparse", "--no-same-owner", "-f", "-", "-C"])
            .arg(&dir)
            .arg("--")
            .arg(member),
    )?;
    Ok(dir.join(rel))
}

/// The ext4 superblock magic at byte 1080.
fn is_ext4(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut b = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(1080))?;
            f.read_exact(&mut b)
        })
        .is_ok()
        && b == [0x53, 0xef]
}
