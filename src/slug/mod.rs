//! Slugs: the built, immutable form of an app.
//!
//! A slug is a deterministic gzip tar (entries sorted, mtimes, owners and modes fixed) holding the app tree under
//! `app/` and a manifest at `.wasmdyno/slug.json` listing the process types and the sha256 of every file. The same
//! tree always packs to the same bytes, so slugs are stored content-addressed by the sha256 of the archive.
//!
//! Opening a slug verifies all of it in memory before anything is returned: nothing is ever half-unpacked.

mod manifest;
mod store;

mod packing;
mod read;
#[allow(unused_imports)]
use {packing::*, read::*};

pub use packing::{PackOptions, Packed, pack};
pub(crate) use read::normalize;

pub use manifest::{FORMAT, FileEntry, MANIFEST_PATH, Manifest};
#[cfg(feature = "platform")]
pub(crate) use store::SharedSlugs;
pub(crate) use store::SlugStore;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Slugs over this many compressed bytes are refused (Heroku's limit).
pub const DEFAULT_MAX_COMPRESSED: u64 = 500 * 1024 * 1024;
/// Unpacked content is bounded too, so a small archive cannot inflate without limit.
pub const DEFAULT_MAX_UNPACKED: u64 = 2 * 1024 * 1024 * 1024;

/// Size limits applied when a slug is opened: 500 MiB compressed (Heroku's limit) and 2 GiB unpacked unless
/// changed.
///
/// ```
/// use wasmdyno::slug::Limits;
///
/// let limits = Limits::default().with_max_compressed(10 * 1024 * 1024);
/// assert_eq!(limits.max_compressed, 10 * 1024 * 1024);
/// assert_eq!(limits.max_unpacked, 2 * 1024 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest archive accepted, in bytes.
    pub max_compressed: u64,
    /// The most its files may hold once unpacked, in bytes.
    pub max_unpacked: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_compressed: DEFAULT_MAX_COMPRESSED,
            max_unpacked: DEFAULT_MAX_UNPACKED,
        }
    }
}

impl Limits {
    /// Limits with a different compressed-size cap.
    ///
    /// ```
    /// let limits = wasmdyno::slug::Limits::default().with_max_compressed(1024);
    /// assert_eq!(limits.max_compressed, 1024);
    /// ```
    pub fn with_max_compressed(mut self, bytes: u64) -> Self {
        self.max_compressed = bytes;
        self
    }
}

/// Everything that can be wrong with a slug.
///
/// ```
/// use wasmdyno::{slug::Limits, Slug, SlugError};
///
/// let err = Slug::from_bytes(b"not a slug", Limits::default()).unwrap_err();
/// assert!(matches!(err, SlugError::Archive(_)), "{err}");
/// let err = Slug::from_bytes(&[0; 64], Limits::default().with_max_compressed(10)).unwrap_err();
/// assert!(matches!(err, SlugError::TooLarge { size: 64, limit: 10 }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlugError {
    /// The slug file could not be read.
    #[error("cannot read slug {path}: {source}")]
    Read {
        /// The slug file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The archive is over [`Limits::max_compressed`].
    #[error("slug is {size} bytes compressed, over the limit of {limit} bytes")]
    TooLarge {
        /// The archive's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Its files hold more than [`Limits::max_unpacked`].
    #[error("slug unpacks to more than {limit} bytes")]
    UnpackedTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Not a gzip tar archive, or a truncated or corrupt one.
    #[error("slug is not a valid gzip tar archive: {0}")]
    Archive(std::io::Error),
    /// An entry a slug may not hold: outside `app/`, escaping it with `..` or a link, a device file...
    #[error("slug entry {path:?} is not allowed: {reason}")]
    BadEntry {
        /// The entry's path in the archive.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The archive has no `.wasmdyno/slug.json`.
    #[error("slug has no manifest ({MANIFEST_PATH}); was it built by wasmdyno?")]
    NoManifest,
    /// The manifest does not parse, is of another format version, or names an invalid process type or command.
    #[error("slug manifest is invalid: {0}")]
    BadManifest(String),
    /// The files differ from what the manifest lists (sha256, size, missing or extra files, links).
    #[error("slug does not match its manifest: {0}")]
    Mismatch(String),
    /// [`pack`] met a file a slug cannot hold (a `.wat` source, a special file, a link leaving the app, a name
    /// that is not UTF-8).
    #[error("cannot pack {path}: {reason}")]
    Pack {
        /// The file.
        path: PathBuf,
        /// Why it cannot go into a slug.
        reason: String,
    },
    /// Reading the app's directory (or writing the archive) failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn bad(path: &str, reason: impl Into<String>) -> SlugError {
    SlugError::BadEntry {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// A verified slug, held in memory: its manifest and the contents of every file, each checked against the
/// manifest's sha256.
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
/// // `packed.bytes`: a slug built by `wasmdyno::slug::pack` (or `wasmdyno build`).
/// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, wasmdyno::slug::Limits::default())?;
/// assert_eq!(slug.manifest().process_types["web"], "hello.wasm");
/// assert_eq!(&*slug.file("hello.wasm").unwrap(), b"\0asm\x01\0\0\0");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Slug {
    sha256: String,
    compressed_size: u64,
    manifest: Manifest,
    files: BTreeMap<String, Arc<[u8]>>,
}

impl Slug {
    /// Reads and verifies the slug at `path` (see [`from_bytes`](Self::from_bytes)); an archive over
    /// `limits.max_compressed` is refused before it is read.
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
    /// let path = app.path().join("hello.tar.gz");
    /// std::fs::write(&path, &packed.bytes)?;
    /// let slug = wasmdyno::Slug::open(&path, wasmdyno::slug::Limits::default())?;
    /// assert_eq!(slug.sha256(), packed.sha256);
    /// # Ok(()) }
    /// ```
    pub fn open(path: &Path, limits: Limits) -> Result<Slug, SlugError> {
        let read_err = |source| SlugError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let size = file.metadata().map_err(read_err)?.len();
        if size > limits.max_compressed {
            return Err(SlugError::TooLarge {
                size,
                limit: limits.max_compressed,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(limits.max_compressed + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        Slug::from_bytes(&bytes, limits)
    }

    /// Verifies a slug given as bytes: a gzip tar with a manifest, every file's sha256 and size as the manifest
    /// says, no entry outside `app/`, within `limits`.
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
    /// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, wasmdyno::slug::Limits::default())?;
    /// assert_eq!(slug.compressed_size(), packed.bytes.len() as u64);
    ///
    /// let mut corrupt = packed.bytes.clone();
    /// corrupt.truncate(corrupt.len() / 2);
    /// assert!(wasmdyno::Slug::from_bytes(&corrupt, wasmdyno::slug::Limits::default()).is_err());
    /// # Ok(()) }
    /// ```
    pub fn from_bytes(bytes: &[u8], limits: Limits) -> Result<Slug, SlugError> {
        let compressed_size = bytes.len() as u64;
        if compressed_size > limits.max_compressed {
            return Err(SlugError::TooLarge {
                size: compressed_size,
                limit: limits.max_compressed,
            });
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        let (manifest, files, links) = read_entries(bytes, limits)?;
        let manifest = manifest.ok_or(SlugError::NoManifest)?;
        verify(&manifest, &files, &links)?;
        Ok(Slug {
            sha256,
            compressed_size,
            manifest,
            files,
        })
    }

    /// sha256 of the archive, in hex: the slug's identity (slugs are stored as `<sha256>.tar.gz`).
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
    /// use sha2::Digest;
    /// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, Default::default())?;
    /// assert_eq!(slug.sha256(), hex::encode(sha2::Sha256::digest(&packed.bytes)));
    /// # Ok(()) }
    /// ```
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The archive's size in bytes.
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
    /// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, Default::default())?;
    /// assert_eq!(slug.compressed_size(), packed.bytes.len() as u64);
    /// # Ok(()) }
    /// ```
    pub fn compressed_size(&self) -> u64 {
        self.compressed_size
    }

    /// The slug's manifest (`.wasmdyno/slug.json`): process types, default config vars, files.
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
    /// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, Default::default())?;
    /// assert_eq!(slug.manifest().process_types["web"], "hello.wasm");
    /// assert_eq!(slug.manifest().files["hello.wasm"].size, 8);
    /// # Ok(()) }
    /// ```
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub(crate) fn files(&self) -> impl Iterator<Item = (&str, &Arc<[u8]>)> {
        self.files
            .iter()
            .map(|(path, bytes)| (path.as_str(), bytes))
    }

    /// The contents of a file under `app/`, following symbolic links inside the slug; `None` when there is no
    /// such file.
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
    /// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, Default::default())?;
    /// assert_eq!(&*slug.file("./hello.wasm").unwrap(), b"\0asm\x01\0\0\0");
    /// assert!(slug.file("missing.wasm").is_none());
    /// # Ok(()) }
    /// ```
    pub fn file(&self, path: &str) -> Option<Arc<[u8]>> {
        let mut path = normalize(path)?;
        for _ in 0..16 {
            if let Some(bytes) = self.files.get(&path) {
                return Some(bytes.clone());
            }
            let target = self.manifest.links.get(&path)?;
            path = resolve_link(&path, target)?;
        }
        None
    }
}

#[cfg(test)]
mod tests;
