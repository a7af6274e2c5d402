//! The store's writer lock: one writer at a time, the mount and `mountctl`
//! alike. It is an advisory `flock` on `STORE/lock`, so the kernel releases it
//! when its holder dies, and a killed writer never wedges the store.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Waits for the lock.
    pub fn acquire(path: &Path) -> Result<StoreLock> {
        let file = open(path)?;
        file.lock().at(path)?;
        Ok(StoreLock { _file: file })
    }

    /// Takes the lock if free, else `Error::Locked`.
    pub fn try_acquire(path: &Path) -> Result<StoreLock> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(StoreLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked(PathBuf::from(path))),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
        }
    }
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at(path)
}
