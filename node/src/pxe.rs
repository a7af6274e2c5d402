//! PXE links: `pxelinux.cfg/01-<mac>` pointing at the loader sends a node
//! into the imaging environment at its next boot. A link left behind would
//! reimage the node at every reboot, so links are held by a guard that
//! removes them when dropped (success, failure, panic) and by a list that a
//! SIGINT handler can empty.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// The links a run has made, removable from anywhere (a signal handler).
#[derive(Clone, Default)]
pub struct Links(Arc<Mutex<Vec<PathBuf>>>);

impl Links {
    /// Makes `dir/name` -> `loader`, replacing a stale one.
    pub fn add(&self, dir: &Path, name: &str, loader: &str) -> Result<()> {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(loader, &link)
            .map_err(Error::io(format!("creating PXE link {}", link.display())))?;
        self.0.lock().expect("links lock").push(link);
        Ok(())
    }

    /// Removes every link made so far; the ones that could not be.
    pub fn remove_all(&self) -> Vec<String> {
        let mut links = self.0.lock().expect("links lock");
        let mut failed = Vec::new();
        for l in links.drain(..) {
            match std::fs::remove_file(&l) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => failed.push(format!("{}: {e}", l.display())),
            }
        }
        failed
    }
}

/// Removes the links when dropped.
pub struct Guard(pub Links);

impl Drop for Guard {
    fn drop(&mut self) {
        for f in self.0.remove_all() {
            tracing::error!("PXE link left behind: {f}");
        }
    }
}
