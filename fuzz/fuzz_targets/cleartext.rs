//! OpenPGP input from the network and from operators: clearsigned metadata
//! (`.sjson`) as `mountctl query`/`verify` check it, detached signatures
//! (`.json.gpg`), and keyrings. The keyring checked against is
//! `$STREAMFS_FUZZ_KEYRING` (the fixtures' test keyring, which signed the
//! seed `.sjson` files, so seeds reach the good-signature path), else a key
//! generated at start.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use streamfs_core::signing::{KeyAlgo, Keyring, generate_key};

fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| match std::env::var_os("STREAMFS_FUZZ_KEYRING") {
        Some(path) => Keyring::load(std::path::Path::new(&path)).expect("STREAMFS_FUZZ_KEYRING"),
        None => {
            let (_, public) = generate_key("Fuzz <fuzz@example.invalid>", KeyAlgo::Ed25519)
                .expect("key generation");
            Keyring::from_bytes(public.as_bytes()).expect("generated keyring")
        }
    })
}

const SIGNED_DATA: &[u8] = b"{\n \"format\": \"index:1.0\"\n}\n";

fuzz_target!(|data: &[u8]| {
    let keyring = keyring();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(signed) = keyring.verify_cleartext(text) {
            assert!(signed.ends_with('\n'), "signed text without its line break");
        }
    }
    let _ = keyring.verify_detached(SIGNED_DATA, data);
    let _ = Keyring::from_bytes(data);
});
