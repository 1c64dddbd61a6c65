//! wasmdyno's shell: what `wasmdyno run bash` (or `sh`) starts in a one-off dyno, over the release's ephemeral
//! filesystem. Builtins (`ls`, `cd`, `cat`, `head`, `tail`, `wc`, `grep`, `env`, `echo`, `mkdir`, `rm`, `cp`,
//! `mv`, `exit N`, ...) run here; any other command is a module of the app's slug, which wasmdyno runs in the same
//! dyno (same filesystem, same memory quota) through its `wasmdyno.spawn` import, and waits for.
//!
//! Its rooms: `parse` (command lines), `glob` (wildcards), `builtins`, `spawn` (the slug's modules).
//!
//! Pipes run their stages one after the other: a builtin's output is kept in memory, a module's in a file under
//! `/tmp`, and the next stage reads it. Lines come from `-c COMMAND`, a script file, or standard input (read a
//! byte at a time, so a module started from the prompt reads exactly what follows its line).

mod builtins;
mod glob;
mod parse;
mod spawn;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::path::PathBuf;

use builtins::{Io, Source, describe};
use glob::{escape_glob, glob};
use parse::{ParseError, Piece, RedirectKind, Stage, Then, Word};

const USAGE: &str = "usage: bash [-c COMMAND [NAME [ARG...]] | SCRIPT [ARG...]]";

/// A descriptor of ours, used without closing it.
fn fd(n: i32) -> ManuallyDrop<File> {
    // SAFETY: 0, 1 and 2 are the standard streams, open for the program's whole life; ManuallyDrop never closes
    // them.
    ManuallyDrop::new(unsafe { File::from_raw_fd(n) })
}

/// Standard input, unbuffered: what the shell does not read stays for the commands it starts.
pub fn stdin() -> ManuallyDrop<File> {
    fd(0)
}

struct Shell {
    vars: BTreeMap<String, String>,
    exported: std::collections::BTreeSet<String>,
    args: Vec<String>,
    status: i32,
    pipes: u32,
}

/// Where a stage's output goes.
enum Sink {
    /// The shell's own stream (1 or 2).
    Inherit,
    /// A file, truncated or appended to.
    File { path: PathBuf, append: bool },
    /// Into the next stage of the pipeline.
    Capture,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let mut shell = Shell {
        vars: std::env::vars().collect(),
        exported: std::env::vars().map(|(k, _)| k).collect(),
        args: vec![argv.first().cloned().unwrap_or_else(|| "bash".into())],
        status: 0,
        pipes: 0,
    };
    match argv.get(1).map(String::as_str) {
        Some("-c") => {
            let Some(command) = argv.get(2) else {
                eprintln!("bash: -c: option requires an argument\n{USAGE}");
                std::process::exit(2);
            };
            if argv.len() > 3 {
                shell.args = argv[3..].to_vec();
            }
            shell.run_text(command);
        }
        Some("-h" | "--help") => println!("{USAGE}"),
        Some(script) => {
            let text = match fs::read_to_string(script) {
                Ok(text) => text,
                Err(e) => {
                    eprintln!("bash: {script}: {e}");
                    std::process::exit(127);
                }
            };
            shell.args = argv[1..].to_vec();
            shell.run_text(&text);
        }
        None => shell.interactive(),
    }
    shell.exit(shell.status);
}

impl Shell {
    fn exit(&self, status: i32) -> ! {
        let _ = io::stdout().flush();
        std::process::exit(status)
    }

    /// Reads lines from standard input until its end, with a prompt on standard error (as bash has it).
    fn interactive(&mut self) {
        let mut pending = String::new();
        loop {
            let prompt = match pending.is_empty() {
                true => format!("{} $ ", self.short_cwd()),
                false => "> ".into(),
            };
            let _ = io::stderr().write_all(prompt.as_bytes());
            let Some(line) = read_line() else {
                if !pending.is_empty() {
                    eprintln!("bash: syntax error: unexpected end of input");
                    self.status = 2;
                }
                return;
            };
            pending.push_str(&line);
            pending.push('\n');
            match parse::parse(&pending) {
                Err(ParseError::Incomplete) => continue,
                Err(ParseError::Syntax(why)) => {
                    eprintln!("bash: {why}");
                    self.status = 2;
                }
                Ok(list) => self.run_list(list),
            }
            pending.clear();
        }
    }

    fn run_text(&mut self, text: &str) {
        match parse::parse(text) {
            Ok(list) => self.run_list(list),
            Err(ParseError::Incomplete) => {
                eprintln!("bash: syntax error: unexpected end of input");
                self.status = 2;
            }
            Err(ParseError::Syntax(why)) => {
                eprintln!("bash: {why}");
                self.status = 2;
            }
        }
    }

    /// `~` at home, else the working directory.
    fn short_cwd(&self) -> String {
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let home = self.vars.get("HOME").map(String::as_str).unwrap_or("/");
        match cwd.strip_prefix(home) {
            Some("") => "~".into(),
            Some(rest) if home != "/" && rest.starts_with('/') => format!("~{rest}"),
            _ => cwd,
        }
    }

    fn run_list(&mut self, list: parse::List) {
        for (then, stages) in list {
            let go = match then {
                Then::Always => true,
                Then::IfOk => self.status == 0,
                Then::IfFailed => self.status != 0,
            };
            if go {
                self.status = self.run_pipeline(&stages);
                let _ = io::stdout().flush();
            }
        }
    }

    fn lookup(&self, name: &str) -> String {
        match name {
            "?" => self.status.to_string(),
            "#" => self.args.len().saturating_sub(1).to_string(),
            _ if name.len() == 1 && name.as_bytes()[0].is_ascii_digit() => self
                .args
                .get(usize::from(name.as_bytes()[0] - b'0'))
                .cloned()
                .unwrap_or_default(),
            _ => self.vars.get(name).cloned().unwrap_or_default(),
        }
    }

    /// A word's text with its variables in, and the glob patterns its unquoted text makes (`*.wasm`) matched
    /// against the filesystem; a pattern that matches nothing stays as written, as bash leaves it.
    fn expand(&self, word: &Word) -> Vec<String> {
        let mut text = String::new();
        let mut pattern = String::new();
        let mut globbing = false;
        for piece in word {
            match piece {
                Piece::Text { text: t, quoted } => {
                    text.push_str(t);
                    if *quoted {
                        pattern.push_str(&escape_glob(t));
                    } else {
                        globbing |= t.contains(['*', '?']);
                        pattern.push_str(t);
                    }
                }
                Piece::Var(name) => {
                    let value = self.lookup(name);
                    pattern.push_str(&escape_glob(&value));
                    text.push_str(&value);
                }
            }
        }
        if globbing {
            let matches = glob(&pattern);
            if !matches.is_empty() {
                return matches;
            }
        }
        vec![text]
    }

    fn expand_one(&self, word: &Word) -> Result<String, String> {
        let mut all = self.expand(word);
        match all.len() {
            1 => Ok(all.remove(0)),
            _ => Err(format!("{}: ambiguous redirect", all.join(" "))),
        }
    }

    fn run_pipeline(&mut self, stages: &[Stage]) -> i32 {
        let mut input = Source::Stdin;
        let mut temporary: Vec<PathBuf> = Vec::new();
        let mut status = 0;
        for (i, stage) in stages.iter().enumerate() {
            let last = i + 1 == stages.len();
            let (result, next) = self.run_stage(stage, input, last, &mut temporary);
            status = match result {
                Ok(status) => status,
                Err(why) => {
                    eprintln!("bash: {why}");
                    1
                }
            };
            input = next;
        }
        for path in temporary {
            let _ = fs::remove_file(path);
        }
        status
    }

    /// Runs one stage with `input`; returns its status and what the next stage reads.
    fn run_stage(
        &mut self,
        stage: &Stage,
        mut input: Source,
        last: bool,
        temporary: &mut Vec<PathBuf>,
    ) -> (Result<i32, String>, Source) {
        let mut out = if last { Sink::Inherit } else { Sink::Capture };
        let mut err = Sink::Inherit;
        for redirect in &stage.redirects {
            let path = match self.expand_one(&redirect.target) {
                Ok(path) => PathBuf::from(path),
                Err(why) => return (Err(why), Source::Bytes(vec![])),
            };
            match redirect.kind {
                RedirectKind::In => input = Source::File(path),
                RedirectKind::Out => {
                    out = Sink::File {
                        path,
                        append: false,
                    }
                }
                RedirectKind::Append => out = Sink::File { path, append: true },
                RedirectKind::Err => {
                    err = Sink::File {
                        path,
                        append: false,
                    }
                }
                RedirectKind::ErrAppend => err = Sink::File { path, append: true },
            }
        }
        let mut words: Vec<String> = stage.words.iter().flat_map(|w| self.expand(w)).collect();
        // `NAME=value` words before the command: for that command alone, or for the shell if nothing follows.
        let assignments = words.iter().take_while(|w| assignment(w).is_some()).count();
        let scoped: Vec<(String, String)> = words
            .drain(..assignments)
            .filter_map(|w| assignment(&w).map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        if words.is_empty() {
            self.vars.extend(scoped);
            return (Ok(0), Source::Bytes(vec![]));
        }
        if let Some(status) = self.run_special(&words) {
            return (status, Source::Bytes(vec![]));
        }
        if let Some(builtin) = builtins::find(&words[0]) {
            return self.run_builtin(builtin, &words[1..], input, out, err, stage.err_to_out);
        }
        let mut env = self.environment();
        env.extend(scoped);
        self.run_module(&words, &env, input, out, err, stage.err_to_out, temporary)
    }

    fn environment(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self
            .vars
            .iter()
            .filter(|(k, _)| self.exported.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Ok(cwd) = std::env::current_dir() {
            env.insert("PWD".into(), cwd.display().to_string());
        }
        env
    }

    /// The builtins that change the shell itself: `cd`, `export`, `unset`, `exit`, `env`, `help`.
    fn run_special(&mut self, words: &[String]) -> Option<Result<i32, String>> {
        let args = &words[1..];
        let status = match words[0].as_str() {
            "cd" => {
                let home = self.lookup("HOME");
                let to = args
                    .first()
                    .map(String::as_str)
                    .unwrap_or(&home)
                    .to_string();
                let to = if to == "-" { self.lookup("OLDPWD") } else { to };
                let before = std::env::current_dir().map(|d| d.display().to_string());
                match std::env::set_current_dir(&to) {
                    Ok(()) => {
                        if let Ok(before) = before {
                            self.vars.insert("OLDPWD".into(), before);
                        }
                        0
                    }
                    Err(e) => return Some(Err(format!("cd: {to}: {}", describe(&e)))),
                }
            }
            "export" => {
                for arg in args {
                    let name = match assignment(arg) {
                        Some((name, value)) => {
                            self.vars.insert(name.into(), value.into());
                            name
                        }
                        None if parse::is_name(arg) => arg,
                        None => {
                            return Some(Err(format!("export: `{arg}': not a valid identifier")));
                        }
                    };
                    self.exported.insert(name.to_string());
                }
                0
            }
            "unset" => {
                for arg in args {
                    self.vars.remove(arg);
                    self.exported.remove(arg);
                }
                0
            }
            "env" | "printenv" => {
                let mut out = io::stdout().lock();
                for (k, v) in self.environment() {
                    if args.is_empty() || args.contains(&k) {
                        let _ = writeln!(
                            out,
                            "{}",
                            if args.is_empty() {
                                format!("{k}={v}")
                            } else {
                                v
                            }
                        );
                    }
                }
                0
            }
            "exit" => match args.first().map(|a| a.parse::<i32>()) {
                None => self.exit(self.status),
                Some(Ok(code)) => self.exit(code & 0xff),
                Some(Err(_)) => {
                    eprintln!("bash: exit: {}: numeric argument required", args[0]);
                    self.exit(2)
                }
            },
            "help" => {
                println!(
                    "Builtins: cd [DIR], env, export NAME[=VALUE], unset NAME, exit [N], help, and:"
                );
                for (_, _, usage) in builtins::BUILTINS {
                    println!("  {usage}");
                }
                println!(
                    "Any other command runs a module of the app's slug (app, app.wasm, ./bin/tool.wasm)."
                );
                println!(
                    "Pipes (|), redirections (<, >, >>, 2>, 2>&1), ;, && and || work as in bash."
                );
                0
            }
            _ => return None,
        };
        Some(Ok(status))
    }

    fn run_builtin(
        &mut self,
        builtin: fn(&[String], &mut Io) -> io::Result<i32>,
        args: &[String],
        input: Source,
        out: Sink,
        err: Sink,
        err_to_out: bool,
    ) -> (Result<i32, String>, Source) {
        let mut captured = Vec::new();
        let mut out_file = match open_sink(&out) {
            Ok(file) => file,
            Err(why) => return (Err(why), Source::Bytes(vec![])),
        };
        let mut err_file = match open_sink(&err) {
            Ok(file) => file,
            Err(why) => return (Err(why), Source::Bytes(vec![])),
        };
        let mut stdout = io::BufWriter::new(io::stdout().lock());
        let mut stderr = io::stderr().lock();
        let out_writer: &mut dyn Write = match (&out, out_file.as_mut()) {
            (_, Some(file)) => file,
            (Sink::Capture, None) => &mut captured,
            _ => &mut stdout,
        };
        // Errors wait until the output is out, so a terminal shows them after it; `2>&1` puts them in the output.
        let mut errors = Vec::new();
        let result = {
            let err_writer: &mut dyn Write = match err_file.as_mut() {
                Some(file) if !err_to_out => file,
                _ => &mut errors,
            };
            builtin(
                args,
                &mut Io {
                    input,
                    out: &mut *out_writer,
                    err: err_writer,
                },
            )
        };
        if err_to_out {
            let _ = out_writer.write_all(&errors);
            errors.clear();
        }
        let _ = stdout.flush();
        drop(stdout);
        let _ = stderr.write_all(&errors);
        let status = match result {
            Ok(status) => Ok(status),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(141),
            Err(e) => Err(describe(&e)),
        };
        (status, Source::Bytes(captured))
    }

    /// A new file for a pipe, under `/tmp`, removed when the pipeline ends.
    fn temporary(&mut self, temporary: &mut Vec<PathBuf>) -> io::Result<PathBuf> {
        fs::create_dir_all("/tmp")?;
        self.pipes += 1;
        let path = PathBuf::from(format!("/tmp/.wasmdyno-sh-pipe-{}", self.pipes));
        temporary.push(path.clone());
        Ok(path)
    }
}

fn open_sink(sink: &Sink) -> Result<Option<File>, String> {
    match sink {
        Sink::File { path, append } => fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(*append)
            .truncate(!*append)
            .open(path)
            .map(Some)
            .map_err(|e| format!("{}: {}", path.display(), describe(&e))),
        _ => Ok(None),
    }
}

fn assignment(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once('=')?;
    parse::is_name(name).then_some((name, value))
}

/// One line of standard input without its newline, read a byte at a time; `None` at its end.
fn read_line() -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let mut input = stdin();
    loop {
        match input.read(&mut byte) {
            Ok(0) if line.is_empty() => return None,
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}
