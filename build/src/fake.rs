//! The fake builder: accepts meph2-build's builder argv and writes small
//! deterministic files where the real builder would write images, in
//! milliseconds. For tests and for trying a config. Its payloads are those of
//! the stub that made the goldens (`kernel: PKG`, `initrd: PKG`, a two-line
//! manifest), so kernel, initrd and manifest hashes equal the goldens'.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const MANIFEST: &str = "cloud-init\t1.0\nlinux-generic\t2.0\n";

fn write(path: &Path, body: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    std::fs::write(path, body).map_err(|e| Error::io(path, e))
}

fn usage(msg: String) -> Error {
    Error::Usage(format!("fake builder: {msg}"))
}

/// Runs the fake builder on `args` (without the program name).
pub fn run(args: &[String]) -> Result<()> {
    let (mut gzip, mut squashfs) = (true, true);
    let mut manifest: Option<PathBuf> = None;
    let mut packs: Vec<&str> = Vec::new();
    let mut positional: Vec<&str> = Vec::new();
    for a in args {
        match a.as_str() {
            "--no-gzip" => gzip = false,
            "--no-squashfs" => squashfs = false,
            s if s.starts_with("--manifest=") => manifest = Some(s["--manifest=".len()..].into()),
            s if s.starts_with("--krd-pack=") => packs.push(&s["--krd-pack=".len()..]),
            s if s.starts_with('-') => {}
            s => positional.push(s),
        }
    }
    let [src, root_gz] = positional[..] else {
        return Err(usage(format!(
            "wants SOURCE and ROOT_IMAGE_GZ, got {positional:?}"
        )));
    };
    let root_gz = Path::new(root_gz);
    let dir = root_gz.parent().unwrap_or(Path::new("."));
    let name = Path::new(src)
        .file_name()
        .map_or(src.into(), |n| n.to_string_lossy());
    if gzip {
        write(root_gz, &format!("root-image.gz of {name}\n"))?;
    }
    if squashfs {
        write(&dir.join("squashfs"), &format!("squashfs of {name}\n"))?;
    }
    if let Some(m) = manifest {
        write(&m, MANIFEST)?;
    }
    for pack in packs {
        let mut fields = pack.split(',');
        let (Some(pkg), Some(kernel), Some(initrd)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(usage(format!("bad --krd-pack={pack}")));
        };
        write(Path::new(kernel), &format!("kernel: {pkg}\n"))?;
        write(Path::new(initrd), &format!("initrd: {pkg}\n"))?;
        for f in fields {
            if let Some(d) = f.strip_prefix("--dtb=") {
                let (dtb, out) = d
                    .split_once('=')
                    .ok_or_else(|| usage(format!("bad --dtb in --krd-pack={pack}")))?;
                write(Path::new(out), &format!("dtb: {dtb}\n"))?;
            }
        }
    }
    Ok(())
}
