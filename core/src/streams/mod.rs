//! The simplestreams formats (ARCHITECTURE.md §1): index and products documents,
//! flattening (inheritance and `_aliases`), condensing, filters and queries.

pub mod aliases;
pub mod condense;
pub mod filter;
pub mod flatten;
pub mod index;
pub mod products;
pub mod query;

pub use flatten::FlatItem;
pub use products::{Item, Products};

/// Keys that belong to the document, not to the items: never inherited into
/// a version copied from one stream into another, never condensed.
pub const DOC_KEYS: &[&str] = &[
    "format",
    "content_id",
    "datatype",
    "updated",
    "products",
    "_aliases",
];

/// Item keys that describe one file and so never move up when condensing,
/// even when every sibling has the same value (meph2-util's sticky keys).
pub const STICKY_KEYS: &[&str] = &[
    "path",
    "sha256",
    "md5",
    "size",
    "ftype",
    "kpackage",
    "di_version",
    "src_package",
    "src_release",
    "src_version",
];
