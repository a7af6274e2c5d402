//! streamfs-build: MAAS boot images from Ubuntu cloud-image roots, as
//! meph2-build makes them. It reads meph2's YAML config, plans the products
//! and items of one (release, arch, version), runs a builder with meph2's
//! argv into a staging directory, and writes the streams metadata. The CLI
//! lives in mountctl (`mountctl build`, `mountctl cloudimg-sync`).

pub mod argv;
pub mod builtin;
pub mod cloudimg;
pub mod config;
pub mod error;
pub mod fake;
pub mod metadata;
pub mod plan;
pub mod run;
pub mod stage;
pub mod ubuntu;

pub use error::{Error, Result};
