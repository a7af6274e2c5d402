//! Metadata operations on a store.
