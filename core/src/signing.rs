//! OpenPGP signing and verification of stream metadata.

use std::path::Path;

use crate::error::{Error, Result};

/// A secret key that signs generated metadata.
#[derive(Debug)]
pub struct SigningKey {
    _private: (),
}

impl SigningKey {
    pub fn load(path: &Path) -> Result<SigningKey> {
        Err(Error::Signature(format!(
            "{}: signing is not available in this build",
            path.display()
        )))
    }

    pub fn sign_cleartext(&self, _text: &str) -> Result<String> {
        Err(Error::Signature(
            "signing is not available in this build".into(),
        ))
    }

    pub fn sign_detached(&self, _data: &[u8]) -> Result<String> {
        Err(Error::Signature(
            "signing is not available in this build".into(),
        ))
    }
}
