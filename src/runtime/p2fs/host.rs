//! The `wasi:filesystem` host functions (`types`, `preopens`) over the dyno's [`Fs`], and the conversions between
//! their types and the filesystem's.

#[allow(unused_imports)]
use super::*;

pub(super) fn descriptor_type(kind: Kind) -> DescriptorType {
    match kind {
        Kind::File => DescriptorType::RegularFile,
        Kind::Dir => DescriptorType::Directory,
        Kind::Symlink => DescriptorType::SymbolicLink,
    }
}

pub(super) fn datetime(ns: vfs::Timestamp) -> Datetime {
    Datetime {
        seconds: ns / 1_000_000_000,
        nanoseconds: (ns % 1_000_000_000) as u32,
    }
}

pub(super) fn descriptor_stat(stat: &Stat) -> DescriptorStat {
    DescriptorStat {
        type_: descriptor_type(stat.kind),
        link_count: stat.nlink,
        size: stat.size,
        data_access_timestamp: Some(datetime(stat.atime)),
        data_modification_timestamp: Some(datetime(stat.mtime)),
        status_change_timestamp: Some(datetime(stat.ctime)),
    }
}

pub(super) fn set_time(time: NewTimestamp) -> HostResult<SetTime> {
    Ok(match time {
        NewTimestamp::NoChange => SetTime::Keep,
        NewTimestamp::Now => SetTime::Now,
        NewTimestamp::Timestamp(Datetime {
            seconds,
            nanoseconds,
        }) => {
            if nanoseconds >= 1_000_000_000 {
                return Err(ErrorCode::Invalid.into());
            }
            let ns = seconds
                .checked_mul(1_000_000_000)
                .and_then(|ns| ns.checked_add(u64::from(nanoseconds)))
                .ok_or(ErrorCode::Overflow)?;
            SetTime::At(ns)
        }
    })
}

/// A hash of what changes when a file is modified or replaced, keyed by a secret of this process so that its
/// inputs cannot be read back from it.
pub(super) fn metadata_hash(stat: &Stat) -> MetadataHashValue {
    static KEYS: OnceLock<[std::collections::hash_map::RandomState; 2]> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    let fields = (stat.ino, stat.kind as u8, stat.size, stat.mtime, stat.ctime);
    MetadataHashValue {
        lower: keys[0].hash_one(fields),
        upper: keys[1].hash_one(fields),
    }
}

impl FsCtxView<'_> {
    pub(super) fn get(&self, fd: &Resource<Descriptor>) -> HostResult<&Descriptor> {
        Ok(self.table.get(fd)?)
    }

    pub(super) fn push_input(
        &mut self,
        stream: FileReader,
    ) -> HostResult<Resource<DynInputStream>> {
        let stream: DynInputStream = Box::new(stream);
        Ok(self.table.push(stream)?)
    }

    pub(super) fn push_output(
        &mut self,
        stream: FileWriter,
    ) -> HostResult<Resource<DynOutputStream>> {
        let stream: DynOutputStream = Box::new(stream);
        Ok(self.table.push(stream)?)
    }
}

impl preopens::Host for FsCtxView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let root = self.table.push(Descriptor::root(&self.ctx.fs))?;
        Ok(vec![(root, "/".to_string())])
    }
}

impl types::Host for FsCtxView<'_> {
    fn convert_error_code(&mut self, err: HostError) -> wasmtime::Result<ErrorCode> {
        match err.0 {
            Failure::Code(code) => Ok(code),
            Failure::Trap(trap) => Err(trap),
        }
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        let err = self.table.get(&err)?;
        if let Some(err) = err.downcast_ref::<FsError>() {
            return Ok(Some(error_code(*err)));
        }
        // Other streams' I/O errors, as wasmtime-wasi's (shadowed) definition answers them.
        Ok(err.downcast_ref::<std::io::Error>().map(io_error_code))
    }
}

impl types::HostDescriptor for FsCtxView<'_> {
    fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> HostResult<Resource<DynInputStream>> {
        let d = self.get(&fd)?;
        if d.kind == DescKind::Dir {
            return Err(ErrorCode::IsDirectory.into());
        }
        let reader = FileReader::new(&d.fs, d.readable()?, offset);
        self.push_input(reader)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> HostResult<Resource<DynOutputStream>> {
        let d = self.get(&fd)?;
        let writer = FileWriter::new(&d.fs, d.writable()?, Some(offset));
        self.push_output(writer)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> HostResult<Resource<DynOutputStream>> {
        let d = self.get(&fd)?;
        let writer = FileWriter::new(&d.fs, d.writable()?, None);
        self.push_output(writer)
    }

    fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        _offset: Filesize,
        _length: Filesize,
        _advice: Advice,
    ) -> HostResult<()> {
        match self.get(&fd)?.kind {
            DescKind::File { .. } => Ok(()),
            DescKind::Dir => Err(ErrorCode::BadDescriptor.into()),
        }
    }

    fn sync_data(&mut self, fd: Resource<Descriptor>) -> HostResult<()> {
        self.get(&fd)?;
        Ok(())
    }

    fn get_flags(&mut self, fd: Resource<Descriptor>) -> HostResult<DescriptorFlags> {
        Ok(self.get(&fd)?.flags)
    }

    fn get_type(&mut self, fd: Resource<Descriptor>) -> HostResult<DescriptorType> {
        Ok(match self.get(&fd)?.kind {
            DescKind::File { .. } => DescriptorType::RegularFile,
            DescKind::Dir => DescriptorType::Directory,
        })
    }

    fn set_size(&mut self, fd: Resource<Descriptor>, size: Filesize) -> HostResult<()> {
        let d = self.get(&fd)?;
        let ino = d.writable()?;
        Ok(d.fs().set_size(ino, size)?)
    }

    fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        atime: NewTimestamp,
        mtime: NewTimestamp,
    ) -> HostResult<()> {
        let d = self.get(&fd)?;
        let (atime, mtime) = (set_time(atime)?, set_time(mtime)?);
        Ok(d.fs().set_times(d.ino, atime, mtime)?)
    }

    fn read(
        &mut self,
        fd: Resource<Descriptor>,
        length: Filesize,
        offset: Filesize,
    ) -> HostResult<(Vec<u8>, bool)> {
        let d = self.get(&fd)?;
        let ino = d.readable()?;
        let fs = d.fs();
        let size = fs.stat(ino)?.size;
        let left = size.saturating_sub(offset);
        let want = length.min(left).min(MAX_IO as u64) as usize;
        let mut buf = vec![0; want];
        let n = fs.read(ino, offset, &mut buf)?;
        buf.truncate(n);
        Ok((buf, offset.saturating_add(n as u64) >= size))
    }

    fn write(
        &mut self,
        fd: Resource<Descriptor>,
        buffer: Vec<u8>,
        offset: Filesize,
    ) -> HostResult<Filesize> {
        let d = self.get(&fd)?;
        let ino = d.writable()?;
        let n = d.fs().write(ino, Some(offset), &buffer)?;
        Ok(n as Filesize)
    }

    fn read_directory(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> HostResult<Resource<DirectoryStream>> {
        let d = self.get(&fd)?;
        let dir = d.dir()?;
        let fs = d.fs.clone();
        lock(&fs).retain(dir);
        let stream = DirectoryStream { fs, dir, after: 2 };
        Ok(self.table.push(stream)?)
    }

    fn sync(&mut self, fd: Resource<Descriptor>) -> HostResult<()> {
        self.get(&fd)?;
        Ok(())
    }

    fn create_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> HostResult<()> {
        let d = self.get(&fd)?;
        d.fs().mkdir(d.dir()?, &path)?;
        Ok(())
    }

    fn stat(&mut self, fd: Resource<Descriptor>) -> HostResult<DescriptorStat> {
        let d = self.get(&fd)?;
        Ok(descriptor_stat(&d.fs().stat(d.ino)?))
    }

    fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> HostResult<DescriptorStat> {
        let d = self.get(&fd)?;
        let fs = d.fs();
        let ino = fs.lookup(d.dir()?, &path, follow(path_flags))?;
        Ok(descriptor_stat(&fs.stat(ino)?))
    }

    fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        atime: NewTimestamp,
        mtime: NewTimestamp,
    ) -> HostResult<()> {
        let d = self.get(&fd)?;
        let (atime, mtime) = (set_time(atime)?, set_time(mtime)?);
        let mut fs = d.fs();
        let ino = fs.lookup(d.dir()?, &path, follow(path_flags))?;
        Ok(fs.set_times(ino, atime, mtime)?)
    }

    fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path_flags: PathFlags,
        old_path: String,
        new_descriptor: Resource<Descriptor>,
        new_path: String,
    ) -> HostResult<()> {
        let from = self.get(&fd)?.dir()?;
        let to = self.get(&new_descriptor)?.dir()?;
        let mut fs = lock(&self.ctx.fs);
        Ok(fs.link(from, &old_path, to, &new_path, follow(old_path_flags))?)
    }

    fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        open_flags: OpenFlags,
        flags: DescriptorFlags,
    ) -> HostResult<Resource<Descriptor>> {
        let base = self.get(&fd)?;
        let dir = base.dir()?;
        let opened = {
            let mut fs = base.fs();
            let ino = fs.open(
                dir,
                &path,
                VfsOpenFlags {
                    create: open_flags.contains(OpenFlags::CREATE),
                    exclusive: open_flags.contains(OpenFlags::EXCLUSIVE),
                    truncate: open_flags.contains(OpenFlags::TRUNCATE),
                    directory: open_flags.contains(OpenFlags::DIRECTORY),
                    follow: follow(path_flags),
                },
            )?;
            match fs.stat(ino)?.kind {
                // A link itself cannot be opened: O_NOFOLLOW's answer.
                Kind::Symlink => return Err(ErrorCode::Loop.into()),
                // POSIX: a directory cannot be opened for writing.
                Kind::Dir if flags.contains(DescriptorFlags::WRITE) => {
                    return Err(ErrorCode::IsDirectory.into());
                }
                Kind::Dir => (
                    ino,
                    DescKind::Dir,
                    (flags & !DescriptorFlags::WRITE) | DescriptorFlags::MUTATE_DIRECTORY,
                ),
                Kind::File => (
                    ino,
                    DescKind::File {
                        read: flags.contains(DescriptorFlags::READ),
                        write: flags.contains(DescriptorFlags::WRITE),
                    },
                    // Mutating directories is for directories only.
                    flags & !DescriptorFlags::MUTATE_DIRECTORY,
                ),
            }
        };
        let (ino, kind, flags) = opened;
        let descriptor = Descriptor::new(&base.fs, ino, kind, flags);
        Ok(self.table.push(descriptor)?)
    }

    fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> HostResult<String> {
        let d = self.get(&fd)?;
        Ok(d.fs().readlink(d.dir()?, &path)?)
    }

    fn remove_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> HostResult<()> {
        let d = self.get(&fd)?;
        Ok(d.fs().rmdir(d.dir()?, &path)?)
    }

    fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_descriptor: Resource<Descriptor>,
        new_path: String,
    ) -> HostResult<()> {
        let from = self.get(&fd)?.dir()?;
        let to = self.get(&new_descriptor)?.dir()?;
        let mut fs = lock(&self.ctx.fs);
        Ok(fs.rename(from, &old_path, to, &new_path)?)
    }

    fn symlink_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_path: String,
    ) -> HostResult<()> {
        // An absolute target would point outside the directory: refused, as wasmtime's host refuses it.
        if old_path.starts_with('/') {
            Err(FsError::NotPermitted)?;
        }
        let d = self.get(&fd)?;
        Ok(d.fs().symlink(&old_path, d.dir()?, &new_path)?)
    }

    fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> HostResult<()> {
        let d = self.get(&fd)?;
        Ok(d.fs().unlink(d.dir()?, &path)?)
    }

    fn is_same_object(
        &mut self,
        fd: Resource<Descriptor>,
        other: Resource<Descriptor>,
    ) -> wasmtime::Result<bool> {
        let a = self.table.get(&fd)?.ino;
        let b = self.table.get(&other)?.ino;
        Ok(a == b)
    }

    fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> HostResult<MetadataHashValue> {
        let d = self.get(&fd)?;
        Ok(metadata_hash(&d.fs().stat(d.ino)?))
    }

    fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> HostResult<MetadataHashValue> {
        let d = self.get(&fd)?;
        let fs = d.fs();
        let ino = fs.lookup(d.dir()?, &path, follow(path_flags))?;
        Ok(metadata_hash(&fs.stat(ino)?))
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        // Dropping the descriptor releases its inode (see `Drop for Descriptor`).
        self.table.delete(fd)?;
        Ok(())
    }
}

impl types::HostDirectoryEntryStream for FsCtxView<'_> {
    fn read_directory_entry(
        &mut self,
        stream: Resource<DirectoryStream>,
    ) -> HostResult<Option<DirectoryEntry>> {
        let stream = self.table.get_mut(&stream)?;
        let next = lock(&stream.fs).read_dir(stream.dir, stream.after, 1)?;
        Ok(next.into_iter().next().map(|entry| {
            stream.after = entry.cookie;
            DirectoryEntry {
                type_: descriptor_type(entry.kind),
                name: entry.name,
            }
        }))
    }

    fn drop(&mut self, stream: Resource<DirectoryStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

pub(super) fn follow(flags: PathFlags) -> bool {
    flags.contains(PathFlags::SYMLINK_FOLLOW)
}
