//! What the source image is, detected by its content (as meph2's
//! `--format=auto`), checked against `--format=` when one is given.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// The command that writes the decompressed stream of `path` to stdout.
    pub fn reader(self, path: &Path) -> Command {
        let (prog, args): (&str, &[&str]) = match self {
            Compression::None => ("cat", &["--"]),
            Compression::Gzip => ("gzip", &["-dc", "--"]),
            Compression::Xz => ("xz", &["-dc", "-T0", "--"]),
            Compression::Zstd => ("zstd", &["-dcq", "--"]),
        };
        let mut c = Command::new(prog);
        c.args(args).arg(path);
        c
    }

    fn of(head: &[u8]) -> Compression {
        if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A tarball of the root filesystem (`-root.tar.xz`): meph2's `root-tar`.
    RootTar,
    /// A squashfs of the root (`.squashfs`): `squashfs-image`.
    Squashfs,
    /// An ext4 filesystem image (`.img`, `.img.gz`): `root-image`(`-gz`).
    Ext4,
    /// A tarball with a filesystem image inside (`.tar.gz`): `img-tar`.
    ImageTar,
}

impl Kind {
    /// meph2's `--format=` name.
    pub fn format_name(self, c: Compression) -> &'static str {
        match (self, c) {
            (Kind::RootTar, _) => "root-tar",
            (Kind::Squashfs, _) => "squashfs-image",
            (Kind::Ext4, Compression::None) => "root-image",
            (Kind::Ext4, _) => "root-image-gz",
            (Kind::ImageTar, _) => "img-tar",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::RootTar => "a root tarball",
            Kind::Squashfs => "a squashfs image",
            Kind::Ext4 => "an ext4 filesystem image",
            Kind::ImageTar => "a tarball with a filesystem image inside",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub kind: Kind,
    pub compression: Compression,
    /// A root tarball's own entry for its root directory, when it has one.
    pub root_dir: Option<TarHeader>,
    /// An image tarball's member holding the filesystem image.
    pub image_member: Option<String>,
    /// Where a filesystem image is mounted once attached (see
    /// [`super::image`]): the tree the squashfs and the root are made from.
    pub tree: Option<PathBuf>,
}

impl Source {
    /// The decompressed stream of the source.
    pub fn reader(&self) -> Command {
        self.compression.reader(&self.path)
    }
}

fn bad(path: &Path, reason: String) -> String {
    format!("{}: {reason}", path.display())
}

/// The first `n` bytes of the decompressed stream (fewer when it is short).
fn head_of(path: &Path, c: Compression, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if c == Compression::None {
        std::fs::File::open(path)?
            .take(n as u64)
            .read_to_end(&mut buf)?;
        return Ok(buf);
    }
    let mut child = c
        .reader(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let r = child
        .stdout
        .take()
        .expect("piped")
        .take(n as u64)
        .read_to_end(&mut buf);
    let _ = child.kill();
    let _ = child.wait();
    r.map(|_| buf)
}

/// A tar header block (POSIX `ustar` or GNU magic at offset 257).
fn is_tar(b: &[u8]) -> bool {
    b.len() >= 512 && (&b[257..262] == b"ustar")
}

/// A tar member's header fields the builder uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarHeader {
    pub name: String,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
}

fn octal(field: &[u8]) -> u64 {
    let s = String::from_utf8_lossy(field);
    u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap_or(0)
}

/// The members whose headers lie in the first blocks `b` (PAX and GNU
/// extension headers included, as they come).
fn headers(b: &[u8]) -> Vec<TarHeader> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 512 <= b.len() && is_tar(&b[off..]) {
        let h = &b[off..off + 512];
        out.push(TarHeader {
            name: String::from_utf8_lossy(&h[..100])
                .trim_end_matches('\0')
                .to_string(),
            typeflag: h[156],
            mode: octal(&h[100..108]) as u32,
            uid: octal(&h[108..116]) as u32,
            gid: octal(&h[116..124]) as u32,
            mtime: octal(&h[136..148]),
        });
        // Skip this header and its data.
        off += 512 + octal(&h[124..136]).div_ceil(512) as usize * 512;
    }
    out
}

/// The name of the first regular file (a GNU sparse one included: images
/// are packed with `tar -S`): enough to tell an image tarball from a root
/// tarball.
fn first_file(b: &[u8]) -> Option<String> {
    headers(b)
        .into_iter()
        .find(|h| matches!(h.typeflag, b'0' | 0 | b'S'))
        .map(|h| h.name)
}

/// The root directory's entry (`./`), whose owner, mode and time the
/// squashfs's root takes.
fn root_entry(b: &[u8]) -> Option<TarHeader> {
    headers(b)
        .into_iter()
        .find(|h| h.typeflag == b'5' && matches!(h.name.as_str(), "./" | "." | "/"))
}

/// Detects what `path` is; `format` is meph2's `--format=` (`auto` or
/// absent to detect). The error says what is wrong with the source.
pub fn detect(path: &Path, format: Option<&str>) -> Result<Source, String> {
    if path.to_str().is_some_and(|p| p.contains("://")) {
        return Err(bad(
            path,
            "the builtin builder reads local files only (download the image first)".into(),
        ));
    }
    let raw = head_of(path, Compression::None, 8).map_err(|e| bad(path, e.to_string()))?;
    let compression = Compression::of(&raw);
    let head = head_of(path, compression, 64 * 1024).map_err(|e| bad(path, e.to_string()))?;
    let kind = if compression == Compression::None && head.starts_with(b"hsqs") {
        Kind::Squashfs
    } else if head.len() >= 1082 && head[1080..1082] == [0x53, 0xef] {
        Kind::Ext4
    } else if is_tar(&head) {
        match first_file(&head) {
            Some(n) if n.ends_with(".img") => Kind::ImageTar,
            _ => Kind::RootTar,
        }
    } else {
        return Err(bad(
            path,
            "not a root tarball, squashfs or ext4 image (unknown content, or empty)".into(),
        ));
    };
    if let Some(f) = format.filter(|f| *f != "auto") {
        let found = kind.format_name(compression);
        if f != found {
            return Err(bad(
                path,
                format!(
                    "--format={f} was given but it is {} ({found})",
                    kind.describe()
                ),
            ));
        }
    }
    Ok(Source {
        path: path.to_path_buf(),
        kind,
        compression,
        root_dir: (kind == Kind::RootTar).then(|| root_entry(&head)).flatten(),
        image_member: (kind == Kind::ImageTar)
            .then(|| first_file(&head))
            .flatten(),
        tree: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_header(name: &str, typeflag: u8, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let sz = format!("{size:011o}\0");
        h[124..136].copy_from_slice(sz.as_bytes());
        h[156] = typeflag;
        h[257..263].copy_from_slice(b"ustar\0");
        h
    }

    #[test]
    fn tells_a_root_tarball_from_an_image_tarball() {
        let mut root = tar_header("./", b'5', 0);
        root.extend(tar_header("./etc/hostname", b'0', 5));
        assert_eq!(first_file(&root).as_deref(), Some("./etc/hostname"));
        assert_eq!(root_entry(&root).unwrap().typeflag, b'5');
        let img = tar_header("noble.img", b'0', 1 << 20);
        assert_eq!(first_file(&img).as_deref(), Some("noble.img"));
        // `tar -S` writes an image as a GNU sparse member.
        let sparse = tar_header("noble.img", b'S', 1 << 20);
        assert_eq!(first_file(&sparse).as_deref(), Some("noble.img"));
    }

    #[test]
    fn refuses_unknown_content_and_wrong_format() {
        let d = tempfile::tempdir().unwrap();
        let junk = d.path().join("junk");
        std::fs::write(&junk, b"hello").unwrap();
        let e = detect(&junk, None).unwrap_err();
        assert!(e.contains("unknown content"), "{e}");

        let sq = d.path().join("x.squashfs");
        let mut b = b"hsqs".to_vec();
        b.resize(4096, 0);
        std::fs::write(&sq, &b).unwrap();
        assert_eq!(detect(&sq, None).unwrap().kind, Kind::Squashfs);
        let e = detect(&sq, Some("root-tar")).unwrap_err();
        assert!(e.contains("--format=root-tar"), "{e}");

        let img = d.path().join("x.img");
        let mut b = vec![0u8; 4096];
        b[1080] = 0x53;
        b[1081] = 0xef;
        std::fs::write(&img, &b).unwrap();
        let s = detect(&img, None).unwrap();
        assert_eq!((s.kind, s.compression), (Kind::Ext4, Compression::None));
        let e = detect(&img, Some("root-tar")).unwrap_err();
        assert!(e.contains("an ext4 filesystem image (root-image)"), "{e}");
    }
}
