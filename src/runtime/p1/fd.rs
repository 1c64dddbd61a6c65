//! Descriptors: stat, flags, rights, seek, and reads and writes of files and standard streams.

#[allow(unused_imports)]
use super::*;

impl P1Ctx {
    pub(super) fn fd_fdstat_get(&self, mem: &mut Mem, fd: u32, out: u32) -> abi::Result<()> {
        let (filetype, flags, base, inheriting) = match self.desc(fd)? {
            Desc::Stdin { flags } => (abi::FILETYPE_CHARACTER_DEVICE, *flags, rights::STREAM, 0),
            Desc::Out { flags, .. } => (abi::FILETYPE_CHARACTER_DEVICE, *flags, rights::STREAM, 0),
            Desc::File(f) => (abi::FILETYPE_REGULAR_FILE, f.flags, f.base, f.inheriting),
            Desc::Dir(d) => (abi::FILETYPE_DIRECTORY, 0, d.base, d.inheriting),
            Desc::Socket { flags, .. } => (abi::FILETYPE_SOCKET_STREAM, *flags, rights::SOCKET, 0),
            Desc::Listener { flags, .. } => (
                abi::FILETYPE_SOCKET_STREAM,
                *flags,
                rights::LISTENER,
                rights::SOCKET,
            ),
        };
        let mut raw = [0u8; 24];
        raw[0] = filetype;
        raw[2..4].copy_from_slice(&flags.to_le_bytes());
        raw[8..16].copy_from_slice(&base.to_le_bytes());
        raw[16..24].copy_from_slice(&inheriting.to_le_bytes());
        mem.write(out, &raw)
    }

    pub(super) fn fd_fdstat_set_flags(&mut self, fd: u32, flags: u16) -> abi::Result<()> {
        const KNOWN: u16 = abi::FDFLAGS_APPEND
            | abi::FDFLAGS_DSYNC
            | abi::FDFLAGS_NONBLOCK
            | abi::FDFLAGS_RSYNC
            | abi::FDFLAGS_SYNC;
        if flags & !KNOWN != 0 {
            return Err(Errno::INVAL);
        }
        match self.fds.get_mut(&fd).ok_or(Errno::BADF)? {
            Desc::Stdin { flags: f } | Desc::Out { flags: f, .. } => *f = flags,
            Desc::File(file) => file.flags = flags,
            // Directories have no flags to set.
            Desc::Dir(_) => return Err(Errno::BADF),
            // Sockets take only NONBLOCK, as other hosts' sockets do.
            Desc::Socket { flags: f, .. } | Desc::Listener { flags: f, .. } => {
                if flags & !abi::FDFLAGS_NONBLOCK != 0 {
                    return Err(Errno::INVAL);
                }
                *f = flags;
            }
        }
        Ok(())
    }

    pub(super) fn fd_fdstat_set_rights(
        &mut self,
        fd: u32,
        base: u64,
        inheriting: u64,
    ) -> abi::Result<()> {
        let (have_base, have_inh) = match self.fds.get_mut(&fd).ok_or(Errno::BADF)? {
            Desc::File(f) => (&mut f.base, &mut f.inheriting),
            Desc::Dir(d) => (&mut d.base, &mut d.inheriting),
            // Streams keep their fixed rights; dropping some is accepted as a no-op.
            _ => return Ok(()),
        };
        // Rights can only be dropped, never gained.
        if base & !*have_base != 0 || inheriting & !*have_inh != 0 {
            return Err(Errno::NOTCAPABLE);
        }
        *have_base = base;
        *have_inh = inheriting;
        Ok(())
    }

    pub(super) fn filestat(&self, ino: Ino) -> abi::Result<[u8; 64]> {
        Ok(filestat_bytes(&self.fs().stat(ino)?))
    }

    pub(super) fn fd_filestat_get(&self, mem: &mut Mem, fd: u32, out: u32) -> abi::Result<()> {
        let raw = match self.desc(fd)? {
            Desc::File(FileDesc { ino, .. }) | Desc::Dir(DirDesc { ino, .. }) => {
                self.filestat(*ino)?
            }
            Desc::Stdin { .. } | Desc::Out { .. } => {
                stream_filestat(abi::FILETYPE_CHARACTER_DEVICE)
            }
            Desc::Socket { .. } | Desc::Listener { .. } => {
                stream_filestat(abi::FILETYPE_SOCKET_STREAM)
            }
        };
        mem.write(out, &raw)
    }

    pub(super) fn fd_filestat_set_size(&mut self, fd: u32, size: u64) -> abi::Result<()> {
        let file = self.file(fd)?;
        if file.base & rights::FD_WRITE == 0 {
            return Err(Errno::BADF);
        }
        if file.base & rights::FD_FILESTAT_SET_SIZE == 0 {
            return Err(Errno::NOTCAPABLE);
        }
        let ino = file.ino;
        Ok(self.fs().set_size(ino, size)?)
    }

    pub(super) fn fd_filestat_set_times(
        &mut self,
        fd: u32,
        atim: u64,
        mtim: u64,
        fst: u16,
    ) -> abi::Result<()> {
        let ino = match self.desc(fd)? {
            Desc::File(FileDesc { ino, .. }) | Desc::Dir(DirDesc { ino, .. }) => *ino,
            _ => return Err(Errno::BADF),
        };
        let (a, m) = set_times(atim, mtim, fst)?;
        Ok(self.fs().set_times(ino, a, m)?)
    }

    pub(super) fn fd_prestat_get(&self, mem: &mut Mem, fd: u32, out: u32) -> abi::Result<()> {
        match self.desc(fd)? {
            Desc::Dir(DirDesc {
                preopen: Some(name),
                ..
            }) => {
                mem.put_u32(out, 0)?; // tag: directory
                mem.put_u32(out + 4, name.len() as u32)
            }
            _ => Err(Errno::BADF),
        }
    }

    pub(super) fn fd_prestat_dir_name(
        &self,
        mem: &mut Mem,
        fd: u32,
        path: u32,
        len: u32,
    ) -> abi::Result<()> {
        match self.desc(fd)? {
            Desc::Dir(DirDesc {
                preopen: Some(name),
                ..
            }) => {
                if (len as usize) < name.len() {
                    return Err(Errno::NAMETOOLONG);
                }
                mem.write(path, name.as_bytes())
            }
            _ => Err(Errno::BADF),
        }
    }

    pub(super) fn fd_close(&mut self, fd: u32) -> abi::Result<()> {
        let desc = self.fds.remove(&fd).ok_or(Errno::BADF)?;
        self.close_desc(desc);
        Ok(())
    }

    pub(super) fn fd_renumber(&mut self, from: u32, to: u32) -> abi::Result<()> {
        if !self.fds.contains_key(&from) || !self.fds.contains_key(&to) {
            return Err(Errno::BADF);
        }
        if from != to {
            let desc = self.fds.remove(&from).expect("checked");
            if let Some(old) = self.fds.insert(to, desc) {
                self.close_desc(old);
            }
        }
        Ok(())
    }

    pub(super) fn fd_seek(&mut self, fd: u32, offset: i64, whence: u8) -> abi::Result<u64> {
        let file = self.file(fd)?;
        let ino = file.ino;
        let base = match whence {
            abi::WHENCE_SET => 0,
            abi::WHENCE_CUR => file.pos,
            abi::WHENCE_END => self.fs().stat(ino)?.size,
            _ => return Err(Errno::INVAL),
        };
        let pos = base.checked_add_signed(offset).ok_or(Errno::INVAL)?;
        if pos > i64::MAX as u64 {
            return Err(Errno::INVAL);
        }
        self.file(fd)?.pos = pos;
        Ok(pos)
    }

    pub(super) fn fd_tell(&mut self, fd: u32) -> abi::Result<u64> {
        Ok(self.file(fd)?.pos)
    }

    pub(super) fn fd_advise(
        &mut self,
        fd: u32,
        _offset: u64,
        _len: u64,
        advice: u8,
    ) -> abi::Result<()> {
        if advice > 5 {
            return Err(Errno::INVAL);
        }
        self.file(fd)
            .map(drop)
            .map_err(|e| if e == Errno::SPIPE { Errno::SPIPE } else { e })
    }

    pub(super) fn fd_allocate(&mut self, fd: u32, offset: u64, len: u64) -> abi::Result<()> {
        let file = self.file(fd)?;
        if file.base & rights::FD_WRITE == 0 {
            return Err(Errno::BADF);
        }
        let ino = file.ino;
        let end = offset.checked_add(len).ok_or(Errno::FBIG)?;
        if len == 0 {
            return Err(Errno::INVAL);
        }
        let mut fs = self.fs();
        if fs.stat(ino)?.size < end {
            fs.set_size(ino, end)?;
        }
        Ok(())
    }

    pub(super) fn fd_sync(&mut self, fd: u32) -> abi::Result<()> {
        // Memory is as durable as this filesystem gets.
        match self.desc(fd)? {
            Desc::File(_) | Desc::Dir(_) => Ok(()),
            _ => Err(Errno::INVAL),
        }
    }

    /// Reads from a file at its position (or at `at` for pread).
    pub(super) fn read_file(
        &mut self,
        mem: &mut Mem,
        fd: u32,
        iovs: u32,
        n: u32,
        at: Option<u64>,
    ) -> abi::Result<u32> {
        let vecs = mem.iovecs(iovs, n)?;
        let file = self.file(fd)?;
        if file.base & rights::FD_READ == 0 {
            return Err(Errno::BADF);
        }
        let (ino, start) = (file.ino, at.unwrap_or(file.pos));
        // Straight from the file into the guest's buffers, one after the other until the file ends.
        let mut copied = 0usize;
        {
            let fs = self.fs();
            for (buf, len) in vecs {
                let room = len.min(u32::MAX - copied as u32);
                if room == 0 {
                    if len == 0 {
                        continue;
                    }
                    break;
                }
                let got = fs.read(ino, start + copied as u64, mem.slice_mut(buf, room)?)?;
                copied += got;
                if got < room as usize {
                    break;
                }
            }
        }
        if at.is_none() {
            self.file(fd)?.pos = start + copied as u64;
        }
        Ok(copied as u32)
    }

    pub(super) fn write_file(
        &mut self,
        mem: &mut Mem,
        fd: u32,
        iovs: u32,
        n: u32,
        at: Option<u64>,
    ) -> abi::Result<u32> {
        let vecs = mem.iovecs(iovs, n)?;
        let file = self.file(fd)?;
        if file.base & rights::FD_WRITE == 0 {
            return Err(Errno::BADF);
        }
        let ino = file.ino;
        let offset = match at {
            Some(at) => Some(at),
            None if file.flags & abi::FDFLAGS_APPEND != 0 => None,
            None => Some(file.pos),
        };
        // Straight from the guest's buffers into the file. A buffer that does not fit (the quota) after others
        // did ends the write short, as POSIX has it.
        let mut written = 0usize;
        {
            let mut fs = self.fs();
            for (buf, len) in vecs {
                if len == 0 {
                    continue;
                }
                if len > u32::MAX - written as u32 {
                    break;
                }
                let at = offset.map(|start| start + written as u64);
                match fs.write(ino, at, mem.slice(buf, len)?) {
                    Ok(n) => written += n,
                    Err(e) if written == 0 => return Err(e.into()),
                    Err(_) => break,
                }
            }
        }
        if at.is_none() {
            let end = match offset {
                Some(start) => start + written as u64,
                None => self.fs().stat(ino)?.size,
            };
            self.file(fd)?.pos = end;
        }
        Ok(written as u32)
    }

    /// `fd_read`: done at once, or a read from stdin or a socket that may have to wait.
    pub(super) fn fd_read(&mut self, mem: &mut Mem, fd: u32, iovs: u32, n: u32) -> abi::Result<Io> {
        // Bounded: overlapping iovecs can claim far more than the guest's memory.
        let want = |mem: &Mem| -> abi::Result<usize> {
            Ok(abi::total_len(&mem.iovecs(iovs, n)?).min(abi::MAX_IO))
        };
        match self.desc(fd)? {
            Desc::Stdin { flags } => Ok(Io::Stdin {
                input: self.stdin.clone(),
                want: want(mem)?,
                nonblocking: nonblocking(*flags),
            }),
            Desc::Socket { socket, flags } => Ok(Io::Recv {
                socket: socket.handle().clone(),
                want: want(mem)?,
                flags: RecvFlags {
                    nonblocking: nonblocking(*flags),
                    ..RecvFlags::default()
                },
            }),
            Desc::Listener { .. } => Err(Errno::NOTCONN),
            Desc::Out { .. } => Err(Errno::BADF),
            Desc::Dir(_) => Err(Errno::ISDIR),
            Desc::File(_) => Ok(Io::Done(self.read_file(mem, fd, iovs, n, None)?)),
        }
    }

    /// `fd_write`: done at once, or a send on a socket that may have to wait.
    pub(super) fn fd_write(
        &mut self,
        mem: &mut Mem,
        fd: u32,
        iovs: u32,
        n: u32,
    ) -> abi::Result<Io> {
        match self.desc(fd)? {
            Desc::Out {
                sink, credit: None, ..
            } => {
                let data = mem.gather(iovs, n)?;
                sink(&data);
                Ok(Io::Done(data.len() as u32))
            }
            Desc::Out {
                sink,
                credit: Some(credit),
                ..
            } => Ok(Io::Out {
                data: mem.gather_up_to(iovs, n, credit.capacity())?,
                sink: sink.clone(),
                credit: credit.clone(),
            }),
            Desc::Socket { socket, flags } => Ok(Io::Send {
                socket: socket.handle().clone(),
                data: mem.gather(iovs, n)?,
                nonblocking: nonblocking(*flags),
            }),
            Desc::Listener { .. } => Err(Errno::NOTCONN),
            Desc::Stdin { .. } => Err(Errno::BADF),
            Desc::Dir(_) => Err(Errno::ISDIR),
            Desc::File(_) => Ok(Io::Done(self.write_file(mem, fd, iovs, n, None)?)),
        }
    }

    pub(super) fn fd_readdir(
        &self,
        mem: &mut Mem,
        fd: u32,
        buf: u32,
        len: u32,
        cookie: u64,
    ) -> abi::Result<u32> {
        let dir = match self.desc(fd)? {
            Desc::Dir(dir) => dir.ino,
            _ => return Err(Errno::NOTDIR),
        };
        mem.slice(buf, len)?;
        let fs = self.fs();
        // Grows only as far as the directory's entries do (the filesystem is under the dyno's quota).
        let mut out = Vec::with_capacity((len as usize).min(64 << 10));
        let mut after = cookie;
        'fill: while out.len() < len as usize {
            let batch = fs.read_dir(dir, after, 128)?;
            if batch.is_empty() {
                break;
            }
            for entry in batch {
                let mut header = [0u8; 24];
                header[0..8].copy_from_slice(&entry.cookie.to_le_bytes());
                header[8..16].copy_from_slice(&entry.ino.to_le_bytes());
                header[16..20].copy_from_slice(&(entry.name.len() as u32).to_le_bytes());
                header[20] = abi::filetype(entry.kind);
                out.extend_from_slice(&header);
                out.extend_from_slice(entry.name.as_bytes());
                after = entry.cookie;
                if out.len() >= len as usize {
                    break 'fill;
                }
            }
        }
        // A full buffer tells the guest there may be more; it retries with a larger one for a cut entry.
        out.truncate(len as usize);
        mem.write(buf, &out)?;
        Ok(out.len() as u32)
    }
}
