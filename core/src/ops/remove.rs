//! Removal: items, versions and directories leave the metadata at once; their
//! paths stay readable until their blobs are reaped, and blobs nothing else
//! references become orphans at commit.

use super::VersionRef;
use crate::error::Result;
use crate::relpath::RelPath;
use crate::store::{BlobRef, Removed, Txn};
use crate::timefmt;

/// Removes one version of one product.
pub fn remove_version(txn: &mut Txn<'_>, stream: &str, vr: &VersionRef) -> Result<bool> {
    let now = timefmt::now().timestamp();
    let st = txn.stream_mut(stream)?;
    let gone: Vec<(String, BlobRef)> = st
        .products
        .version_items(&vr.product, &vr.version)
        .filter_map(|i| {
            Some((
                i.path()?.to_string(),
                BlobRef {
                    sha256: i.sha256()?.to_string(),
                    size: i.size().unwrap_or(0),
                },
            ))
        })
        .collect();
    let removed = st
        .products
        .remove_version(&vr.product, &vr.version)
        .is_some();
    for (path, blob) in &gone {
        st.removed.insert(
            path.clone(),
            Removed {
                blob: blob.clone(),
                at: now,
            },
        );
    }
    for (_, blob) in gone {
        txn.note_unreferenced(&blob.sha256);
    }
    Ok(removed)
}

/// An item to remove: product, version, item name, path, blob.
type Victim = (String, String, String, Option<String>, Option<BlobRef>);

/// Removes every item whose path is `dir` or lies below it (`unlink` of a
/// file, `rm -r` of a directory). Returns the number of items removed.
pub fn remove_path(txn: &mut Txn<'_>, stream: &str, dir: &str) -> Result<usize> {
    let now = timefmt::now().timestamp();
    let st = txn.stream_mut(stream)?;
    let victims: Vec<Victim> = st
        .products
        .items()
        .filter(|i| {
            i.path()
                .and_then(|p| RelPath::new(p).ok())
                .is_some_and(|p| p.is_under(dir))
        })
        .map(|i| {
            let blob = i.sha256().map(|h| BlobRef {
                sha256: h.to_string(),
                size: i.size().unwrap_or(0),
            });
            (
                i.product.to_string(),
                i.version.to_string(),
                i.name.to_string(),
                i.path().map(String::from),
                blob,
            )
        })
        .collect();
    let mut n = victims.len();
    let mut shas = Vec::new();
    // Kept shared files were never published: they simply go.
    let kept: Vec<String> = st
        .shared
        .keys()
        .filter(|p| RelPath::new(p).is_ok_and(|p| p.is_under(dir)))
        .cloned()
        .collect();
    for p in kept {
        if let Some(b) = st.shared.remove(&p) {
            shas.push(b.sha256);
            n += 1;
        }
    }
    for (p, v, i, path, blob) in victims {
        st.products.remove_item(&p, &v, &i);
        if let (Some(path), Some(blob)) = (path, blob) {
            shas.push(blob.sha256.clone());
            st.removed.insert(path, Removed { blob, at: now });
        }
    }
    for s in shas {
        txn.note_unreferenced(&s);
    }
    Ok(n)
}
