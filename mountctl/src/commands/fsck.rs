use std::process::ExitCode;

use anyhow::Result;
use streamfs_core::ops::fsck::fsck;

use super::Context;
use crate::cli::FsckArgs;

pub fn run(ctx: &Context, a: FsckArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let r = fsck(&store, a.repair)?;
    for p in &r.problems {
        println!("problem: {p}");
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    for x in &r.repaired {
        println!("repaired: {x}");
    }
    println!(
        "{} blob(s), {} bytes, {} item(s) checked: {}",
        r.blobs_checked,
        r.bytes_checked,
        r.items_checked,
        if r.is_clean() {
            "clean"
        } else {
            "PROBLEMS FOUND"
        }
    );
    Ok(if r.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
