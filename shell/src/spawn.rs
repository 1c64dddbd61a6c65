//! The commands that are not builtins: modules of the app's slug, which wasmdyno starts in the shell's own dyno
//! (same filesystem, same memory quota) through its `wasmdyno.spawn` import, and the shell waits for.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use crate::builtins::{Source, describe};
use crate::{Shell, Sink, open_sink};

mod host {
    #[link(wasm_import_module = "wasmdyno")]
    unsafe extern "C" {
        /// Runs the slug's module named by `argv` (NUL-terminated strings, back to back) with `env` (`KEY=VALUE`,
        /// the same way) and the caller's descriptors `stdin`, `stdout`, `stderr` as its standard streams; writes
        /// its exit status to `status`. Returns a WASI errno: `NOENT` when the slug has no such module.
        pub fn spawn(
            argv: *const u8,
            argv_len: usize,
            env: *const u8,
            env_len: usize,
            stdin: u32,
            stdout: u32,
            stderr: u32,
            status: *mut i32,
        ) -> u16;
    }
}

const ERRNO_NOENT: u16 = 44;
const ERRNO_NOSYS: u16 = 52;
const ERRNO_AGAIN: u16 = 6;

impl Shell {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_module(
        &mut self,
        words: &[String],
        env: &BTreeMap<String, String>,
        input: Source,
        out: Sink,
        err: Sink,
        err_to_out: bool,
        temporary: &mut Vec<PathBuf>,
    ) -> (Result<i32, String>, Source) {
        let name = words[0].clone();
        let stdin_file = match input {
            Source::Stdin => None,
            Source::File(path) => match File::open(&path) {
                Ok(file) => Some(file),
                Err(e) => {
                    return (
                        Err(format!("{}: {}", path.display(), describe(&e))),
                        Source::Bytes(vec![]),
                    );
                }
            },
            Source::Bytes(bytes) => match self.temporary(temporary).and_then(|path| {
                fs::write(&path, &bytes)?;
                File::open(&path)
            }) {
                Ok(file) => Some(file),
                Err(e) => {
                    return (
                        Err(format!("a pipe's file in /tmp: {}", describe(&e))),
                        Source::Bytes(vec![]),
                    );
                }
            },
        };
        let mut next = Source::Bytes(vec![]);
        let out = match out {
            Sink::Capture => match self.temporary(temporary) {
                Ok(path) => {
                    next = Source::File(path.clone());
                    Sink::File {
                        path,
                        append: false,
                    }
                }
                Err(e) => {
                    return (
                        Err(format!("a pipe's file in /tmp: {}", describe(&e))),
                        next,
                    );
                }
            },
            other => other,
        };
        let opened = open_sink(&out).and_then(|o| open_sink(&err).map(|e| (o, e)));
        let (out_file, err_file) = match opened {
            Ok(files) => files,
            Err(why) => return (Err(why), next),
        };
        let fd_of = |file: &Option<File>, default: u32| {
            file.as_ref().map_or(default, |f| f.as_raw_fd() as u32)
        };
        let stdin = fd_of(&stdin_file, 0);
        let stdout = fd_of(&out_file, 1);
        let stderr = if err_to_out {
            stdout
        } else {
            fd_of(&err_file, 2)
        };
        let _ = io::stdout().flush();
        let argv = nul_joined(words.iter().map(String::as_str));
        let env_lines: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let envp = nul_joined(env_lines.iter().map(String::as_str));
        let mut status = 0i32;
        // SAFETY: the pointers and lengths describe live buffers of ours; `status` is a live i32.
        let errno = unsafe {
            host::spawn(
                argv.as_ptr(),
                argv.len(),
                envp.as_ptr(),
                envp.len(),
                stdin,
                stdout,
                stderr,
                &mut status,
            )
        };
        let result = match errno {
            0 => Ok(status),
            ERRNO_NOENT => {
                eprintln!(
                    "bash: {name}: command not found (not a builtin, nor a module of the app's slug)"
                );
                Ok(127)
            }
            ERRNO_NOSYS => Err(format!(
                "{name}: this shell cannot start modules here (no wasmdyno.spawn)"
            )),
            ERRNO_AGAIN => Err(format!(
                "{name}: shells nested too deep to start another module"
            )),
            other => Err(format!("{name}: cannot start it (WASI errno {other})")),
        };
        (result, next)
    }
}

fn nul_joined<'a>(items: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for item in items {
        bytes.extend_from_slice(item.as_bytes());
        bytes.push(0);
    }
    bytes
}
