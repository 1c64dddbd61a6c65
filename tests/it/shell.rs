//! `wasmdyno run bash`: the built-in shell in a one-off dyno, typed at through a real pseudo-terminal, locally
//! (`run --slug`) and attached to a server's dyno (`run -a`): builtins, pipes, redirections, the working
//! directory, and the slug's own modules run as commands in the same dyno.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

const PROMPT: &str = "~ $ ";
const WITHIN: Duration = Duration::from_secs(30);

/// A program running on a pseudo-terminal: what it printed so far, and its keyboard.
struct Pty {
    master: std::fs::File,
    chunks: mpsc::Receiver<Vec<u8>>,
    child: std::process::Child,
    /// Output (`\r\n` made `\n`) not yet consumed by [`Pty::expect`].
    unread: String,
}

impl Pty {
    fn spawn(mut command: Command) -> Pty {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors it opened into the two integers.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are ours alone from here on.
        let (master, slave) = unsafe {
            (
                std::fs::File::from_raw_fd(master),
                OwnedFd::from_raw_fd(slave),
            )
        };
        command
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        let child = command.spawn().unwrap();
        drop(command);
        let (send, chunks) = mpsc::channel();
        let mut reader = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Reading the master fails (EIO) once the program and its terminal are gone.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if send.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Pty {
            master,
            chunks,
            child,
            unread: String::new(),
        }
    }

    /// Waits until the terminal shows `text`; returns what it showed before it, and consumes both.
    fn expect(&mut self, text: &str) -> String {
        let end = Instant::now() + WITHIN;
        loop {
            if let Some(at) = self.unread.find(text) {
                let before = self.unread[..at].to_string();
                self.unread.drain(..at + text.len());
                return before;
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.unread += &String::from_utf8_lossy(&chunk).replace("\r\n", "\n"),
                Err(_) => panic!(
                    "the terminal never showed {text:?}; it shows:\n{}",
                    self.unread
                ),
            }
        }
    }

    /// Types `line` and Enter, then returns what the command printed up to the next prompt (the terminal's echo
    /// of the line left out).
    fn command(&mut self, line: &str) -> String {
        self.command_then(line, PROMPT)
    }

    /// [`Pty::command`] for a command after which the prompt is `prompt`.
    fn command_then(&mut self, line: &str, prompt: &str) -> String {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        self.expect(&format!("{line}\n"));
        self.expect(prompt)
    }

    fn exit_status(mut self, line: &str) -> i32 {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        let end = Instant::now() + WITHIN;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed");
            }
            assert!(
                Instant::now() < end,
                "the shell did not exit after {line:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One session's worth of typing, the same wherever the shell runs; `dyno` is the prefix of its `$DYNO`.
fn a_session(mut shell: Pty, dyno: &str) {
    shell.expect(PROMPT);
    // Builtins and pipes between them.
    assert_eq!(shell.command("echo one two | wc -w").trim(), "2");
    let listing = shell.command("ls");
    assert!(listing.lines().any(|l| l == "probe.wasm"), "{listing}");
    // A module of the slug, with arguments, its output piped into a builtin.
    assert_eq!(
        shell.command("probe args one 'two words' | wc -l").trim(),
        "4"
    );
    assert_eq!(
        shell.command("probe args one 'two words' | tail -n 1"),
        "two words\n"
    );
    // Redirections, files in the dyno's filesystem, and a module reading them on its stdin.
    shell.command("mkdir -p /tmp/work && echo hello from bash > /tmp/work/greeting");
    assert_eq!(
        shell.command("probe cat < /tmp/work/greeting"),
        "hello from bash\n"
    );
    assert_eq!(
        shell
            .command("cat /tmp/work/greeting | probe cat | wc -c")
            .trim(),
        "16"
    );
    // A module's output redirected into a file the shell then reads.
    shell.command("probe args saved > /tmp/work/args.txt");
    assert_eq!(
        shell.command("head -n 2 /tmp/work/args.txt"),
        "probe.wasm\nargs\n"
    );
    // The environment a module gets is the dyno's.
    let env = shell.command("probe env | grep DYNO=");
    assert!(env.starts_with(&format!("DYNO={dyno}")), "{env}");
    // The working directory, and a command that fails.
    let in_work = "/tmp/work $ ";
    assert_eq!(
        shell.command_then("cd /tmp/work && pwd", in_work),
        "/tmp/work\n"
    );
    assert_eq!(shell.command_then("ls", in_work), "args.txt\ngreeting\n");
    assert_eq!(shell.command("cd"), "");
    let missing = shell.command("nosuch; echo status=$?");
    assert!(missing.contains("nosuch: command not found"), "{missing}");
    assert!(missing.ends_with("status=127\n"), "{missing}");
    assert_eq!(
        shell.command("probe exit 9 || echo failed with $?"),
        "failed with 9\n"
    );
    let trapped = shell.command("probe trap; echo status=$?");
    assert!(trapped.contains("trapped"), "{trapped}");
    assert!(trapped.ends_with("status=134\n"), "{trapped}");
    assert_eq!(shell.exit_status("exit 3"), 3);
}

#[test]
fn bash_in_a_local_one_off_dyno() {
    let env = TestEnv::new();
    let slug = probe_slug().to_str().unwrap();
    let mut command = env.cmd(&["run", "--slug", slug, "bash"]);
    command.env("TERM", "xterm");
    a_session(Pty::spawn(command), "run.");

    // Not at a terminal: one command line, its status passed through.
    let out = env.run(&[
        "run",
        "--slug",
        slug,
        "sh",
        "-c",
        "probe args x | wc -l; exit 5",
    ]);
    assert_eq!(out.code, Some(5), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "3");
    // From an app's directory, built first.
    let dir = env.path("shell-app");
    probe_app(&dir, "worker: probe.wasm args\n");
    let line = "ls *.wasm; probe args y | tail -n 1";
    let out = env.run(&["run", "--dir", dir.to_str().unwrap(), "bash", "-c", line]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "probe.wasm\ny\n");
}

#[test]
fn bash_attached_to_a_one_off_dyno_of_a_servers_app() {
    let server = Server::start();
    let dir = server.env.path("shelly-src");
    probe_app(&dir, "worker: probe.wasm args\n");
    server.cli(&["apps:create", "shelly"]).ok();
    server
        .cli(&["deploy", "-a", "shelly", dir.to_str().unwrap()])
        .ok();
    let command = server.env.cmd(&["run", "-a", "shelly", "bash"]);
    a_session(Pty::spawn(command), "run.");

    // A shell dyno's files are its own: another one starts from the slug again.
    let out = server.cli(&["run", "-a", "shelly", "sh", "-c", "ls /tmp | wc -l"]);
    assert_eq!(out.stdout.trim(), "0", "{}", out.stderr);
}
