//! What a stream has no place for: device nodes, fifos, sockets and hard
//! links. Refused, with the reason logged by the adapter.

use super::*;

impl StreamFs {
    /// `mknod`: regular files come through [`StreamFs::create`]; devices,
    /// fifos and sockets have no place in a stream. `EACCES` to whoever may
    /// not write at all, as for every other write.
    pub fn mknod(&self, caller: Caller, parent: u64, name: impl AsRef<OsStr>) -> FsResult<Attr> {
        let path = join(&self.path_of(parent)?, &name.as_ref().to_string_lossy());
        let reason = if self.can_write(caller) {
            FsError::NotPermitted("only regular files are stored".into())
        } else {
            FsError::Denied(format!("uid {} may not write", caller.uid))
        };
        Err(refuse(reason, "mknod", &path))
    }

    /// `ln`: an item has one path per stream; a second name for it is a
    /// promotion (`ln -s`) or nothing. Refused to everyone.
    pub fn link(&self, ino: u64, newparent: u64, newname: impl AsRef<OsStr>) -> FsResult<Attr> {
        let path_of = |ino| {
            self.inodes
                .path(ino)
                .unwrap_or_else(|| format!("inode {ino}"))
        };
        let to = join(&path_of(newparent), &newname.as_ref().to_string_lossy());
        let from = path_of(ino);
        Err(refuse(
            FsError::NotPermitted("hard links are not supported".into()),
            "link",
            &format!("{to} -> {from}"),
        ))
    }
}
