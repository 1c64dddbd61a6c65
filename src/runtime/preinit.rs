//! Pre-initialized commands: a core module that exports `_initialize` and [`ENTRY`] (instead of `_start`) is a
//! command whose initialization can run once and be reused. Go builds one with `-buildmode=c-shared` and an
//! exported function that calls `main` (the Go buildpack does this for CGI apps): `_initialize` starts the Go
//! runtime and runs every package's `init`, [`ENTRY`] runs `main`.
//!
//! Run plainly, such a module gets `_initialize` then [`ENTRY`]. A dyno that runs it many times (a CGI dyno runs it
//! once per request) takes a [`Snapshot`] instead: `_initialize` runs once, in an instance of the dyno's own, and
//! what it left (the pages of linear memory it changed, the memory's size, the module's mutable globals) is
//! copied into each later instance before [`ENTRY`] is called. Nothing is compiled again: the module is compiled
//! once, with its mutable globals exported ([`instrument`]) so that they can be read and set.
//!
//! What a snapshot cannot carry is refused (the dyno then runs `_initialize` in every run, and its log says why):
//! state outside the instance (a descriptor `_initialize` left open, a file it wrote), a table changed after
//! instantiation, a memory not its own or a second one. What it does carry is shared by every run it starts:
//! values `_initialize` drew at random are the same in each, unless [`ENTRY`] draws them again (the Go
//! buildpack's entry reseeds Go's runtime).

use std::sync::{Arc, Mutex};

use wasmtime::{Instance, Memory, Module, Store, Val};

use super::vfs::Fs;
use super::{Exit, Guest, RunSpec, Runtime, RuntimeError};

/// The export a pre-initialized command runs after `_initialize` (or after its snapshot is restored).
pub const ENTRY: &str = "wasmdyno_start";
/// The reactor initialization function, by WASI's convention.
const INITIALIZE: &str = "_initialize";
/// Prefix of the exports [`instrument`] adds for the module's mutable globals (followed by the global's index).
const GLOBAL_PREFIX: &str = "wasmdyno:global:";
/// The export [`instrument`] adds for the module's memory, when the module does not export it as `memory`.
const MEMORY_EXPORT: &str = "wasmdyno:memory";
/// The export [`instrument`] adds (its `_initialize` again) to say that it prepared the module for snapshots.
const PREPARED: &str = "wasmdyno:snapshots";
/// The granularity at which a snapshot records changed memory.
const PAGE: usize = 4096;

/// Whether `module` is a pre-initialized command: it exports `_initialize` and [`ENTRY`], and no `_start`.
pub(crate) fn is_preinitialized(module: &Module) -> bool {
    let func = |name| matches!(module.get_export(name), Some(wasmtime::ExternType::Func(_)));
    func(INITIALIZE) && func(ENTRY) && !func("_start")
}

/// `wasm` with each mutable global it defines (and its memory, if not already) exported, if it is a pre-initialized
/// command whose state a snapshot can carry: one memory of its own, no reference-typed mutable global, and no
/// instruction that changes a table after instantiation (a snapshot does not copy tables). `None` for any other
/// module, which is compiled as it is (a pre-initialized command then runs `_initialize` in every run).
pub(crate) fn instrument(wasm: &[u8]) -> Result<Option<Vec<u8>>, RuntimeError> {
    use wasmparser::{ExternalKind, Parser, Payload, TypeRef};
    let bad = |e: wasmparser::BinaryReaderError| RuntimeError::Compile(e.to_string());
    let mut imported_globals = 0u32;
    let mut memories = 0u32;
    let mut mutable = Vec::new();
    let mut exports = Vec::new();
    // Each section's id and range, to copy all but the export section into the instrumented module.
    let mut sections = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(bad)?;
        sections.extend(payload.as_section());
        match payload {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    match import.map_err(bad)?.ty {
                        TypeRef::Global(_) => imported_globals += 1,
                        // An imported memory is not the instance's to snapshot.
                        TypeRef::Memory(_) => return Ok(None),
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(section) => memories += section.count(),
            // A start function runs in every instance, the snapshot's restore included: what it leaves would mix
            // with the snapshot's pages.
            Payload::StartSection { .. } => return Ok(None),
            Payload::GlobalSection(globals) => {
                for (i, global) in globals.into_iter().enumerate() {
                    let ty = global.map_err(bad)?.ty;
                    if ty.mutable {
                        if matches!(ty.content_type, wasmparser::ValType::Ref(_)) {
                            // A reference cannot be carried from one instance to another.
                            return Ok(None);
                        }
                        mutable.push(imported_globals + i as u32);
                    }
                }
            }
            Payload::ExportSection(section) => {
                for export in section {
                    let export = export.map_err(bad)?;
                    exports.push((export.name, export.kind, export.index));
                }
            }
            // The exports come before the code: a module that is no pre-initialized command is not read further.
            Payload::CodeSectionStart { .. } if !preinitialized(&exports) => return Ok(None),
            Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader().map_err(bad)?;
                while !ops.eof() {
                    use wasmparser::Operator::*;
                    if let TableSet { .. }
                    | TableGrow { .. }
                    | TableFill { .. }
                    | TableCopy { .. }
                    | TableInit { .. }
                    | ElemDrop { .. } = ops.read().map_err(bad)?
                    {
                        return Ok(None);
                    }
                }
            }
            _ => {}
        }
    }
    // Names of ours in its exports already: not a module to mark as prepared.
    let ours = exports
        .iter()
        .any(|(name, ..)| name.starts_with("wasmdyno:"));
    if !preinitialized(&exports) || memories != 1 || ours {
        return Ok(None);
    }

    let mut section = wasm_encoder::ExportSection::new();
    for (name, kind, index) in &exports {
        let kind = match kind {
            ExternalKind::Func | ExternalKind::FuncExact => wasm_encoder::ExportKind::Func,
            ExternalKind::Table => wasm_encoder::ExportKind::Table,
            ExternalKind::Memory => wasm_encoder::ExportKind::Memory,
            ExternalKind::Global => wasm_encoder::ExportKind::Global,
            ExternalKind::Tag => wasm_encoder::ExportKind::Tag,
        };
        section.export(name, kind, *index);
    }
    let initialize = exports
        .iter()
        .find(|(name, _, _)| *name == INITIALIZE)
        .map_or(0, |(_, _, index)| *index);
    section.export(PREPARED, wasm_encoder::ExportKind::Func, initialize);
    if !exports
        .iter()
        .any(|(name, kind, _)| *name == "memory" && *kind == ExternalKind::Memory)
    {
        section.export(MEMORY_EXPORT, wasm_encoder::ExportKind::Memory, 0);
    }
    for index in mutable {
        section.export(
            &format!("{GLOBAL_PREFIX}{index}"),
            wasm_encoder::ExportKind::Global,
            index,
        );
    }
    // Every other section as it was, in its place.
    let mut out = wasm_encoder::Module::new();
    for (id, range) in sections {
        if id == wasm_encoder::SectionId::Export as u8 {
            out.section(&section);
        } else {
            out.section(&wasm_encoder::RawSection {
                id,
                data: &wasm[range],
            });
        }
    }
    Ok(Some(out.finish()))
}

/// Whether a module's exports (name, kind, index) are a pre-initialized command's.
fn preinitialized(exports: &[(&str, wasmparser::ExternalKind, u32)]) -> bool {
    let func = |name: &str| {
        exports
            .iter()
            .any(|(n, kind, _)| *n == name && *kind == wasmparser::ExternalKind::Func)
    };
    func(INITIALIZE) && func(ENTRY) && !func("_start")
}

/// A numeric global's value, as a snapshot holds it.
#[derive(Clone, Copy, Debug)]
enum Value {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
}

/// What a pre-initialized command's `_initialize` left in its instance, to start later instances from
/// ([`super::Runtime::preinitialize`]).
#[derive(Debug)]
pub struct Snapshot {
    /// The memory's size, in bytes.
    size: usize,
    /// The runs of pages that differ from a fresh instance's memory, by offset.
    runs: Vec<(usize, Box<[u8]>)>,
    /// The mutable globals, by export name.
    globals: Vec<(String, Value)>,
}

impl Snapshot {
    /// The state of `instance`, whose memory was `initial` before its initialization ran.
    pub(super) fn capture<T>(
        store: &mut Store<T>,
        instance: &Instance,
        initial: &[u8],
    ) -> Result<Snapshot, String> {
        let memory = memory(store, instance)?;
        let now = memory.data(&*store);
        let mut runs: Vec<(usize, Box<[u8]>)> = Vec::new();
        let mut run: Option<usize> = None;
        let mut offset = 0;
        while offset < now.len() {
            let end = (offset + PAGE).min(now.len());
            let was = initial.get(offset..end.min(initial.len())).unwrap_or(&[]);
            let page = &now[offset..end];
            let changed = page[..was.len()] != *was || page[was.len()..].iter().any(|b| *b != 0);
            match (changed, run) {
                (true, None) => run = Some(offset),
                (false, Some(start)) => {
                    runs.push((start, now[start..offset].into()));
                    run = None;
                }
                _ => {}
            }
            offset = end;
        }
        if let Some(start) = run {
            runs.push((start, now[start..].into()));
        }
        let size = now.len();
        let mut globals = Vec::new();
        let names: Vec<String> = instance
            .exports(&mut *store)
            .filter(|e| e.name().starts_with(GLOBAL_PREFIX))
            .map(|e| e.name().to_string())
            .collect();
        for name in names {
            let global = instance
                .get_global(&mut *store, &name)
                .ok_or_else(|| format!("no global {name}"))?;
            let value = match global.get(&mut *store) {
                Val::I32(v) => Value::I32(v),
                Val::I64(v) => Value::I64(v),
                Val::F32(v) => Value::F32(v),
                Val::F64(v) => Value::F64(v),
                Val::V128(v) => Value::V128(v.as_u128()),
                other => return Err(format!("global {name} holds a reference ({other:?})")),
            };
            globals.push((name, value));
        }
        Ok(Snapshot {
            size,
            runs,
            globals,
        })
    }

    /// Puts the snapshot's state into `instance`, a fresh instance of the module it was taken from.
    pub(super) fn restore<T>(
        &self,
        store: &mut Store<T>,
        instance: &Instance,
    ) -> Result<(), String> {
        let memory = memory(store, instance)?;
        let have = memory.data_size(&*store);
        if self.size > have {
            let pages = ((self.size - have) as u64).div_ceil(memory.page_size(&*store));
            memory
                .grow(&mut *store, pages)
                .map_err(|e| format!("cannot grow the memory to its initialized size: {e:#}"))?;
        }
        let data = memory.data_mut(&mut *store);
        for (offset, bytes) in &self.runs {
            data[*offset..*offset + bytes.len()].copy_from_slice(bytes);
        }
        for (name, value) in &self.globals {
            let global = instance.get_global(&mut *store, name).ok_or_else(|| {
                format!("the module has no global {name}: it was not compiled for snapshots")
            })?;
            let value = match *value {
                Value::I32(v) => Val::I32(v),
                Value::I64(v) => Val::I64(v),
                Value::F32(v) => Val::F32(v),
                Value::F64(v) => Val::F64(v),
                Value::V128(v) => Val::V128(v.into()),
            };
            global
                .set(&mut *store, value)
                .map_err(|e| format!("cannot set {name}: {e:#}"))?;
        }
        Ok(())
    }

    /// The bytes of memory it holds (the pages `_initialize` changed).
    pub fn bytes(&self) -> usize {
        self.runs.iter().map(|(_, run)| run.len()).sum()
    }
}

/// The instance's one memory.
pub(super) fn memory<T>(store: &mut Store<T>, instance: &Instance) -> Result<Memory, String> {
    instance
        .get_memory(&mut *store, "memory")
        .or_else(|| instance.get_memory(&mut *store, MEMORY_EXPORT))
        .ok_or_else(|| "the module exports no memory".to_string())
}

impl Runtime {
    /// Runs `guest`'s `_initialize` once, in an instance made from `spec` as [`Runtime::run`] makes one, and takes
    /// its snapshot for the spec's later runs ([`RunSpec::snapshot`]). Says why not when it cannot: the guest is
    /// no pre-initialized command, `_initialize` trapped, exited or ran past the deadline, or it left something
    /// a snapshot cannot carry.
    pub(crate) async fn preinitialize(
        &self,
        guest: &Guest,
        spec: RunSpec,
    ) -> Result<Snapshot, String> {
        let Guest::Module(module) = guest else {
            return Err("a component is not pre-initialized".into());
        };
        if !is_preinitialized(module) {
            return Err(format!(
                "the module does not export `{INITIALIZE}` and `{ENTRY}`"
            ));
        }
        if module.get_export(PREPARED).is_none() {
            return Err("its state is not one a snapshot can carry (a second or imported memory, a mutable \
                 reference global, or a table changed while it runs)"
                .into());
        }
        let (quota, limits) = super::run::budget(&spec);
        let deadline = spec.deadline;
        let (engine, linkers) = self.tier_of(guest);
        let fs = Arc::new(Mutex::new(Fs::new(spec.image.clone(), quota.clone())));
        let spec = RunSpec {
            fs: Some(fs.clone()),
            ..spec
        };
        let mut store = super::run::p1_store(engine, spec, limits, quota);
        let instance = linkers
            .p1
            .instantiate_async(&mut store, module)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let initial = memory(&mut store, &instance)?.data(&store).to_vec();
        let descriptors = store.data().wasi.descriptors();
        let init = instance
            .get_typed_func::<(), ()>(&mut store, INITIALIZE)
            .map_err(|e| format!("`{INITIALIZE}`: {e:#}"))?;
        if let Err(err) = init.call_async(&mut store, ()).await {
            return Err(match super::run::exit_of(Err(err), deadline) {
                Exit::Status(code) => format!("`{INITIALIZE}` exited with status {code}"),
                Exit::Trap(trap) => format!("`{INITIALIZE}` trapped: {}", super::trap_cause(&trap)),
            });
        }
        if store.data().wasi.descriptors() != descriptors {
            return Err(format!(
                "`{INITIALIZE}` opened or closed descriptors, which a snapshot cannot carry"
            ));
        }
        if !fs.lock().expect("the dyno's filesystem").is_untouched() {
            return Err(format!(
                "`{INITIALIZE}` changed the filesystem, which a snapshot does not carry"
            ));
        }
        Snapshot::capture(&mut store, &instance, &initial)
    }
}

#[cfg(all(test, feature = "platform"))]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;
    use crate::runtime::{RuntimeConfig, cgi::CgiDyno};

    /// A pre-initialized CGI command. `_initialize` says "init" on stderr, grows its memory by a page, and leaves
    /// marks: byte 0 (`x` in its data) becomes `a`, byte 70000 (in the new page) `i`, its global 7. `wasmdyno_start`
    /// answers with the three marks, then spoils them, so a run that saw another's state would answer otherwise.
    const COMMAND: &str = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (global $mark (mut i32) (i32.const 0))
      (data (i32.const 0) "x")
      (data (i32.const 100) "init\n")
      (data (i32.const 120) "Content-Type: text/plain\n\n")
      (func $out (param $fd i32) (param $at i32) (param $len i32)
        (i32.store (i32.const 300) (local.get $at))
        (i32.store (i32.const 304) (local.get $len))
        (drop (call $write (local.get $fd) (i32.const 300) (i32.const 1) (i32.const 308))))
      (func (export "_initialize")
        (call $out (i32.const 2) (i32.const 100) (i32.const 5))
        (drop (memory.grow (i32.const 1)))
        (i32.store8 (i32.const 70000) (i32.const 105))
        (i32.store8 (i32.const 0) (i32.const 97))
        (global.set $mark (i32.const 7)))
      (func (export "wasmdyno_start")
        (i32.store8 (i32.const 200) (i32.load8_u (i32.const 0)))
        (i32.store8 (i32.const 201) (i32.load8_u (i32.const 70000)))
        (i32.store8 (i32.const 202) (i32.add (i32.const 48) (global.get $mark)))
        (call $out (i32.const 1) (i32.const 120) (i32.const 26))
        (call $out (i32.const 1) (i32.const 200) (i32.const 3))
        (i32.store8 (i32.const 0) (i32.const 98))
        (i32.store8 (i32.const 70000) (i32.const 98))
        (global.set $mark (i32.const 8))))"#;

    /// Serves three requests from a CGI dyno of `wat` and returns their bodies, its stderr and its platform lines.
    fn serve(config: RuntimeConfig, wat: &str) -> (Vec<String>, String, String) {
        let runtime = Arc::new(Runtime::new(config).unwrap());
        let (guest, _) = runtime.load(&wat::parse_str(wat).unwrap()).unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let platform = Arc::new(Mutex::new(String::new()));
        let mut spec = RunSpec::new(
            vec!["cmd.wasm".into()],
            Default::default(),
            Default::default(),
        );
        let sink = stderr.clone();
        spec.stderr = Arc::new(move |data: &[u8]| sink.lock().unwrap().extend_from_slice(data));
        let lines = platform.clone();
        spec.platform =
            Arc::new(move |line: &str| lines.lock().unwrap().push_str(&format!("{line}\n")));
        let dyno = Arc::new(CgiDyno::new(
            runtime,
            guest,
            spec,
            2,
            Duration::from_secs(10),
        ));
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let bodies = (0..3)
            .map(|_| {
                tokio.block_on(async {
                    let request =
                        hyper::Request::new(http_body_util::Empty::<hyper::body::Bytes>::new());
                    match dyno.handle(request).await {
                        Ok(response) => {
                            let body = response.into_body().collect().await.unwrap().to_bytes();
                            String::from_utf8_lossy(&body).into_owned()
                        }
                        Err(e) => format!("{e:?}"),
                    }
                })
            })
            .collect();
        let stderr = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
        let platform = platform.lock().unwrap().clone();
        (bodies, stderr, platform)
    }

    #[test]
    fn a_cgi_dyno_initializes_once_and_starts_every_request_from_there() {
        let (bodies, stderr, platform) = serve(RuntimeConfig::default(), COMMAND);
        assert_eq!(bodies, ["ai7", "ai7", "ai7"], "{platform}");
        assert_eq!(stderr, "init\n", "initialized once: {platform}");
        assert!(platform.contains("Pre-initialized in"), "{platform}");
    }

    #[test]
    fn without_preinit_every_request_initializes_and_answers_the_same() {
        let (bodies, stderr, platform) =
            serve(RuntimeConfig::default().with_preinit(false), COMMAND);
        assert_eq!(bodies, ["ai7", "ai7", "ai7"]);
        assert_eq!(stderr, "init\ninit\ninit\n");
        assert!(platform.is_empty(), "{platform}");
    }

    #[test]
    fn an_initialization_that_fails_is_not_snapshotted_and_each_request_says_so() {
        let trapping = COMMAND.replace(
            "(global.set $mark (i32.const 7)))",
            "(global.set $mark (i32.const 7)) unreachable)",
        );
        let (bodies, stderr, platform) = serve(RuntimeConfig::default(), &trapping);
        assert!(
            platform.contains("Cannot pre-initialize the command (`_initialize` trapped: "),
            "{platform}"
        );
        assert!(
            bodies.iter().all(|b| b.contains("unreachable")),
            "{bodies:?}"
        );
        // Once for the attempt, then once per request.
        assert_eq!(stderr.matches("init\n").count(), 4, "{stderr}");
    }

    #[test]
    fn a_command_whose_tables_change_runs_its_initialization_in_every_request() {
        let grows = COMMAND.replace(
            "(global.set $mark (i32.const 7)))",
            "(global.set $mark (i32.const 7)) (drop (table.grow (ref.null func) (i32.const 1))))",
        );
        let grows = grows.replace(
            "(memory (export \"memory\") 1)",
            "(memory (export \"memory\") 1) (table 1 funcref)",
        );
        let (bodies, stderr, platform) = serve(RuntimeConfig::default(), &grows);
        assert_eq!(bodies, ["ai7", "ai7", "ai7"], "{platform}");
        assert_eq!(stderr.matches("init\n").count(), 3, "{stderr}");
        assert!(
            platform.contains("is not one a snapshot can carry"),
            "{platform}"
        );
    }

    #[test]
    fn only_pre_initialized_commands_are_instrumented() {
        let command = wat::parse_str(
            r#"(module (memory 1) (global (mut i32) (i32.const 0)) (func (export "_start")))"#,
        );
        assert!(instrument(&command.unwrap()).unwrap().is_none());
        let instrumented = |wat: &str| instrument(&wat::parse_str(wat).unwrap()).unwrap();
        // Nor a module with a start function, or one already using our export names.
        let starts = COMMAND.replace(
            "(global $mark",
            "(start $nothing) (func $nothing) (global $mark",
        );
        assert!(instrumented(&starts).is_none());
        let ours = COMMAND.replace(
            "(func (export \"_initialize\")",
            "(func (export \"wasmdyno:snapshots\")) (func (export \"_initialize\")",
        );
        assert!(instrumented(&ours).is_none());
        let instrumented = instrumented(COMMAND).unwrap();
        let exports: Vec<String> = wasmparser::Parser::new(0)
            .parse_all(&instrumented)
            .filter_map(|p| match p.unwrap() {
                wasmparser::Payload::ExportSection(s) => Some(
                    s.into_iter()
                        .map(|e| e.unwrap().name.to_string())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            exports,
            [
                "memory",
                "_initialize",
                "wasmdyno_start",
                PREPARED,
                "wasmdyno:global:0"
            ]
        );
    }
}
