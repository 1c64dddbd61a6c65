//! The compiled-code cache: `.cwasm` files keyed by module sha256 and the engine's compatibility hash.
//!
//! Compiling a module is the slow part of booting a dyno, so it happens once per module per engine
//! configuration, and every later dyno deserializes the result. The key is stable across processes and machines
//! with the same engine configuration, because it hashes the engine's compatibility key with sha256 rather than
//! with a per-process hasher.
//!
//! Deserializing is loading native code, so an entry is used only when it proves it was written here: each file
//! ends with an HMAC-SHA256 of the module's sha256 and the compiled bytes, under a random key in the cache's
//! root (`key`, mode 0600, in a directory of mode 0700) that builds never see. A file dropped into the cache, or
//! one entry copied over another, fails the check and is compiled again.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::{Guest, RuntimeError};

/// Whether a guest came from the cache or was compiled now, from [`Runtime::load`](crate::Runtime::load).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use wasmdyno::{runtime::CacheOutcome, Runtime, RuntimeConfig};
///
/// // A core module whose `_start` returns at once: `(module (func (export "_start")))`.
/// # const HELLO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/hello.wasm"));
/// let (_, outcome) = Runtime::new(RuntimeConfig::default())?.load(HELLO)?;
/// match outcome {
///     CacheOutcome::Uncached(took) => println!("compiled in {took:?}; no cache directory"),
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache file at this path.
    Hit(PathBuf),
    /// Compiled (taking this long) and stored at this path.
    Compiled(PathBuf, Duration),
    /// Compiled; there is no cache directory.
    Uncached(Duration),
}

/// A directory of precompiled modules for one engine configuration.
#[derive(Clone)]
pub(crate) struct CodeCache {
    dir: Option<PathBuf>,
    root: Option<PathBuf>,
    /// The key entries are signed with, read (or made, on the first store) once.
    key: std::sync::Arc<std::sync::OnceLock<[u8; 32]>>,
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

type Tag = hmac::Hmac<Sha256>;
const TAG_LEN: usize = 32;

/// The cache's key, if it has one yet (`root/key`).
fn read_key(root: &Path) -> Option<[u8; 32]> {
    std::fs::read(root.join("key")).ok()?.try_into().ok()
}

/// The cache's key: read from `root/key`, or made (random, 0600) the first time.
fn cache_key(root: &Path) -> std::io::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)?;
    // The owner's alone, also when an older wasmdyno made it with the umask's mode; never a shared directory
    // someone pointed the cache at (sticky, like /tmp, or another user's).
    let meta = std::fs::metadata(root)?;
    let mode = meta.permissions().mode();
    // SAFETY: geteuid has no preconditions.
    let mine = std::os::unix::fs::MetadataExt::uid(&meta) == unsafe { libc::geteuid() };
    if mine && mode & 0o1000 == 0 && mode & 0o077 != 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
    }
    let path = root.join("key");
    match std::fs::read(&path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| std::io::Error::other(format!("{} is not a 32-byte key", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(std::io::Error::other)?;
            let made = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            match made {
                Ok(mut file) => {
                    file.write_all(&key)?;
                    Ok(key)
                }
                // Another process made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => cache_key(root),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// The tag of `compiled`, the compiled form of the module whose sha256 is `module`.
fn tag(key: &[u8; 32], module: &[u8], compiled: &[u8]) -> Tag {
    use hmac::Mac;
    let mut mac = Tag::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(module);
    mac.update(compiled);
    mac
}

/// The sha256 of a module: what its cache entry, and a background compile of it, are known by.
pub(crate) fn digest(wasm: &[u8]) -> [u8; 32] {
    Sha256::digest(wasm).into()
}

/// A [`Hasher`] that feeds sha256, so a `Hash` value gives the same digest in every process.
struct StableHasher(Sha256);

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

/// A short, stable digest of everything that makes compiled code compatible with `engine`.
pub(crate) fn engine_key(engine: &Engine) -> String {
    let mut hasher = StableHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    // What we do to a module before compiling it ([`super::preinit::instrument`]): code compiled before is not
    // reused by a build that does it differently.
    "preinit-1".hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

impl CodeCache {
    /// A cache under `root/<engine key>/`, or no cache at all.
    pub(crate) fn new(root: Option<&Path>, engine: &Engine) -> Self {
        CodeCache {
            dir: root.map(|r| r.join(engine_key(engine))),
            root: root.map(Path::to_path_buf),
            key: Default::default(),
        }
    }

    /// The key, if the cache has one (`make`: making it if not).
    fn key(&self, make: bool) -> Option<[u8; 32]> {
        if let Some(key) = self.key.get() {
            return Some(*key);
        }
        let root = self.root.as_deref()?;
        let key = if make {
            cache_key(root)
                .map_err(|e| tracing::warn!("cannot sign compiled code in {}: {e}", root.display()))
                .ok()?
        } else {
            read_key(root)?
        };
        Some(*self.key.get_or_init(|| key))
    }

    /// Loads `wasm` (a core module or a component), from the cache when it has it.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> Result<(Guest, CacheOutcome), RuntimeError> {
        self.load_digested(engine, wasm, &digest(wasm))
    }

    /// [`load`](Self::load) of `wasm` whose sha256, `module`, the caller has already computed.
    pub(crate) fn load_digested(
        &self,
        engine: &Engine,
        wasm: &[u8],
        module: &[u8; 32],
    ) -> Result<(Guest, CacheOutcome), RuntimeError> {
        let is_component = super::is_component(wasm)?;
        let Some(dir) = &self.dir else {
            let started = Instant::now();
            let guest = compile(engine, wasm, is_component)?;
            return Ok((guest, CacheOutcome::Uncached(started.elapsed())));
        };
        let path = dir.join(format!("{}.cwasm", hex::encode(module)));
        if let Some(hit) = self.read(engine, module, &path, is_component) {
            return Ok(hit);
        }
        let started = Instant::now();
        let guest = compile(engine, wasm, is_component)?;
        let took = started.elapsed();
        let mut bytes = match &guest {
            Guest::Module(m) => m.serialize(),
            Guest::Component(c) => c.serialize(),
        }
        .map_err(RuntimeError::Wasmtime)?;
        let Some(key) = self.key(true) else {
            return Ok((guest, CacheOutcome::Uncached(took)));
        };
        let signature = hmac::Mac::finalize(tag(&key, module, &bytes)).into_bytes();
        bytes.extend_from_slice(&signature);
        match crate::fsutil::write_atomic(&path, &bytes) {
            Ok(()) => Ok((guest, CacheOutcome::Compiled(path, took))),
            Err(err) => {
                // A read-only or full cache slows the next boot; it never stops this one.
                tracing::warn!("cannot write compiled-code cache: {err}");
                Ok((guest, CacheOutcome::Uncached(took)))
            }
        }
    }

    /// `wasm`, whose sha256 is `module`, from the cache if it has it; never compiles.
    pub(crate) fn cached(
        &self,
        engine: &Engine,
        wasm: &[u8],
        module: &[u8; 32],
    ) -> Option<(Guest, CacheOutcome)> {
        let is_component = super::is_component(wasm).ok()?;
        let path = self
            .dir
            .as_ref()?
            .join(format!("{}.cwasm", hex::encode(module)));
        self.read(engine, module, &path, is_component)
    }

    /// The cache entry at `path` for the module whose sha256 is `module`, if there is one and this cache wrote it.
    fn read(
        &self,
        engine: &Engine,
        module: &[u8],
        path: &Path,
        is_component: bool,
    ) -> Option<(Guest, CacheOutcome)> {
        let mut bytes = std::fs::read(path).ok()?;
        let split = bytes.len().saturating_sub(TAG_LEN);
        let signed = bytes.len() > TAG_LEN
            && self.key(false).is_some_and(|key| {
                hmac::Mac::verify_slice(tag(&key, module, &bytes[..split]), &bytes[split..]).is_ok()
            });
        if !signed {
            tracing::warn!(
                path = %path.display(),
                "discarding a compiled-code cache entry this cache did not write (its tag does not match)"
            );
            return None;
        }
        bytes.truncate(split);
        // SAFETY: the tag proves this process's cache wrote these bytes, from wasmtime's own serialization of this
        // module for this exact engine configuration (the directory name is its compatibility key).
        let loaded = unsafe {
            if is_component {
                Component::deserialize(engine, &bytes).map(Guest::Component)
            } else {
                wasmtime::Module::deserialize(engine, &bytes).map(Guest::Module)
            }
        };
        match loaded {
            Ok(guest) => Some((guest, CacheOutcome::Hit(path.to_path_buf()))),
            Err(err) => {
                tracing::warn!(
                    path = %path.display(),
                    "discarding unreadable compiled-code cache entry: {err:#}"
                );
                None
            }
        }
    }
}

fn compile(engine: &Engine, wasm: &[u8], is_component: bool) -> Result<Guest, RuntimeError> {
    let result = if is_component {
        Component::new(engine, wasm).map(Guest::Component)
    } else {
        // A pre-initialized command is compiled with its mutable globals exported, for its snapshots.
        match super::preinit::instrument(wasm)? {
            Some(instrumented) => wasmtime::Module::new(engine, &instrumented),
            None => wasmtime::Module::new(engine, wasm),
        }
        .map(Guest::Module)
    };
    result.map_err(|e| RuntimeError::Compile(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &[u8] = include_bytes!("../../tests/guests/doc/hello.wasm");
    const ECHO: &[u8] = include_bytes!("../../tests/guests/doc/echo.wasm");

    fn entry(cache: &CodeCache, wasm: &[u8]) -> PathBuf {
        let dir = cache.dir.as_ref().unwrap();
        dir.join(format!("{}.cwasm", hex::encode(Sha256::digest(wasm))))
    }

    #[test]
    fn only_entries_this_cache_signed_are_loaded() {
        let root = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CodeCache::new(Some(root.path()), &engine);
        assert!(matches!(
            cache.load(&engine, HELLO).unwrap().1,
            CacheOutcome::Compiled(..)
        ));
        assert!(matches!(
            cache.load(&engine, HELLO).unwrap().1,
            CacheOutcome::Hit(_)
        ));
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(root.path()), 0o700);
            assert_eq!(mode(&root.path().join("key")), 0o600);
        }

        // Another module's entry copied over this one's: the tag binds the module, so it is compiled again.
        cache.load(&engine, ECHO).unwrap();
        std::fs::copy(entry(&cache, ECHO), entry(&cache, HELLO)).unwrap();
        assert!(matches!(
            cache.load(&engine, HELLO).unwrap().1,
            CacheOutcome::Compiled(..)
        ));

        // Wasmtime's own serialization of the module, without our tag (what a build could have written).
        let forged = wasmtime::Module::new(&engine, HELLO)
            .unwrap()
            .serialize()
            .unwrap();
        std::fs::write(entry(&cache, HELLO), &forged).unwrap();
        assert!(matches!(
            cache.load(&engine, HELLO).unwrap().1,
            CacheOutcome::Compiled(..)
        ));

        // A second cache on the same root shares the key and the entries.
        let again = CodeCache::new(Some(root.path()), &engine);
        assert!(matches!(
            again.load(&engine, HELLO).unwrap().1,
            CacheOutcome::Hit(_)
        ));
    }
}
