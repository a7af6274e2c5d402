//! `mountctl cloudimg-sync`: brings a MAAS stream up to date with the cloud
//! images, as meph2-cloudimg-sync. What to build is
//! `streamfs_build::cloudimg::plan`; this module reads the source and the
//! target, fetches each wanted cloud image (verified against the source's
//! checksums, kept in a cache by sha256 so a re-run does not download it
//! again), runs one `build` per version into OUT, inserts it when asked (one
//! commit per version), and writes OUT's metadata: the target's versions
//! plus the new ones.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use streamfs_build::cloudimg::{self, Options, Wanted};
use streamfs_build::config::Config;
use streamfs_build::metadata;
use streamfs_build::plan::{Request, plan};
use streamfs_build::run::{BuildOptions, Builder, build};
use streamfs_build::stage::Stages;
use streamfs_core::fetch::{Client, FetchOptions};
use streamfs_core::ops::insert::{InsertOptions, insert};
use streamfs_core::ops::sync::load_upstream;
use streamfs_core::ops::{expanded, portable_version, put_version};
use streamfs_core::streams::Products;
use streamfs_core::streams::condense::condense;
use streamfs_core::streams::query::Verify;
use streamfs_core::timefmt;

use super::build::{Builders, load_config, log_dir, stderr_sink, usage};
use super::{Context, filters, source_image};
use crate::cli::CloudimgSyncArgs;

/// The target `force`: an empty stream, so every wanted serial is built.
const FORCE: &str = "force";

pub fn run(ctx: &Context, a: CloudimgSyncArgs) -> Result<ExitCode> {
    let cfg = load_config(&a.meph2)?;
    let filters = filters(&a.filters)?;
    let rebuilds = cloudimg::parse_rebuilds(&a.rebuild).map_err(usage)?;
    let arches = arches(&a.arches)?;
    let client = Client::new(FetchOptions::default())?;
    let verify = a.signatures.verify();
    let source = load_upstream(&client, &a.source, &a.content_id, verify)
        .with_context(|| format!("reading the cloud images at {}", a.source))?;
    let (target, target_name) = load_target(ctx, &a, &cfg, &client, verify)?;
    let today = timefmt::now().format("%Y-%m-%d").to_string();
    let sync_plan = cloudimg::plan(
        &cfg,
        &source.products,
        &target,
        &Options {
            arches: &arches,
            filters: &filters,
            rebuilds: &rebuilds,
            max: a.max,
            today: &today,
        },
    )
    .map_err(usage)?;
    for s in &sync_plan.skipped {
        eprintln!("skipped: {s}");
    }
    if sync_plan.wanted.is_empty() {
        println!(
            "everything is up to date: {target_name} has the newest cloud image of every \
             selected release and arch in {}",
            source.file
        );
    }
    if a.dry_run {
        for w in &sync_plan.wanted {
            println!(
                "would build {} {} {} from {}",
                w.release,
                w.arch,
                w.version_name,
                source.item_url(&w.path)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = a.insert.as_ref().map(|_| ctx.open()).transpose()?;
    let builders = Builders::new(&a.meph2)?;
    let builder = builders.builder();
    let logs = log_dir(&a.meph2);
    let cache = source_image::cache_dir(a.cache.as_deref());
    let mut built = Vec::new();
    for w in &sync_plan.wanted {
        let image = fetch_image(&client, &source.item_url(&w.path), w, &cache)?;
        let doc = build_one(&cfg, &a, w, &image, builder, &logs)?;
        if let (Some(store), Some(stream)) = (&store, &a.insert) {
            let report = insert(
                store,
                stream,
                &a.out,
                InsertOptions {
                    dry_run: false,
                    filters: &[],
                    progress: &mut |_| {},
                },
            )
            .with_context(|| format!("inserting {} {} into {stream}", w.release, w.version_name))?;
            if let Some(c) = report.commit {
                println!(
                    "inserted {} {} {} into {stream}: generation {}",
                    w.release, w.arch, w.version_name, c.generation
                );
            }
        }
        built.push(doc);
    }
    write_out(&a.out, &cfg, target, &built)?;
    println!("{} version(s) built into {}", built.len(), a.out.display());
    Ok(ExitCode::SUCCESS)
}

/// `--arches`, or meph2's default for this host.
fn arches(given: &[String]) -> Result<Vec<String>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let machine = std::env::consts::ARCH;
    let Some(list) = cloudimg::default_arches(machine) else {
        bail!(streamfs_core::Error::Usage(format!(
            "no default arch list for this host's arch '{machine}': name them with --arches"
        )));
    };
    Ok(list.iter().map(|s| s.to_string()).collect())
}

/// The target's products document and a name for messages: `--target`,
/// else the stream `--insert` fills, else the config's `default_target`.
/// A URL or an existing path is read as a mirror (root, index or products
/// file); any other word is a stream of the store.
fn load_target(
    ctx: &Context,
    a: &CloudimgSyncArgs,
    cfg: &Config,
    client: &Client,
    verify: Verify<'_>,
) -> Result<(Products, String)> {
    let Some(t) = a
        .target
        .clone()
        .or_else(|| a.insert.clone())
        .or_else(|| cfg.default_target.clone())
    else {
        bail!(streamfs_core::Error::Usage(
            "no target: give --target (a MAAS stream's URL or path, a stream of the store, or \
             'force'), or --insert STREAM"
                .into()
        ));
    };
    let doc = if t == FORCE {
        Products::new(&cfg.content_id, "image-downloads")
    } else if t.contains("://") || Path::new(&t).exists() {
        only_current_products(
            load_upstream(client, &t, &cfg.content_id, verify)
                .with_context(|| format!("reading the target {t}"))?
                .products,
        )
    } else {
        let store = ctx.open()?;
        let snap = store.snapshot()?;
        let Some(state) = snap.streams.get(&t) else {
            bail!(streamfs_core::Error::Usage(format!(
                "--target {t}: neither a URL, an existing path, nor a stream of the store at {}",
                store.root().display()
            )));
        };
        state.products.clone()
    };
    Ok((doc, t))
}

/// meph2 skips a mirror's products of other streams or layouts (an old v2
/// product in a v3 stream): those whose id lacks the middle of the content
/// id (`candidate:v3`). A stream of the store is one stream whatever its
/// product ids, so it is read whole.
fn only_current_products(mut doc: Products) -> Products {
    let cid = doc.content_id().to_string();
    let parts: Vec<&str> = cid.split(':').collect();
    let Some(middle) = parts.get(1..3).map(|p| p.join(":")) else {
        return doc;
    };
    let old: Vec<String> = doc
        .product_names()
        .into_iter()
        .filter(|p| !p.contains(&middle))
        .collect();
    for p in old {
        eprintln!("skipped: old product {p} in the target");
        doc.products_mut().remove(&p);
    }
    doc
}

/// The wanted cloud image as a local file, verified against the source's
/// sha256 and size: downloaded into the cache (resumable), or found there
/// from an earlier run, or read in place when the source is local.
fn fetch_image(client: &Client, url: &str, w: &Wanted, cache: &Path) -> Result<PathBuf> {
    let what = format!("{} {} {} ({url})", w.release, w.arch, w.serial);
    let Some(sha256) = w.sha256.as_deref() else {
        bail!(
            "{what}: the source gives no sha256 for this image: refusing to build from unverified data"
        );
    };
    source_image::fetch(client, url, &what, sha256, w.size, cache)
}

/// One meph2-build run into OUT; returns the products document of the
/// version it made.
fn build_one(
    cfg: &Config,
    a: &CloudimgSyncArgs,
    w: &Wanted,
    image: &Path,
    builder: Builder<'_>,
    logs: &Path,
) -> Result<Products> {
    let source = image.display().to_string();
    let req = Request {
        arch: &w.arch,
        release: &w.release,
        version_name: &w.version_name,
        source: &source,
        enable_di: a.disable_di.then_some(false),
        image_format: Some(w.image_format()),
        verbosity: 1,
    };
    let p = plan(cfg, &req).map_err(usage)?;
    eprintln!("building {} {} {}", w.release, w.arch, w.version_name);
    let mut sink = stderr_sink();
    let mut stages = Stages::new(&mut sink);
    let report = build(
        &p,
        &BuildOptions {
            builder,
            out: &a.out,
            flat_json: None,
            log_dir: logs,
        },
        &mut stages,
    )
    .map_err(usage)
    .with_context(|| format!("building {} {} {}", w.release, w.arch, w.version_name))?;
    if let Some(l) = &report.log {
        eprintln!("log: {}", l.display());
    }
    let updated = timefmt::rfc2822(timefmt::now());
    metadata::products(&p, &a.out, &updated).map_err(usage)
}

/// OUT's metadata: the target's versions plus the built ones, condensed,
/// under the config's content id (as meph2 writes it).
fn write_out(out: &Path, cfg: &Config, target: Products, built: &[Products]) -> Result<()> {
    let mut doc = target;
    doc.set_top("content_id", cfg.content_id.as_str());
    doc.set_top("datatype", "image-downloads");
    for b in built {
        let src = expanded(b);
        for (product, version) in b.version_keys() {
            if let Some(data) = portable_version(&src, &product, &version, &[])? {
                put_version(&mut doc, &product, &version, data);
            }
        }
    }
    condense(&mut doc);
    let updated = timefmt::rfc2822(timefmt::now());
    doc.set_top("updated", updated.as_str());
    doc.sort();
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    metadata::write_streams(out, &doc, &updated).map_err(usage)?;
    Ok(())
}
