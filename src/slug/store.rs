//! Content-addressed slug storage: `<dir>/<sha256>.tar.gz`, written atomically; on a cluster, also kept where
//! every host can fetch it ([`SharedSlugs`]).
// An edge host (without `platform`) has no cluster to share slugs with.
#![cfg_attr(not(feature = "platform"), allow(dead_code))]

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::SlugError;

/// Where a cluster's hosts keep slugs for each other (the cluster's database).
pub trait SharedSlugs: Send + Sync {
    /// Keeps the slug's bytes; a no-op if it is already kept.
    fn put(&self, sha256: &str, bytes: &[u8]) -> Result<(), String>;
    /// Writes the slug's bytes into `out`; false if no host kept it.
    fn copy(&self, sha256: &str, out: &mut dyn Write) -> Result<bool, String>;
}

/// A directory of slugs named by the sha256 of their bytes.
#[derive(Clone)]
pub struct SlugStore {
    dir: PathBuf,
    shared: Option<Arc<dyn SharedSlugs>>,
}

impl fmt::Debug for SlugStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlugStore")
            .field("dir", &self.dir)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl SlugStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SlugStore {
            dir: dir.into(),
            shared: None,
        }
    }

    /// This store, with every slug put also kept in `shared`, and slugs missing here fetched from it.
    pub fn with_shared(mut self, shared: Arc<dyn SharedSlugs>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Where the slug with this sha256 lives (whether or not it exists).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.tar.gz"))
    }

    /// Where the slug with this sha256 lives, fetched first from the shared store if it is not here (and its
    /// bytes hash to `sha256`). Without a shared store, or when no host kept it, the path of a missing file.
    pub fn fetch(&self, sha256: &str) -> PathBuf {
        let dest = self.path(sha256);
        if dest.exists() || !is_sha256(sha256) {
            return dest;
        }
        if let Some(shared) = &self.shared
            && let Err(e) = self.fetch_from(shared.as_ref(), sha256)
        {
            tracing::warn!(sha256, "cannot fetch the slug from the cluster: {e}");
        }
        dest
    }

    fn fetch_from(&self, shared: &dyn SharedSlugs, sha256: &str) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let partial = self
            .dir
            .join(format!(".fetching-{sha256}-{}", std::process::id()));
        let fetched = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&partial)
                .map_err(|e| e.to_string())?;
            let mut hashing = HashingWriter {
                inner: &mut file,
                hash: Sha256::new(),
            };
            if !shared.copy(sha256, &mut hashing)? {
                return Err("no host kept it".to_string());
            }
            let got = hex::encode(hashing.hash.finalize());
            if got != sha256 {
                return Err(format!("its bytes hash to {got}"));
            }
            file.sync_all().map_err(|e| e.to_string())?;
            std::fs::rename(&partial, self.path(sha256)).map_err(|e| e.to_string())
        })();
        if fetched.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        fetched
    }

    /// Stores slug bytes under their sha256 (and in the shared store); storing the same slug twice is a no-op.
    pub fn put(&self, sha256: &str, bytes: &[u8]) -> Result<PathBuf, SlugError> {
        let dest = self.path(sha256);
        if !dest.exists() {
            crate::fsutil::write_atomic(&dest, bytes).map_err(|source| SlugError::Io {
                path: dest.clone(),
                source,
            })?;
        }
        if let Some(shared) = &self.shared {
            shared.put(sha256, bytes).map_err(|e| SlugError::Io {
                path: dest.clone(),
                source: std::io::Error::other(format!(
                    "cannot share the slug with the cluster: {e}"
                )),
            })?;
        }
        Ok(dest)
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Passes bytes on while hashing them.
struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
