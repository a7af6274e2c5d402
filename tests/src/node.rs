//! Helpers of the node imaging tests.

use std::path::{Path, PathBuf};

/// A store with only the images stream, as `mountctl init --config` takes it.
pub const STORE_TOML: &str = r#"
[[stream]]
name = "images"
content_id = "org.streamfs:node-images"
datatype = "image-downloads"
product_id = "{name}"
paths = ["{name}/{version_name}/{ftype}"]
"#;

/// The sha256 of a file as `sha256sum` prints it: what a user compares
/// disks with.
pub fn sha256sum(p: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("running sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Every file below `dir`.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else {
            out.push(p);
        }
    }
    out
}
