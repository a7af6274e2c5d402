//! Mirrors of a streamfs store, in the manner of MirrorManager: the list of
//! mirrors (`mirrors.toml` in the store), a crawl that finds which mirrors
//! carry the current (or a still valid earlier) copy of each stream, and
//! the metalinks that hand clients the up-to-date mirrors with each file's
//! size and hashes.

pub mod crawl;
pub mod error;
pub mod hashes;
pub mod metalink;
pub mod model;
pub mod state;

pub use error::{Error, Result};
pub use model::{Mirror, MirrorsFile, Tree};
pub use state::CrawlState;
