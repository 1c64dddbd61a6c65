//! Our own `wasi_snapshot_preview1` host for core modules (what `wasm32-wasip1` Rust and Go emit), over the
//! dyno's in-memory filesystem ([`super::vfs`]).
//!
//! Descriptors: 0, 1 and 2 are the standard streams; 3 is the preopened root `/` (the app tree, also the working
//! directory). A web dyno that listens also has its listener at [`LISTEN_FD`] (4), whose `fd_prestat_get` answers
//! `EBADF` so that libc's preopen scan stops there. Every function of the preview-1 ABI is linked. This one answers
//! `ENOTSUP`, on purpose:
//! - `proc_raise`: preview 1 has no signal model (it was removed from later snapshots); a guest exits with
//!   `proc_exit`.
//!
//! Sockets ([`super::net`]): `sock_accept` on the listener gives a connected socket; `sock_recv`, `sock_send`,
//! `sock_shutdown`, `fd_read`, `fd_write` and `poll_oneoff` work on it, blocking or not (`FDFLAGS_NONBLOCK`,
//! answering `EAGAIN`). The listener starts non-blocking, as Go's runtime needs it (see [`P1Ctx::with_listener`]).
//! Reading a connection whose peer closed gives 0 bytes; writing to one gives `EPIPE`. `sock_*` on descriptors
//! that are not sockets answer `ENOTSOCK`, and those that need a connection answer `ENOTCONN` on the listener, as
//! POSIX does.
//!
//! A bad pointer, length or descriptor from the guest gets `EFAULT`, `EINVAL` or `EBADF`; nothing a guest passes
//! can make the host panic. Calls that wait (reading stdin or a socket, writing a socket, `sock_accept`,
//! `poll_oneoff`, `sched_yield`) are async, so a waiting dyno holds no runtime thread.

mod abi;
mod fd;
mod io;
mod link;
mod path;
mod poll;
mod sock;
mod spawn;
// The tests write their guests in WAT, which the `platform` feature brings.
#[cfg(all(test, feature = "platform"))]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::net::{self, GuestListener, GuestSocket, Listener, RecvFlags, SocketRef};
use super::stdio::{Credit, Input, Output};
use super::vfs::{self, Fs, Ino, OpenFlags, SetTime};
use abi::{Errno, Mem, rights};
use io::*;
pub use link::add_to_linker;
use poll::*;
pub use spawn::{Child, Commands, SpawnError};

const MODULE: &str = "wasi_snapshot_preview1";

/// Most descriptors one dyno may hold open.
const MAX_FDS: usize = 4096;

/// The most subscriptions one `poll_oneoff` takes: one per descriptor the guest may have, and a clock.
const MAX_SUBSCRIPTIONS: u32 = MAX_FDS as u32 + 1;

/// The descriptor of a web dyno's listener, announced to the guest as `WASMDYNO_LISTEN_FD`.
pub const LISTEN_FD: u32 = 4;

/// The preview-1 state of one instance.
pub struct P1Ctx {
    args: Vec<String>,
    env: Vec<String>,
    fds: BTreeMap<u32, Desc>,
    fs: Arc<Mutex<Fs>>,
    stdin: Input,
    started: Instant,
    /// What `wasmdyno.spawn` starts, if this guest may start modules (see [`spawn`]).
    commands: Option<Arc<dyn Commands>>,
}

/// Gives the linker's host functions their state.
pub trait P1View: Send + 'static {
    fn p1(&mut self) -> &mut P1Ctx;
}

enum Desc {
    Stdin {
        flags: u16,
    },
    /// Stdout or stderr; with `credit`, writes wait for the reader (see [`Credit`]).
    Out {
        sink: Output,
        flags: u16,
        credit: Option<Credit>,
    },
    File(FileDesc),
    Dir(DirDesc),
    Listener {
        listener: GuestListener,
        flags: u16,
    },
    Socket {
        socket: GuestSocket,
        flags: u16,
    },
}

struct FileDesc {
    ino: Ino,
    pos: u64,
    flags: u16,
    base: u64,
    inheriting: u64,
}

struct DirDesc {
    ino: Ino,
    /// The name a preopened directory is announced under.
    preopen: Option<String>,
    base: u64,
    inheriting: u64,
}

impl P1Ctx {
    /// A context with `argv` and `env`, the standard streams, and `/` preopened at fd 3.
    pub fn new(
        args: Vec<String>,
        env: impl IntoIterator<Item = (String, String)>,
        fs: Arc<Mutex<Fs>>,
        stdin: Input,
        stdout: Output,
        stderr: Output,
    ) -> P1Ctx {
        let mut fds = BTreeMap::new();
        fds.insert(0, Desc::Stdin { flags: 0 });
        fds.insert(
            1,
            Desc::Out {
                sink: stdout,
                flags: abi::FDFLAGS_APPEND,
                credit: None,
            },
        );
        fds.insert(
            2,
            Desc::Out {
                sink: stderr,
                flags: abi::FDFLAGS_APPEND,
                credit: None,
            },
        );
        fs.lock().expect("fs lock").retain(vfs::ROOT);
        fds.insert(
            3,
            Desc::Dir(DirDesc {
                ino: vfs::ROOT,
                preopen: Some("/".into()),
                base: rights::DIRECTORY,
                inheriting: rights::DIRECTORY | rights::FILE,
            }),
        );
        P1Ctx {
            args,
            env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            fds,
            fs,
            stdin,
            started: Instant::now(),
            commands: None,
        }
    }

    /// The descriptors open now (a snapshot of the instance cannot carry one opened since it began).
    pub(crate) fn descriptors(&self) -> Vec<u32> {
        self.fds.keys().copied().collect()
    }

    /// Makes the writes to `fd` (1 or 2) wait for `credit` (a CGI response's reader, or the dyno's log rate).
    pub(crate) fn with_output_credit(mut self, fd: u32, credit: Option<Credit>) -> P1Ctx {
        if let Some(Desc::Out { credit: slot, .. }) = self.fds.get_mut(&fd) {
            *slot = credit;
        }
        self
    }

    /// Puts `listener` at [`LISTEN_FD`].
    ///
    /// It starts non-blocking, as listeners handed to wasmtime's `--tcplisten` guests do: Go's `os.NewFile` only
    /// polls a descriptor that already is non-blocking, and a blocking `sock_accept` would stall every goroutine
    /// of the program (wasm has one thread). A server that wants blocking accepts clears the flag (Rust:
    /// `TcpListener::set_nonblocking(false)`).
    pub fn with_listener(mut self, listener: &Listener) -> P1Ctx {
        let desc = Desc::Listener {
            listener: listener.attach(),
            flags: abi::FDFLAGS_NONBLOCK,
        };
        if let Some(old) = self.fds.insert(LISTEN_FD, desc) {
            self.close_desc(old);
        }
        self
    }

    fn fs(&self) -> MutexGuard<'_, Fs> {
        // A panic while holding the lock would be a host bug; the filesystem itself stays consistent.
        self.fs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn desc(&self, fd: u32) -> abi::Result<&Desc> {
        self.fds.get(&fd).ok_or(Errno::BADF)
    }

    fn file(&mut self, fd: u32) -> abi::Result<&mut FileDesc> {
        match self.fds.get_mut(&fd) {
            Some(Desc::File(file)) => Ok(file),
            Some(Desc::Dir(_)) => Err(Errno::ISDIR),
            Some(_) => Err(Errno::SPIPE),
            None => Err(Errno::BADF),
        }
    }

    fn dir(&self, fd: u32) -> abi::Result<&DirDesc> {
        match self.fds.get(&fd) {
            Some(Desc::Dir(dir)) => Ok(dir),
            Some(_) => Err(Errno::NOTDIR),
            None => Err(Errno::BADF),
        }
    }

    fn dir_ino(&self, fd: u32) -> abi::Result<Ino> {
        Ok(self.dir(fd)?.ino)
    }

    /// The connection behind `fd`, and whether it is non-blocking.
    fn socket(&self, fd: u32) -> abi::Result<(&SocketRef, bool)> {
        match self.desc(fd)? {
            Desc::Socket { socket, flags } => Ok((socket.handle(), nonblocking(*flags))),
            Desc::Listener { .. } => Err(Errno::NOTCONN),
            _ => Err(Errno::NOTSOCK),
        }
    }

    /// The lowest free descriptor number, as POSIX allocates them.
    fn insert(&mut self, desc: Desc) -> abi::Result<u32> {
        if self.fds.len() >= MAX_FDS {
            return Err(Errno::MFILE);
        }
        let fd = (0..)
            .zip(self.fds.keys())
            .find(|(want, have)| want != *have)
            .map_or(self.fds.len() as u32, |(want, _)| want);
        self.fds.insert(fd, desc);
        Ok(fd)
    }

    fn close_desc(&mut self, desc: Desc) {
        match desc {
            Desc::File(FileDesc { ino, .. }) | Desc::Dir(DirDesc { ino, .. }) => {
                self.fs().release(ino)
            }
            _ => {}
        }
    }

    // ---- args, environment, clocks, randomness

    fn strings_sizes(strings: &[String], mem: &mut Mem, count: u32, size: u32) -> abi::Result<()> {
        let bytes: usize = strings.iter().map(|s| s.len() + 1).sum();
        mem.put_u32(count, strings.len() as u32)?;
        mem.put_u32(size, bytes as u32)
    }

    fn strings_get(strings: &[String], mem: &mut Mem, ptrs: u32, buf: u32) -> abi::Result<()> {
        let mut at = buf;
        for (i, s) in strings.iter().enumerate() {
            mem.put_u32(ptrs.checked_add(i as u32 * 4).ok_or(Errno::FAULT)?, at)?;
            mem.write(at, s.as_bytes())?;
            let end = at.checked_add(s.len() as u32).ok_or(Errno::FAULT)?;
            mem.put_u8(end, 0)?;
            at = end + 1;
        }
        Ok(())
    }

    fn now(&self, clock: u32) -> abi::Result<u64> {
        match clock {
            abi::CLOCK_REALTIME => Ok(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64),
            abi::CLOCK_MONOTONIC => Ok(monotonic_now()),
            // A dyno's CPU time is approximated by its wall time since it started.
            abi::CLOCK_PROCESS_CPUTIME | abi::CLOCK_THREAD_CPUTIME => {
                Ok(self.started.elapsed().as_nanos() as u64)
            }
            _ => Err(Errno::INVAL),
        }
    }
}

impl Drop for P1Ctx {
    fn drop(&mut self) {
        let descs = std::mem::take(&mut self.fds);
        for desc in descs.into_values() {
            self.close_desc(desc);
        }
    }
}

pub(super) fn io_errno(err: std::io::Error) -> Errno {
    match err.kind() {
        std::io::ErrorKind::WouldBlock => Errno::AGAIN,
        std::io::ErrorKind::BrokenPipe => Errno::PIPE,
        _ => Errno::IO,
    }
}

pub(super) fn nonblocking(flags: u16) -> bool {
    flags & abi::FDFLAGS_NONBLOCK != 0
}

/// The filestat of a stream: a character device or a socket, with no size or times.
pub(super) fn stream_filestat(filetype: u8) -> [u8; 64] {
    let mut raw = [0u8; 64];
    raw[16] = filetype;
    raw[24..32].copy_from_slice(&1u64.to_le_bytes());
    raw
}

pub(super) fn monotonic_now() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // Offset so that no guest sees 0, which some treat as "unset".
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1_000_000_000
}

pub(super) fn filestat_bytes(stat: &vfs::Stat) -> [u8; 64] {
    let mut raw = [0u8; 64];
    raw[0..8].copy_from_slice(&1u64.to_le_bytes()); // one device: the dyno's filesystem
    raw[8..16].copy_from_slice(&stat.ino.to_le_bytes());
    raw[16] = abi::filetype(stat.kind);
    raw[24..32].copy_from_slice(&stat.nlink.to_le_bytes());
    raw[32..40].copy_from_slice(&stat.size.to_le_bytes());
    raw[40..48].copy_from_slice(&stat.atime.to_le_bytes());
    raw[48..56].copy_from_slice(&stat.mtime.to_le_bytes());
    raw[56..64].copy_from_slice(&stat.ctime.to_le_bytes());
    raw
}

pub(super) fn set_times(atim: u64, mtim: u64, fst: u16) -> abi::Result<(SetTime, SetTime)> {
    let pick = |set: u16, now: u16, at: u64| match (fst & set != 0, fst & now != 0) {
        (true, true) => Err(Errno::INVAL),
        (true, false) => Ok(SetTime::At(at)),
        (false, true) => Ok(SetTime::Now),
        (false, false) => Ok(SetTime::Keep),
    };
    if fst & !(abi::FST_ATIM | abi::FST_ATIM_NOW | abi::FST_MTIM | abi::FST_MTIM_NOW) != 0 {
        return Err(Errno::INVAL);
    }
    Ok((
        pick(abi::FST_ATIM, abi::FST_ATIM_NOW, atim)?,
        pick(abi::FST_MTIM, abi::FST_MTIM_NOW, mtim)?,
    ))
}
