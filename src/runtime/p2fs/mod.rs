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

mod host;
pub(crate) mod streams;
#[allow(unused_imports)]
use {host::*, streams::*};

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
            "wasi:filesystem/types.directory-entry-stream": crate::runtime::p2fs::streams::DirectoryStream,
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
