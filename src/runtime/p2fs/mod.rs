//! Our own `wasi:filesystem` host for WASI 0.2 components, over the dyno's in-memory filesystem ([`super::vfs`]),
//! the same [`Fs`] our preview-1 host ([`super::p1`]) serves core modules.
//!
//! [`add_to_linker`] links `wasi:filesystem/types` and `wasi:filesystem/preopens` at the WIT version wasmtime-wasi
//! 48 uses (0.2.12, in `wit/`) over wasmtime-wasi's own definitions, item by item, so a component sees no host
//! directory, only its dyno's. The component model linker matches imports by semver-compatible version (an import
//! of `wasi:filesystem/types@0.2.0` finds the `@0.2.12` definition), so components built against any 0.2.x land
//! here too; `wasm32-wasip2` Rust programs import both 0.2.0 (through the preview-1 adapter std still uses) and
//! a later 0.2.x (wasi-libc), and both reach these functions.
//!
//! `preopens.get-directories` gives `/`: the app tree, also the working directory and `HOME`, with an empty
//! writable `/tmp`. Streams (`read-via-stream`, `write-via-stream`, `append-via-stream`) are wasmtime-wasi's own
//! `input-stream`/`output-stream` resources over a cursor into [`Fs`]; a failed stream write reports its
//! [`FsError`] through `filesystem-error-code` (the preview-1 adapter asks for it; wasi-libc's `write` does not,
//! and says `EIO`). Writes count against the dyno's [`super::vfs::Quota`], shared with its linear memories; past
//! it they fail with `insufficient-space` (`file-too-large` for a file larger than the whole quota).
//!
//! Paths resolve as on the preview-1 host: as POSIX `*at` calls inside a chroot. `..` at `/` stays at `/`, an
//! absolute path or symbolic link target starts at the dyno's root, so nothing resolves outside the dyno. That is
//! on purpose laxer than wasi-filesystem's capability rule (absolute paths, `..` above the base descriptor and
//! absolute link targets answer `not-permitted`): the whole tree is the dyno's own and `/` is preopened, so there
//! is no capability inside it to protect, and programs (and std through the preview-1 adapter) that pass such
//! paths behave as they do on preview 1.
//!
//! Error codes follow wasmtime-wasi's host where wasi-filesystem leaves a choice (it is what guests and the
//! wasi-testsuite are written against): file-only operations (`read`, `write`, `advise`, `set-size`,
//! `*-via-stream`) on a directory answer `bad-descriptor`, except `read-via-stream`, `is-directory`; `*-at` calls
//! on a file answer `not-directory`; reading or writing a descriptor not opened for it answers `bad-descriptor`,
//! as POSIX's `EBADF`. Every directory of the dyno is writable by it, so descriptors for directories always carry
//! `mutate-directory` (as wasmtime-wasi's do when the preopen does) and `read-only` never arises. The sync flags
//! are accepted and reported back: memory is as durable as this filesystem gets, so `sync` and `sync-data` do
//! nothing. A descriptor on a symbolic link cannot be opened (`open-at` without `symlink-follow` on a link answers
//! `loop`, as POSIX `O_NOFOLLOW` does).

#[cfg(test)]
mod tests;

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use hyper::body::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable};
use wasmtime_wasi::p2::{StreamError, StreamResult};

use super::vfs::{self, Fs, FsError, Ino, Kind, OpenFlags as VfsOpenFlags, SetTime, Stat};

mod bindings {
    wasmtime::component::bindgen!({
        path: "src/runtime/p2fs/wit",
        world: "wasmdyno:filesystem/host",
        imports: { default: trappable },
        trappable_error_type: {
            "wasi:filesystem/types.error-code" => crate::runtime::p2fs::HostError,
        },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks/wall-clock": wasmtime_wasi::p2::bindings::clocks::wall_clock,
            "wasi:filesystem/types.descriptor": crate::runtime::p2fs::Descriptor,
            "wasi:filesystem/types.directory-entry-stream": crate::runtime::p2fs::DirectoryStream,
        },
        require_store_data_send: true,
    });
}

use bindings::wasi::filesystem::{preopens, types};
use types::{
    Advice, Datetime, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode,
    Filesize, MetadataHashValue, NewTimestamp, OpenFlags, PathFlags,
};

/// Most bytes one `read` or stream read returns, and what a stream's `check-write` allows at once (guests loop
/// for more; this bounds what one call makes the host allocate).
const MAX_IO: usize = 1 << 20;

/// One dyno's filesystem, shared by its instances (and, within an instance, by its descriptors and streams).
type SharedFs = Arc<Mutex<Fs>>;

fn lock(fs: &SharedFs) -> MutexGuard<'_, Fs> {
    // A panic while holding the lock would be a host bug; the filesystem itself stays consistent.
    fs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The filesystem state of one instance: a view of its dyno's [`Fs`].
#[derive(Clone)]
pub(crate) struct FsCtx {
    fs: SharedFs,
}

impl FsCtx {
    pub(crate) fn new(fs: Arc<Mutex<Fs>>) -> FsCtx {
        FsCtx { fs }
    }
}

/// What the host functions work with: the instance's filesystem and its resource table (the same table
/// wasmtime-wasi keeps its streams in, so the streams made here are ordinary `wasi:io` streams).
pub(crate) struct FsCtxView<'a> {
    pub(crate) ctx: &'a FsCtx,
    pub(crate) table: &'a mut ResourceTable,
}

/// Gives the linker's host functions their state.
pub(crate) trait FsView: Send + 'static {
    fn dyno_fs(&mut self) -> FsCtxView<'_>;
}

struct HasFs;

impl HasData for HasFs {
    type Data<'a> = FsCtxView<'a>;
}

/// Links our `wasi:filesystem` into `linker`, over what is there: call it after
/// `wasmtime_wasi::p2::add_to_linker_async`, whose filesystem definitions ours replace one by one (shadowing is
/// allowed for this call only).
pub(crate) fn add_to_linker<T: FsView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = types::add_to_linker::<T, HasFs>(linker, T::dyno_fs)
        .and_then(|()| preopens::add_to_linker::<T, HasFs>(linker, T::dyno_fs));
    linker.allow_shadowing(false);
    linked
}

/// A `wasi:filesystem` error code, or a trap (a bad resource handle from the guest).
#[derive(Debug)]
pub(crate) struct HostError(Failure);

#[derive(Debug)]
enum Failure {
    Code(ErrorCode),
    Trap(wasmtime::Error),
}

impl From<ErrorCode> for HostError {
    fn from(code: ErrorCode) -> HostError {
        HostError(Failure::Code(code))
    }
}

impl From<FsError> for HostError {
    fn from(err: FsError) -> HostError {
        error_code(err).into()
    }
}

impl From<ResourceTableError> for HostError {
    fn from(err: ResourceTableError) -> HostError {
        HostError(Failure::Trap(err.into()))
    }
}

type HostResult<T> = Result<T, HostError>;

/// The wasi-filesystem code for a filesystem error (the preview-1 host maps the same errors to the same errnos).
fn error_code(err: FsError) -> ErrorCode {
    match err {
        FsError::NotFound => ErrorCode::NoEntry,
        FsError::Exists => ErrorCode::Exist,
        FsError::NotDir => ErrorCode::NotDirectory,
        FsError::IsDir => ErrorCode::IsDirectory,
        FsError::NotEmpty => ErrorCode::NotEmpty,
        FsError::Invalid => ErrorCode::Invalid,
        FsError::NoSpace => ErrorCode::InsufficientSpace,
        FsError::Loop => ErrorCode::Loop,
        FsError::NameTooLong => ErrorCode::NameTooLong,
        FsError::IllegalBytes => ErrorCode::IllegalByteSequence,
        FsError::NotPermitted => ErrorCode::NotPermitted,
        FsError::TooBig => ErrorCode::FileTooLarge,
    }
}

fn io_error_code(err: &std::io::Error) -> ErrorCode {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::NotFound => ErrorCode::NoEntry,
        ErrorKind::PermissionDenied => ErrorCode::NotPermitted,
        ErrorKind::AlreadyExists => ErrorCode::Exist,
        ErrorKind::WouldBlock => ErrorCode::WouldBlock,
        ErrorKind::InvalidInput => ErrorCode::Invalid,
        ErrorKind::Interrupted => ErrorCode::Interrupted,
        ErrorKind::BrokenPipe => ErrorCode::Pipe,
        ErrorKind::StorageFull => ErrorCode::InsufficientSpace,
        ErrorKind::OutOfMemory => ErrorCode::InsufficientMemory,
        ErrorKind::Unsupported => ErrorCode::Unsupported,
        _ => ErrorCode::Io,
    }
}

/// An open file or directory: the `descriptor` resource. It holds its inode open in the [`Fs`] (an unlinked
/// file stays readable) until the guest drops it.
pub struct Descriptor {
    fs: SharedFs,
    ino: Ino,
    kind: DescKind,
    /// What `get-flags` reports.
    flags: DescriptorFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DescKind {
    File { read: bool, write: bool },
    Dir,
}

impl Descriptor {
    fn new(fs: &SharedFs, ino: Ino, kind: DescKind, flags: DescriptorFlags) -> Descriptor {
        lock(fs).retain(ino);
        Descriptor {
            fs: fs.clone(),
            ino,
            kind,
            flags,
        }
    }

    /// The root directory, as preopened.
    fn root(fs: &SharedFs) -> Descriptor {
        let flags = DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY;
        Descriptor::new(fs, vfs::ROOT, DescKind::Dir, flags)
    }

    fn fs(&self) -> MutexGuard<'_, Fs> {
        lock(&self.fs)
    }

    /// The directory a `*-at` call resolves from.
    fn dir(&self) -> HostResult<Ino> {
        match self.kind {
            DescKind::Dir => Ok(self.ino),
            DescKind::File { .. } => Err(ErrorCode::NotDirectory.into()),
        }
    }

    /// A file opened for reading.
    fn readable(&self) -> HostResult<Ino> {
        match self.kind {
            DescKind::File { read: true, .. } => Ok(self.ino),
            _ => Err(ErrorCode::BadDescriptor.into()),
        }
    }

    /// A file opened for writing.
    fn writable(&self) -> HostResult<Ino> {
        match self.kind {
            DescKind::File { write: true, .. } => Ok(self.ino),
            _ => Err(ErrorCode::BadDescriptor.into()),
        }
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        lock(&self.fs).release(self.ino);
    }
}

/// The `directory-entry-stream` resource: a cursor into a directory's listing, which stays valid while the
/// directory changes (entries added meanwhile show up at its end).
pub struct DirectoryStream {
    fs: SharedFs,
    dir: Ino,
    /// The cookie of the last entry given (2: after `.` and `..`, which wasi-filesystem leaves out).
    after: u64,
}

impl Drop for DirectoryStream {
    fn drop(&mut self) {
        lock(&self.fs).release(self.dir);
    }
}

/// A file's bytes as an `input-stream`, from an offset on. Holds the inode open while it lives.
struct FileReader {
    fs: SharedFs,
    ino: Ino,
    pos: u64,
    closed: bool,
}

impl FileReader {
    fn new(fs: &SharedFs, ino: Ino, pos: u64) -> FileReader {
        lock(fs).retain(ino);
        FileReader {
            fs: fs.clone(),
            ino,
            pos,
            closed: false,
        }
    }
}

#[async_trait::async_trait]
impl Pollable for FileReader {
    // Memory is always ready.
    async fn ready(&mut self) {}
}

impl InputStream for FileReader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        if size == 0 {
            return Ok(Bytes::new());
        }
        let fs = lock(&self.fs);
        let left = fs
            .stat(self.ino)
            .map_err(stream_failure)?
            .size
            .saturating_sub(self.pos);
        let mut buf = vec![
            0;
            size.min(MAX_IO)
                .min(usize::try_from(left).unwrap_or(MAX_IO))
        ];
        let n = fs
            .read(self.ino, self.pos, &mut buf)
            .map_err(stream_failure)?;
        drop(fs);
        if n == 0 {
            // The end of the file ends the stream, as wasmtime-wasi's file streams do.
            self.closed = true;
            return Err(StreamError::Closed);
        }
        buf.truncate(n);
        self.pos += n as u64;
        Ok(Bytes::from(buf))
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        lock(&self.fs).release(self.ino);
    }
}

/// An `output-stream` into a file: at an offset that moves on with each write, or appending. Writes happen at
/// once; one that fails (e.g. past the dyno's quota) fails the stream with its [`FsError`] as the payload.
struct FileWriter {
    fs: SharedFs,
    ino: Ino,
    /// `None`: append.
    pos: Option<u64>,
    closed: bool,
}

impl FileWriter {
    fn new(fs: &SharedFs, ino: Ino, pos: Option<u64>) -> FileWriter {
        lock(fs).retain(ino);
        FileWriter {
            fs: fs.clone(),
            ino,
            pos,
            closed: false,
        }
    }
}

#[async_trait::async_trait]
impl Pollable for FileWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for FileWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        match lock(&self.fs).write(self.ino, self.pos, &bytes) {
            Ok(n) => {
                if let Some(pos) = &mut self.pos {
                    *pos += n as u64;
                }
                Ok(())
            }
            Err(err) => {
                // After a failed write the stream is closed, as wasi:io has it.
                self.closed = true;
                Err(stream_failure(err))
            }
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(MAX_IO)
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        lock(&self.fs).release(self.ino);
    }
}

/// A stream operation failed: the error travels as the `wasi:io/error` payload that `filesystem-error-code`
/// turns back into an error code.
fn stream_failure(err: FsError) -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::new(err))
}

fn descriptor_type(kind: Kind) -> DescriptorType {
    match kind {
        Kind::File => DescriptorType::RegularFile,
        Kind::Dir => DescriptorType::Directory,
        Kind::Symlink => DescriptorType::SymbolicLink,
    }
}

fn datetime(ns: vfs::Timestamp) -> Datetime {
    Datetime {
        seconds: ns / 1_000_000_000,
        nanoseconds: (ns % 1_000_000_000) as u32,
    }
}

fn descriptor_stat(stat: &Stat) -> DescriptorStat {
    DescriptorStat {
        type_: descriptor_type(stat.kind),
        link_count: stat.nlink,
        size: stat.size,
        data_access_timestamp: Some(datetime(stat.atime)),
        data_modification_timestamp: Some(datetime(stat.mtime)),
        status_change_timestamp: Some(datetime(stat.ctime)),
    }
}

fn set_time(time: NewTimestamp) -> HostResult<SetTime> {
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
fn metadata_hash(stat: &Stat) -> MetadataHashValue {
    static KEYS: OnceLock<[std::collections::hash_map::RandomState; 2]> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    let fields = (stat.ino, stat.kind as u8, stat.size, stat.mtime, stat.ctime);
    MetadataHashValue {
        lower: keys[0].hash_one(fields),
        upper: keys[1].hash_one(fields),
    }
}

impl FsCtxView<'_> {
    fn get(&self, fd: &Resource<Descriptor>) -> HostResult<&Descriptor> {
        Ok(self.table.get(fd)?)
    }

    fn push_input(&mut self, stream: FileReader) -> HostResult<Resource<DynInputStream>> {
        let stream: DynInputStream = Box::new(stream);
        Ok(self.table.push(stream)?)
    }

    fn push_output(&mut self, stream: FileWriter) -> HostResult<Resource<DynOutputStream>> {
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

fn follow(flags: PathFlags) -> bool {
    flags.contains(PathFlags::SYMLINK_FOLLOW)
}
