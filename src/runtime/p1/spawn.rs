//! `wasmdyno.spawn`: a guest starts another module of its slug in its own dyno and waits for it (how the
//! built-in shell of `wasmdyno run bash` runs the app's commands).
//!
//! `spawn(argv, argv_len, env, env_len, stdin, stdout, stderr, status) -> errno`: `argv` and `env` are
//! NUL-terminated strings back to back (at most [`MAX_SPAWN_STRINGS`] bytes each); `stdin`, `stdout` and `stderr`
//! are the caller's descriptors, each a standard stream of its own or a file of the dyno's filesystem, given to the
//! child as its 0, 1 and 2. The child shares the caller's filesystem and memory quota. The exit status goes to
//! `status` (a trap is 134, with the trap on the child's stderr). Errors: `NOSYS` when this guest may not start
//! modules, `NOENT` when the slug has no such module, `AGAIN` when spawns are nested too deep, `BADF` for a
//! descriptor that is neither a stream nor a file.

#[allow(unused_imports)]
use super::*;

/// The most bytes of `argv` (and, apart, of `env`) one spawn takes.
pub const MAX_SPAWN_STRINGS: u32 = 1024 * 1024;

/// A module a guest asked to start, with everything it runs with.
pub struct Child {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub stdin: Input,
    pub stdout: (Output, Option<Credit>),
    pub stderr: (Output, Option<Credit>),
    /// The caller's filesystem, shared.
    pub fs: Arc<Mutex<Fs>>,
}

/// Why a child could not start.
pub enum SpawnError {
    /// The slug has no module by that name.
    NoSuchModule,
    /// Spawns are nested past their limit.
    TooDeep,
    /// Anything else (a module that does not compile, ...), said on the child's stderr.
    Failed,
}

/// Starts the modules a guest asks for: given to a guest with [`P1Ctx::with_commands`].
pub trait Commands: Send + Sync {
    /// Runs `child` to its end; its exit status.
    fn run(
        &self,
        child: Child,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<i32, SpawnError>> + Send>>;
}

impl P1Ctx {
    /// Lets the guest start modules through `commands` (`wasmdyno.spawn`); without, it answers `NOSYS`.
    pub(crate) fn with_commands(mut self, commands: Arc<dyn Commands>) -> P1Ctx {
        self.commands = Some(commands);
        self
    }

    /// The child of a `spawn` call, read from guest memory and the caller's descriptors.
    fn child(
        &mut self,
        mem: &Mem,
        (argv, argv_len): (u32, u32),
        (env, env_len): (u32, u32),
        stdio: [u32; 3],
    ) -> abi::Result<(Arc<dyn Commands>, Child)> {
        let commands = self.commands.clone().ok_or(Errno::NOSYS)?;
        if argv_len > MAX_SPAWN_STRINGS || env_len > MAX_SPAWN_STRINGS {
            return Err(Errno::TOOBIG);
        }
        let strings = |ptr, len| -> abi::Result<Vec<String>> {
            let bytes = mem.slice(ptr, len)?;
            let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
            if bytes.is_empty() {
                return Ok(Vec::new());
            }
            bytes
                .split(|b| *b == 0)
                .map(|s| String::from_utf8(s.to_vec()).map_err(|_| Errno::ILSEQ))
                .collect()
        };
        let argv = strings(argv, argv_len)?;
        if argv.is_empty() {
            return Err(Errno::INVAL);
        }
        let env = strings(env, env_len)?
            .into_iter()
            .filter_map(|line| {
                let (key, value) = line.split_once('=')?;
                Some((key.to_string(), value.to_string()))
            })
            .collect();
        let stdin = match self.desc(stdio[0])? {
            Desc::Stdin { .. } => self.stdin.clone(),
            Desc::File(file) => Input::from_reader(OpenFile::new(self.fs.clone(), file.ino)),
            _ => return Err(Errno::BADF),
        };
        Ok((
            commands,
            Child {
                argv,
                env,
                stdin,
                stdout: self.child_output(stdio[1])?,
                stderr: self.child_output(stdio[2])?,
                fs: self.fs.clone(),
            },
        ))
    }

    /// An output stream of the caller's, or one that appends to a file of its (a redirection).
    fn child_output(&self, fd: u32) -> abi::Result<(Output, Option<Credit>)> {
        match self.desc(fd)? {
            Desc::Out { sink, credit, .. } => Ok((sink.clone(), credit.clone())),
            Desc::File(file) => {
                let writer = OpenFile::new(self.fs.clone(), file.ino);
                // A write the quota refuses is lost, as output to a full disk is; the child's later writes
                // still try.
                let sink: Output = Arc::new(move |data: &[u8]| {
                    let _ = writer.lock().write(writer.ino, None, data);
                });
                Ok((sink, None))
            }
            _ => Err(Errno::BADF),
        }
    }
}

/// A file of the dyno's filesystem held open (so it outlives the caller's descriptor): read from its start, as a child's
/// stdin, or appended to, as its stdout or stderr.
struct OpenFile {
    fs: Arc<Mutex<Fs>>,
    ino: Ino,
    pos: u64,
}

impl OpenFile {
    fn new(fs: Arc<Mutex<Fs>>, ino: Ino) -> OpenFile {
        fs.lock().unwrap_or_else(|p| p.into_inner()).retain(ino);
        OpenFile { fs, ino, pos: 0 }
    }

    fn lock(&self) -> MutexGuard<'_, Fs> {
        self.fs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::io::Read for OpenFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self
            .lock()
            .read(self.ino, self.pos, buf)
            .map_err(std::io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        let ino = self.ino;
        self.lock().release(ino);
    }
}

/// Links `wasmdyno.spawn`.
pub(super) fn add_to_linker<T: P1View>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "wasmdyno",
        "spawn",
        |mut caller: Caller<'_, T>,
         (argv, argv_len, env, env_len, stdin, stdout, stderr, status): (
            u32,
            u32,
            u32,
            u32,
            u32,
            u32,
            u32,
            u32,
        )| {
            Box::new(async move {
                let asked = link::with_ctx(&mut caller, |ctx, mem| {
                    ctx.child(
                        mem,
                        (argv, argv_len),
                        (env, env_len),
                        [stdin, stdout, stderr],
                    )
                })?;
                let (commands, child) = match asked {
                    Ok(asked) => asked,
                    Err(e) => return Ok(i32::from(e.0)),
                };
                // Waits holding neither the context nor guest memory.
                let code = match commands.run(child).await {
                    Ok(code) => code,
                    Err(SpawnError::NoSuchModule) => return Ok(i32::from(Errno::NOENT.0)),
                    Err(SpawnError::TooDeep) => return Ok(i32::from(Errno::AGAIN.0)),
                    Err(SpawnError::Failed) => 126,
                };
                link::errno(link::with_ctx(&mut caller, |_, mem| {
                    mem.write(status, &code.to_le_bytes())
                }))
            })
        },
    )?;
    Ok(())
}
