//! streamfs-core: the simplestreams model, the content-addressed store and the
//! metadata operations (insert, promote, clean-md, remove, orphans, export,
//! fsck) shared by the `streamfs` mount and the `mountctl` CLI.
//!
//! Nothing here knows about FUSE or the command line: every operation returns
//! `Result<_, Error>` so both front-ends decide how to report it.

pub mod error;
pub mod fetch;
pub mod json;
pub mod mirrors;
pub mod ops;
pub mod relpath;
pub mod signing;
pub mod status;
pub mod store;
pub mod streams;
pub mod timefmt;

pub use error::{Error, Result};
