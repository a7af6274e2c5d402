//! The fake builder: accepts meph2-build's builder argv and writes small
//! deterministic files where the real builder would write images, in
//! milliseconds. For tests and for trying a config. Its payloads are those of
//! the stub that made the goldens (`kernel: PKG`, `initrd: PKG`, a two-line
//! manifest), so kernel, initrd and manifest hashes equal the goldens'.

use std::path::Path;

use crate::argv;
use crate::error::{Error, Result};

const MANIFEST: &str = "cloud-init\t1.0\nlinux-generic\t2.0\n";

fn write(path: &Path, body: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    std::fs::write(path, body).map_err(|e| Error::io(path, e))
}

/// Runs the fake builder on `args` (without the program name).
pub fn run(args: &[String]) -> Result<()> {
    let a = argv::parse("fake builder", args)?;
    let name = Path::new(&a.source)
        .file_name()
        .map_or(a.source.as_str().into(), |n| n.to_string_lossy());
    if a.gzip {
        write(&a.root_image_gz, &format!("root-image.gz of {name}\n"))?;
    }
    if a.squashfs {
        write(&a.squashfs_path(), &format!("squashfs of {name}\n"))?;
    }
    if let Some(m) = &a.manifest {
        write(m, MANIFEST)?;
    }
    for pack in &a.packs {
        write(&pack.kernel, &format!("kernel: {}\n", pack.kpkg))?;
        write(&pack.initrd, &format!("initrd: {}\n", pack.kpkg))?;
        if let Some((dtb, out)) = &pack.dtb {
            write(out, &format!("dtb: {dtb}\n"))?;
        }
    }
    Ok(())
}
