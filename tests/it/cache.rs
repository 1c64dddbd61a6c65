//! The compiled-code cache: its keys are the module's sha256 and the engine's compatibility hash, the same in every
//! process and on every machine with the same engine configuration, so one process reuses another's compiled code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::support::{Out, TestEnv, compiled, list, probe_slug};

/// `wasmdyno run -v` of the probe guest in its own process, on `env`'s cache (without the pooling allocator, so
/// the engine configuration is the default one).
fn run_probe(env: &TestEnv) -> Out {
    let slug = probe_slug().to_str().unwrap();
    let mut cmd = env.cmd(&["run", "--slug", slug, "-v", "probe.wasm", "exit", "0"]);
    cmd.env_remove("WASMDYNO_POOL_SLOTS");
    Out::from(cmd.output().unwrap()).ok()
}

/// The `.cwasm` path a verbose run reports after `prefix` (`compiled-code cache hit: PATH`, or a miss's
/// `..., stored PATH`).
fn reported(out: &Out, prefix: &str) -> PathBuf {
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line:\n{out}"));
    let path = match prefix {
        "compiled-code cache miss" => line.rsplit_once(", stored ").map(|(_, p)| p),
        _ => line.strip_prefix("compiled-code cache hit: "),
    };
    PathBuf::from(path.unwrap_or_else(|| panic!("no path in {line:?}")))
}

/// Copies a directory tree (another machine's copy of the cache).
fn copy_tree(from: &Path, to: &Path) {
    for file in list(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
}

/// A [`Hasher`] that feeds sha256: the same digest in every process, unlike std's randomly seeded one.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        unreachable!("the digest is read directly")
    }
}

/// The engine key of wasmdyno's default engine configuration (`engine_config_with(None)` in `src/runtime/mod.rs`),
/// computed here, in the test's own process: the first 8 bytes of the sha256 of its compatibility hash.
fn default_engine_key() -> String {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    // And the version of what is done to a module before it is compiled (runtime/preinit.rs).
    "preinit-1".hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

#[test]
fn a_second_process_reuses_the_first_ones_compiled_code() {
    let env = TestEnv::with_private_cache();
    let first = run_probe(&env);
    let stored = reported(&first, "compiled-code cache miss");
    assert_eq!(compiled(&env.cache), vec![stored.clone()], "{first}");

    // A second process, same cache: it loads the first one's file instead of compiling.
    let second = run_probe(&env);
    assert_eq!(
        reported(&second, "compiled-code cache hit"),
        stored,
        "{second}"
    );
    assert_eq!(
        compiled(&env.cache),
        vec![stored.clone()],
        "nothing new was written"
    );

    // The name: `<cache>/<engine key>/<module sha256>.cwasm`.
    let slug = wasmdyno::Slug::open(probe_slug(), Default::default()).unwrap();
    let (_, wasm) = wasmdyno::runtime::resolve_module(&slug, "probe.wasm").unwrap();
    let module_sha = hex::encode(Sha256::digest(&wasm));
    assert_eq!(
        stored.file_name().unwrap().to_str().unwrap(),
        format!("{module_sha}.cwasm")
    );
    let engine_dir = stored.parent().unwrap();
    assert_eq!(engine_dir.parent().unwrap(), env.cache);
    let engine_key = engine_dir.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        engine_key,
        default_engine_key(),
        "the engine key is the sha256 of the engine's compatibility hash and the module preparation's version"
    );

    // This process (the library, not the binary) finds the same file too.
    let runtime = wasmdyno::Runtime::new(
        wasmdyno::RuntimeConfig::default().with_cache_dir(Some(env.cache.clone())),
    )
    .unwrap();
    let (_, outcome) = runtime.load(&wasm).unwrap();
    assert_eq!(outcome, wasmdyno::runtime::CacheOutcome::Hit(stored));
}

#[test]
fn a_cache_copied_to_another_home_and_path_is_reused() {
    let env = TestEnv::with_private_cache();
    let stored = reported(&run_probe(&env), "compiled-code cache miss");

    // Another "machine": its own home, and the cache shipped to a different path.
    let other = TestEnv::with_private_cache();
    copy_tree(&env.cache, &other.cache);
    let out = run_probe(&other);
    let hit = reported(&out, "compiled-code cache hit");
    assert_eq!(
        hit.strip_prefix(&other.cache).unwrap(),
        stored.strip_prefix(&env.cache).unwrap(),
        "{out}"
    );
    assert_eq!(compiled(&other.cache), vec![hit]);
}
