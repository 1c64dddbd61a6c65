//! The built-in shell (`wasmdyno run -a APP bash`, or `sh`): a wasm32-wasip1 program (`shell/` in the
//! repository) built by the build script and shipped in the binary, and the slug's modules it starts in its own
//! dyno through `wasmdyno.spawn` ([`SlugCommands`]).

#[allow(unused_imports)]
use super::*;

use super::p1::{Child, Commands, SpawnError};

/// The shell's wasm; empty when the binary was built without it (no `wasm32-wasip1` target at build time).
const SHELL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wasmdyno-shell.wasm"));

/// How deep shells may start shells.
const MAX_DEPTH: u8 = 4;

/// The words that name the built-in shell when the slug has no module by that name.
pub(crate) fn is_shell_word(word: &str) -> bool {
    matches!(word, "bash" | "sh" | "/bin/bash" | "/bin/sh")
}

/// The built-in shell as the module `word` (`bash` or `sh`) names, or why there is none.
pub(crate) fn builtin(word: &str) -> Result<(String, Arc<[u8]>), RuntimeError> {
    if SHELL.is_empty() {
        return Err(RuntimeError::BadCommand {
            command: word.to_string(),
            reason:
                "this wasmdyno was built without its shell (the wasm32-wasip1 target was missing): \
                     run `rustup target add wasm32-wasip1` and build wasmdyno again"
                    .into(),
        });
    }
    let name = word.rsplit('/').next().unwrap_or(word);
    Ok((name.to_string(), Arc::from(SHELL)))
}

/// The slug's modules, started for a guest of `runtime` in the guest's own dyno: its filesystem and memory quota,
/// the rest of its deadline, its network policy, CPU count and platform report.
#[derive(Clone)]
pub(crate) struct SlugCommands {
    runtime: Arc<Runtime>,
    slug: Slug,
    size: DynoSize,
    end: Option<std::time::Instant>,
    network: NetworkPolicy,
    cpu: Option<Arc<std::sync::atomic::AtomicU64>>,
    platform: Report,
    background: Option<Arc<std::sync::atomic::AtomicU64>>,
    depth: u8,
}

impl SlugCommands {
    /// What a shell run with `spec` may start: the modules of `slug`. `None` unless `spec` runs the built-in shell.
    pub(crate) fn for_shell(
        runtime: &Arc<Runtime>,
        slug: &Slug,
        spec: &RunSpec,
    ) -> Option<Arc<dyn Commands>> {
        let word = spec.argv.first()?;
        if !is_shell_word(word) || slug.file(word).is_some() {
            return None;
        }
        Some(Arc::new(SlugCommands {
            runtime: runtime.clone(),
            slug: slug.clone(),
            size: spec.size,
            end: spec.deadline.map(|d| std::time::Instant::now() + d),
            network: spec.network.clone(),
            cpu: spec.cpu.clone(),
            platform: spec.platform.clone(),
            background: spec.background.clone(),
            depth: 0,
        }))
    }

    async fn start(self, child: Child) -> Result<i32, SpawnError> {
        if self.depth >= MAX_DEPTH {
            return Err(SpawnError::TooDeep);
        }
        let (said, word) = (child.stderr.0.clone(), child.argv[0].clone());
        let fail = |why: String| {
            said(format!("{word}: {why}\n").as_bytes());
            SpawnError::Failed
        };
        let (module, wasm) = match resolve_module(&self.slug, &word) {
            Ok(found) => found,
            Err(RuntimeError::NoSuchModule { .. }) => return Err(SpawnError::NoSuchModule),
            Err(e) => return Err(fail(e.to_string())),
        };
        // Compiling a big module the first time takes a while: not on an async thread.
        let runtime = self.runtime.clone();
        let (guest, _) = tokio::task::spawn_blocking(move || runtime.load(&wasm))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        let quota = child.fs.lock().unwrap_or_else(|p| p.into_inner()).quota();
        let mut argv = child.argv;
        argv[0] = module;
        let mut spec = RunSpec::new(argv, child.env, self.size);
        (spec.stdin, spec.stdout, spec.stderr) = (child.stdin, child.stdout.0, child.stderr.0);
        (spec.stdout_credit, spec.stderr_credit) = (child.stdout.1, child.stderr.1);
        (spec.quota, spec.fs) = (Some(quota), Some(child.fs));
        if let Some(end) = self.end {
            spec.deadline = Some(end.saturating_duration_since(std::time::Instant::now()));
        }
        (spec.network, spec.cpu, spec.platform) = (
            self.network.clone(),
            self.cpu.clone(),
            self.platform.clone(),
        );
        spec.background = self.background.clone();
        if is_shell_word(&spec.argv[0]) {
            let deeper = SlugCommands {
                depth: self.depth + 1,
                ..self.clone()
            };
            spec.commands = Some(Arc::new(deeper));
        }
        // The child runs as a task of its own, aborted if the caller is dropped (its dyno stopped).
        let runtime = self.runtime.clone();
        let name = spec.argv[0].clone();
        let mut task = AbortOnDrop(tokio::spawn(async move { runtime.run(&guest, spec).await }));
        match (&mut task.0).await {
            Ok(Ok(Exit::Status(code))) => Ok(code),
            Ok(Ok(exit @ Exit::Trap(_))) => {
                if let Exit::Trap(why) = &exit {
                    said(format!("{name} trapped: {why}\n").as_bytes());
                }
                Ok(exit.code())
            }
            Ok(Err(e)) => Err(fail(e.to_string())),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

impl Commands for SlugCommands {
    fn run(
        &self,
        child: Child,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<i32, SpawnError>> + Send>> {
        Box::pin(self.clone().start(child))
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<Exit, RuntimeError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
