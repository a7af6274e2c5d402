//! `mountctl status [--json]`: the store at a glance (see
//! `streamfs_core::status`). Exit 0, or 1 when something needs attention
//! (a warning), so that monitoring can run it as a check.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use streamfs_core::status::{Status, parse_mountinfo};
use streamfs_core::timefmt;

use super::Context;
use crate::cli::StatusArgs;

pub fn run(ctx: &Context, a: StatusArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let s = Status::of(&store, &parse_mountinfo(&mountinfo))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", render(&s));
    }
    for w in &s.warnings {
        eprintln!("mountctl: warning: {w}");
    }
    Ok(if s.warnings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn when(t: i64) -> String {
    timefmt::rfc2822(timefmt::from_unix(t))
}

/// Bytes as a person reads them: exact count, then binary units.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{n} B ({v:.1} {unit})")
}

fn render(s: &Status) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "store       {}", s.store.display());
    let _ = writeln!(
        o,
        "generation  {} (committed {})",
        s.generation,
        when(s.committed)
    );
    let _ = writeln!(o, "streams");
    for st in &s.streams {
        let _ = write!(
            o,
            "  {:<12} {} product(s), {} version(s), {} item(s), {}",
            st.name,
            st.products,
            st.versions,
            st.items,
            bytes(st.bytes)
        );
        if st.pending_items > 0 {
            let _ = write!(o, ", {} item(s) awaiting data", st.pending_items);
        }
        o.push('\n');
    }
    let p = &s.pool;
    let _ = writeln!(o, "pool        {} blob(s), {}", p.blobs, bytes(p.bytes));
    let _ = writeln!(
        o,
        "dedup       streams reference {}, stored once as {}: {} saved",
        bytes(p.logical_bytes),
        bytes(p.referenced_bytes),
        bytes(p.dedup_saved_bytes)
    );
    let r = &s.orphans;
    let _ = write!(
        o,
        "orphans     {} waiting, {}, grace {}s",
        r.count,
        bytes(r.bytes),
        r.grace_secs
    );
    if let Some(due) = r.next_reap_due {
        let _ = write!(o, "; next reap due {}", when(due));
    }
    o.push('\n');
    match &s.signing {
        None => {
            let _ = writeln!(o, "signing     off (no [signing] key in store.toml)");
        }
        Some(k) => {
            let _ = writeln!(
                o,
                "signing     {} ({}), created {}, {}",
                k.fingerprint,
                k.file.display(),
                when(k.created),
                k.expires.map_or("never expires".to_string(), |e| format!(
                    "expires {}",
                    when(e)
                ))
            );
        }
    }
    if s.mounts.is_empty() {
        let _ = writeln!(o, "mounts      none");
    }
    for (i, m) in s.mounts.iter().enumerate() {
        let label = if i == 0 { "mounts" } else { "" };
        let gen_text = m.generation.map_or("generation unknown".to_string(), |g| {
            format!("generation {g}")
        });
        let _ = writeln!(
            o,
            "{label:<11} {} ({}, {}{})",
            m.mountpoint.display(),
            if m.read_only { "ro" } else { "rw" },
            gen_text,
            m.pid.map_or(String::new(), |p| format!(", pid {p}"))
        );
    }
    o
}
