//! The streamfs mount: a thin FUSE adapter (`fuse`) over a filesystem API
//! (`fs`) that tests can call without a kernel, over `streamfs-core`'s store
//! and commits (ARCHITECTURE.md §3). Inode numbers come from `inode`, errno values
//! from `errno` alone. `options` reads `-o`, `daemon` detaches and logs,
//! `reaper` reaps orphans while mounted (core decides what is due and
//! verifies blobs before they are served), `caches` drops what the kernel caches at each new
//! generation, `watchdog` tells systemd the session answers, `metrics` counts
//! requests for the opt-in Prometheus endpoint.

pub mod caches;
pub mod daemon;
pub mod errno;
pub mod fs;
pub mod fuse;
pub mod inode;
pub mod metrics;
pub mod options;
pub mod reaper;
pub mod watchdog;
