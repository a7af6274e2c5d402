//! The streamfs mount: a thin FUSE adapter over a filesystem API that tests can
//! call without a kernel. See DESIGN §3; the mount itself is built on
//! `streamfs-core`'s store and commits.
