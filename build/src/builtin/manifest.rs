//! The manifest: the root's packages in `dpkg-query --show` format, read
//! from the root's own package database (the root as it ships, before any
//! kernel is installed).

use std::path::Path;
use std::process::Command;

use super::log::Log;
use crate::error::Result;

pub const STEP: &str = "manifest";

pub fn manifest(root: &Path, out: &Path, log: &mut Log) -> Result<()> {
    let admindir = root.join("var/lib/dpkg");
    if !admindir.join("status").is_file() {
        return Err(log.fail(
            STEP,
            format!(
                "the root has no package database ({} is missing): not a Debian or Ubuntu root",
                admindir.join("status").display()
            ),
        ));
    }
    let text = log.output(
        STEP,
        Command::new("dpkg-query")
            .arg(format!("--admindir={}", admindir.display()))
            .arg("--show"),
    )?;
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).map_err(|e| log.fail(STEP, format!("{}: {e}", d.display())))?;
    }
    std::fs::write(out, text).map_err(|e| log.fail(STEP, format!("{}: {e}", out.display())))
}
