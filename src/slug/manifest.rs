//! `.wasmdyno/slug.json`: what a slug holds and how to check it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Path of the manifest inside the slug archive.
pub const MANIFEST_PATH: &str = ".wasmdyno/slug.json";

/// The slug's table of contents. Paths are relative to the slug's `app/` directory and use `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
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
    pub files: BTreeMap<String, FileEntry>,
    /// Symbolic links: path → target (relative, never leaving `app/`).
    #[serde(default)]
    pub links: BTreeMap<String, String>,
}

/// One regular file of the slug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub size: u64,
    #[serde(default)]
    pub executable: bool,
}
