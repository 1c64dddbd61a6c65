//! The compiled-code cache: `.cwasm` files keyed by module sha256 and the engine's compatibility hash.
//!
//! Compiling a module is the slow part of booting a dyno, so it happens once per module per engine
//! configuration, and every later dyno deserializes the result. The key is stable across processes and machines
//! with the same engine configuration, because it hashes the engine's compatibility key with sha256 rather than
//! with a per-process hasher.

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
/// use wasmdyno::{CacheOutcome, Runtime, RuntimeConfig};
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
#[derive(Debug, Clone)]
pub(crate) struct CodeCache {
    dir: Option<PathBuf>,
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
    hex::encode(&hasher.0.finalize()[..8])
}

impl CodeCache {
    /// A cache under `root/<engine key>/`, or no cache at all.
    pub(crate) fn new(root: Option<&Path>, engine: &Engine) -> Self {
        CodeCache {
            dir: root.map(|r| r.join(engine_key(engine))),
        }
    }

    /// Loads `wasm` (a core module or a component), from the cache when it has it.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> Result<(Guest, CacheOutcome), RuntimeError> {
        let is_component = super::is_component(wasm)?;
        let Some(dir) = &self.dir else {
            let started = Instant::now();
            let guest = compile(engine, wasm, is_component)?;
            return Ok((guest, CacheOutcome::Uncached(started.elapsed())));
        };
        let path = dir.join(format!("{}.cwasm", hex::encode(Sha256::digest(wasm))));
        if path.is_file() {
            // SAFETY: files in this directory are written only by `store` below, from wasmtime's own
            // serialization for this exact engine configuration (the directory name is its compatibility key).
            let loaded = unsafe {
                if is_component {
                    Component::deserialize_file(engine, &path).map(Guest::Component)
                } else {
                    wasmtime::Module::deserialize_file(engine, &path).map(Guest::Module)
                }
            };
            match loaded {
                Ok(guest) => return Ok((guest, CacheOutcome::Hit(path))),
                Err(err) => {
                    tracing::warn!(path = %path.display(), "discarding unreadable compiled-code cache entry: {err:#}")
                }
            }
        }
        let started = Instant::now();
        let guest = compile(engine, wasm, is_component)?;
        let took = started.elapsed();
        let bytes = match &guest {
            Guest::Module(m) => m.serialize(),
            Guest::Component(c) => c.serialize(),
        }
        .map_err(RuntimeError::Wasmtime)?;
        match crate::fsutil::write_atomic(&path, &bytes) {
            Ok(()) => Ok((guest, CacheOutcome::Compiled(path, took))),
            Err(err) => {
                // A read-only or full cache slows the next boot; it never stops this one.
                tracing::warn!("cannot write compiled-code cache: {err}");
                Ok((guest, CacheOutcome::Uncached(took)))
            }
        }
    }
}

fn compile(engine: &Engine, wasm: &[u8], is_component: bool) -> Result<Guest, RuntimeError> {
    let result = if is_component {
        Component::new(engine, wasm).map(Guest::Component)
    } else {
        wasmtime::Module::new(engine, wasm).map(Guest::Module)
    };
    result.map_err(|e| RuntimeError::Compile(format!("{e:#}")))
}
