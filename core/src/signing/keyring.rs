//! Public keys that metadata signatures are checked against.

use std::path::Path;

use pgp::{
    composed::{
        CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey,
        SignedPublicSubKey,
    },
    packet::{Packet, PacketParser, PublicKey, PublicSubkey, Signature, SignatureType},
    types::KeyDetails,
};

use super::{CLEARSIGN_HEADER, hex_upper, key::strip_trailing_blanks, pgp_err};
use crate::error::{Error, IoContext, Result};

/// A set of trusted public keys, the equivalent of `gpgv --keyring K`.
///
/// Every key in the file is trusted as it is, like gpgv does: there is no
/// web of trust, and no expiry or revocation check. Subkeys are used only
/// when their binding signature verifies, so a subkey cannot be grafted onto
/// a trusted key.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

/// A key component that can have made a data signature.
#[derive(Clone, Copy)]
enum Component<'a> {
    Primary(&'a PublicKey),
    Subkey(&'a PublicSubkey),
}

impl Component<'_> {
    fn fingerprint(&self) -> pgp::types::Fingerprint {
        match self {
            Component::Primary(k) => k.fingerprint(),
            Component::Subkey(k) => k.fingerprint(),
        }
    }

    fn key_id(&self) -> pgp::types::KeyId {
        match self {
            Component::Primary(k) => k.legacy_key_id(),
            Component::Subkey(k) => k.legacy_key_id(),
        }
    }

    fn verify(&self, sig: &Signature, data: &[u8]) -> pgp::errors::Result<()> {
        match self {
            Component::Primary(k) => sig.verify(*k, data),
            Component::Subkey(k) => sig.verify(*k, data),
        }
    }

    /// Does the signature name this component as its issuer? A signature
    /// that names no issuer at all is tried against every key.
    fn is_issuer_of(&self, sig: &Signature) -> bool {
        let fprs = sig.issuer_fingerprint();
        let ids = sig.issuer_key_id();
        if fprs.is_empty() && ids.is_empty() {
            return true;
        }
        let fpr = self.fingerprint();
        let id = self.key_id();
        fprs.iter().any(|f| **f == fpr) || ids.iter().any(|i| **i == id)
    }
}

/// What one signature amounts to against the keyring.
enum Check {
    /// Verified by a key of the keyring.
    Good,
    /// Made by a key of the keyring, but does not verify.
    Bad(String),
    /// Made by no key of the keyring.
    Unknown(String),
}

impl Keyring {
    /// Reads a keyring file: gpg's binary keyring format (`gpg --export`,
    /// or a `--no-default-keyring --keyring X.gpg` file with its trust
    /// packets), or one or more armored public key blocks.
    pub fn load(path: &Path) -> Result<Keyring> {
        let bytes = std::fs::read(path).at(path)?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Signature(m) => Error::Signature(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses keyring data; see [`Keyring::load`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring> {
        // gpg 2.1+ keeps its own keys in a "keybox" (pubring.kbx), which is
        // not OpenPGP data; say so rather than "no key found".
        if bytes.len() >= 12 && &bytes[8..12] == b"KBXf" {
            return Err(Error::Signature(
                "this is a gpg keybox (pubring.kbx), not a keyring; \
                 export one with `gpg --export KEYID > keyring.gpg`"
                    .into(),
            ));
        }
        let keys = if is_armored(bytes) {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| Error::Signature("armored keyring is not valid UTF-8".into()))?;
            let mut keys = Vec::new();
            for block in armor_blocks(text) {
                let packets = dearmor(block.as_bytes(), "cannot read armored public key")?;
                keys.extend(parse_binary(&packets));
            }
            keys
        } else {
            parse_binary(bytes)
        };
        let keys: Vec<SignedPublicKey> = keys.into_iter().map(with_bound_subkeys).collect();
        if keys.is_empty() {
            return Err(Error::Signature("no OpenPGP public key found".into()));
        }
        Ok(Keyring { keys })
    }

    /// The primary fingerprints of the keys, upper-case hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| hex_upper(k.fingerprint().as_bytes()))
            .collect()
    }

    /// Checks a clearsigned message (an `.sjson`) and returns the text that
    /// was signed, dash-escaping undone, with a final line break: for an
    /// `.sjson` made from a `.json` file by gpg or by
    /// [`SigningKey::sign_cleartext`](super::SigningKey::sign_cleartext),
    /// exactly the `.json`.
    pub fn verify_cleartext(&self, signed: &str) -> Result<String> {
        if !signed.trim_start().starts_with(CLEARSIGN_HEADER) {
            return Err(Error::Signature(format!(
                "no signature: not a clearsigned message (no '{CLEARSIGN_HEADER}' line)"
            )));
        }
        // The signature block read whole first (see `dearmor`): a malformed
        // one is an error before rpgp's lazy reader can trip on it.
        if let Some(at) = signed.rfind("-----BEGIN PGP SIGNATURE-----") {
            dearmor(&signed.as_bytes()[at..], "malformed clearsigned message")?;
        }
        let (msg, _) = CleartextSignedMessage::from_string(signed)
            .map_err(|e| pgp_err("malformed clearsigned message", e))?;
        let signed_text = msg.signed_text();
        self.check_all(msg.signatures(), signed_text.as_bytes())?;
        let mut text = String::with_capacity(msg.text().len() + 1);
        for line in msg.text().split_inclusive('\n') {
            // Undo the dash escaping, then strip blanks, in the order the
            // signed text was computed in.
            let escaped = line.strip_prefix("- ").unwrap_or(line);
            text.push_str(&strip_trailing_blanks(escaped));
        }
        text.push('\n');
        Ok(text)
    }

    /// Checks a detached signature (a `.json.gpg`, armored or binary) of
    /// `data`.
    pub fn verify_detached(&self, data: &[u8], signature: &[u8]) -> Result<()> {
        let binary;
        let signature = if is_armored(signature) {
            binary = dearmor(signature, "malformed signature")?;
            &binary[..]
        } else {
            signature
        };
        let (sigs, _) = DetachedSignature::from_reader_many(signature)
            .map_err(|e| pgp_err("malformed signature", e))?;
        let sigs = sigs
            .map(|s| s.map(|s| s.signature))
            .collect::<pgp::errors::Result<Vec<_>>>()
            .map_err(|e| pgp_err("malformed signature", e))?;
        self.check_all(&sigs, data)
    }

    /// Succeeds when at least one signature verifies and none made by a
    /// known key fails. Signatures by keys outside the keyring are ignored
    /// when another one is good (a file may be signed by several parties),
    /// but a bad signature by a trusted key always fails: it means the data
    /// changed.
    fn check_all(&self, sigs: &[Signature], data: &[u8]) -> Result<()> {
        if sigs.is_empty() {
            return Err(Error::Signature("no signature found".into()));
        }
        let mut good = false;
        let mut unknown = Vec::new();
        for sig in sigs {
            match self.check(sig, data) {
                Check::Good => good = true,
                Check::Bad(m) => return Err(Error::Signature(m)),
                Check::Unknown(m) => unknown.push(m),
            }
        }
        if good {
            Ok(())
        } else {
            Err(Error::Signature(unknown.join("; ")))
        }
    }

    fn check(&self, sig: &Signature, data: &[u8]) -> Check {
        if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
            return Check::Bad(format!(
                "BAD signature: a {:?} signature is not a signature of data",
                sig.typ()
            ));
        }
        let mut last_err = None;
        for key in &self.keys {
            for c in components(key) {
                if !c.is_issuer_of(sig) {
                    continue;
                }
                match c.verify(sig, data) {
                    Ok(()) => return Check::Good,
                    Err(e) => {
                        // rpgp's reason is an internal assertion (hash
                        // prefixes differ): useful in a debug log, noise in
                        // the message a user reads.
                        tracing::debug!("signature check failed: {e}");
                        last_err = Some(format!(
                            "BAD signature from key {}: the signed text was changed \
                             after signing, or the signature is damaged",
                            hex_upper(key.fingerprint().as_bytes())
                        ))
                    }
                }
            }
        }
        if let Some(m) = last_err {
            return Check::Bad(m);
        }
        let issuer = sig
            .issuer_fingerprint()
            .first()
            .map(|f| hex_upper(f.as_bytes()))
            .or_else(|| sig.issuer_key_id().first().map(|i| hex_upper(i.as_ref())))
            .unwrap_or_else(|| "?".into());
        Check::Unknown(format!(
            "signature made by unknown key {issuer} (keyring holds {})",
            self.fingerprints().join(", ")
        ))
    }
}

fn components(key: &SignedPublicKey) -> impl Iterator<Item = Component<'_>> {
    std::iter::once(Component::Primary(&key.primary_key))
        .chain(key.public_subkeys.iter().map(|s| Component::Subkey(&s.key)))
}

/// Drops subkeys whose binding signature does not verify against their
/// primary key.
fn with_bound_subkeys(mut key: SignedPublicKey) -> SignedPublicKey {
    let primary = key.primary_key.clone();
    key.public_subkeys.retain(|sub: &SignedPublicSubKey| {
        let ok = sub.verify_bindings(&primary).is_ok();
        if !ok {
            tracing::debug!(
                "ignoring subkey {} of {}: its binding signature does not verify",
                hex_upper(sub.key.fingerprint().as_bytes()),
                hex_upper(primary.fingerprint().as_bytes())
            );
        }
        ok
    });
    key
}

/// Keeps a parsed key; a key rpgp cannot read (unknown algorithm, v3, …) is
/// skipped, as gpgv skips keys it cannot use.
fn keep_parsed(k: pgp::errors::Result<SignedPublicKey>) -> Option<SignedPublicKey> {
    match k {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::debug!("skipping a key of the keyring: {e}");
            None
        }
    }
}

/// Binary keyring: the packets of each key in sequence. gpg's own keyring
/// files also hold trust packets after keys and signatures; they would stop
/// rpgp's key parser in the middle of a key, so they are dropped first, with
/// any packet the parser reports as unsupported.
fn parse_binary(bytes: &[u8]) -> Vec<SignedPublicKey> {
    let packets = PacketParser::new(bytes).filter(|p| match p {
        Ok(Packet::Trust(_)) | Ok(Packet::Marker(_)) | Ok(Packet::Padding(_)) => false,
        Ok(_) => true,
        Err(pgp::errors::Error::Unsupported { .. }) => false,
        Err(e) => {
            tracing::debug!("keyring: unreadable packet: {e}");
            false
        }
    });
    SignedPublicKey::from_packets(packets.peekable())
        .filter_map(keep_parsed)
        .collect()
}

/// The packets inside an armored block, read whole before any is parsed.
///
/// rpgp's parsers read armor lazily and, after a malformed footer, read the
/// armor again and panic (`pgp` 0.21, `armor/reader.rs`: "invalid state";
/// found by the `cleartext` fuzz target on a keyring). Dearmoring first
/// stops at the first error, which becomes an error naming `what`.
fn dearmor(armored: &[u8], what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut packets = Vec::new();
    pgp::armor::Dearmor::new(armored)
        .read_to_end(&mut packets)
        .map_err(|e| Error::Signature(format!("{what}: {e}")))?;
    Ok(packets)
}

fn is_armored(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(b"-----BEGIN ")
}

/// Splits text holding several armored blocks (`cat a.asc b.asc`) into the
/// blocks, since rpgp's dearmoring reads one block.
fn armor_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let from_begin = &rest[begin..];
        let end = from_begin
            .find("-----END ")
            .and_then(|e| from_begin[e..].find('\n').map(|n| e + n + 1))
            .unwrap_or(from_begin.len());
        blocks.push(&from_begin[..end]);
        rest = &from_begin[end..];
    }
    blocks
}
