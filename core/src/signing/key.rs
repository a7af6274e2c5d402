//! The secret key that signs a store's metadata, and key generation.

use std::path::Path;

use pgp::{
    composed::{
        ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, KeyType,
        SecretKeyParamsBuilder, SignedSecretKey,
    },
    crypto::hash::HashAlgorithm,
    packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData},
    ser::Serialize,
    types::{KeyDetails, KeyVersion, Password, Timestamp},
};

use super::{HASH, hex_upper, pgp_err};
use crate::error::{Error, IoContext, Result};

/// An unprotected OpenPGP v4 secret key, ready to sign.
///
/// The store signs at every commit, unattended, so the key cannot ask for a
/// passphrase: protected keys are refused at load time rather than failing at
/// the first commit.
#[derive(Debug, Clone)]
pub struct SigningKey {
    key: SignedSecretKey,
    signer: Signer,
}

/// Which component of the key makes signatures: gpg's keys sign with their
/// primary key, but a key whose primary is certify-only signs with a subkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    Primary,
    Subkey(usize),
}

impl SigningKey {
    /// Reads a secret key file, armored (`gpg --export-secret-keys --armor`)
    /// or binary.
    pub fn load(path: &Path) -> Result<SigningKey> {
        let bytes = std::fs::read(path).at(path)?;
        Self::from_bytes(&bytes)
            .map_err(|e| Error::Signature(format!("{}: {}", path.display(), message_of(e))))
    }

    /// Parses a secret key, armored or binary. The first key of the data is
    /// used.
    pub fn from_bytes(bytes: &[u8]) -> Result<SigningKey> {
        let (key, _headers) = SignedSecretKey::from_reader_single(bytes)
            .map_err(|e| pgp_err("not an OpenPGP secret key", e))?;
        Self::from_key(key)
    }

    fn from_key(key: SignedSecretKey) -> Result<SigningKey> {
        if key.primary_key.version() != KeyVersion::V4 {
            return Err(Error::Signature(format!(
                "key {} is a {:?} key; only v4 keys are supported, because gpgv 2.2 \
                 cannot check signatures made by newer keys",
                hex_upper(key.primary_key.fingerprint().as_bytes()),
                key.primary_key.version()
            )));
        }
        key.verify_bindings()
            .map_err(|e| pgp_err("the key's self-signatures do not verify", e))?;
        let signer = pick_signer(&key)?;
        let encrypted = match signer {
            Signer::Primary => key.primary_key.secret_params().is_encrypted(),
            Signer::Subkey(i) => key.secret_subkeys[i].key.secret_params().is_encrypted(),
        };
        if encrypted {
            return Err(Error::Signature(
                "the secret key is protected by a passphrase; commits sign unattended, so \
                 the key must be stored unprotected (gpg: --passphrase '' --pinentry-mode \
                 loopback when exporting, or remove the passphrase with --change-passphrase)"
                    .into(),
            ));
        }
        Ok(SigningKey { key, signer })
    }

    /// The primary key's v4 fingerprint, 40 upper-case hex digits as gpg
    /// prints it.
    pub fn fingerprint(&self) -> String {
        hex_upper(self.key.primary_key.fingerprint().as_bytes())
    }

    /// When the key was made, and when the key that signs stops being valid
    /// (Unix seconds; `None`: never). The expiry is the earliest of the
    /// primary key's and, when a subkey signs, that subkey's, each taken
    /// from its newest self-signature, since `gpg --quick-set-expire` adds
    /// a signature rather than changing the old one. `mountctl status`
    /// warns ahead of it: past it, gpgv refuses every signature made.
    pub fn validity(&self) -> (i64, Option<i64>) {
        let primary = &self.key.primary_key;
        let created = i64::from(primary.created_at().as_secs());
        let newest_expiry = |sigs: &mut dyn Iterator<Item = &pgp::packet::Signature>,
                             since: i64| {
            sigs.max_by_key(|s| s.created().map_or(0, |t| t.as_secs()))
                .and_then(|s| s.key_expiration_time())
                .map(|d| std::time::Duration::from(d).as_secs())
                .filter(|&d| d > 0)
                .map(|d| since + d as i64)
        };
        let mut self_sigs = self
            .key
            .details
            .users
            .iter()
            .flat_map(|u| u.signatures.iter())
            .chain(self.key.details.direct_signatures.iter());
        let mut expires = newest_expiry(&mut self_sigs, created);
        if let Signer::Subkey(i) = self.signer {
            let sub = &self.key.secret_subkeys[i];
            let sub_created = i64::from(sub.key.created_at().as_secs());
            if let Some(e) = newest_expiry(&mut sub.signatures.iter(), sub_created) {
                expires = Some(expires.map_or(e, |p| p.min(e)));
            }
        }
        (created, expires)
    }

    /// The matching public key, armored: what clients put in their keyring.
    pub fn public_key_armored(&self) -> Result<String> {
        self.key
            .to_public_key()
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| pgp_err("cannot armor the public key", e))
    }

    /// The matching public key in binary form: a keyring file as
    /// `gpgv --keyring` wants it (gpgv 2.2 does not read armored keys).
    pub fn public_keyring(&self) -> Result<Vec<u8>> {
        self.key
            .to_public_key()
            .to_bytes()
            .map_err(|e| pgp_err("cannot serialize the public key", e))
    }

    /// Clearsigns `text` (the `.sjson` form of a `.json` file).
    ///
    /// The output has the layout gpg gives it, which python-simplestreams
    /// depends on: `util.read_signed` drops the first non-empty line after
    /// the `BEGIN PGP SIGNED MESSAGE` line, taking it for the `Hash:` header,
    /// so that header must be there (rpgp writes it from the signature's
    /// digest). As gpg does, the text's final line break is the one that
    /// ends the body before `BEGIN PGP SIGNATURE` and is not signed, so a
    /// `.json` ending in a newline gives the same `.sjson` bytes gpg would
    /// (`}` directly followed by the armor) and [`Keyring::verify_cleartext`]
    /// gives the `.json` back byte for byte. Like gpg, spaces and tabs at
    /// line ends are dropped (the signature could not cover them anyway);
    /// JSON never has meaningful ones.
    ///
    /// [`Keyring::verify_cleartext`]: super::Keyring::verify_cleartext
    pub fn sign_cleartext(&self, text: &str) -> Result<String> {
        let body = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        let msg = match self.signer {
            Signer::Primary => clearsign(body, &self.key.primary_key)?,
            Signer::Subkey(i) => clearsign(body, &self.key.secret_subkeys[i].key)?,
        };
        msg.to_armored_string(ArmorOptions::default())
            .map_err(|e| pgp_err("cannot armor the clearsigned message", e))
    }

    /// An armored detached signature of `data` (the `.json.gpg` file), of
    /// binary type like `gpg --detach-sign`.
    pub fn sign_detached(&self, data: &[u8]) -> Result<String> {
        let sig = match self.signer {
            Signer::Primary => detached(data, &self.key.primary_key)?,
            Signer::Subkey(i) => detached(data, &self.key.secret_subkeys[i].key)?,
        };
        // The `DetachedSignature` serializes as a complete signature packet
        // (header included); armoring its inner `Signature` instead would
        // write the packet body alone, which gpgv rejects.
        sig.to_armored_string(ArmorOptions::default())
            .map_err(|e| pgp_err("cannot armor the signature", e))
    }
}

/// The bare message of an error, so that [`SigningKey::load`] can put the
/// path in front of it.
fn message_of(e: Error) -> String {
    match e {
        Error::Signature(m) => m,
        other => other.to_string(),
    }
}

/// The primary key when its self-signature allows signing (or states no
/// flags at all, as keys older than RFC 4880 do), else the first
/// signing-capable secret subkey.
fn pick_signer(key: &SignedSecretKey) -> Result<Signer> {
    let self_sigs = key
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .chain(key.details.direct_signatures.iter());
    let mut any_flags = false;
    let mut primary_signs = false;
    for sig in self_sigs {
        let has_flags = sig.config().is_some_and(|c| {
            c.hashed_subpackets()
                .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
        });
        any_flags |= has_flags;
        primary_signs |= has_flags && sig.key_flags().sign();
    }
    if primary_signs || !any_flags {
        return Ok(Signer::Primary);
    }
    key.secret_subkeys
        .iter()
        .position(|sub| sub.signatures.iter().any(|s| s.key_flags().sign()))
        .map(Signer::Subkey)
        .ok_or_else(|| {
            Error::Signature("the key has no signing-capable (secret) key or subkey".into())
        })
}

/// A v4 signature configuration with the subpackets gpg itself puts in data
/// signatures: creation time and issuer fingerprint (hashed), issuer key id
/// (unhashed, for gpgv 2.2 which looks keys up by id).
fn config_for<K: pgp::types::SigningKey>(
    key: &K,
    typ: SignatureType,
) -> pgp::errors::Result<SignatureConfig> {
    let mut config = SignatureConfig::v4(typ, key.algorithm(), HASH);
    config.hashed_subpackets = vec![
        Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::now()))?,
        Subpacket::regular(SubpacketData::IssuerFingerprint(key.fingerprint()))?,
    ];
    config.unhashed_subpackets = vec![Subpacket::regular(SubpacketData::IssuerKeyId(
        key.legacy_key_id(),
    ))?];
    Ok(config)
}

fn clearsign<K: pgp::types::SigningKey>(body: &str, key: &K) -> Result<CleartextSignedMessage> {
    // Verifiers (gpg, and rpgp itself) strip trailing spaces and tabs from
    // each line before hashing, as RFC 9580 §7.2 says, but rpgp's signing
    // side hashes the text with only its line endings normalized: text with
    // trailing blanks would never verify. Strip them first, as gpg does in
    // its output too.
    let body = strip_trailing_blanks(body);
    CleartextSignedMessage::new_many(&body, |normalized| {
        let config = config_for(key, SignatureType::Text)?;
        Ok(vec![config.sign(
            key,
            &Password::empty(),
            normalized.as_bytes(),
        )?])
    })
    .map_err(|e| pgp_err("cannot clearsign", e))
}

fn detached<K: pgp::types::SigningKey>(data: &[u8], key: &K) -> Result<DetachedSignature> {
    let sig = config_for(key, SignatureType::Binary)
        .and_then(|config| config.sign(key, &Password::empty(), data))
        .map_err(|e| pgp_err("cannot sign", e))?;
    Ok(DetachedSignature::new(sig))
}

/// Removes spaces and tabs before every line break (and at the end), as the
/// cleartext signature framework does before hashing.
pub(super) fn strip_trailing_blanks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (content, end) = match line.strip_suffix("\r\n") {
            Some(c) => (c, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(c) => (c, "\n"),
                None => (line, ""),
            },
        };
        out.push_str(content.trim_end_matches([' ', '\t']));
        out.push_str(end);
    }
    out
}

/// The public-key algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgo {
    /// EdDSA over Curve25519 in its v4 ("legacy", algorithm 22) encoding:
    /// the one gpg 2.2 makes and checks. The RFC 9580 Ed25519 algorithm
    /// (27) is unknown to gpgv 2.2.
    #[default]
    Ed25519,
    /// RSA with the given modulus size in bits (at least 2048).
    Rsa(u32),
}

/// Generates a v4 key whose primary key certifies and signs, without
/// subkeys (metadata signing needs nothing else) and without passphrase.
/// Returns the armored secret key and the armored public key.
pub fn generate_key(uid: &str, algo: KeyAlgo) -> Result<(String, String)> {
    let key_type = match algo {
        KeyAlgo::Ed25519 => KeyType::Ed25519Legacy,
        KeyAlgo::Rsa(bits) => KeyType::Rsa(bits),
    };
    let params = SecretKeyParamsBuilder::default()
        .version(KeyVersion::V4)
        .key_type(key_type)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(uid.to_string())
        .preferred_hash_algorithms(
            [HashAlgorithm::Sha512, HashAlgorithm::Sha256]
                .into_iter()
                .collect(),
        )
        .build()
        .map_err(|e| Error::Signature(format!("cannot generate a key: {e}")))?;
    let key = params
        .generate(rand::thread_rng())
        .map_err(|e| pgp_err("cannot generate a key", e))?;
    let secret = key
        .to_armored_string(ArmorOptions::default())
        .map_err(|e| pgp_err("cannot armor the secret key", e))?;
    let public = key
        .to_public_key()
        .to_armored_string(ArmorOptions::default())
        .map_err(|e| pgp_err("cannot armor the public key", e))?;
    Ok((secret, public))
}
