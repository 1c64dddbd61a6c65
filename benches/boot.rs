//! Dyno boot: instantiate to guest entry and back, for slugs of 1 MB, 100 MB and 100,000 files. A dyno's
//! filesystem is a copy-on-write view of the release's image, so boot time should not grow with either; the small
//! slug is the baseline the others are printed against. Each with instances allocated on demand and from
//! wasmtime's pooling allocator (`WASMDYNO_POOL_SLOTS`). Also instantiations per second.
//!
//!     cargo bench --bench boot [-- RUNS]
//!
//! The guest is the WAT probe (`tests/guests/probe.wat`) running `exit 0`, and a WASI 0.2 command component
//! (`sample-apps/rust-p2-hello`, built with cargo into target/bench-guests) printing its greeting; compiled code
//! is loaded once, as a release's is.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmdyno::runtime::Image;
use wasmdyno::{
    Runtime, RuntimeConfig, runtime::DynoSize, runtime::Exit, runtime::PoolingSettings,
    runtime::RunSpec, runtime::resolve_module,
};
use wasmdyno::{Slug, slug::Limits, slug::PackOptions, slug::pack};

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let probe = wat::parse_file(root.join("tests/guests/probe.wat")).expect("probe.wat compiles");
    let component = common::build_wasip2_sample("rust-p2-hello", "hello-p2.wasm");
    let work = tempfile::tempdir().expect("a temporary directory");

    let slugs = [
        (
            "1 MB slug",
            make_app(work.path(), "small", &probe, &[("data.bin", 1 << 20)], 0),
        ),
        (
            "100 MB slug",
            make_app(work.path(), "large", &probe, &[("data.bin", 100 << 20)], 0),
        ),
        (
            "100,000-file slug",
            make_app(work.path(), "many", &probe, &[], 100_000),
        ),
    ];
    // The component goes in as the slug's `probe.wasm`, beside 1 MB of data.
    let component_slug = make_app(
        work.path(),
        "component",
        &component,
        &[("data.bin", 1 << 20)],
        0,
    );

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!("{runs} boots each, one thread, release build; the guest runs `exit 0`");
    println!(
        "{:40} {:>10} {:>10} {:>10}  p50 vs first",
        "", "p50", "p99", "boots/s"
    );
    let on_demand = Runtime::new(RuntimeConfig::default()).expect("a runtime");
    let pooled =
        Runtime::new(RuntimeConfig::default().with_pooling(Some(PoolingSettings::new(100))))
            .expect("a pooling runtime");
    let mut baseline = None;
    let module_argv = ["probe.wasm", "exit", "0"];
    let component_argv = ["probe.wasm", "bench"];
    let cases = slugs
        .iter()
        .map(|(name, slug)| {
            (
                format!("{name}, on demand"),
                slug,
                &on_demand,
                &module_argv[..],
            )
        })
        .chain(slugs.iter().map(|(name, slug)| {
            (
                format!("{name}, pooling allocator"),
                slug,
                &pooled,
                &module_argv[..],
            )
        }))
        .chain([
            (
                "component, 1 MB slug, on demand".to_string(),
                &component_slug,
                &on_demand,
                &component_argv[..],
            ),
            (
                "component, 1 MB slug, pooling allocator".to_string(),
                &component_slug,
                &pooled,
                &component_argv[..],
            ),
        ]);
    for (name, slug, runtime, argv) in cases {
        let image = Arc::new(Image::from_slug(slug));
        let (_, wasm) = resolve_module(slug, "probe.wasm").expect("the probe is in the slug");
        let (guest, _) = runtime.load(&wasm).expect("the probe loads");
        let mut times = Vec::with_capacity(runs);
        let started = Instant::now();
        tokio.block_on(async {
            for _ in 0..runs {
                let spec = RunSpec::new(
                    argv.iter().map(|a| a.to_string()).collect(),
                    BTreeMap::new(),
                    DynoSize::default(),
                )
                .with_image(image.clone());
                let start = Instant::now();
                let exit = runtime.run(&guest, spec).await.expect("the probe runs");
                times.push(start.elapsed());
                assert!(matches!(exit, Exit::Status(0)));
            }
        });
        let total = started.elapsed();
        times.sort();
        let p50 = times[times.len() / 2];
        let p99 = times[times.len() * 99 / 100];
        let base = *baseline.get_or_insert(p50);
        println!(
            "{name:40} {:>8.1}µs {:>8.1}µs {:>10.0}  {:.2}x",
            micros(p50),
            micros(p99),
            runs as f64 / total.as_secs_f64(),
            p50.as_secs_f64() / base.as_secs_f64()
        );
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// An app directory with the probe, `files` of the given sizes and `count` small files, packed into a slug.
fn make_app(work: &Path, name: &str, probe: &[u8], files: &[(&str, usize)], count: usize) -> Slug {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("probe.wasm"), probe).unwrap();
    for (file, size) in files {
        // Not all zeros, so the archive holds real bytes; a short period keeps packing quick.
        let data: Vec<u8> = (0..*size).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join(file), data).unwrap();
    }
    for i in 0..count {
        let sub = dir.join(format!("d{}", i % 100));
        if i < 100 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        std::fs::write(sub.join(format!("f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    let packed = pack(&dir, PackOptions::default()).expect("the app packs");
    let limits = Limits::default();
    Slug::from_bytes(&packed.bytes, limits).expect("the slug opens")
}
