//! The squashfs of the root as the image ships it (never with a kernel):
//! the root tarball is streamed straight into `sqfstar` (xz, every core),
//! with no unpacked copy on disk in between; a squashfs source is the
//! squashfs already; a filesystem image's mounted tree goes through
//! `mksquashfs`.

use std::path::Path;
use std::process::Command;

use super::log::{Log, Pipeline};
use super::source::{Kind, Source};
use crate::error::Result;

pub const STEP: &str = "squashfs";

/// The `sqfstar` command writing `out` from a tar on stdin; the root
/// directory takes the tarball's `./` entry (sqfstar would otherwise make
/// it 0777, owned by root, dated now).
pub fn sqfstar(src: &Source, out: &Path) -> Command {
    let mut c = Command::new("sqfstar");
    c.args(["-comp", "xz", "-no-progress", "-quiet"]);
    let (mode, uid, gid, mtime) = src.root_dir.as_ref().map_or((0o755, 0, 0, None), |h| {
        (h.mode & 0o7777, h.uid, h.gid, Some(h.mtime))
    });
    c.args(["-root-mode", &format!("{mode:o}")]);
    c.args(["-root-uid", &uid.to_string(), "-root-gid", &gid.to_string()]);
    if let Some(t) = mtime {
        c.args(["-root-time", &t.to_string()]);
    }
    c.arg(out);
    c
}

/// Starts the squashfs of `src` at `out`: a running pipeline for a root
/// tarball (it runs beside the other steps), or None when it is done
/// already (a squashfs source is copied).
pub fn start(src: &Source, out: &Path, log: &mut Log) -> Result<Option<Pipeline>> {
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).map_err(|e| log.fail(STEP, format!("{}: {e}", d.display())))?;
    }
    match src.kind {
        Kind::RootTar => log
            .spawn_pipe(STEP, &mut src.reader(), &mut sqfstar(src, out))
            .map(Some),
        Kind::Squashfs => {
            log.line(&format!(
                "# the source is a squashfs: copied to {}",
                out.display()
            ));
            std::fs::copy(&src.path, out).map(|_| None).map_err(|e| {
                log.fail(
                    STEP,
                    format!("copying {} to {}: {e}", src.path.display(), out.display()),
                )
            })
        }
        // A mounted filesystem image: mksquashfs reads the tree (xattrs,
        // hard links, devices and the root's own attributes kept).
        Kind::Ext4 | Kind::ImageTar => {
            let Some(tree) = &src.tree else {
                return Err(log.fail(STEP, "the image is not mounted"));
            };
            let _ = std::fs::remove_file(out);
            log.run(
                STEP,
                Command::new("mksquashfs").arg(tree).arg(out).args([
                    "-comp",
                    "xz",
                    "-noappend",
                    "-no-progress",
                    "-quiet",
                ]),
            )
            .map(|()| None)
        }
    }
}
