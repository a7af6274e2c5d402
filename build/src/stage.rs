//! Per-step progress on one line each, for people and for the build service
//! that follows a build through its stderr:
//!
//! ```text
//! stage NAME started
//! stage NAME 42%
//! stage NAME done in 1.23s
//! stage NAME failed in 0.40s: REASON
//! ```

use std::time::Instant;

use crate::error::Result;

/// Where stage lines go (stderr in the CLI, a Vec in tests).
pub struct Stages<'a> {
    sink: &'a mut dyn FnMut(&str),
}

impl<'a> Stages<'a> {
    pub fn new(sink: &'a mut dyn FnMut(&str)) -> Stages<'a> {
        Stages { sink }
    }

    /// Runs `f` as stage `name`, reporting its start and its end with the
    /// time it took.
    pub fn run<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let t = self.begin(name);
        let r = f(self);
        self.end(name, t, &r);
        r
    }

    /// Reports the start of stage `name`, for a stage that runs alongside
    /// others; [`Stages::end`] reports its end.
    pub fn begin(&mut self, name: &str) -> Instant {
        (self.sink)(&format!("stage {name} started"));
        Instant::now()
    }

    /// Reports the end of stage `name` begun at `t`.
    pub fn end<T>(&mut self, name: &str, t: Instant, r: &Result<T>) {
        let secs = t.elapsed().as_secs_f64();
        match r {
            Ok(_) => (self.sink)(&format!("stage {name} done in {secs:.2}s")),
            Err(e) => (self.sink)(&format!("stage {name} failed in {secs:.2}s: {e}")),
        }
    }

    /// A percentage within a running stage.
    pub fn percent(&mut self, name: &str, pct: u8) {
        (self.sink)(&format!("stage {name} {pct}%"));
    }

    /// A free-form note (not a stage line).
    pub fn note(&mut self, text: &str) {
        (self.sink)(text);
    }
}
