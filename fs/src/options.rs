//! The `-o` mount options of `streamfs`, as a user types them and as
//! `mount(8)` passes them through Debian's `mount.fuse3` for a
//! `fuse.streamfs` fstab line (`-o rw,allow_other,dev,suid,…`).
//!
//! Every option is sorted into one of four kinds, so that nothing a user
//! writes is silently lost: options the kernel applies to the mount, the
//! access rule of the session (`allow_other`, `allow_root`), options of
//! streamfs itself (`log=FILE`, `no_passthrough`), and options that belong
//! to `mount(8)`, fstab or systemd (`defaults`, `nofail`, `_netdev`,
//! `x-systemd.*`, …) and mean nothing to a running mount, which are
//! accepted and ignored. Anything else is refused by name before the store
//! is touched.

use std::path::PathBuf;

use fuser::{MountOption, SessionACL};

/// The parsed `-o` options.
#[derive(Debug)]
pub struct MountOpts {
    /// Options handed to the kernel with the mount.
    pub kernel: Vec<MountOption>,
    /// Who may use the mount besides its owner.
    pub acl: SessionACL,
    /// `log=FILE`: log there instead of stderr or syslog.
    pub log: Option<PathBuf>,
    /// `no_passthrough`: the daemon answers every read.
    pub no_passthrough: bool,
    /// `passthrough`: a read-only mount keeps FUSE passthrough instead of
    /// letting the kernel answer opens (see `FuseFs::open`).
    pub passthrough: bool,
    /// `fsname=NAME`: the mount's source as /proc/mounts shows it.
    pub fsname: Option<String>,
    /// Options accepted and ignored, for one log line.
    pub ignored: Vec<String>,
    /// `metrics=ADDR`: serve Prometheus metrics there (loopback or a unix
    /// socket).
    pub metrics: Option<crate::metrics::MetricsAddr>,
}

/// A mount option streamfs cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum OptionError {
    #[error(
        "unknown mount option '{0}' (streamfs accepts allow_other, allow_root, \
         default_permissions, ro, rw, dev, nodev, suid, nosuid, exec, noexec, atime, noatime, \
         sync, async, dirsync, log=FILE, no_passthrough, passthrough, fsname=NAME, metrics=ADDR, and mount(8)'s own \
         options such as defaults, nofail, _netdev, x-systemd.*)"
    )]
    Unknown(String),
    #[error("mount option '{0}': {1}")]
    Refused(String, &'static str),
    #[error("mount option '{0}': {1}")]
    Invalid(String, String),
}

/// Options of `mount(8)`, fstab and systemd that reach the filesystem's
/// helper on some systems but say nothing about the mount itself, and
/// access-time flavours the kernel's FUSE mount does not take (relatime is
/// its default).
const IGNORED: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    "silent",
    "loud",
];

impl MountOpts {
    /// Parses the comma-separated options (already split by clap; empty
    /// entries from `-o a,,b` are skipped).
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<MountOpts, OptionError> {
        let mut o = MountOpts {
            kernel: Vec::new(),
            acl: SessionACL::Owner,
            log: None,
            no_passthrough: false,
            passthrough: false,
            fsname: None,
            ignored: Vec::new(),
            metrics: None,
        };
        for opt in options.iter().map(AsRef::as_ref) {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            let flag = match (key, value) {
                ("", None) => continue,
                ("allow_other", None) => {
                    o.acl = SessionACL::All;
                    continue;
                }
                ("allow_root", None) => {
                    if !matches!(o.acl, SessionACL::All) {
                        o.acl = SessionACL::RootAndOwner;
                    }
                    continue;
                }
                ("default_permissions", None) => MountOption::DefaultPermissions,
                ("ro", None) => MountOption::RO,
                ("rw", None) => MountOption::RW,
                ("dev", None) => MountOption::Dev,
                ("nodev", None) => MountOption::NoDev,
                ("suid", None) => MountOption::Suid,
                ("nosuid", None) => MountOption::NoSuid,
                ("exec", None) => MountOption::Exec,
                ("noexec", None) => MountOption::NoExec,
                ("atime", None) => MountOption::Atime,
                ("noatime", None) => MountOption::NoAtime,
                ("sync", None) => MountOption::Sync,
                ("async", None) => MountOption::Async,
                ("dirsync", None) => MountOption::DirSync,
                ("no_passthrough", None) => {
                    o.no_passthrough = true;
                    continue;
                }
                ("passthrough", None) => {
                    o.passthrough = true;
                    continue;
                }
                ("log", Some(path)) if !path.is_empty() => {
                    o.log = Some(PathBuf::from(path));
                    continue;
                }
                ("fsname", Some(name)) if !name.is_empty() => {
                    o.fsname = Some(name.to_string());
                    continue;
                }
                ("metrics", Some(addr)) => {
                    o.metrics = Some(
                        crate::metrics::MetricsAddr::parse(addr)
                            .map_err(|why| OptionError::Invalid(opt.to_string(), why))?,
                    );
                    continue;
                }
                ("subtype", Some("streamfs")) => continue,
                ("auto_unmount", None) => {
                    return Err(OptionError::Refused(
                        opt.to_string(),
                        "not supported: streamfs unmounts itself on SIGINT and SIGTERM",
                    ));
                }
                (k, _) if k.starts_with("x-") || k == "comment" => {
                    o.ignored.push(opt.to_string());
                    continue;
                }
                (k, None) if IGNORED.contains(&k) => {
                    o.ignored.push(opt.to_string());
                    continue;
                }
                _ => return Err(OptionError::Unknown(opt.to_string())),
            };
            // A later flag overrides an earlier opposite one, as in mount(8).
            o.kernel.retain(|k| !opposite(k, &flag));
            if !o.kernel.contains(&flag) {
                o.kernel.push(flag);
            }
        }
        Ok(o)
    }
}

fn opposite(a: &MountOption, b: &MountOption) -> bool {
    use MountOption::*;
    matches!(
        (a, b),
        (RO, RW)
            | (RW, RO)
            | (Dev, NoDev)
            | (NoDev, Dev)
            | (Suid, NoSuid)
            | (NoSuid, Suid)
            | (Exec, NoExec)
            | (NoExec, Exec)
            | (Atime, NoAtime)
            | (NoAtime, Atime)
            | (Sync, Async)
            | (Async, Sync)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_mount_fuse3_passes_for_an_fstab_line_is_accepted() {
        let o =
            MountOpts::parse(&["rw", "allow_other", "default_permissions", "dev", "suid"]).unwrap();
        assert!(matches!(o.acl, SessionACL::All));
        assert_eq!(
            o.kernel,
            vec![
                MountOption::RW,
                MountOption::DefaultPermissions,
                MountOption::Dev,
                MountOption::Suid
            ]
        );
    }

    #[test]
    fn fstab_and_systemd_options_are_ignored_and_listed() {
        let o = MountOpts::parse(&[
            "defaults",
            "nofail",
            "_netdev",
            "x-systemd.requires=srv.mount",
            "noauto",
            "relatime",
        ])
        .unwrap();
        assert!(o.kernel.is_empty());
        assert_eq!(o.ignored.len(), 6);
    }

    #[test]
    fn streamfs_options_are_read() {
        let o = MountOpts::parse(&["log=/var/log/streamfs.log", "no_passthrough", "allow_root"])
            .unwrap();
        assert_eq!(
            o.log.as_deref(),
            Some(std::path::Path::new("/var/log/streamfs.log"))
        );
        assert!(o.no_passthrough);
        assert!(!o.passthrough);
        assert!(matches!(o.acl, SessionACL::RootAndOwner));
        let o = MountOpts::parse(&["ro", "passthrough"]).unwrap();
        assert!(o.passthrough);
        assert_eq!(o.kernel, vec![MountOption::RO]);
    }

    #[test]
    fn a_later_flag_overrides_its_opposite() {
        let o = MountOpts::parse(&["ro", "rw", "nosuid", "suid"]).unwrap();
        assert_eq!(o.kernel, vec![MountOption::RW, MountOption::Suid]);
    }

    #[test]
    fn unknown_options_are_refused_by_name() {
        let e = MountOpts::parse(&["rw", "bogus_opt"]).unwrap_err();
        assert!(e.to_string().contains("'bogus_opt'"), "{e}");
        let e = MountOpts::parse(&["max_read=4096"]).unwrap_err();
        assert!(e.to_string().contains("'max_read=4096'"), "{e}");
        let e = MountOpts::parse(&["log="]).unwrap_err();
        assert!(e.to_string().contains("'log='"), "{e}");
        let e = MountOpts::parse(&["auto_unmount"]).unwrap_err();
        assert!(e.to_string().contains("SIGTERM"), "{e}");
    }
}
