//! `mountctl sync`: mirror an upstream source into a stream. The work is
//! `streamfs_core::ops::sync`; this module renders its progress (an
//! `indicatif` bar on a terminal, a plain line every few seconds otherwise,
//! nothing with `-q`), the dry-run listing, the summary line and the failures.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use streamfs_core::fetch::FetchOptions;
use streamfs_core::ops::sync::{SyncEvent, SyncOptions, sync};

use super::{Context, filters};
use crate::cli::SyncArgs;

/// Where progress goes.
enum Display {
    Quiet,
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
}

/// Plain progress lines for logs: totals and files in flight.
struct Lines {
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
    in_flight: BTreeSet<String>,
}

impl Display {
    fn new(quiet: bool) -> Display {
        if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bytes}/{total_bytes} {bytes_per_sec} ETA {eta} [{wide_bar}] {msg}",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            Display::Bar(bar)
        } else {
            let now = Instant::now();
            Display::Lines(Mutex::new(Lines {
                total: 0,
                done: 0,
                started: now,
                last: now,
                in_flight: BTreeSet::new(),
            }))
        }
    }

    fn event(&self, e: SyncEvent<'_>, flight: &Mutex<BTreeSet<String>>) {
        match &e {
            SyncEvent::Started { path, .. } => {
                flight.lock().expect("flight").insert(path.to_string());
            }
            SyncEvent::Finished { path } => {
                flight.lock().expect("flight").remove(*path);
            }
            _ => {}
        }
        match self {
            Display::Quiet => {}
            Display::Bar(bar) => match e {
                SyncEvent::Planned { bytes, .. } => bar.set_length(bytes),
                SyncEvent::Bytes(n) => bar.inc(n),
                SyncEvent::Started { .. } | SyncEvent::Finished { .. } => {
                    let f = flight.lock().expect("flight");
                    bar.set_message(f.iter().cloned().collect::<Vec<_>>().join(" "));
                }
                SyncEvent::Committed {
                    generation,
                    versions,
                } => bar.println(format!(
                    "committed {versions} version(s): generation {generation}"
                )),
            },
            Display::Lines(l) => {
                let mut l = l.lock().expect("lines");
                match e {
                    SyncEvent::Planned { bytes, files } => {
                        l.total = bytes;
                        eprintln!("sync: {files} file(s) to download, {bytes} bytes");
                    }
                    SyncEvent::Bytes(n) => l.done += n,
                    SyncEvent::Committed {
                        generation,
                        versions,
                    } => {
                        eprintln!("sync: committed {versions} version(s): generation {generation}")
                    }
                    _ => {}
                }
                let in_flight = flight.lock().expect("flight").clone();
                l.in_flight = in_flight;
                if l.last.elapsed() >= Duration::from_secs(5) {
                    l.last = Instant::now();
                    let rate = l.done as f64 / l.started.elapsed().as_secs_f64().max(1e-3) / 1e6;
                    eprintln!(
                        "sync: {}/{} MB {rate:.0} MB/s; in flight: {}",
                        l.done / 1_000_000,
                        l.total / 1_000_000,
                        l.in_flight.iter().cloned().collect::<Vec<_>>().join(" ")
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding
/// `dir` (`statvfs`: `f_bavail` blocks of `f_frsize` bytes).
fn free_space(dir: &Path) -> Result<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("{}: path has a NUL byte", dir.display()))?;
    // SAFETY: an all-zero statvfs is a valid value for the call to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid, writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(anyhow::anyhow!("{}: statvfs: {e}", dir.display()));
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ by target
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

pub fn run(ctx: &Context, a: SyncArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let filters = filters(&a.filters)?;
    let verify = a.signatures.verify();
    let opts = SyncOptions {
        dry_run: a.dry.dry_run,
        max: a.max,
        keep: a.keep,
        verify,
        jobs: a.jobs.into(),
        content_id: a.content_id.as_deref(),
        filters: &filters,
        fetch: FetchOptions::default(),
        free_space: Some(free_space(store.root())?),
    };
    let display = Display::new(a.quiet || a.dry.dry_run);
    let flight = Mutex::new(BTreeSet::new());
    let report = sync(&store, &a.stream, &a.source, &opts, &|e| {
        display.event(e, &flight)
    });
    display.finish();
    let report = report?;
    if a.dry.dry_run {
        for d in &report.downloads {
            println!(
                "would download {} ({} bytes) from {}",
                d.path, d.size, d.url
            );
        }
        for v in &report.added {
            println!("would add {v}");
        }
        for v in &report.removed {
            println!("would remove {v}");
        }
    }
    for f in &report.failures {
        eprintln!("mountctl: sync failed: {}: {}", f.what, f.reason);
    }
    // A dry run downloads nothing: its figures are the plan's.
    let (files, bytes) = if a.dry.dry_run {
        let planned = report.downloads.iter().map(|d| d.size).sum();
        (report.downloads.len(), planned)
    } else {
        (report.downloaded, report.bytes)
    };
    let (add, remove, download) = if a.dry.dry_run {
        ("would add", "would remove", "to download")
    } else {
        ("added", "removed", "downloaded")
    };
    println!(
        "{}: {add} {} version(s), {remove} {}; {} blob(s) {download} ({} bytes), {} already in the pool; generation {}{}",
        a.stream,
        report.added.len(),
        report.removed.len(),
        files,
        bytes,
        report.in_pool,
        report.generation,
        if report.failures.is_empty() {
            String::new()
        } else {
            format!("; {} failure(s)", report.failures.len())
        }
    );
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
