//! `node load`, `save`, `wait` and the CMC verbs.
//!
//! A load: PXE links to the loader, a reset of every node (on when off), a
//! wait for their agents, one pipelined chain through the ready nodes (a
//! node that fails in it is retried alone, straight from the host), the
//! links removed whatever happens (a SIGINT too), a reset back onto the
//! disks. Exit 0 only when every node succeeded.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use streamfs_node::cmc::Verb;
use streamfs_node::image::Image;
use streamfs_node::images::{self, ImageRef, SaveInfo};
use streamfs_node::pxe::{Guard, Links};
use streamfs_node::settings::Settings;
use streamfs_node::transfer;

use super::super::Context;
use super::images::stream;
use super::progress::Progress;
use super::testbed::{Logs, Testbed, cmc_all, wait_agent};
use super::usage;
use crate::cli::{NodeLoadArgs, NodeSaveArgs, NodeSelectArgs, NodeWaitArgs};

/// One node's outcome, for the final table.
struct Outcome {
    ok: Result<String, String>,
    bytes: u64,
    secs: f64,
}

pub fn load(ctx: &Context, settings: Settings, a: NodeLoadArgs) -> Result<ExitCode> {
    let iref = ImageRef::parse(&a.image).map_err(usage)?;
    let tb = Testbed::open(settings, &a.select)?;
    tb.check_lease()?;
    let key = tb.key()?;
    let timeout = tb.seconds(a.timeout, "load_default_timeout")?;
    let store = ctx.open()?;
    let stream = stream(&tb.settings)?;
    let version = images::find(&store, &stream, &iref).map_err(usage)?;
    // nginx serving the mount has the image at <stream>/<item path>.
    let url = tb
        .settings
        .value("images", "http_url")
        .map(|b| format!("{}/{stream}/{}", b.trim_end_matches('/'), version.path));
    if a.http && url.is_none() {
        return Err(streamfs_core::Error::Usage(
            "--http needs [images] http_url (the URL of nginx serving the mount)".into(),
        )
        .into());
    }
    let image = Image::open(&images::blob_path(&store, &version))?;
    let logs = Logs::new(&tb.settings, "load")?;
    let started = Instant::now();
    let deadline = started + timeout;

    let links = Links::default();
    let _guard = Guard(links.clone());
    remove_links_on_sigint(links.clone())?;
    let mut results: BTreeMap<String, Result<String, String>> = BTreeMap::new();
    enter_imaging(&tb, &links, &logs, &mut results)?;

    // Agents that answer in time join the chain.
    let ready: Vec<&super::testbed::Target> = std::thread::scope(|s| {
        let hs: Vec<_> = tb
            .targets
            .iter()
            .filter(|t| !results.contains_key(&t.name))
            .map(|t| (t, s.spawn(|| wait_agent(&t.agent, &key, deadline))))
            .collect();
        hs.into_iter()
            .filter_map(|(t, h)| match h.join().expect("wait thread") {
                Ok(()) => Some(t),
                Err(e) => {
                    logs.line(&t.name, &e);
                    results.insert(t.name.clone(), Err(e));
                    None
                }
            })
            .collect()
    });
    let image_desc = format!("{}@{}", version.name, version.version);
    let names: Vec<String> = tb.targets.iter().map(|t| t.name.clone()).collect();
    let progress = Progress::new(&names, image.index.stored_bytes());
    for (n, r) in &results {
        if let Err(e) = r {
            progress.state(n, &format!("FAILED: {e}"), true);
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let mut failed: Vec<(&super::testbed::Target, String)> = Vec::new();
    if a.http {
        failed = ready.iter().map(|t| (*t, "--http".to_string())).collect();
    } else if !ready.is_empty() {
        let chain: Vec<String> = ready.iter().map(|t| t.agent.clone()).collect();
        for t in &ready {
            logs.line(
                &t.name,
                &format!("loading {image_desc} in a chain of {}", chain.len()),
            );
        }
        let chain_names: Vec<String> = ready.iter().map(|t| t.name.clone()).collect();
        for n in &chain_names {
            progress.state(n, "chain", false);
        }
        let sent_at = Instant::now();
        let mut last_byte = sent_at;
        let outcome = transfer::load_chain(&image, &chain, &key, a.mbps, left, &mut |b| {
            last_byte = Instant::now();
            progress.sent(&chain_names, b);
        });
        let secs = sent_at.elapsed().as_secs_f64();
        let sending = (last_byte - sent_at).as_secs_f64();
        let stored = image.index.stored_bytes();
        // The sending rate (what -b caps), then the whole chain's time.
        let rate = format!(
            "chain transfer: {stored} bytes sent in {sending:.3} s ({:.1} Mbit/s), all written in {secs:.3} s",
            stored as f64 * 8.0 / sending.max(1e-6) / 1e6
        );
        for t in &ready {
            logs.line(&t.name, &rate);
        }
        let by_addr: BTreeMap<String, (bool, Option<String>)> = match outcome {
            Ok(rs) => rs.into_iter().map(|r| (r.addr, (r.ok, r.error))).collect(),
            Err(e) => chain
                .iter()
                .map(|c| (c.clone(), (false, Some(e.to_string()))))
                .collect(),
        };
        for t in &ready {
            match by_addr.get(&t.agent) {
                Some((true, _)) => {
                    progress.state(&t.name, "loaded", true);
                    logs.line(&t.name, "loaded");
                    results.insert(t.name.clone(), Ok("loaded".into()));
                }
                other => {
                    let why = other
                        .and_then(|r| r.1.clone())
                        .unwrap_or_else(|| "no outcome".into());
                    logs.line(&t.name, &format!("chain failed ({why})"));
                    failed.push((t, why));
                }
            }
        }
    }
    // The fallback, each node on its own and all at once: a pull from
    // nginx serving the mount when [images] http_url is set, else the
    // image sent to it alone, straight from the host.
    let retried: Vec<(String, Result<String, String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = failed
            .iter()
            .map(|(t, why)| {
                let (image, key, url, logs, progress) = (&image, &key, &url, &logs, &progress);
                s.spawn(move || {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let r = match url {
                        Some(url) => {
                            logs.line(&t.name, &format!("pulling {url}"));
                            progress.state(&t.name, "pulling over HTTP", false);
                            match transfer::pull(&t.agent, key, url, a.mbps, left) {
                                Ok(r) if r.ok => Ok("loaded (HTTP pull)".to_string()),
                                Ok(r) => Err(format!("HTTP pull: {}", r.error.unwrap_or_default())),
                                Err(e) => Err(format!("{why}; HTTP pull: {e}")),
                            }
                        }
                        None => {
                            logs.line(&t.name, "retrying alone");
                            progress.state(&t.name, "retrying alone", false);
                            match transfer::load_chain(
                                image,
                                std::slice::from_ref(&t.agent),
                                key,
                                a.mbps,
                                left,
                                &mut |_| {},
                            ) {
                                Ok(rs) if rs.first().is_some_and(|r| r.ok) => {
                                    Ok("loaded (retried alone)".into())
                                }
                                Ok(rs) => Err(rs
                                    .first()
                                    .and_then(|r| r.error.clone())
                                    .unwrap_or_else(|| why.clone())),
                                Err(e) => Err(format!("{why}; alone: {e}")),
                            }
                        }
                    };
                    logs.line(&t.name, &format!("{r:?}"));
                    match &r {
                        Ok(m) => progress.state(&t.name, m, true),
                        Err(e) => progress.state(&t.name, &format!("FAILED: {e}"), true),
                    }
                    (t.name.clone(), r)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("fallback thread"))
            .collect()
    });
    results.extend(retried);
    leave_imaging(&tb, &links, &logs, !a.no_reset)?;
    let secs = started.elapsed().as_secs_f64();
    let rows = results
        .into_iter()
        .map(|(n, ok)| {
            let bytes = if ok.is_ok() { version.disk_size } else { 0 };
            (n, Outcome { ok, bytes, secs })
        })
        .collect();
    Ok(report(&format!("load {image_desc}"), rows, &logs))
}

pub fn save(ctx: &Context, settings: Settings, a: NodeSaveArgs) -> Result<ExitCode> {
    let (naming, sel) = super::select(
        &settings,
        &NodeSelectArgs {
            all: false,
            specs: vec![a.node.clone()],
        },
    )?;
    let names = sel.names(&naming);
    if names.len() != 1 {
        return Err(streamfs_core::Error::Usage(format!(
            "save takes one node, {:?} means {}",
            a.node,
            names.len()
        ))
        .into());
    }
    ImageRef::parse(&a.name).map_err(usage)?;
    let tb = Testbed::with_names(settings, &names)?;
    tb.check_lease()?;
    let key = tb.key()?;
    let timeout = tb.seconds(a.timeout, "save_default_timeout")?;
    let store = ctx.open()?;
    let stream = stream(&tb.settings)?;
    let logs = Logs::new(&tb.settings, "save")?;
    let t = &tb.targets[0];
    let started = Instant::now();
    let links = Links::default();
    let _guard = Guard(links.clone());
    remove_links_on_sigint(links.clone())?;
    let mut results = BTreeMap::new();
    enter_imaging(&tb, &links, &logs, &mut results)?;
    let r = if let Some(Err(e)) = results.remove(&t.name) {
        Err(e)
    } else {
        (|| -> Result<String, String> {
            wait_agent(&t.agent, &key, started + timeout)?;
            let tmp = tempfile::Builder::new()
                .prefix(".node-save-")
                .tempfile_in(store.root())
                .map_err(|e| e.to_string())?;
            let mut f = tmp.reopen().map_err(|e| e.to_string())?;
            let index = transfer::save(&t.agent, &key, &mut f, timeout, &mut |_, _| {})
                .map_err(|e| e.to_string())?;
            let info = SaveInfo {
                node: Some(t.name.clone()),
                comment: a.comment.clone(),
            };
            let v = images::insert_packed(&store, &stream, &a.name, tmp.path(), &index, &info)
                .map_err(|e| e.to_string())?;
            Ok(format!("saved as {}@{}", v.name, v.version))
        })()
    };
    logs.line(&t.name, &format!("{r:?}"));
    leave_imaging(&tb, &links, &logs, true)?;
    let bytes = 0;
    let rows = BTreeMap::from([(
        t.name.clone(),
        Outcome {
            ok: r,
            bytes,
            secs: started.elapsed().as_secs_f64(),
        },
    )]);
    Ok(report("save", rows, &logs))
}

pub fn wait(settings: Settings, a: NodeWaitArgs) -> Result<ExitCode> {
    let tb = Testbed::open(settings, &a.select)?;
    let key = tb.key()?;
    let deadline = Instant::now() + tb.seconds(a.timeout, "wait_default_timeout")?;
    let failed: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = tb
            .targets
            .iter()
            .map(|t| (t, s.spawn(|| wait_agent(&t.agent, &key, deadline))))
            .collect();
        hs.into_iter()
            .filter_map(|(t, h)| {
                h.join()
                    .expect("wait thread")
                    .err()
                    .map(|e| format!("{}: {e}", t.name))
            })
            .collect()
    });
    if failed.is_empty() {
        println!("{} node(s) answer", tb.targets.len());
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "mountctl: {} node(s) did not answer in time:\n  {}",
        failed.len(),
        failed.join("\n  ")
    );
    Ok(ExitCode::from(1))
}

pub fn power(settings: Settings, a: NodeSelectArgs, verb: Verb) -> Result<ExitCode> {
    let tb = Testbed::open(settings, &a)?;
    if matches!(verb, Verb::On | Verb::Off | Verb::Reset) {
        tb.check_lease()?;
    }
    let mut code = ExitCode::SUCCESS;
    for (name, r) in cmc_all(&tb, verb)? {
        match r {
            Ok(text) => println!("{name}: {text}"),
            Err(e) => {
                eprintln!("{name}: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

/// PXE links to the loader, then each node reset (or powered on when off).
/// A node whose CMC fails is recorded as failed and left out.
fn enter_imaging(
    tb: &Testbed,
    links: &Links,
    logs: &Logs,
    results: &mut BTreeMap<String, Result<String, String>>,
) -> Result<()> {
    let dir = tb
        .settings
        .required("pxelinux", "config_dir")
        .map_err(usage)?;
    let loader = tb.settings.required("pxelinux", "loader").map_err(usage)?;
    for t in &tb.targets {
        links.add(std::path::Path::new(dir), &t.node.pxe_link_name(), loader)?;
        logs.line(
            &t.name,
            &format!("PXE link {} -> {loader}", t.node.pxe_link_name()),
        );
    }
    let cmc = tb.cmc()?;
    for t in &tb.targets {
        let r = cmc.call(&t.cmc, Verb::Status).and_then(|s| {
            let verb = if s == "off" { Verb::On } else { Verb::Reset };
            cmc.call(&t.cmc, verb)
        });
        if let Err(e) = r {
            let e = format!("CMC: {e}");
            logs.line(&t.name, &e);
            results.insert(t.name.clone(), Err(e));
        }
    }
    Ok(())
}

/// Removes the links, then (unless told not to) resets the nodes so they
/// boot on their disks.
fn leave_imaging(tb: &Testbed, links: &Links, logs: &Logs, reset: bool) -> Result<()> {
    for f in links.remove_all() {
        eprintln!("mountctl: PXE link not removed: {f}");
    }
    if reset {
        for (name, r) in cmc_all(tb, Verb::Reset)? {
            logs.line(&name, &format!("reset onto the disk: {r:?}"));
        }
    }
    Ok(())
}

/// On SIGINT or SIGTERM: remove the PXE links, then exit 130.
fn remove_links_on_sigint(links: Links) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            for f in links.remove_all() {
                eprintln!("mountctl: PXE link not removed: {f}");
            }
            eprintln!("mountctl: interrupted; PXE links removed");
            std::process::exit(130);
        }
    });
    Ok(())
}

/// The final table; exit 1 naming the failed nodes and why.
fn report(what: &str, rows: BTreeMap<String, Outcome>, logs: &Logs) -> ExitCode {
    println!(
        "{:<10} {:<8} {:>10} {:>8} {:>10}  DETAIL",
        "NODE", "STATE", "MiB", "SECONDS", "MiB/s"
    );
    for (n, o) in &rows {
        let mib = o.bytes as f64 / f64::from(1 << 20);
        let (state, detail) = match &o.ok {
            Ok(d) => ("ok", d.as_str()),
            Err(e) => ("FAILED", e.as_str()),
        };
        println!(
            "{n:<10} {state:<8} {mib:>10.1} {:>8.1} {:>10.1}  {detail}",
            o.secs,
            mib / o.secs.max(1e-3)
        );
    }
    println!("logs: {}", logs.dir.display());
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|(n, o)| o.ok.as_ref().err().map(|e| format!("{n} ({e})")))
        .collect();
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "mountctl: {what} failed on {}: {}",
            failed.len(),
            failed.join("; ")
        );
        ExitCode::from(1)
    }
}
