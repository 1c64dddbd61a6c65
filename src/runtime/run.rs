//! Running a command guest to its end: a core module on our preview-1 host (a pre-initialized one from its
//! snapshot, [`super::preinit`]), or a WASI 0.2 command component on wasmtime-wasi's.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::limits::DynoLimiter;
use super::vfs::{Fs, Quota};
use super::*;

impl Runtime {
    /// Runs a command guest to completion.
    ///
    /// Guests get the spec's image as their filesystem (a fresh copy-on-write layer, counted against the quota)
    /// and its streams; components run on wasmtime-wasi's host with our `wasi:filesystem` (`p2fs`).
    ///
    /// ```no_run
    /// # async fn one_off(runtime: &wasmdyno::Runtime) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use wasmdyno::{runtime::Exit, runtime::Image, runtime::RunSpec, Slug};
    ///
    /// let slug = Slug::open("hello.tar.gz".as_ref(), Default::default())?;
    /// let (module, wasm) = wasmdyno::runtime::resolve_module(&slug, "hello")?;
    /// let (guest, _) = runtime.load(&wasm)?;
    /// let spec = RunSpec::new(vec![module], Default::default(), Default::default())
    ///     .with_image(Arc::new(Image::from_slug(&slug)))
    ///     .with_host_stdio();
    /// match runtime.run(&guest, spec).await? {
    ///     Exit::Status(code) => println!("exited with {code}"),
    ///     Exit::Trap(why) => println!("trapped: {why}"),
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn run(&self, guest: &Guest, spec: RunSpec) -> Result<Exit, RuntimeError> {
        let (quota, limits) = budget(&spec);
        let (engine, linkers) = self.tier_of(guest);
        match guest {
            Guest::Module(module) => {
                let deadline = spec.deadline;
                let snapshot = spec.snapshot.clone();
                let preinitialized = preinit::is_preinitialized(module);
                if !preinitialized && module.get_export("_start").is_none() {
                    return Err(RuntimeError::Instantiate(format!(
                        "the module exports no `_start`: it is not a WASI command (nor a pre-initialized one, \
                         exporting `_initialize` and `{}`)",
                        preinit::ENTRY
                    )));
                }
                let mut store = p1_store(engine, spec, limits, quota);
                let instance = linkers
                    .p1
                    .instantiate_async(&mut store, module)
                    .await
                    .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
                let entry = if preinitialized {
                    match snapshot {
                        Some(snapshot) => snapshot
                            .restore(&mut store, &instance)
                            .map_err(RuntimeError::Instantiate)?,
                        None => {
                            let init = instance
                                .get_typed_func::<(), ()>(&mut store, "_initialize")
                                .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
                            if let Err(err) = init.call_async(&mut store, ()).await {
                                return Ok(exit_of(Err(err), deadline));
                            }
                        }
                    }
                    preinit::ENTRY
                } else {
                    "_start"
                };
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, entry)
                    .map_err(|e| RuntimeError::Instantiate(format!("`{entry}`: {e:#}")))?;
                Ok(exit_of(start.call_async(&mut store, ()).await, deadline))
            }
            Guest::Component(component) => {
                let fs = spec.fs.clone().unwrap_or_else(|| {
                    Arc::new(std::sync::Mutex::new(Fs::new(spec.image.clone(), quota)))
                });
                let mut builder = WasiCtxBuilder::new();
                builder
                    .stdin(component_io::ComponentInput(spec.stdin))
                    .stdout(component_io::ComponentOutput(
                        spec.stdout,
                        spec.stdout_credit.clone(),
                    ))
                    .stderr(component_io::ComponentOutput(
                        spec.stderr,
                        spec.stderr_credit.clone(),
                    ))
                    .args(&spec.argv)
                    .initial_cwd("/");
                for (key, value) in &spec.env {
                    builder.env(key, value);
                }
                // A web component may listen on its loopback `$PORT`, and any component may connect to the app's
                // allowed destinations; nothing else.
                let reachable = spec.network.resolve_all().await;
                policy::sockets(&mut builder, spec.port, reachable);
                let state = P2State {
                    wasi: builder.build(),
                    table: ResourceTable::new(),
                    fs: p2fs::FsCtx::new(fs),
                    http: wasmtime_wasi_http::WasiHttpCtx::new(),
                    outgoing: outgoing::Outgoing::new(Arc::new(spec.network.clone())),
                    limits,
                };
                let mut store = Store::new(engine, state);
                store.limiter(|s| &mut s.limits);
                yield_on_every_tick(
                    &mut store,
                    spec.deadline,
                    spec.cpu.clone(),
                    spec.background.clone(),
                );
                let command = wasmtime_wasi::p2::bindings::Command::instantiate_async(
                    &mut store,
                    component,
                    &linkers.p2,
                )
                .await
                .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
                let result = command.wasi_cli_run().call_run(&mut store).await;
                Ok(match result {
                    Ok(Ok(())) => Exit::Status(0),
                    Ok(Err(())) => Exit::Status(1),
                    Err(err) => exit_of(Err(err), spec.deadline),
                })
            }
        }
    }
}

/// One budget for a guest's linear memories and its filesystem layer: the spec's shared quota, or one of the
/// spec's size; and the limiter that charges memories to it and reports what it refuses.
pub(super) fn budget(spec: &RunSpec) -> (Arc<Quota>, DynoLimiter) {
    let quota = spec
        .quota
        .clone()
        .unwrap_or_else(|| Arc::new(Quota::new(spec.size.memory() as u64)));
    let limits = DynoLimiter::new(quota.clone()).with_report(spec.platform.clone());
    (quota, limits)
}

/// A store for a core module guest: its preview-1 host over the spec's filesystem, streams and listener, its
/// limits, and its epoch callback (deadline, CPU sampling, background share).
pub(super) fn p1_store(
    engine: &Engine,
    spec: RunSpec,
    limits: DynoLimiter,
    quota: Arc<Quota>,
) -> Store<P1State> {
    let fs = spec
        .fs
        .clone()
        .unwrap_or_else(|| Arc::new(std::sync::Mutex::new(Fs::new(spec.image.clone(), quota))));
    let mut env = spec.env;
    if spec.listener.is_some() {
        env.insert("WASMDYNO_LISTEN_FD".into(), p1::LISTEN_FD.to_string());
    }
    let mut wasi = p1::P1Ctx::new(spec.argv, env, fs, spec.stdin, spec.stdout, spec.stderr);
    if let Some(listener) = &spec.listener {
        wasi = wasi.with_listener(listener);
    }
    wasi = wasi
        .with_output_credit(1, spec.stdout_credit)
        .with_output_credit(2, spec.stderr_credit);
    if let Some(commands) = spec.commands {
        wasi = wasi.with_commands(commands);
    }
    let mut store = Store::new(engine, P1State { wasi, limits });
    store.limiter(|s| &mut s.limits);
    yield_on_every_tick(&mut store, spec.deadline, spec.cpu, spec.background);
    store
}

pub(super) fn exit_of(result: wasmtime::Result<()>, deadline: Option<Duration>) -> Exit {
    match result {
        Ok(()) => Exit::Status(0),
        Err(err) => match err.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Exit::Status(*code),
            None => match (err.downcast_ref::<wasmtime::Trap>(), deadline) {
                (Some(wasmtime::Trap::Interrupt), Some(limit)) => Exit::Trap(format!(
                    "the guest ran past its deadline of {}s and was interrupted",
                    limit.as_secs_f64()
                )),
                _ => Exit::Trap(format!("{err:?}")),
            },
        },
    }
}
