//! sign, keygen, verify.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use streamfs_core::Error;
use streamfs_core::signing::{KeyAlgo, Keyring, generate_key};
use streamfs_core::store::write_atomic;

use super::Context;
use crate::cli::{KeygenArgs, SignArgs, VerifyArgs};

pub fn sign(ctx: &Context, a: SignArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    let Some(key) = store.signing_key()? else {
        bail!(Error::Refused(format!(
            "{}: no [signing] key configured (create one with `mountctl keygen`)",
            store.root().join("store.toml").display()
        )));
    };
    let mut txn = store.begin()?;
    let names: Vec<String> = if a.streams.is_empty() {
        store
            .config()
            .streams
            .iter()
            .map(|s| s.name.clone())
            .collect()
    } else {
        a.streams.clone()
    };
    for n in &names {
        txn.stream_mut(n)?;
    }
    let c = txn.commit()?;
    println!(
        "signed {} with key {}; generation {}",
        names.join(", "),
        key.fingerprint(),
        c.generation
    );
    Ok(ExitCode::SUCCESS)
}

/// Points `[signing] key` at `rel` in store.toml, keeping the rest of the
/// file (comments included) as the operator wrote it.
fn set_signing_key(toml_path: &Path, rel: &str) -> Result<()> {
    let text = std::fs::read_to_string(toml_path)?;
    let line = format!("key = \"{rel}\"");
    let mut out = Vec::new();
    let mut in_signing = false;
    let mut done = false;
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with('[') {
            if in_signing && !done {
                out.push(line.clone());
                done = true;
            }
            in_signing = t.starts_with("[signing]");
        }
        if in_signing
            && !done
            && (t.starts_with("key ") || t.starts_with("key=") || t.starts_with("# key"))
        {
            out.push(line.clone());
            done = true;
            continue;
        }
        out.push(l.to_string());
    }
    if in_signing && !done {
        out.push(line.clone());
        done = true;
    }
    if !done {
        // No [signing] table: add one just before the first table, after
        // the top-level keys it must not capture.
        let at = out
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .unwrap_or(out.len());
        out.splice(
            at..at,
            ["[signing]".to_string(), line.clone(), String::new()],
        );
    }
    let mut new = out.join("\n");
    new.push('\n');
    streamfs_core::store::Config::parse(&toml_path.display().to_string(), &new)?;
    write_atomic(toml_path, new.as_bytes())?;
    Ok(())
}

pub fn keygen(ctx: &Context, a: KeygenArgs) -> Result<ExitCode> {
    let store = ctx.open()?;
    if store.config().signing_key.is_some() && !a.force {
        bail!(Error::Refused(format!(
            "{}: a signing key is already configured (use --force to replace it)",
            store.root().join("store.toml").display()
        )));
    }
    let algo = match a.rsa {
        Some(bits) if !(2048..=4096).contains(&bits) => {
            bail!(Error::Usage(format!(
                "--rsa {bits}: RSA keys must have 2048 to 4096 bits"
            )))
        }
        Some(bits) => KeyAlgo::Rsa(bits),
        None => KeyAlgo::Ed25519,
    };
    let (secret, public) = generate_key(&a.uid, algo)?;
    let keys = store.root().join("keys");
    std::fs::create_dir_all(&keys)?;
    let secret_path = keys.join("signing.asc");
    write_atomic(&secret_path, secret.as_bytes())?;
    std::fs::set_permissions(
        &secret_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    write_atomic(&keys.join("signing.pub.asc"), public.as_bytes())?;
    set_signing_key(&store.root().join("store.toml"), "keys/signing.asc")?;
    let store = ctx.open()?;
    let key = store.signing_key()?.expect("just configured");
    write_atomic(&keys.join("keyring.gpg"), &key.public_keyring()?)?;
    let c = store.begin()?.commit_all()?;
    println!("created signing key {}", key.fingerprint());
    println!("  secret:  {}", secret_path.display());
    println!("  public:  {}", keys.join("signing.pub.asc").display());
    println!(
        "  keyring: {} (for gpgv --keyring / sstream-query --keyring)",
        keys.join("keyring.gpg").display()
    );
    println!("every stream re-signed; generation {}", c.generation);
    Ok(ExitCode::SUCCESS)
}

pub fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let keyring = Keyring::load(&a.keyring)?;
    let name = a.file.display().to_string();
    if name.ends_with(".sjson") {
        let text = std::fs::read_to_string(&a.file).map_err(|e| Error::io(&a.file, e))?;
        keyring
            .verify_cleartext(&text)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    } else {
        let sig = PathBuf::from(format!("{name}.gpg"));
        if !sig.exists() {
            bail!(Error::Signature(format!(
                "{name}: not a .sjson and no detached signature {} beside it",
                sig.display()
            )));
        }
        let data = std::fs::read(&a.file).map_err(|e| Error::io(&a.file, e))?;
        let s = std::fs::read(&sig).map_err(|e| Error::io(&sig, e))?;
        keyring
            .verify_detached(&data, &s)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    println!("{name}: good signature");
    Ok(ExitCode::SUCCESS)
}
