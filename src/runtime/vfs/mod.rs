//! The dyno's ephemeral filesystem: an immutable [`Image`] of a release's `app/` tree, shared by all its dynos,
//! under a private copy-on-write [`Fs`] per dyno, held in memory and gone when the dyno stops.
//!
//! The guest's `/` is the app tree (also its working directory and `HOME`) plus an empty, writable `/tmp`; nothing
//! else exists. Path resolution never leaves the root: `..` at `/` stays at `/` (as in a chroot), absolute symlink
//! targets resolve from the dyno's root, and symlink loops end in [`FsError::Loop`]. Booting a dyno copies nothing:
//! [`Fs::new`] is O(1) whatever the image's size or file count; a directory or file is copied into the dyno's layer
//! the first time the dyno changes it. Bytes the dyno writes count against its [`Quota`] (shared with its linear
//! memories), and past it writes fail with [`FsError::NoSpace`].
//!
//! Both WASI hosts (our preview-1 host and our `wasi:filesystem`) sit on this API; it speaks in inode numbers and
//! paths relative to a directory inode, as `*at` system calls do.

mod chunks;
mod image;
mod node;
mod walk;

mod inodes;
mod names;
#[allow(unused_imports)]
use {inodes::*, names::*};

use std::collections::{HashMap, hash_map};
use std::sync::Arc;

use node::{Body, Data, DirTable, Entries, INODE_COST, Node, entry_cost, now};
use walk::{Last, Walked};

/// Inode number. The root directory is [`ROOT`].
pub type Ino = u64;

pub const ROOT: Ino = 1;

/// Longest path accepted, in bytes (as Linux's PATH_MAX).
pub const PATH_MAX: usize = 4096;
/// Longest name of one path component, in bytes.
pub const NAME_MAX: usize = 255;
/// Symbolic links followed while resolving one path before [`FsError::Loop`].
pub const SYMLINK_MAX: usize = 40;

/// Why a filesystem call failed; each WASI host maps these to its own error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("invalid argument")]
    Invalid,
    #[error("no space left (dyno quota)")]
    NoSpace,
    #[error("too many levels of symbolic links")]
    Loop,
    #[error("file name too long")]
    NameTooLong,
    /// The path holds a NUL byte (or, for hosts decoding guest bytes, is not valid UTF-8).
    #[error("illegal byte sequence in path")]
    IllegalBytes,
    /// Removing or renaming `/`, or hard-linking a directory. (Moving a directory into itself, and removing or
    /// renaming `.` or `..`, are `Invalid`, as POSIX has them.)
    #[error("operation not permitted")]
    NotPermitted,
    /// The file is too large (past `u64` or the quota's reach).
    #[error("file too large")]
    TooBig,
}

pub type FsResult<T> = Result<T, FsError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// Nanoseconds since the Unix epoch.
pub type Timestamp = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ino: Ino,
    pub kind: Kind,
    pub nlink: u64,
    pub size: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
}

/// A new time for `set_times`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    Keep,
    Now,
    At(Timestamp),
}

/// Flags of [`Fs::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// Create a regular file if the path does not exist.
    pub create: bool,
    /// With `create`: fail with `Exists` if it does.
    pub exclusive: bool,
    /// Truncate a regular file to 0 bytes (a write: counts as a change of the file).
    pub truncate: bool,
    /// Fail with `NotDir` unless the result is a directory.
    pub directory: bool,
    /// Follow a symbolic link in the last component (intermediate ones are always followed).
    pub follow: bool,
}

/// One directory entry of [`Fs::read_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Pass as `after` to continue after this entry; stable while the directory changes.
    pub cookie: u64,
    pub name: String,
    pub ino: Ino,
    pub kind: Kind,
}

/// Byte budget of one dyno: its linear memories and its filesystem layer together.
#[derive(Debug)]
pub struct Quota {
    limit: u64,
    used: std::sync::atomic::AtomicU64,
    /// The most `used` has been.
    peak: std::sync::atomic::AtomicU64,
}

impl Quota {
    pub fn new(limit: u64) -> Quota {
        Quota {
            limit,
            used: std::sync::atomic::AtomicU64::new(0),
            peak: std::sync::atomic::AtomicU64::new(0),
        }
    }
    pub fn limit(&self) -> u64 {
        self.limit
    }
    pub fn used(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// The most the budget has had taken at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Takes `bytes` from the budget, or returns false (and takes nothing) if that would pass the limit.
    pub fn try_take(&self, bytes: u64) -> bool {
        use std::sync::atomic::Ordering;
        match self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            }) {
            Ok(before) => {
                self.peak.fetch_max(before + bytes, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }
    /// Gives `bytes` back.
    pub fn give_back(&self, bytes: u64) {
        self.used
            .fetch_sub(bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// An immutable `app/` tree, built once per release ([`Image::from_slug`]) and shared by its dynos: each dyno's
/// guest sees it as `/`, with its own copy-on-write layer over it, so what one dyno writes no other sees.
///
/// Inodes are numbered from `ROOT` in a flat table (breadth-first, each directory's entries in name order);
/// file contents are the slug's `Arc`s, never copied.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
/// # std::fs::write(app.path().join("hello.wasm"), include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm")))?;
/// # let options = wasmdyno::slug::PackOptions {
/// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let slug = wasmdyno::Slug::from_bytes(&wasmdyno::slug::pack(app.path(), options)?.bytes, Default::default())?;
/// use std::sync::Arc;
/// use wasmdyno::{runtime::Exit, runtime::Image, runtime::RunSpec, Runtime, RuntimeConfig};
///
/// // One image per release, shared by all its dynos; each gets its own copy-on-write layer over it.
/// let image = Arc::new(Image::from_slug(&slug));
/// let runtime = Runtime::new(RuntimeConfig::default())?;
/// let (guest, _) = runtime.load(&slug.file("hello.wasm").unwrap())?;
/// let tokio = tokio::runtime::Runtime::new()?;
/// for dyno in ["web.1", "web.2"] {
///     let env = [("DYNO".to_string(), dyno.to_string())].into();
///     let spec = RunSpec::new(vec!["hello.wasm".into()], env, Default::default()).with_image(image.clone());
///     assert_eq!(tokio.block_on(runtime.run(&guest, spec))?, Exit::Status(0));
/// }
/// # Ok(()) }
/// ```
pub struct Image {
    /// Inode `ROOT + i` is `nodes[i]`.
    nodes: Vec<Node>,
}

impl Image {
    /// Builds the image from regular files (path relative to `app/`, contents) and symbolic links (path,
    /// target); directories are implied by the paths. `mtime` is every entry's timestamp.
    ///
    /// `tmp` is always an empty directory (each dyno's writable `/tmp`): entries under it are left out.
    /// Malformed input is resolved rather than trusted: empty and `.` components are skipped; paths with `..`,
    /// NUL, a component over [`NAME_MAX`] or over [`PATH_MAX`] bytes are left out (no lookup could reach them
    /// anyway), as are empty link targets; a directory wins over a file or link at the same path, and
    /// otherwise the later entry wins.
    pub(crate) fn new(
        files: impl IntoIterator<Item = (String, Arc<[u8]>)>,
        links: impl IntoIterator<Item = (String, String)>,
        mtime: Timestamp,
    ) -> Image {
        Image {
            nodes: image::build(files, links, mtime),
        }
    }

    /// The image of a slug's `app/` tree (files share the slug's bytes).
    ///
    /// Slugs carry no timestamps (their archives are deterministic), so every entry is dated
    /// 1980-01-01T00:00:00Z, the earliest time ZIP archives can hold: tools that zip app files keep working.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let app = tempfile::tempdir()?;
    /// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
    /// # let options = wasmdyno::slug::PackOptions {
    /// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let packed = wasmdyno::slug::pack(app.path(), options)?;
    /// use std::sync::Arc;
    /// use wasmdyno::{runtime::Image, runtime::RunSpec, Slug};
    ///
    /// let slug = Slug::from_bytes(&packed.bytes, Default::default())?;
    /// let image = Arc::new(Image::from_slug(&slug));
    /// let spec = RunSpec::new(vec!["hello.wasm".into()], Default::default(), Default::default()).with_image(image);
    /// # drop(spec);
    /// # Ok(()) }
    /// ```
    pub fn from_slug(slug: &crate::slug::Slug) -> Image {
        const SLUG_MTIME: Timestamp = 315_532_800 * 1_000_000_000;
        Image::new(
            slug.files()
                .map(|(path, bytes)| (path.to_string(), bytes.clone())),
            slug.manifest().links.clone(),
            SLUG_MTIME,
        )
    }

    fn node(&self, ino: Ino) -> Option<&Node> {
        let index = usize::try_from(ino.checked_sub(ROOT)?).ok()?;
        self.nodes.get(index)
    }

    /// Whether `ino` is one of the image's inodes (numbers past them belong to dynos' layers).
    fn holds(&self, ino: Ino) -> bool {
        self.node(ino).is_some()
    }

    /// The first inode number after the image's.
    fn end(&self) -> Ino {
        ROOT + self.nodes.len() as Ino
    }
}

/// One dyno's filesystem: a copy-on-write layer over an [`Image`].
///
/// The layer maps inode numbers to nodes that shadow the image's: an image node is cloned into it the first
/// time the dyno changes it (a cheap clone: file bytes and directory tables stay shared `Arc`s), a directory's
/// table is copied the first time the dyno changes its entries, and a file's bytes the first time it writes
/// them. New inodes are numbered after the image's.
///
/// Everything the layer holds is charged to the [`Quota`]: owned file bytes, a fixed 128 bytes per inode and
/// 64 bytes plus the name per directory entry (copied-up directory tables included), and new links' targets.
/// A change that would pass the quota fails with [`FsError::NoSpace`] before anything changes; [`Drop`] gives
/// the whole charge back.
///
/// A directory's `nlink` is 1 (0 once removed), as on filesystems that do not count subdirectories; tools
/// such as `find` take that to mean "unknown" rather than trusting a count.
pub struct Fs {
    image: Arc<Image>,
    quota: Arc<Quota>,
    /// Nodes shadowing the image's or new; `None` marks an image inode this dyno has deleted.
    layer: HashMap<Ino, Option<Node>>,
    /// Descriptors per inode, as counted by [`Fs::retain`] and [`Fs::release`].
    opens: HashMap<Ino, u64>,
    next_ino: Ino,
    /// Bytes taken from the quota for the layer.
    charged: u64,
}

impl Fs {
    /// A fresh layer over `image` with an empty `/tmp`. O(1).
    pub fn new(image: Arc<Image>, quota: Arc<Quota>) -> Fs {
        let next_ino = image.end();
        Fs {
            image,
            quota,
            layer: HashMap::new(),
            opens: HashMap::new(),
            next_ino,
            charged: 0,
        }
    }

    /// Whether nothing has been changed over the image (no file written, made, removed or touched).
    pub(crate) fn is_untouched(&self) -> bool {
        self.layer.is_empty()
    }

    /// The quota this filesystem's writes are charged to (and the linear memories of its dyno's guests).
    pub(crate) fn quota(&self) -> Arc<Quota> {
        self.quota.clone()
    }

    /// Resolves `path` relative to the directory `dir` (absolute paths start at [`ROOT`]). `follow` applies to
    /// the last component (a trailing `/` always follows it). An empty path is `NotFound` (as `*at` calls
    /// without `AT_EMPTY_PATH`).
    pub fn lookup(&self, dir: Ino, path: &str, follow: bool) -> FsResult<Ino> {
        let walked = self.walk(dir, path, follow || path.ends_with('/'))?;
        self.existing(&walked)
    }

    /// Metadata of an inode (`NotFound` for a number that names no live inode).
    pub fn stat(&self, ino: Ino) -> FsResult<Stat> {
        let node = self.node(ino)?;
        Ok(Stat {
            ino,
            kind: node.kind(),
            nlink: node.nlink,
            size: node.size(),
            atime: node.atime,
            mtime: node.mtime,
            ctime: node.ctime,
        })
    }

    /// Opens (and with `create`, creates) a file or directory; returns its inode. The caller holds it with
    /// [`Fs::retain`] for as long as a descriptor refers to it.
    ///
    /// With `create` (and not `exclusive`), a dangling symbolic link in the last component is followed and
    /// its target created, as POSIX `open` does; with `exclusive` the link itself counts as existing.
    /// `create` on an existing directory is `IsDir` unless `directory` is set too; `create` with `directory`
    /// on a missing path is `Invalid` (only regular files are created here).
    pub fn open(&mut self, dir: Ino, path: &str, flags: OpenFlags) -> FsResult<Ino> {
        let exclusive = flags.create && flags.exclusive;
        let follow = (flags.follow && !exclusive) || path.ends_with('/');
        let walked = self.walk(dir, path, follow)?;
        let Some(ino) = walked.ino else {
            let Last::Name(name) = walked.last else {
                return Err(FsError::NotFound);
            };
            if !flags.create {
                return Err(FsError::NotFound);
            }
            if walked.want_dir {
                return Err(FsError::IsDir);
            }
            if flags.directory {
                return Err(FsError::Invalid);
            }
            let (parent, name) = (walked.parent, Arc::from(name));
            return self.create(parent, name, Body::File(Data::Owned(Default::default())), 0);
        };
        if exclusive {
            return Err(FsError::Exists);
        }
        let kind = self.node(ino)?.kind();
        if (walked.want_dir || flags.directory) && kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if kind == Kind::Dir && (flags.truncate || (flags.create && !flags.directory)) {
            return Err(FsError::IsDir);
        }
        if flags.truncate {
            self.set_size(ino, 0)?;
        }
        Ok(ino)
    }

    /// A descriptor now refers to `ino`: keep it alive after it is unlinked.
    pub fn retain(&mut self, ino: Ino) {
        if self.node(ino).is_ok() {
            *self.opens.entry(ino).or_default() += 1;
        }
    }

    /// A descriptor to `ino` closed; an unlinked inode with no descriptors left is freed (its bytes return to
    /// the quota).
    pub fn release(&mut self, ino: Ino) {
        if let hash_map::Entry::Occupied(mut opens) = self.opens.entry(ino) {
            *opens.get_mut() -= 1;
            if *opens.get() == 0 {
                opens.remove();
                self.free_if_unused(ino);
            }
        }
    }

    /// Reads from a regular file at `offset`; returns the bytes read (0 at or past the end).
    pub fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        let data = file_data(self.node(ino)?)?;
        Ok(data.read(usize::try_from(offset).unwrap_or(usize::MAX), buf))
    }

    /// Writes to a regular file at `offset` (`None`: at the end, for append), growing it with zeros if needed.
    /// Returns the bytes written; `NoSpace` if the quota cannot hold the growth (nothing written).
    ///
    /// The first write to an image file copies it whole into the layer (and charges all of it). A file that
    /// would grow past the quota's whole limit is `TooBig`. Writing nothing changes nothing.
    pub fn write(&mut self, ino: Ino, offset: Option<u64>, data: &[u8]) -> FsResult<usize> {
        let current = file_data(self.node(ino)?)?;
        if data.is_empty() {
            return Ok(0);
        }
        let len = current.len() as u64;
        let start = offset.unwrap_or(len);
        let end = start
            .checked_add(data.len() as u64)
            .ok_or(FsError::TooBig)?;
        let new_len = end.max(len);
        self.fits(new_len)?;
        // `start < end <= new_len`, which fits.
        let start = self.fits(start)?;
        let growth = match current {
            Data::Shared(_) => new_len,
            Data::Owned(_) => new_len - len,
        };
        self.prepare(&[ino], &[], growth)?;
        let now = now();
        let node = self.node_mut(ino)?;
        let Body::File(file) = &mut node.body else {
            return Err(FsError::Invalid);
        };
        file.to_mut(usize::MAX).write(start, data);
        node.modified(now);
        Ok(data.len())
    }

    /// Sets a regular file's size (truncate or extend with zeros).
    ///
    /// Like [`Fs::write`], a size past the quota's whole limit is `TooBig`.
    pub fn set_size(&mut self, ino: Ino, size: u64) -> FsResult<()> {
        let current = file_data(self.node(ino)?)?;
        let len = current.len() as u64;
        let shared = matches!(current, Data::Shared(_));
        let now = now();
        if size == len {
            // Nothing to copy, but it counts as a change of the file.
            self.prepare(&[ino], &[], 0)?;
            self.node_mut(ino)?.modified(now);
            return Ok(());
        }
        let new_len = self.fits(size)?;
        // A shared file becomes an owned copy of what is kept; an owned one grows or shrinks.
        let growth = if shared {
            size
        } else {
            size.saturating_sub(len)
        };
        self.prepare(&[ino], &[], growth)?;
        let node = self.node_mut(ino)?;
        let Body::File(file) = &mut node.body else {
            return Err(FsError::Invalid);
        };
        // A shared file becomes an owned copy of the bytes it keeps.
        file.to_mut(new_len).set_len(new_len);
        node.modified(now);
        if !shared {
            self.uncharge(len.saturating_sub(size));
        }
        Ok(())
    }

    /// Sets an inode's access and modification times; its ctime becomes now.
    pub fn set_times(&mut self, ino: Ino, atime: SetTime, mtime: SetTime) -> FsResult<()> {
        self.node(ino)?;
        self.prepare(&[ino], &[], 0)?;
        let now = now();
        let node = self.node_mut(ino)?;
        let pick = |time, old| match time {
            SetTime::Keep => old,
            SetTime::Now => now,
            SetTime::At(at) => at,
        };
        node.atime = pick(atime, node.atime);
        node.mtime = pick(mtime, node.mtime);
        node.ctime = now;
        Ok(())
    }
}

impl Drop for Fs {
    /// The layer is gone with the dyno: its whole charge goes back to the quota.
    fn drop(&mut self) {
        self.quota.give_back(self.charged);
    }
}

/// A regular file's bytes (`IsDir` for a directory, `Invalid` for a symbolic link).
fn file_data(node: &Node) -> FsResult<&Data> {
    match &node.body {
        Body::File(data) => Ok(data),
        Body::Dir(_) => Err(FsError::IsDir),
        Body::Symlink(_) => Err(FsError::Invalid),
    }
}

#[cfg(test)]
mod tests;
