//! `.wasmdyno/slug.json`: what a slug holds and how to check it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Path of the manifest inside the slug archive.
pub const MANIFEST_PATH: &str = ".wasmdyno/slug.json";

/// The slug's table of contents. Paths are relative to the slug's `app/` directory and use `/`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
/// # let options = wasmdyno::slug::PackOptions {
/// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
/// #     buildpack: "wasm".into(),
/// #     ..Default::default()
/// # };
/// # let packed = wasmdyno::slug::pack(app.path(), options)?;
/// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, Default::default())?;
/// let manifest = slug.manifest();
/// assert_eq!(manifest.format, 1);
/// assert_eq!(manifest.process_types["web"], "hello.wasm");
/// assert_eq!(manifest.buildpack, "wasm");
/// assert_eq!(manifest.size, 8);
/// assert!(manifest.files.contains_key("hello.wasm") && manifest.links.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// The manifest format version (1 for this build); a slug of another version is refused.
    pub format: u32,
    /// Process type → command, from the Procfile or the buildpack's defaults.
    pub process_types: BTreeMap<String, String>,
    /// Default config vars from the buildpack's `bin/release`.
    #[serde(default)]
    pub config_vars: BTreeMap<String, String>,
    /// Name of the buildpack that built the slug.
    pub buildpack: String,
    /// Total bytes of the files under `app/`.
    pub size: u64,
    /// The source commit, when the build knew one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Regular files: path → sha256, size and mode.
    pub files: BTreeMap<String, FileEntry>,
    /// Symbolic links: path → target (relative, never leaving `app/`).
    #[serde(default)]
    pub links: BTreeMap<String, String>,
}

/// One regular file of the slug, as its [`Manifest`] lists it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
/// # let options = wasmdyno::slug::PackOptions {
/// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
/// #     buildpack: "wasm".into(),
/// #     ..Default::default()
/// # };
/// # let packed = wasmdyno::slug::pack(app.path(), options)?;
/// use sha2::Digest;
///
/// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, Default::default())?;
/// let entry = &slug.manifest().files["hello.wasm"];
/// assert_eq!(entry.size, 8);
/// assert_eq!(entry.sha256, hex::encode(sha2::Sha256::digest(b"\0asm\x01\0\0\0")));
/// assert!(!entry.executable);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FileEntry {
    /// sha256 of the contents, in hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Packed with mode 755 (any execute bit set) rather than 644.
    #[serde(default)]
    pub executable: bool,
}
