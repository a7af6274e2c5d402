//! Progress on stderr for long operations: a line rewritten in place on a
//! terminal, a line every few seconds otherwise (logs, CI).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use streamfs_core::ops::Progress;

pub struct Reporter {
    tty: bool,
    last: Option<Instant>,
    started: Instant,
    shown: bool,
}

impl Reporter {
    pub fn new() -> Reporter {
        Reporter {
            tty: std::io::stderr().is_terminal(),
            last: None,
            started: Instant::now(),
            shown: false,
        }
    }

    pub fn update(&mut self, p: Progress<'_>) {
        let Progress::Bytes { path, done, total } = p;
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        let now = Instant::now();
        // Small jobs stay quiet: only what lasts over a second shows progress.
        if now - self.started < Duration::from_secs(1) || self.last.is_some_and(|l| now - l < every)
        {
            return;
        }
        self.last = Some(now);
        let rate = done as f64 / (now - self.started).as_secs_f64().max(1e-3) / 1e6;
        let pct = if total > 0 {
            done as f64 * 100.0 / total as f64
        } else {
            100.0
        };
        let line = format!(
            "{pct:5.1}% {}/{} MB {rate:.0} MB/s {path}",
            done / 1_000_000,
            total / 1_000_000
        );
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        self.shown = true;
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if self.tty && self.shown {
            eprintln!();
        }
    }
}
