//! The dyno sandbox as a guest sees it: the in-memory filesystem through our preview-1 host, and quotas.
//! The guest is `tests/guests/fs-probe`, a Rust wasm32-wasip1 program built once per run by the Rust buildpack.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::support::*;

fn fs_probe() -> &'static str {
    static SLUG: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    SLUG.get_or_init(|| {
        let env = TestEnv::new();
        let slug = env.path("fs-probe.slug");
        let app = repo().join("tests/guests/fs-probe");
        env.run(&["build", app.to_str().unwrap(), "-o", slug.to_str().unwrap()])
            .ok();
        (env.dir, slug)
    })
    .1
    .to_str()
    .unwrap()
}

#[test]
fn a_rust_guest_uses_the_whole_filesystem() {
    let env = TestEnv::new();
    let out = env.run(&["run", "--slug", fs_probe(), "tour"]);
    assert!(out.stdout.ends_with("tour complete\n"), "{out}");
    assert_eq!(out.code, Some(0), "{out}");
}

#[test]
fn a_dynos_writes_vanish_with_it() {
    let env = TestEnv::new();
    env.run(&[
        "run",
        "--slug",
        fs_probe(),
        "fs-probe.wasm",
        "write",
        "data.txt",
        "mine",
    ])
    .ok();
    let out = env
        .run(&[
            "run",
            "--slug",
            fs_probe(),
            "fs-probe.wasm",
            "cat",
            "data.txt",
        ])
        .ok();
    assert_eq!(out.stdout, "shipped in the slug\n");
}

#[test]
fn a_disk_filler_gets_enospc_inside_the_guest() {
    let env = TestEnv::new();
    let out = env
        .run(&[
            "run",
            "--slug",
            fs_probe(),
            "--size",
            "eco",
            "fs-probe.wasm",
            "fill",
        ])
        .ok();
    let filled: u64 = out
        .stdout
        .strip_prefix("filled ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(out.stdout.ends_with(" MiB, then: StorageFull\n"), "{out}");
    // Files and memory share the eco dyno's 512 MiB.
    assert!((400..512).contains(&filled), "{out}");
}

#[test]
fn a_memory_bomb_fails_inside_the_guest() {
    let env = TestEnv::new();
    let out = env
        .run(&[
            "run",
            "--slug",
            fs_probe(),
            "--size",
            "eco",
            "fs-probe.wasm",
            "bomb",
        ])
        .ok();
    let reached: u64 = out
        .stdout
        .strip_prefix("memory stopped growing at ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!((400..512).contains(&reached), "{out}");
}

/// The probe guest's module, loaded into a fresh runtime.
fn probe_guest() -> (
    wasmdyno::Runtime,
    wasmdyno::runtime::Guest,
    std::sync::Arc<wasmdyno::runtime::Image>,
) {
    use wasmdyno::{Runtime, RuntimeConfig, runtime::Image, runtime::resolve_module};
    let slug = wasmdyno::Slug::open(probe_slug(), Default::default()).unwrap();
    let (_, wasm) = resolve_module(&slug, "probe.wasm").unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let (guest, _) = runtime.load(&wasm).unwrap();
    (runtime, guest, std::sync::Arc::new(Image::from_slug(&slug)))
}

#[test]
fn a_deadline_interrupts_a_spinning_guest_and_spinning_starves_no_one() {
    use std::collections::BTreeMap;
    use std::time::Duration;
    use wasmdyno::{runtime::DynoSize, runtime::Exit, runtime::RunSpec};

    let (runtime, guest, image) = probe_guest();
    let spec = |verb: &[&str]| {
        let mut argv = vec!["probe.wasm".to_string()];
        argv.extend(verb.iter().map(|s| s.to_string()));
        RunSpec::new(argv, BTreeMap::new(), DynoSize::default()).with_image(image.clone())
    };
    // Two worker threads and three spinning guests: each yields on every epoch tick, so a short guest still
    // finishes, again and again, while they spin.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let runtime = std::sync::Arc::new(runtime);
        let mut spinning = Vec::new();
        for _ in 0..3 {
            let (runtime, guest, mut spec) = (runtime.clone(), guest.clone(), spec(&["spin"]));
            spec.deadline = Some(Duration::from_millis(1500));
            spinning.push(tokio::spawn(async move { runtime.run(&guest, spec).await }));
        }
        for _ in 0..20 {
            let exit = runtime.run(&guest, spec(&["exit", "7"])).await.unwrap();
            assert!(matches!(exit, Exit::Status(7)));
        }
        for handle in spinning {
            match handle.await.unwrap().unwrap() {
                Exit::Trap(text) => {
                    assert!(text.contains("ran past its deadline of 1.5s"), "{text}")
                }
                other => panic!("a spinning guest ended with {other:?}"),
            }
        }
    });
}

/// Runs `probe.wasm VERB` once on `runtime`, as an eco dyno over the probe slug's image; its exit.
fn run_probe(runtime: &wasmdyno::Runtime, verb: &str) -> wasmdyno::runtime::Exit {
    use wasmdyno::runtime::{DynoSize, Image, RunSpec, resolve_module};
    let slug = wasmdyno::Slug::open(probe_slug(), Default::default()).unwrap();
    let (_, wasm) = resolve_module(&slug, "probe.wasm").unwrap();
    let (guest, _) = runtime.load(&wasm).unwrap();
    let spec = RunSpec::new(
        vec!["probe.wasm".into(), verb.into()],
        Default::default(),
        DynoSize::Eco,
    )
    .with_image(std::sync::Arc::new(Image::from_slug(&slug)));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(runtime.run(&guest, spec)).unwrap()
}

#[test]
fn the_pooling_allocator_runs_guests_within_the_same_quota() {
    use wasmdyno::{Runtime, RuntimeConfig, runtime::Exit, runtime::PoolingSettings};
    let steps = |runtime: &Runtime| match run_probe(runtime, "grow") {
        Exit::Status(steps) => steps,
        other => panic!("{other:?}"),
    };
    let on_demand = Runtime::new(RuntimeConfig::default()).unwrap();
    let pooled =
        Runtime::new(RuntimeConfig::default().with_pooling(Some(PoolingSettings::new(8)))).unwrap();
    let (a, b) = (steps(&on_demand), steps(&pooled));
    assert_eq!(
        a, b,
        "the same 16 MiB steps fit in eco's 512 MiB either way"
    );
    assert!((28..32).contains(&b), "{b}");
    // A 1 GiB reservation per memory (denser pools) still holds eco's quota.
    let dense = Runtime::new(RuntimeConfig::default().with_pooling(Some(
        PoolingSettings::new(8).with_memory_reservation(1 << 30),
    )))
    .unwrap();
    assert_eq!(steps(&dense), a);
}

/// A pooled slot keeps its memory resident after its instance ends, so the next instance in it must find that
/// memory reset: the data segment as written, zeros past it and in memory it grows.
#[test]
fn a_reused_pool_slot_shows_nothing_of_the_instance_before() {
    use wasmdyno::{Runtime, RuntimeConfig, runtime::Exit, runtime::PoolingSettings};
    // One slot: every run reuses the one before's.
    let pooled =
        Runtime::new(RuntimeConfig::default().with_pooling(Some(PoolingSettings::new(1)))).unwrap();
    for run in 0..3 {
        match run_probe(&pooled, "stain") {
            Exit::Status(0) => {}
            other => panic!("run {run} found the slot as the run before left it: {other:?}"),
        }
    }
}
