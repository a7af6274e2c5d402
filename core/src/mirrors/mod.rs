//! Mirrors of a store, in the manner of MirrorManager: the mirror list
//! (`mirrors.toml`), what the last crawl found (`mirrors-state.json`) and
//! the metalinks made from both.
//!
//! They live in core, not in the crawler's crate, because every commit
//! renders a metalink beside each document it publishes
//! ([`metalink::render_beside`]): whoever commits (`mountctl`, the mount,
//! the build service) publishes metalinks that describe the new documents.

pub mod digests;
pub mod metalink;
pub mod model;
pub mod publish;
pub mod state;

pub use digests::Digests;
pub use model::{Mirror, MirrorsFile, Tree};
pub use state::CrawlState;
