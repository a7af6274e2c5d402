//! Mirrors of a streamfs store, in the manner of MirrorManager: a crawl
//! that finds which mirrors carry the current (or a still valid earlier)
//! copy of each stream. The mirror list, the crawl state and the metalinks
//! made from them live in `streamfs_core::mirrors` (every commit renders
//! metalinks); they are re-exported here under their former names.

pub mod crawl;
pub mod error;

pub use error::{Error, Result};
pub use streamfs_core::mirrors::digests as hashes;
pub use streamfs_core::mirrors::{CrawlState, Mirror, MirrorsFile, Tree, metalink, model, state};
