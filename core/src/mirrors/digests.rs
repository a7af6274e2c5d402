//! The size and digests a metalink carries for a file, computed in one read.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256, Sha512};

use crate::error::{IoContext, Result};

/// What identifies one version of a file: its size and digests.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Digests {
    pub size: u64,
    pub sha256: String,
    pub sha512: String,
}

impl Digests {
    pub fn of_bytes(b: &[u8]) -> Digests {
        Digests {
            size: b.len() as u64,
            sha256: hex::encode(Sha256::digest(b)),
            sha512: hex::encode(Sha512::digest(b)),
        }
    }

    pub fn of_file(path: &Path) -> Result<Digests> {
        let mut f = std::fs::File::open(path).at(path)?;
        let (mut a, mut b) = (Sha256::new(), Sha512::new());
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).at(path)?;
            if n == 0 {
                break;
            }
            a.update(&buf[..n]);
            b.update(&buf[..n]);
            size += n as u64;
        }
        Ok(Digests {
            size,
            sha256: hex::encode(a.finalize()),
            sha512: hex::encode(b.finalize()),
        })
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}
