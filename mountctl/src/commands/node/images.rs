//! `node images` and `node import`: the images stream.

use std::process::ExitCode;

use anyhow::Result;
use streamfs_node::images::{self, ImageVersion, SaveInfo};
use streamfs_node::settings::Settings;

use super::super::Context;
use super::usage;
use crate::cli::{NodeAliasArgs, NodeImagesArgs, NodeImportArgs};

/// The stream images live in: `[images] stream`.
pub fn stream(settings: &Settings) -> Result<String> {
    Ok(settings
        .required("images", "stream")
        .map_err(usage)?
        .to_string())
}

pub fn list(ctx: &Context, settings: &Settings, a: NodeImagesArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let stream = stream(settings)?;
    let aliases = images::aliases(&store, &stream).map_err(usage)?;
    let aliases_of = |name: &str| {
        let of: Vec<&str> = aliases
            .iter()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(a, _)| a.as_str())
            .collect();
        of.join(",")
    };
    let all: Vec<ImageVersion> = images::list(&store, &stream)
        .map_err(usage)?
        .into_iter()
        .filter(|v| a.pattern.as_deref().is_none_or(|p| v.name.contains(p)))
        .collect();
    if a.long {
        println!(
            "{:<32} {:>12} {:>12}  {:<20} {:<10} {:<16} COMMENT",
            "IMAGE@VERSION", "DISK", "STORED", "DATE", "NODE", "ALIASES"
        );
        for v in &all {
            let a = aliases_of(&v.name);
            println!(
                "{:<32} {:>12} {:>12}  {:<20} {:<10} {:<16} {}",
                format!("{}@{}", v.name, v.version),
                mib(v.disk_size),
                mib(v.size),
                v.date.as_deref().unwrap_or("-"),
                v.node.as_deref().unwrap_or("-"),
                if a.is_empty() { "-" } else { &a },
                v.comment.as_deref().unwrap_or("")
            );
        }
    } else {
        let mut names: Vec<&str> = all.iter().map(|v| v.name.as_str()).collect();
        names.dedup();
        for name in names {
            let versions: Vec<&ImageVersion> = all.iter().filter(|v| v.name == name).collect();
            let newest = versions.last().expect("a name has a version");
            let a = aliases_of(name);
            println!(
                "{name}{}  newest {} ({} version{}), disk {}",
                if a.is_empty() {
                    String::new()
                } else {
                    format!(" (aliases {a})")
                },
                newest.version,
                versions.len(),
                if versions.len() == 1 { "" } else { "s" },
                mib(newest.disk_size)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(ctx: &Context, settings: &Settings, a: NodeImportArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let stream = stream(settings)?;
    let info = SaveInfo {
        node: None,
        comment: a.comment,
    };
    let v = images::import_raw(&store, &stream, &a.name, &a.file, &info).map_err(usage)?;
    println!(
        "{}@{}: disk {} sha256 {}, stored {}",
        v.name,
        v.version,
        mib(v.disk_size),
        v.disk_sha256,
        mib(v.size)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn alias(ctx: &Context, settings: &Settings, a: NodeAliasArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let stream = stream(settings)?;
    match a.image {
        Some(image) if !a.delete => {
            if images::set_alias(&store, &stream, &a.alias, &image).map_err(usage)? {
                println!("{} -> {image}", a.alias);
            } else {
                println!("{} -> {image} (already)", a.alias);
            }
        }
        _ => {
            let was = images::remove_alias(&store, &stream, &a.alias).map_err(usage)?;
            println!("{} dropped (it named {was})", a.alias);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}
