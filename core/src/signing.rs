//! OpenPGP signing and verification of stream metadata.
