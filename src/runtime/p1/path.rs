//! Paths: opening, stat and times by path, links (the rest goes straight to the vfs from `link`).

#[allow(unused_imports)]
use super::*;

impl P1Ctx {
    // The arguments mirror the ABI's `path_open`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn path_open(
        &mut self,
        fd: u32,
        lookup: u32,
        path: &str,
        oflags: u16,
        base: u64,
        inheriting: u64,
        fdflags: u16,
    ) -> abi::Result<u32> {
        let dir = self.dir(fd)?;
        let (dir_ino, dir_base, dir_inheriting) = (dir.ino, dir.base, dir.inheriting);
        if oflags & !(abi::O_CREAT | abi::O_DIRECTORY | abi::O_EXCL | abi::O_TRUNC) != 0 {
            return Err(Errno::INVAL);
        }
        // Truncating is changing the file's size: the directory must grant that right.
        if oflags & abi::O_TRUNC != 0 && dir_base & rights::PATH_FILESTAT_SET_SIZE == 0 {
            return Err(Errno::NOTCAPABLE);
        }
        let flags = OpenFlags {
            create: oflags & abi::O_CREAT != 0,
            exclusive: oflags & abi::O_EXCL != 0,
            truncate: oflags & abi::O_TRUNC != 0,
            directory: oflags & abi::O_DIRECTORY != 0,
            follow: lookup & abi::LOOKUP_SYMLINK_FOLLOW != 0,
        };
        let mut fs = self.fs();
        let ino = fs.open(dir_ino, path, flags)?;
        let kind = fs.stat(ino)?.kind;
        let desc = match kind {
            // O_NOFOLLOW on a symbolic link, as POSIX answers it.
            vfs::Kind::Symlink => return Err(Errno::LOOP),
            vfs::Kind::Dir => {
                // A directory is never open for writing.
                if base & rights::FD_WRITE != 0 {
                    return Err(Errno::ISDIR);
                }
                Desc::Dir(DirDesc {
                    ino,
                    preopen: None,
                    base: base & rights::DIRECTORY & dir_inheriting,
                    inheriting: inheriting & dir_inheriting,
                })
            }
            vfs::Kind::File => {
                if flags.directory {
                    return Err(Errno::NOTDIR);
                }
                Desc::File(FileDesc {
                    ino,
                    pos: 0,
                    flags: fdflags,
                    base: base & rights::FILE & dir_inheriting,
                    inheriting: inheriting & dir_inheriting,
                })
            }
        };
        fs.retain(ino);
        drop(fs);
        self.insert(desc).inspect_err(|_| self.fs().release(ino))
    }

    pub(super) fn path_filestat_get(
        &self,
        mem: &mut Mem,
        fd: u32,
        lookup: u32,
        path: &str,
        out: u32,
    ) -> abi::Result<()> {
        let dir = self.dir_ino(fd)?;
        let ino = self
            .fs()
            .lookup(dir, path, lookup & abi::LOOKUP_SYMLINK_FOLLOW != 0)?;
        let raw = self.filestat(ino)?;
        mem.write(out, &raw)
    }

    pub(super) fn path_filestat_set_times(
        &mut self,
        fd: u32,
        lookup: u32,
        path: &str,
        atim: u64,
        mtim: u64,
        fst: u16,
    ) -> abi::Result<()> {
        let dir = self.dir_ino(fd)?;
        let (a, m) = set_times(atim, mtim, fst)?;
        let mut fs = self.fs();
        let ino = fs.lookup(dir, path, lookup & abi::LOOKUP_SYMLINK_FOLLOW != 0)?;
        Ok(fs.set_times(ino, a, m)?)
    }

    pub(super) fn path_readlink(
        &self,
        mem: &mut Mem,
        fd: u32,
        path: &str,
        buf: u32,
        len: u32,
    ) -> abi::Result<u32> {
        let dir = self.dir_ino(fd)?;
        let target = self.fs().readlink(dir, path)?;
        let n = target.len().min(len as usize);
        mem.write(buf, &target.as_bytes()[..n])?;
        Ok(n as u32)
    }
}
