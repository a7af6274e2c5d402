//! Testbed node imaging: which nodes a spec means, the layered settings and
//! inventory that say where they are, and the chunked disk image format
//! that images are stored in.

pub mod agent;
pub mod cmc;
pub mod error;
pub mod image;
pub mod images;
pub mod inventory;
pub mod leases;
pub mod nodespec;
pub mod proto;
pub mod pxe;
pub mod settings;
pub mod transfer;

pub use error::{Error, Result};
