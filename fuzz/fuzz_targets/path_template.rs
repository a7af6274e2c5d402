//! Path templates (store.toml `paths` and `product_id`) and the paths the
//! mount and `mountctl insert` place with them. Lines: the product_id
//! template, then path templates, then the path to place (the last line).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use streamfs_core::relpath::RelPath;
use streamfs_core::store::layout::Layout;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let (Some((path, rest)), true) = (lines.split_last(), lines.len() >= 3) else {
        return;
    };
    if let Ok(p) = RelPath::new(path) {
        assert!(
            p.components()
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0')),
            "{path:?} accepted"
        );
    }
    let product_id = rest[0];
    let templates: Vec<String> = rest[1..].iter().map(|s| s.to_string()).collect();
    let ftypes = BTreeMap::from([("squashfs.manifest".to_string(), "manifest".to_string())]);
    let releases = BTreeMap::from([(
        "noble".to_string(),
        BTreeMap::from([("version".to_string(), "24.04".to_string())]),
    )]);
    let Ok(layout) = Layout::new(product_id, &templates, ftypes, releases) else {
        return;
    };
    let Some(placed) = layout.place(path) else {
        return;
    };
    assert!(
        !placed.version.is_empty() && !placed.version.contains('/'),
        "version {:?} from {path:?}",
        placed.version
    );
    // `cp -r` and `mkdir -p` create the directories of a path before the
    // file: every directory above a placed path must be allowed.
    let mut dir = String::new();
    for comp in path.split('/').take(path.split('/').count() - 1) {
        if !dir.is_empty() {
            dir.push('/');
        }
        dir.push_str(comp);
        assert!(
            layout.allows_dir(&dir),
            "{path:?} is placed but its directory {dir:?} is refused"
        );
    }
});
