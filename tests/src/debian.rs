//! A minimal Debian 12 root tarball for the real-builder tests, made with
//! `mmdebstrap` from the machine's configured apt mirror and cached under
//! `~/.cache/streamfs/debian-root/<key>/` keyed by its inputs (suite,
//! variant, packages, mirror), so only a cold run pays for it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::missing;
use crate::serve::installed;

pub const SUITE: &str = "bookworm";
pub const VARIANT: &str = "minbase";
/// iputils-ping: `security.capability` on ping (set by its postinst with
/// libcap2-bin's setcap); perl-base (in minbase) has hard links.
pub const PACKAGES: &[&str] = &["iputils-ping", "libcap2-bin"];

/// The Debian mirror the machine's apt uses for `SUITE` (deb822
/// `/etc/apt/sources.list.d/*.sources` or one-line `sources.list`).
pub fn apt_mirror() -> Option<String> {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(("list", t));
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let kind = match f.extension().and_then(|e| e.to_str()) {
                Some("sources") => "sources",
                Some("list") => "list",
                _ => continue,
            };
            if let Ok(t) = std::fs::read_to_string(&f) {
                texts.push((kind, t));
            }
        }
    }
    for (kind, text) in texts {
        if kind == "list" {
            for l in text.lines() {
                let w: Vec<&str> = l
                    .split_whitespace()
                    .filter(|w| !w.starts_with('['))
                    .collect();
                if w.first() == Some(&"deb") && w.get(2) == Some(&SUITE) {
                    return w.get(1).map(|s| s.to_string());
                }
            }
            continue;
        }
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            let suites = field("Suites:").unwrap_or_default();
            let types = field("Types:").unwrap_or_default();
            if types.split_whitespace().any(|t| t == "deb")
                && suites.split_whitespace().any(|s| s == SUITE)
                && let Some(u) = field("URIs:")
            {
                return u.split_whitespace().next().map(str::to_string);
            }
        }
    }
    None
}

/// The cache key of the root made from `mirror`.
pub fn key(mirror: &str) -> String {
    let mut h = Sha256::new();
    for part in [SUITE, VARIANT, &PACKAGES.join(","), mirror, "v1"] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// `~/.cache/streamfs/<what>`.
pub fn cache_dir(what: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map_or(PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/streamfs").join(what)
}

/// Root and mmdebstrap, or a skip (a failure under CI).
pub fn can_build_roots() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return missing("the real builder needs root");
    }
    installed("mmdebstrap", "mmdebstrap")
}

/// The cached Debian root tarball (`…/debian-12-root.tar.xz`), made now
/// when absent. None (skip) when mmdebstrap, root, the mirror or the
/// network is missing outside CI.
pub fn root_tarball() -> Option<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mmdebstrap = can_build_roots()?;
    let Some(mirror) = apt_mirror() else {
        return missing(&format!(
            "no apt source for {SUITE} in /etc/apt/sources.list(.d)"
        ));
    };
    let dir = cache_dir("debian-root").join(key(&mirror));
    let tarball = dir.join("debian-12-root.tar.xz");
    if tarball.is_file() {
        return Some(tarball);
    }
    std::fs::create_dir_all(&dir).expect("cache dir");
    let partial = dir.join(format!("partial-{}.tar.xz", std::process::id()));
    crate::report(&format!(
        "making the Debian root with mmdebstrap from {mirror} (cached in {})",
        dir.display()
    ));
    let out = Command::new(mmdebstrap)
        .args(["--variant", VARIANT, "--quiet"])
        .arg(format!("--include={}", PACKAGES.join(",")))
        .args([SUITE])
        .arg(&partial)
        .arg(&mirror)
        // Compress the tarball on every core.
        .env("XZ_OPT", "-T0")
        .stdin(Stdio::null())
        .output()
        .expect("running mmdebstrap");
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        return missing(&format!(
            "mmdebstrap {SUITE} from {mirror} failed (network?): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&partial, &tarball).expect("rename the root tarball");
    Some(tarball)
}

/// What a cold build downloads once (kernels, package lists), keyed as
/// the root.
pub fn apt_cache(tarball: &Path) -> PathBuf {
    let key = tarball
        .parent()
        .and_then(Path::file_name)
        .map_or("default".into(), |k| k.to_string_lossy().into_owned());
    cache_dir("apt").join(key)
}
