//! What a case is made of: the streams, files and contents it draws from, and
//! the random operations.

use super::*;

pub(crate) const STREAMS: [&str; 2] = ["daily", "released"];
pub(crate) const PREFIX: [&str; 2] = ["com.ubuntu.maas.daily:v3:boot:", "com.ubuntu.maas:v3:boot:"];
pub(crate) const CONTENT_ID: [&str; 2] = [
    "com.ubuntu.maas:daily:v3:download",
    "com.ubuntu.maas:stable:v3:download",
];
pub(crate) const LABEL: [&str; 2] = ["daily", "release"];
pub(crate) const ARCHES: [&str; 2] = ["amd64", "arm64"];
pub(crate) const VERSIONS: [&str; 3] = ["20250101", "20250102", "20250103"];
pub(crate) const SUBARCHES: [&str; 2] = ["ga-24.04", "hwe-24.04"];
pub(crate) const KERNEL_FILES: [&str; 2] = ["boot-kernel", "boot-initrd"];
/// Distinct contents: few, so that paths share blobs and blobs are
/// orphaned, referenced again and reaped.
pub(crate) const CONTENTS: u8 = 4;

pub(crate) type Content = u8;

pub(crate) fn bytes(c: Content) -> Vec<u8> {
    format!("content {c}\n")
        .repeat(1 + 3 * c as usize)
        .into_bytes()
}

pub(crate) fn sha(c: Content) -> String {
    hex::encode(Sha256::digest(bytes(c)))
}

/// A file of a version: a kernel file of one subarch, or the `squashfs`
/// shared by every kernel of the version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Kernel { sub: usize, file: usize },
    Squashfs,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct FileRef {
    pub(crate) arch: usize,
    pub(crate) version: usize,
    pub(crate) slot: Slot,
}

pub(crate) fn version_dir(arch: usize, version: usize) -> String {
    format!("noble/{}/{}", ARCHES[arch], VERSIONS[version])
}

impl FileRef {
    pub(crate) fn path(&self) -> String {
        let dir = version_dir(self.arch, self.version);
        match self.slot {
            Slot::Kernel { sub, file } => {
                format!("{dir}/{}/generic/{}", SUBARCHES[sub], KERNEL_FILES[file])
            }
            Slot::Squashfs => format!("{dir}/squashfs"),
        }
    }
}

pub(crate) fn product(s: usize, arch: usize, sub: usize) -> String {
    format!("{}24.04:{}:{}", PREFIX[s], ARCHES[arch], SUBARCHES[sub])
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// `cp` (open, write, close) through the mount.
    Copy {
        s: usize,
        f: FileRef,
        c: Content,
    },
    /// rsync's way: write `.name.XXXXXX`, then rename it onto `name`.
    Rsync {
        s: usize,
        f: FileRef,
        c: Content,
    },
    /// A build's products file written into `streams/v1/` (one product at
    /// one version: kernel, initrd and squashfs), then the data of the items
    /// picked by `write`.
    Meta {
        s: usize,
        arch: usize,
        version: usize,
        sub: usize,
        c: [Content; 3],
        write: [bool; 3],
    },
    /// A build copied data first (as `cp -r` and `rsync -a` do): the data
    /// files picked by `first` (kernel, initrd, squashfs; in reverse order
    /// when `reversed`), then its products file into `streams/v1/`.
    DataFirst {
        s: usize,
        arch: usize,
        version: usize,
        sub: usize,
        c: [Content; 3],
        first: [bool; 3],
        reversed: bool,
    },
    /// `ln -s ../../../daily/noble/ARCH/V released/noble/ARCH/V`.
    Promote {
        arch: usize,
        version: usize,
    },
    /// `rm` of a file.
    Remove {
        s: usize,
        f: FileRef,
    },
    /// `rm -r` of a version directory.
    RemoveVersion {
        s: usize,
        arch: usize,
        version: usize,
    },
    /// `mountctl insert BUILD STREAM` beside the mount: a data-only build of
    /// one kernel and the squashfs.
    CtlInsert {
        s: usize,
        arch: usize,
        version: usize,
        sub: usize,
        c: [Content; 3],
    },
    /// `mountctl promote daily released V` beside the mount.
    CtlPromote {
        version: usize,
    },
    /// `mountctl clean-md KEEP STREAM` beside the mount.
    CleanMd {
        s: usize,
        keep: usize,
    },
    /// `mountctl reap-orphans --now` beside the mount.
    Reap,
    Remount,
}

/// The indices (into a build's kernel, initrd, squashfs) of the data files
/// a [`Op::DataFirst`] writes, in the order it writes them.
pub(crate) fn data_order(first: [bool; 3], reversed: bool) -> Vec<usize> {
    let mut v: Vec<usize> = (0..3).filter(|i| first[*i]).collect();
    if reversed {
        v.reverse();
    }
    v
}

pub(crate) fn file_ref() -> impl Strategy<Value = FileRef> {
    let slot = prop_oneof![
        4 => (0..2usize, 0..2usize).prop_map(|(sub, file)| Slot::Kernel { sub, file }),
        1 => Just(Slot::Squashfs),
    ];
    (0..ARCHES.len(), 0..VERSIONS.len(), slot).prop_map(|(arch, version, slot)| FileRef {
        arch,
        version,
        slot,
    })
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let s = || prop_oneof![3 => Just(0usize), 1 => Just(1usize)];
    let c = || 0..CONTENTS;
    let av = || (0..ARCHES.len(), 0..VERSIONS.len());
    prop_oneof![
        8 => (s(), file_ref(), c()).prop_map(|(s, f, c)| Op::Copy { s, f, c }),
        3 => (s(), file_ref(), c()).prop_map(|(s, f, c)| Op::Rsync { s, f, c }),
        3 => (s(), av(), 0..2usize, [c(), c(), c()], any::<[bool; 3]>()).prop_map(
            |(s, (arch, version), sub, c, write)| Op::Meta { s, arch, version, sub, c, write }
        ),
        3 => (s(), av(), 0..2usize, [c(), c(), c()], any::<[bool; 3]>(), any::<bool>()).prop_map(
            |(s, (arch, version), sub, c, first, reversed)| Op::DataFirst {
                s, arch, version, sub, c, first, reversed
            }
        ),
        3 => av().prop_map(|(arch, version)| Op::Promote { arch, version }),
        3 => (s(), file_ref()).prop_map(|(s, f)| Op::Remove { s, f }),
        2 => (s(), av()).prop_map(|(s, (arch, version))| Op::RemoveVersion { s, arch, version }),
        1 => (s(), av(), 0..2usize, [c(), c(), c()]).prop_map(
            |(s, (arch, version), sub, c)| Op::CtlInsert { s, arch, version, sub, c }
        ),
        1 => (0..VERSIONS.len()).prop_map(|version| Op::CtlPromote { version }),
        1 => (s(), 1..3usize).prop_map(|(s, keep)| Op::CleanMd { s, keep }),
        1 => Just(Op::Reap),
        1 => Just(Op::Remount),
    ]
}
