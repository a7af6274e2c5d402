//! A load's progress per node: `indicatif` bars (one per node, under one
//! `MultiProgress`) when stderr is a terminal, else a plain line every few
//! seconds for logs. The final table is printed after, as always.
//!
//! In the chain every node receives the chunks as the host sends them (a
//! node is at most a few chunks behind the one above it), so a chain
//! node's bar shows the bytes the host has sent; a node pulling over HTTP
//! shows what it is doing until its outcome comes.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How often a plain progress line is printed.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub enum Progress {
    Bars {
        _multi: MultiProgress,
        bars: BTreeMap<String, ProgressBar>,
    },
    Lines {
        total: u64,
        started: Instant,
        last: Mutex<Instant>,
    },
}

impl Progress {
    /// One bar per node of `names`, each `total` stored bytes long.
    pub fn new(names: &[String], total: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            let now = Instant::now();
            return Progress::Lines {
                total,
                started: now,
                last: Mutex::new(now),
            };
        }
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template(
            "{prefix:<8} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} [{wide_bar}] {msg}",
        )
        .expect("valid template");
        let bars = names
            .iter()
            .map(|n| {
                let bar = multi.add(ProgressBar::new(total));
                bar.set_style(style.clone());
                bar.set_prefix(n.clone());
                bar.set_message("waiting");
                (n.clone(), bar)
            })
            .collect();
        Progress::Bars {
            _multi: multi,
            bars,
        }
    }

    /// The chain has sent `bytes` to `nodes`.
    pub fn sent(&self, nodes: &[String], bytes: u64) {
        match self {
            Progress::Bars { bars, .. } => {
                for n in nodes {
                    if let Some(b) = bars.get(n) {
                        b.set_position(bytes);
                    }
                }
            }
            Progress::Lines {
                total,
                started,
                last,
            } => {
                let mut last = last.lock().expect("progress lock");
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "load: {:.1} of {:.1} MiB sent down the chain of {} ({:.1} MiB/s)",
                        mib(bytes),
                        mib(*total),
                        nodes.len(),
                        mib(bytes) / secs.max(1e-3)
                    );
                }
            }
        }
    }

    /// What `node` is doing now (or its outcome, when `done`).
    pub fn state(&self, node: &str, msg: &str, done: bool) {
        match self {
            Progress::Bars { bars, .. } => {
                if let Some(b) = bars.get(node) {
                    if done {
                        b.finish_with_message(msg.to_string());
                    } else {
                        b.set_message(msg.to_string());
                    }
                }
            }
            Progress::Lines { .. } => eprintln!("load: {node}: {msg}"),
        }
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}
