//! OpenPGP signing and verification of stream metadata.
//!
//! simplestreams publishes every metadata file three times: `X.json`, a
//! clearsigned `X.sjson` and an armored detached signature `X.json.gpg`.
//! Clients (python-simplestreams, MAAS) check them with `gpgv --keyring K`, so
//! everything made here must satisfy gpgv 2.2: v4 keys only (gpgv 2.2 predates
//! v6 keys and the RFC 9580 Ed25519 encoding), v4 signatures, and the
//! legacy EdDSA algorithm for Ed25519.
//!
//! The implementation is the `pgp` crate (rpgp); its errors are turned into
//! [`Error::Signature`](crate::Error::Signature) with a message naming what
//! failed.

mod key;
mod keyring;

#[cfg(test)]
mod tests;

pub use key::{KeyAlgo, SigningKey, generate_key};
pub use keyring::Keyring;

use crate::Error;

/// The digest used for every signature made here. SHA-512 is what gpg 2.2
/// picks for its own keys (their preference list starts with it), it is
/// accepted for RSA and legacy EdDSA alike, and it keeps our `Hash:` header the
/// same as the one in signatures made by meph2-util with gpg.
const HASH: pgp::crypto::hash::HashAlgorithm = pgp::crypto::hash::HashAlgorithm::Sha512;

/// The first line of a clearsigned message.
const CLEARSIGN_HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";

/// Wraps an rpgp error with what we were doing when it happened.
fn pgp_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Signature(format!("{what}: {e}"))
}

/// Upper-case hex without separators, as gpg prints fingerprints and key ids.
fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}
