//! Unpacking the source into a directory, keeping what a booting system
//! needs of it: owners (numeric), modes, hard links, device nodes, sparse
//! files, xattrs (`security.capability` on ping) and ACLs.

use std::path::Path;
use std::process::Command;

use super::log::Log;
use super::source::{Kind, Source};
use crate::error::Result;

pub const STEP: &str = "unpack";

pub fn unpack(src: &Source, root: &Path, log: &mut Log) -> Result<()> {
    match src.kind {
        Kind::RootTar => {
            std::fs::create_dir_all(root)
                .map_err(|e| log.fail(STEP, format!("{}: {e}", root.display())))?;
            log.pipe(
                STEP,
                &mut src.reader(),
                Command::new("tar")
                    .args([
                        "-x",
                        "--numeric-owner",
                        "--same-owner",
                        "--same-permissions",
                        "--xattrs",
                        "--xattrs-include=*",
                        "--acls",
                        "-f",
                        "-",
                        "-C",
                    ])
                    .arg(root),
            )
        }
        // unsquashfs run as root keeps owners, xattrs and device nodes.
        Kind::Squashfs => log.run(
            STEP,
            Command::new("unsquashfs")
                .args(["-no-progress", "-f", "-d"])
                .arg(root)
                .arg(&src.path),
        ),
        // `cp -a` (as root) keeps owners, modes, hard links, devices,
        // xattrs and holes of the mounted image's tree.
        Kind::Ext4 | Kind::ImageTar => {
            let Some(tree) = &src.tree else {
                return Err(log.fail(STEP, "the image is not mounted"));
            };
            std::fs::create_dir_all(root)
                .map_err(|e| log.fail(STEP, format!("{}: {e}", root.display())))?;
            log.run(
                STEP,
                Command::new("cp")
                    .args(["-a", "--sparse=auto", "--"])
                    .arg(tree.join("."))
                    .arg(root),
            )
        }
    }
}
