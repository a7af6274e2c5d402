//! The streamfs mount: a thin FUSE adapter (`fuse`) over a filesystem API
//! (`fs`) that tests can call without a kernel, over `streamfs-core`'s store
//! and commits (DESIGN §3). Inode numbers come from `inode`, errno values
//! from `errno` alone; `verify` checks blobs before they are served.

pub mod errno;
pub mod fs;
pub mod fuse;
pub mod inode;
pub mod verify;
