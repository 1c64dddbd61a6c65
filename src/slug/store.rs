//! Content-addressed slug storage: `<dir>/<sha256>.tar.gz`, written atomically.

use std::path::PathBuf;

use super::SlugError;

/// A directory of slugs named by the sha256 of their bytes.
#[derive(Debug, Clone)]
pub struct SlugStore {
    dir: PathBuf,
}

impl SlugStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SlugStore { dir: dir.into() }
    }

    /// Where the slug with this sha256 lives (whether or not it exists).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.tar.gz"))
    }

    /// Stores slug bytes under their sha256; storing the same slug twice is a no-op.
    pub fn put(&self, sha256: &str, bytes: &[u8]) -> Result<PathBuf, SlugError> {
        let dest = self.path(sha256);
        if dest.exists() {
            return Ok(dest);
        }
        crate::fsutil::write_atomic(&dest, bytes).map_err(|source| SlugError::Io {
            path: dest.clone(),
            source,
        })?;
        Ok(dest)
    }
}
