//! Slugs: the built, immutable form of an app.
//!
//! A slug is a deterministic gzip tar (entries sorted, mtimes, owners and modes fixed) holding the app tree under
//! `app/` and a manifest at `.wasmdyno/slug.json` listing the process types and the sha256 of every file. The same
//! tree always packs to the same bytes, so slugs are stored content-addressed by the sha256 of the archive.
//!
//! Opening a slug verifies all of it in memory before anything is returned: nothing is ever half-unpacked.

mod manifest;
mod store;

pub use manifest::{FORMAT, FileEntry, MANIFEST_PATH, Manifest};
pub use store::SlugStore;

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
/// use wasmdyno::Limits;
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
    /// let limits = wasmdyno::Limits::default().with_max_compressed(1024);
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
/// use wasmdyno::{Limits, Slug, SlugError};
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
/// # let options = wasmdyno::PackOptions {
/// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let packed = wasmdyno::pack(app.path(), options)?;
/// // `packed.bytes`: a slug built by `wasmdyno::pack` (or `wasmdyno build`).
/// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, wasmdyno::Limits::default())?;
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
    /// # let options = wasmdyno::PackOptions {
    /// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let packed = wasmdyno::pack(app.path(), options)?;
    /// let path = app.path().join("hello.tar.gz");
    /// std::fs::write(&path, &packed.bytes)?;
    /// let slug = wasmdyno::Slug::open(&path, wasmdyno::Limits::default())?;
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
    /// # let options = wasmdyno::PackOptions {
    /// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let packed = wasmdyno::pack(app.path(), options)?;
    /// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, wasmdyno::Limits::default())?;
    /// assert_eq!(slug.compressed_size(), packed.bytes.len() as u64);
    ///
    /// let mut corrupt = packed.bytes.clone();
    /// corrupt.truncate(corrupt.len() / 2);
    /// assert!(wasmdyno::Slug::from_bytes(&corrupt, wasmdyno::Limits::default()).is_err());
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
    /// # let options = wasmdyno::PackOptions {
    /// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let packed = wasmdyno::pack(app.path(), options)?;
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
    /// # let options = wasmdyno::PackOptions {
    /// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let packed = wasmdyno::pack(app.path(), options)?;
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
    /// # let options = wasmdyno::PackOptions {
    /// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let packed = wasmdyno::pack(app.path(), options)?;
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
    /// # let options = wasmdyno::PackOptions {
    /// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let packed = wasmdyno::pack(app.path(), options)?;
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

/// Normalises a relative path inside the app (`./a//b` → `a/b`); `None` if it would leave the app.
pub(crate) fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Resolves a link target relative to the link's directory, refusing absolute targets and escapes.
fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.is_empty() {
        return None;
    }
    let dir = link.rsplit_once('/').map_or("", |(d, _)| d);
    let joined = if dir.is_empty() {
        target.to_string()
    } else {
        format!("{dir}/{target}")
    };
    normalize(&joined).filter(|p| !p.is_empty())
}

type Entries = (
    Option<Manifest>,
    BTreeMap<String, Arc<[u8]>>,
    BTreeMap<String, String>,
);

fn read_entries(bytes: &[u8], limits: Limits) -> Result<Entries, SlugError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut manifest = None;
    let mut files: BTreeMap<String, Arc<[u8]>> = BTreeMap::new();
    let mut links = BTreeMap::new();
    let mut unpacked: u64 = 0;
    for entry in archive.entries().map_err(SlugError::Archive)? {
        let mut entry = entry.map_err(SlugError::Archive)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw)
            .map_err(|e| bad(&String::from_utf8_lossy(e.as_bytes()), "path is not UTF-8"))?;
        let kind = entry.header().entry_type();
        if name.starts_with('/') {
            return Err(bad(&name, "absolute paths are not allowed"));
        }
        if name.split('/').any(|c| c == "..") {
            return Err(bad(&name, "`..` would escape the slug"));
        }
        let trimmed = name.trim_end_matches('/');
        if trimmed == ".wasmdyno" && kind.is_dir() {
            continue;
        }
        if trimmed == MANIFEST_PATH {
            if !kind.is_file() {
                return Err(bad(&name, "the manifest must be a regular file"));
            }
            let mut text = Vec::new();
            (&mut entry)
                .take(16 * 1024 * 1024)
                .read_to_end(&mut text)
                .map_err(SlugError::Archive)?;
            let parsed: Manifest =
                serde_json::from_slice(&text).map_err(|e| SlugError::BadManifest(e.to_string()))?;
            if parsed.format != FORMAT {
                return Err(SlugError::BadManifest(format!(
                    "format {} is not supported (this wasmdyno reads format {FORMAT})",
                    parsed.format
                )));
            }
            manifest = Some(parsed);
            continue;
        }
        if trimmed == "app" && kind.is_dir() {
            continue;
        }
        let Some(rel) = trimmed.strip_prefix("app/") else {
            return Err(bad(&name, "everything in a slug lives under app/"));
        };
        let rel = normalize(rel)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| bad(&name, "path escapes app/"))?;
        match kind {
            tar::EntryType::Directory => {}
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(SlugError::Archive)?;
                unpacked = unpacked.saturating_add(size);
                if unpacked > limits.max_unpacked {
                    return Err(SlugError::UnpackedTooLarge {
                        limit: limits.max_unpacked,
                    });
                }
                let mut data = Vec::with_capacity(size as usize);
                (&mut entry)
                    .take(size)
                    .read_to_end(&mut data)
                    .map_err(SlugError::Archive)?;
                if files.insert(rel, data.into()).is_some() {
                    return Err(bad(&name, "appears twice"));
                }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(SlugError::Archive)?
                    .ok_or_else(|| bad(&name, "symbolic link without a target"))?;
                let target = target.to_string_lossy().into_owned();
                if resolve_link(&rel, &target).is_none() {
                    return Err(bad(
                        &name,
                        format!("symbolic link to {target:?} points outside app/"),
                    ));
                }
                links.insert(rel, target);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(SlugError::Archive)?
                    .ok_or_else(|| bad(&name, "hard link without a target"))?;
                let target = target.to_string_lossy().into_owned();
                let inside = target
                    .strip_prefix("app/")
                    .and_then(normalize)
                    .and_then(|t| files.get(&t).cloned());
                let data = inside.ok_or_else(|| {
                    bad(
                        &name,
                        format!(
                            "hard link to {target:?} points outside app/ or to no earlier file"
                        ),
                    )
                })?;
                files.insert(rel, data);
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(bad(&name, "device files are not allowed"));
            }
            tar::EntryType::Fifo => return Err(bad(&name, "FIFOs are not allowed")),
            other => return Err(bad(&name, format!("entry type {other:?} is not allowed"))),
        }
    }
    Ok((manifest, files, links))
}

fn verify(
    manifest: &Manifest,
    files: &BTreeMap<String, Arc<[u8]>>,
    links: &BTreeMap<String, String>,
) -> Result<(), SlugError> {
    for (path, data) in files {
        let Some(expected) = manifest.files.get(path) else {
            return Err(SlugError::Mismatch(format!(
                "app/{path} is not listed in the manifest"
            )));
        };
        if expected.size != data.len() as u64
            || hex::encode(Sha256::digest(data)) != expected.sha256
        {
            return Err(SlugError::Mismatch(format!(
                "app/{path} does not match its sha256 in the manifest (corrupted or altered)"
            )));
        }
    }
    if let Some(missing) = manifest.files.keys().find(|p| !files.contains_key(*p)) {
        return Err(SlugError::Mismatch(format!(
            "app/{missing} is listed in the manifest but missing"
        )));
    }
    if links != &manifest.links {
        return Err(SlugError::Mismatch(
            "symbolic links differ from the manifest".into(),
        ));
    }
    let size: u64 = manifest.files.values().map(|f| f.size).sum();
    if size != manifest.size {
        return Err(SlugError::Mismatch(format!(
            "manifest size {} is not the sum of its files ({size})",
            manifest.size
        )));
    }
    for (name, command) in &manifest.process_types {
        if !crate::procfile::is_valid_type(name) {
            return Err(SlugError::BadManifest(format!(
                "process type {name:?} is not a valid name"
            )));
        }
        crate::procfile::Command::parse(command)
            .map_err(|e| SlugError::BadManifest(format!("process type {name:?}: {e}")))?;
    }
    Ok(())
}

/// What goes into a slug besides the files: the manifest's other fields.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
/// use wasmdyno::PackOptions;
///
/// let options = PackOptions {
///     process_types: [("web".to_string(), "hello.wasm --port ${PORT}".to_string())].into(),
///     config_vars: [("GREETING".to_string(), "hi".to_string())].into(),
///     buildpack: "wasm".into(),
///     commit: Some("3f2a9c1".into()),
/// };
/// let packed = wasmdyno::pack(app.path(), options)?;
/// assert_eq!(packed.manifest.config_vars["GREETING"], "hi");
/// assert_eq!(packed.manifest.commit.as_deref(), Some("3f2a9c1"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Process type → command (the Procfile's).
    pub process_types: BTreeMap<String, String>,
    /// Default config vars; a release's own override them.
    pub config_vars: BTreeMap<String, String>,
    /// Name of the buildpack that built the app.
    pub buildpack: String,
    /// The source commit, if known.
    pub commit: Option<String>,
}

/// A packed slug, from [`pack`]: the archive bytes, their sha256 and the manifest they hold.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
/// use sha2::Digest;
///
/// let packed = wasmdyno::pack(app.path(), Default::default())?;
/// assert_eq!(packed.sha256, hex::encode(sha2::Sha256::digest(&packed.bytes)));
/// assert_eq!(packed.manifest.files["hello.wasm"].size, 8);
/// // Store it as `<sha256>.tar.gz`: the same tree always packs to the same bytes.
/// std::fs::write(app.path().join(format!("{}.tar.gz", packed.sha256)), &packed.bytes)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Packed {
    /// The gzip tar archive.
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`, in hex: the slug's identity.
    pub sha256: String,
    /// The manifest the archive holds.
    pub manifest: Manifest,
}

/// Packs the directory `app_dir` into a deterministic slug: the same tree and options always give the same bytes.
///
/// Symbolic links are kept as links and must stay inside the app; other special files and `.wat` sources are
/// refused (slugs hold compiled `.wasm` only).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use wasmdyno::{PackOptions, Slug, SlugError};
///
/// let app = tempfile::tempdir()?;
/// std::fs::create_dir(app.path().join("bin"))?;
/// std::fs::write(app.path().join("bin/hello.wasm"), b"\0asm\x01\0\0\0")?;
/// let options = PackOptions {
///     process_types: [("web".to_string(), "bin/hello.wasm".to_string())].into(),
///     ..Default::default()
/// };
/// let packed = wasmdyno::pack(app.path(), options.clone())?;
/// assert_eq!(packed.bytes, wasmdyno::pack(app.path(), options.clone())?.bytes);
/// let slug = Slug::from_bytes(&packed.bytes, Default::default())?;
/// assert!(slug.file("bin/hello.wasm").is_some());
///
/// std::fs::write(app.path().join("hello.wat"), "(module)")?;
/// let err = wasmdyno::pack(app.path(), options).unwrap_err();
/// assert!(matches!(err, SlugError::Pack { .. }), "{err}");
/// # Ok(()) }
/// ```
pub fn pack(app_dir: &Path, options: PackOptions) -> Result<Packed, SlugError> {
    let mut tree = Vec::new();
    walk(app_dir, "", &mut tree)?;

    let mut manifest = Manifest {
        format: FORMAT,
        process_types: options.process_types,
        config_vars: options.config_vars,
        buildpack: options.buildpack,
        size: 0,
        commit: options.commit,
        files: BTreeMap::new(),
        links: BTreeMap::new(),
    };
    for node in &tree {
        match &node.kind {
            NodeKind::File { data, executable } => {
                manifest.size += data.len() as u64;
                manifest.files.insert(
                    node.rel.clone(),
                    FileEntry {
                        sha256: hex::encode(Sha256::digest(data)),
                        size: data.len() as u64,
                        executable: *executable,
                    },
                );
            }
            NodeKind::Link(target) => {
                manifest.links.insert(node.rel.clone(), target.clone());
            }
            NodeKind::Dir => {}
        }
    }

    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    builder.mode(tar::HeaderMode::Deterministic);
    let io = |source| SlugError::Io {
        path: app_dir.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    append(
        &mut builder,
        ".wasmdyno/",
        tar::EntryType::Directory,
        0o755,
        &[],
        None,
    )
    .map_err(io)?;
    append(
        &mut builder,
        MANIFEST_PATH,
        tar::EntryType::Regular,
        0o644,
        &json,
        None,
    )
    .map_err(io)?;
    append(
        &mut builder,
        "app/",
        tar::EntryType::Directory,
        0o755,
        &[],
        None,
    )
    .map_err(io)?;
    for node in &tree {
        let path = format!("app/{}", node.rel);
        match &node.kind {
            NodeKind::Dir => append(
                &mut builder,
                &format!("{path}/"),
                tar::EntryType::Directory,
                0o755,
                &[],
                None,
            ),
            NodeKind::File { data, executable } => {
                let mode = if *executable { 0o755 } else { 0o644 };
                append(
                    &mut builder,
                    &path,
                    tar::EntryType::Regular,
                    mode,
                    data,
                    None,
                )
            }
            NodeKind::Link(target) => append(
                &mut builder,
                &path,
                tar::EntryType::Symlink,
                0o777,
                &[],
                Some(target),
            ),
        }
        .map_err(io)?;
    }
    let bytes = builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .map_err(io)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Packed {
        bytes,
        sha256,
        manifest,
    })
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
    link: Option<&str>,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(data.len() as u64);
    match link {
        Some(target) => builder.append_link(&mut header, path, target),
        None => builder.append_data(&mut header, path, data),
    }
}

struct Node {
    rel: String,
    kind: NodeKind,
}

enum NodeKind {
    Dir,
    File { data: Vec<u8>, executable: bool },
    Link(String),
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Node>) -> Result<(), SlugError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SlugError::Io { path, source }
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| SlugError::Pack {
                path: path.clone(),
                reason: format!("file name {n:?} is not UTF-8"),
            })?;
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            out.push(Node {
                rel: rel.clone(),
                kind: NodeKind::Dir,
            });
            walk(&path, &rel, out)?;
        } else if kind.is_file() {
            if name.ends_with(".wat") {
                return Err(SlugError::Pack {
                    path,
                    reason: "slugs hold compiled .wasm, never .wat sources (the wasm buildpack compiles .wat files)"
                        .into(),
                });
            }
            let data = std::fs::read(&path).map_err(io(&path))?;
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            out.push(Node {
                rel,
                kind: NodeKind::File { data, executable },
            });
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io(&path))?;
            let target = target
                .to_str()
                .map(str::to_string)
                .ok_or_else(|| SlugError::Pack {
                    path: path.clone(),
                    reason: "link target is not UTF-8".into(),
                })?;
            if resolve_link(&rel, &target).is_none() {
                return Err(SlugError::Pack {
                    path,
                    reason: format!("symbolic link to {target:?} points outside the app"),
                });
            }
            out.push(Node {
                rel,
                kind: NodeKind::Link(target),
            });
        } else {
            return Err(SlugError::Pack {
                path,
                reason: "only regular files, directories and symbolic links can go into a slug"
                    .into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
