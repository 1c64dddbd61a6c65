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
        }
    }

    /// Makes stdout's writes wait for `credit` (a CGI response's reader).
    pub(crate) fn with_stdout_credit(mut self, credit: Credit) -> P1Ctx {
        if let Some(Desc::Out { credit: slot, .. }) = self.fds.get_mut(&1) {
            *slot = Some(credit);
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

    // ---- descriptors

    fn fd_fdstat_get(&self, mem: &mut Mem, fd: u32, out: u32) -> abi::Result<()> {
        let (filetype, flags, base, inheriting) = match self.desc(fd)? {
            Desc::Stdin { flags } => (abi::FILETYPE_CHARACTER_DEVICE, *flags, rights::STREAM, 0),
            Desc::Out { flags, .. } => (abi::FILETYPE_CHARACTER_DEVICE, *flags, rights::STREAM, 0),
            Desc::File(f) => (abi::FILETYPE_REGULAR_FILE, f.flags, f.base, f.inheriting),
            Desc::Dir(d) => (abi::FILETYPE_DIRECTORY, 0, d.base, d.inheriting),
            Desc::Socket { flags, .. } => (abi::FILETYPE_SOCKET_STREAM, *flags, rights::SOCKET, 0),
            Desc::Listener { flags, .. } => (
                abi::FILETYPE_SOCKET_STREAM,
                *flags,
                rights::LISTENER,
                rights::SOCKET,
            ),
        };
        let mut raw = [0u8; 24];
        raw[0] = filetype;
        raw[2..4].copy_from_slice(&flags.to_le_bytes());
        raw[8..16].copy_from_slice(&base.to_le_bytes());
        raw[16..24].copy_from_slice(&inheriting.to_le_bytes());
        mem.write(out, &raw)
    }

    fn fd_fdstat_set_flags(&mut self, fd: u32, flags: u16) -> abi::Result<()> {
        const KNOWN: u16 = abi::FDFLAGS_APPEND
            | abi::FDFLAGS_DSYNC
            | abi::FDFLAGS_NONBLOCK
            | abi::FDFLAGS_RSYNC
            | abi::FDFLAGS_SYNC;
        if flags & !KNOWN != 0 {
            return Err(Errno::INVAL);
        }
        match self.fds.get_mut(&fd).ok_or(Errno::BADF)? {
            Desc::Stdin { flags: f } | Desc::Out { flags: f, .. } => *f = flags,
            Desc::File(file) => file.flags = flags,
            // Directories have no flags to set.
            Desc::Dir(_) => return Err(Errno::BADF),
            // Sockets take only NONBLOCK, as other hosts' sockets do.
            Desc::Socket { flags: f, .. } | Desc::Listener { flags: f, .. } => {
                if flags & !abi::FDFLAGS_NONBLOCK != 0 {
                    return Err(Errno::INVAL);
                }
                *f = flags;
            }
        }
        Ok(())
    }

    fn fd_fdstat_set_rights(&mut self, fd: u32, base: u64, inheriting: u64) -> abi::Result<()> {
        let (have_base, have_inh) = match self.fds.get_mut(&fd).ok_or(Errno::BADF)? {
            Desc::File(f) => (&mut f.base, &mut f.inheriting),
            Desc::Dir(d) => (&mut d.base, &mut d.inheriting),
            // Streams keep their fixed rights; dropping some is accepted as a no-op.
            _ => return Ok(()),
        };
        // Rights can only be dropped, never gained.
        if base & !*have_base != 0 || inheriting & !*have_inh != 0 {
            return Err(Errno::NOTCAPABLE);
        }
        *have_base = base;
        *have_inh = inheriting;
        Ok(())
    }

    fn filestat(&self, ino: Ino) -> abi::Result<[u8; 64]> {
        Ok(filestat_bytes(&self.fs().stat(ino)?))
    }

    fn fd_filestat_get(&self, mem: &mut Mem, fd: u32, out: u32) -> abi::Result<()> {
        let raw = match self.desc(fd)? {
            Desc::File(FileDesc { ino, .. }) | Desc::Dir(DirDesc { ino, .. }) => {
                self.filestat(*ino)?
            }
            Desc::Stdin { .. } | Desc::Out { .. } => {
                stream_filestat(abi::FILETYPE_CHARACTER_DEVICE)
            }
            Desc::Socket { .. } | Desc::Listener { .. } => {
                stream_filestat(abi::FILETYPE_SOCKET_STREAM)
            }
        };
        mem.write(out, &raw)
    }

    fn fd_filestat_set_size(&mut self, fd: u32, size: u64) -> abi::Result<()> {
        let file = self.file(fd)?;
        if file.base & rights::FD_WRITE == 0 {
            return Err(Errno::BADF);
        }
        if file.base & rights::FD_FILESTAT_SET_SIZE == 0 {
            return Err(Errno::NOTCAPABLE);
        }
        let ino = file.ino;
        Ok(self.fs().set_size(ino, size)?)
    }

    fn fd_filestat_set_times(
        &mut self,
        fd: u32,
        atim: u64,
        mtim: u64,
        fst: u16,
    ) -> abi::Result<()> {
        let ino = match self.desc(fd)? {
            Desc::File(FileDesc { ino, .. }) | Desc::Dir(DirDesc { ino, .. }) => *ino,
            _ => return Err(Errno::BADF),
        };
        let (a, m) = set_times(atim, mtim, fst)?;
        Ok(self.fs().set_times(ino, a, m)?)
    }

    fn fd_prestat_get(&self, mem: &mut Mem, fd: u32, out: u32) -> abi::Result<()> {
        match self.desc(fd)? {
            Desc::Dir(DirDesc {
                preopen: Some(name),
                ..
            }) => {
                mem.put_u32(out, 0)?; // tag: directory
                mem.put_u32(out + 4, name.len() as u32)
            }
            _ => Err(Errno::BADF),
        }
    }

    fn fd_prestat_dir_name(&self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> abi::Result<()> {
        match self.desc(fd)? {
            Desc::Dir(DirDesc {
                preopen: Some(name),
                ..
            }) => {
                if (len as usize) < name.len() {
                    return Err(Errno::NAMETOOLONG);
                }
                mem.write(path, name.as_bytes())
            }
            _ => Err(Errno::BADF),
        }
    }

    fn fd_close(&mut self, fd: u32) -> abi::Result<()> {
        let desc = self.fds.remove(&fd).ok_or(Errno::BADF)?;
        self.close_desc(desc);
        Ok(())
    }

    fn fd_renumber(&mut self, from: u32, to: u32) -> abi::Result<()> {
        if !self.fds.contains_key(&from) || !self.fds.contains_key(&to) {
            return Err(Errno::BADF);
        }
        if from != to {
            let desc = self.fds.remove(&from).expect("checked");
            if let Some(old) = self.fds.insert(to, desc) {
                self.close_desc(old);
            }
        }
        Ok(())
    }

    fn fd_seek(&mut self, fd: u32, offset: i64, whence: u8) -> abi::Result<u64> {
        let file = self.file(fd)?;
        let ino = file.ino;
        let base = match whence {
            abi::WHENCE_SET => 0,
            abi::WHENCE_CUR => file.pos,
            abi::WHENCE_END => self.fs().stat(ino)?.size,
            _ => return Err(Errno::INVAL),
        };
        let pos = base.checked_add_signed(offset).ok_or(Errno::INVAL)?;
        if pos > i64::MAX as u64 {
            return Err(Errno::INVAL);
        }
        self.file(fd)?.pos = pos;
        Ok(pos)
    }

    fn fd_tell(&mut self, fd: u32) -> abi::Result<u64> {
        Ok(self.file(fd)?.pos)
    }

    fn fd_advise(&mut self, fd: u32, _offset: u64, _len: u64, advice: u8) -> abi::Result<()> {
        if advice > 5 {
            return Err(Errno::INVAL);
        }
        self.file(fd)
            .map(drop)
            .map_err(|e| if e == Errno::SPIPE { Errno::SPIPE } else { e })
    }

    fn fd_allocate(&mut self, fd: u32, offset: u64, len: u64) -> abi::Result<()> {
        let file = self.file(fd)?;
        if file.base & rights::FD_WRITE == 0 {
            return Err(Errno::BADF);
        }
        let ino = file.ino;
        let end = offset.checked_add(len).ok_or(Errno::FBIG)?;
        if len == 0 {
            return Err(Errno::INVAL);
        }
        let mut fs = self.fs();
        if fs.stat(ino)?.size < end {
            fs.set_size(ino, end)?;
        }
        Ok(())
    }

    fn fd_sync(&mut self, fd: u32) -> abi::Result<()> {
        // Memory is as durable as this filesystem gets.
        match self.desc(fd)? {
            Desc::File(_) | Desc::Dir(_) => Ok(()),
            _ => Err(Errno::INVAL),
        }
    }

    /// Reads from a file at its position (or at `at` for pread).
    fn read_file(
        &mut self,
        mem: &mut Mem,
        fd: u32,
        iovs: u32,
        n: u32,
        at: Option<u64>,
    ) -> abi::Result<u32> {
        let vecs = mem.iovecs(iovs, n)?;
        let file = self.file(fd)?;
        if file.base & rights::FD_READ == 0 {
            return Err(Errno::BADF);
        }
        let (ino, start) = (file.ino, at.unwrap_or(file.pos));
        // Straight from the file into the guest's buffers, one after the other until the file ends.
        let mut copied = 0usize;
        {
            let fs = self.fs();
            for (buf, len) in vecs {
                let room = len.min(u32::MAX - copied as u32);
                if room == 0 {
                    if len == 0 {
                        continue;
                    }
                    break;
                }
                let got = fs.read(ino, start + copied as u64, mem.slice_mut(buf, room)?)?;
                copied += got;
                if got < room as usize {
                    break;
                }
            }
        }
        if at.is_none() {
            self.file(fd)?.pos = start + copied as u64;
        }
        Ok(copied as u32)
    }

    fn write_file(
        &mut self,
        mem: &mut Mem,
        fd: u32,
        iovs: u32,
        n: u32,
        at: Option<u64>,
    ) -> abi::Result<u32> {
        let vecs = mem.iovecs(iovs, n)?;
        let file = self.file(fd)?;
        if file.base & rights::FD_WRITE == 0 {
            return Err(Errno::BADF);
        }
        let ino = file.ino;
        let offset = match at {
            Some(at) => Some(at),
            None if file.flags & abi::FDFLAGS_APPEND != 0 => None,
            None => Some(file.pos),
        };
        // Straight from the guest's buffers into the file. A buffer that does not fit (the quota) after others
        // did ends the write short, as POSIX has it.
        let mut written = 0usize;
        {
            let mut fs = self.fs();
            for (buf, len) in vecs {
                if len == 0 {
                    continue;
                }
                if len > u32::MAX - written as u32 {
                    break;
                }
                let at = offset.map(|start| start + written as u64);
                match fs.write(ino, at, mem.slice(buf, len)?) {
                    Ok(n) => written += n,
                    Err(e) if written == 0 => return Err(e.into()),
                    Err(_) => break,
                }
            }
        }
        if at.is_none() {
            let end = match offset {
                Some(start) => start + written as u64,
                None => self.fs().stat(ino)?.size,
            };
            self.file(fd)?.pos = end;
        }
        Ok(written as u32)
    }

    /// `fd_read`: done at once, or a read from stdin or a socket that may have to wait.
    fn fd_read(&mut self, mem: &mut Mem, fd: u32, iovs: u32, n: u32) -> abi::Result<Io> {
        // Bounded: overlapping iovecs can claim far more than the guest's memory.
        let want = |mem: &Mem| -> abi::Result<usize> {
            Ok(abi::total_len(&mem.iovecs(iovs, n)?).min(abi::MAX_IO))
        };
        match self.desc(fd)? {
            Desc::Stdin { flags } => Ok(Io::Stdin {
                input: self.stdin.clone(),
                want: want(mem)?,
                nonblocking: nonblocking(*flags),
            }),
            Desc::Socket { socket, flags } => Ok(Io::Recv {
                socket: socket.handle().clone(),
                want: want(mem)?,
                flags: RecvFlags {
                    nonblocking: nonblocking(*flags),
                    ..RecvFlags::default()
                },
            }),
            Desc::Listener { .. } => Err(Errno::NOTCONN),
            Desc::Out { .. } => Err(Errno::BADF),
            Desc::Dir(_) => Err(Errno::ISDIR),
            Desc::File(_) => Ok(Io::Done(self.read_file(mem, fd, iovs, n, None)?)),
        }
    }

    /// `fd_write`: done at once, or a send on a socket that may have to wait.
    fn fd_write(&mut self, mem: &mut Mem, fd: u32, iovs: u32, n: u32) -> abi::Result<Io> {
        match self.desc(fd)? {
            Desc::Out {
                sink, credit: None, ..
            } => {
                let data = mem.gather(iovs, n)?;
                sink(&data);
                Ok(Io::Done(data.len() as u32))
            }
            Desc::Out {
                sink,
                credit: Some(credit),
                ..
            } => Ok(Io::Out {
                data: mem.gather_up_to(iovs, n, credit.capacity())?,
                sink: sink.clone(),
                credit: credit.clone(),
            }),
            Desc::Socket { socket, flags } => Ok(Io::Send {
                socket: socket.handle().clone(),
                data: mem.gather(iovs, n)?,
                nonblocking: nonblocking(*flags),
            }),
            Desc::Listener { .. } => Err(Errno::NOTCONN),
            Desc::Stdin { .. } => Err(Errno::BADF),
            Desc::Dir(_) => Err(Errno::ISDIR),
            Desc::File(_) => Ok(Io::Done(self.write_file(mem, fd, iovs, n, None)?)),
        }
    }

    // ---- sockets

    /// `sock_accept`: the next connection at once, or what to wait on for one.
    fn sock_accept(&mut self, mem: &mut Mem, fd: u32, flags: u32, out: u32) -> abi::Result<Accept> {
        let (listener, listener_flags) = match self.desc(fd)? {
            Desc::Listener { listener, flags } => (listener.listener().clone(), *flags),
            // A connected socket is not listening.
            Desc::Socket { .. } => return Err(Errno::INVAL),
            _ => return Err(Errno::NOTSOCK),
        };
        // The flags are the new socket's; like other preview-1 hosts, only NONBLOCK is taken.
        let flags = u16::try_from(flags)
            .ok()
            .filter(|f| f & !abi::FDFLAGS_NONBLOCK == 0)
            .ok_or(Errno::INVAL)?;
        // Checked before a connection is taken, so that none is lost to a bad pointer.
        mem.slice(out, 4)?;
        // A closed listener answers as a shut-down listening socket does.
        match listener.try_accept().map_err(|_| Errno::INVAL)? {
            Some(socket) => {
                self.add_socket(mem, socket, flags, out)?;
                Ok(Accept::Done)
            }
            None if nonblocking(listener_flags) => Err(Errno::AGAIN),
            None => Ok(Accept::Wait { listener, flags }),
        }
    }

    /// Gives an accepted connection the lowest free descriptor and tells the guest which.
    fn add_socket(
        &mut self,
        mem: &mut Mem,
        socket: GuestSocket,
        flags: u16,
        out: u32,
    ) -> abi::Result<()> {
        let fd = self.insert(Desc::Socket { socket, flags })?;
        mem.put_u32(out, fd)
    }

    fn sock_recv(&self, mem: &Mem, fd: u32, iovs: u32, n: u32, riflags: u32) -> abi::Result<Io> {
        let (socket, nonblocking) = self.socket(fd)?;
        if riflags & !(abi::RECV_PEEK | abi::RECV_WAITALL) != 0 {
            return Err(Errno::INVAL);
        }
        Ok(Io::Recv {
            socket: socket.clone(),
            want: abi::total_len(&mem.iovecs(iovs, n)?).min(abi::MAX_IO),
            flags: RecvFlags {
                peek: riflags & abi::RECV_PEEK != 0,
                wait_all: riflags & abi::RECV_WAITALL != 0,
                nonblocking,
            },
        })
    }

    fn sock_send(&self, mem: &Mem, fd: u32, iovs: u32, n: u32, siflags: u32) -> abi::Result<Io> {
        let (socket, nonblocking) = self.socket(fd)?;
        // Preview 1 defines no send flags.
        if siflags != 0 {
            return Err(Errno::INVAL);
        }
        Ok(Io::Send {
            socket: socket.clone(),
            data: mem.gather(iovs, n)?,
            nonblocking,
        })
    }

    fn sock_shutdown(&self, fd: u32, how: u32) -> abi::Result<()> {
        let (socket, _) = self.socket(fd)?;
        if how == 0 || how & !(abi::SHUT_RD | abi::SHUT_WR) != 0 {
            return Err(Errno::INVAL);
        }
        if how & abi::SHUT_RD != 0 {
            socket.shutdown_read();
        }
        if how & abi::SHUT_WR != 0 {
            socket.shutdown_write();
        }
        Ok(())
    }

    fn fd_readdir(
        &self,
        mem: &mut Mem,
        fd: u32,
        buf: u32,
        len: u32,
        cookie: u64,
    ) -> abi::Result<u32> {
        let dir = match self.desc(fd)? {
            Desc::Dir(dir) => dir.ino,
            _ => return Err(Errno::NOTDIR),
        };
        mem.slice(buf, len)?;
        let fs = self.fs();
        // Grows only as far as the directory's entries do (the filesystem is under the dyno's quota).
        let mut out = Vec::with_capacity((len as usize).min(64 << 10));
        let mut after = cookie;
        'fill: while out.len() < len as usize {
            let batch = fs.read_dir(dir, after, 128)?;
            if batch.is_empty() {
                break;
            }
            for entry in batch {
                let mut header = [0u8; 24];
                header[0..8].copy_from_slice(&entry.cookie.to_le_bytes());
                header[8..16].copy_from_slice(&entry.ino.to_le_bytes());
                header[16..20].copy_from_slice(&(entry.name.len() as u32).to_le_bytes());
                header[20] = abi::filetype(entry.kind);
                out.extend_from_slice(&header);
                out.extend_from_slice(entry.name.as_bytes());
                after = entry.cookie;
                if out.len() >= len as usize {
                    break 'fill;
                }
            }
        }
        // A full buffer tells the guest there may be more; it retries with a larger one for a cut entry.
        out.truncate(len as usize);
        mem.write(buf, &out)?;
        Ok(out.len() as u32)
    }

    // ---- paths

    // The arguments mirror the ABI's `path_open`.
    #[allow(clippy::too_many_arguments)]
    fn path_open(
        &mut self,
        fd: u32,
        lookup: u32,
        path: &str,
        oflags: u16,
        base: u64,
        inheriting: u64,
        fdflags: u16,
    ) -> abi::Result<u32> {
        let dir = self.dir(fd)?;
        let (dir_ino, dir_base, dir_inheriting) = (dir.ino, dir.base, dir.inheriting);
        if oflags & !(abi::O_CREAT | abi::O_DIRECTORY | abi::O_EXCL | abi::O_TRUNC) != 0 {
            return Err(Errno::INVAL);
        }
        // Truncating is changing the file's size: the directory must grant that right.
        if oflags & abi::O_TRUNC != 0 && dir_base & rights::PATH_FILESTAT_SET_SIZE == 0 {
            return Err(Errno::NOTCAPABLE);
        }
        let flags = OpenFlags {
            create: oflags & abi::O_CREAT != 0,
            exclusive: oflags & abi::O_EXCL != 0,
            truncate: oflags & abi::O_TRUNC != 0,
            directory: oflags & abi::O_DIRECTORY != 0,
            follow: lookup & abi::LOOKUP_SYMLINK_FOLLOW != 0,
        };
        let mut fs = self.fs();
        let ino = fs.open(dir_ino, path, flags)?;
        let kind = fs.stat(ino)?.kind;
        let desc = match kind {
            // O_NOFOLLOW on a symbolic link, as POSIX answers it.
            vfs::Kind::Symlink => return Err(Errno::LOOP),
            vfs::Kind::Dir => {
                // A directory is never open for writing.
                if base & rights::FD_WRITE != 0 {
                    return Err(Errno::ISDIR);
                }
                Desc::Dir(DirDesc {
                    ino,
                    preopen: None,
                    base: base & rights::DIRECTORY & dir_inheriting,
                    inheriting: inheriting & dir_inheriting,
                })
            }
            vfs::Kind::File => {
                if flags.directory {
                    return Err(Errno::NOTDIR);
                }
                Desc::File(FileDesc {
                    ino,
                    pos: 0,
                    flags: fdflags,
                    base: base & rights::FILE & dir_inheriting,
                    inheriting: inheriting & dir_inheriting,
                })
            }
        };
        fs.retain(ino);
        drop(fs);
        self.insert(desc).inspect_err(|_| self.fs().release(ino))
    }

    fn path_filestat_get(
        &self,
        mem: &mut Mem,
        fd: u32,
        lookup: u32,
        path: &str,
        out: u32,
    ) -> abi::Result<()> {
        let dir = self.dir_ino(fd)?;
        let ino = self
            .fs()
            .lookup(dir, path, lookup & abi::LOOKUP_SYMLINK_FOLLOW != 0)?;
        let raw = self.filestat(ino)?;
        mem.write(out, &raw)
    }

    fn path_filestat_set_times(
        &mut self,
        fd: u32,
        lookup: u32,
        path: &str,
        atim: u64,
        mtim: u64,
        fst: u16,
    ) -> abi::Result<()> {
        let dir = self.dir_ino(fd)?;
        let (a, m) = set_times(atim, mtim, fst)?;
        let mut fs = self.fs();
        let ino = fs.lookup(dir, path, lookup & abi::LOOKUP_SYMLINK_FOLLOW != 0)?;
        Ok(fs.set_times(ino, a, m)?)
    }

    fn path_readlink(
        &self,
        mem: &mut Mem,
        fd: u32,
        path: &str,
        buf: u32,
        len: u32,
    ) -> abi::Result<u32> {
        let dir = self.dir_ino(fd)?;
        let target = self.fs().readlink(dir, path)?;
        let n = target.len().min(len as usize);
        mem.write(buf, &target.as_bytes()[..n])?;
        Ok(n as u32)
    }

    // ---- polling

    /// Answers the subscriptions that are ready now; empty if none is (the caller waits, then asks again).
    fn poll_ready(&self, subs: &[Subscription], now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for sub in subs {
            let event = |error: Errno, nbytes: u64, flags: u16| Event {
                userdata: sub.userdata(),
                error: error.0,
                kind: sub.kind(),
                nbytes,
                flags,
            };
            // Sockets report through flags, never `error`: Go's poller takes an error event as a broken
            // descriptor and fails the reads that would still find data.
            let ready = |ready: net::Ready| {
                let hangup = if ready.hangup { abi::EVENTRW_HANGUP } else { 0 };
                event(Errno::SUCCESS, ready.bytes as u64, hangup)
            };
            match *sub {
                Subscription::Clock { deadline, .. } => {
                    if deadline <= now {
                        events.push(event(Errno::SUCCESS, 0, 0));
                    }
                }
                Subscription::Read { fd, .. } => match self.fds.get(&fd) {
                    None => events.push(event(Errno::BADF, 0, 0)),
                    Some(Desc::Stdin { .. }) => {
                        if let Some(n) = self.stdin.ready() {
                            let hangup = if n == 0 { abi::EVENTRW_HANGUP } else { 0 };
                            events.push(event(Errno::SUCCESS, n as u64, hangup));
                        }
                    }
                    Some(Desc::File(f)) => {
                        let size = self.fs().stat(f.ino).map_or(0, |s| s.size);
                        events.push(event(Errno::SUCCESS, size.saturating_sub(f.pos), 0));
                    }
                    Some(Desc::Socket { socket, .. }) => {
                        events.extend(socket.handle().readable().map(ready));
                    }
                    // Readable when a connection is queued (or the listener closed).
                    Some(Desc::Listener { listener, .. }) => {
                        events.extend(listener.listener().acceptable().map(ready));
                    }
                    Some(Desc::Out { .. }) => events.push(event(Errno::BADF, 0, 0)),
                    Some(Desc::Dir(_)) => events.push(event(Errno::ISDIR, 0, 0)),
                },
                Subscription::Write { fd, .. } => match self.fds.get(&fd) {
                    None | Some(Desc::Stdin { .. }) => events.push(event(Errno::BADF, 0, 0)),
                    Some(Desc::Dir(_)) => events.push(event(Errno::ISDIR, 0, 0)),
                    Some(Desc::Socket { socket, .. }) => {
                        events.extend(socket.handle().writable().map(ready));
                    }
                    // A listener is never writable; say so rather than let the guest wait forever.
                    Some(Desc::Listener { .. }) => events.push(event(Errno::NOTCONN, 0, 0)),
                    Some(_) => events.push(event(Errno::SUCCESS, 0, 0)),
                },
            }
        }
        events
    }

    /// What the subscriptions wait on besides clocks: sockets and listeners, and whether stdin.
    fn interests(&self, subs: &[Subscription]) -> (Vec<net::Interest>, bool) {
        let mut interests = Vec::new();
        let mut stdin = false;
        for sub in subs {
            // Everything else is ready at once or never becomes ready.
            match *sub {
                Subscription::Read { fd, .. } => match self.fds.get(&fd) {
                    Some(Desc::Stdin { .. }) => stdin = true,
                    Some(Desc::Socket { socket, .. }) => {
                        interests.push(net::Interest::Read(socket.handle().clone()));
                    }
                    Some(Desc::Listener { listener, .. }) => {
                        interests.push(net::Interest::Accept(listener.listener().clone()));
                    }
                    _ => {}
                },
                Subscription::Write { fd, .. } => {
                    if let Some(Desc::Socket { socket, .. }) = self.fds.get(&fd) {
                        interests.push(net::Interest::Write(socket.handle().clone()));
                    }
                }
                Subscription::Clock { .. } => {}
            }
        }
        (interests, stdin)
    }

    fn parse_subscriptions(&self, mem: &Mem, ptr: u32, n: u32) -> abi::Result<Vec<Subscription>> {
        // As poll(2) refuses more descriptors than a process may open: the host's list stays small.
        if n > MAX_SUBSCRIPTIONS {
            return Err(Errno::INVAL);
        }
        let raw = mem.slice(ptr, n.checked_mul(48).ok_or(Errno::FAULT)?)?;
        let now = Instant::now();
        let mut subs = Vec::with_capacity(n as usize);
        for s in raw.chunks_exact(48) {
            let u64_at = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
            let u32_at = |at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
            let userdata = u64_at(0);
            subs.push(match s[8] {
                abi::EVENTTYPE_CLOCK => {
                    let (clock, timeout) = (u32_at(16), u64_at(24));
                    let flags = u16::from_le_bytes([s[40], s[41]]);
                    let wait = if flags & abi::SUBCLOCK_ABSTIME != 0 {
                        Duration::from_nanos(timeout.saturating_sub(self.now(clock)?))
                    } else {
                        self.now(clock)?; // validates the clock id
                        Duration::from_nanos(timeout)
                    };
                    Subscription::Clock {
                        userdata,
                        deadline: now
                            .checked_add(wait)
                            .unwrap_or(now + Duration::from_secs(1 << 40)),
                    }
                }
                abi::EVENTTYPE_FD_READ => Subscription::Read {
                    userdata,
                    fd: u32_at(16),
                },
                abi::EVENTTYPE_FD_WRITE => Subscription::Write {
                    userdata,
                    fd: u32_at(16),
                },
                _ => return Err(Errno::INVAL),
            });
        }
        Ok(subs)
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

#[derive(Clone, Copy)]
enum Subscription {
    Clock { userdata: u64, deadline: Instant },
    Read { userdata: u64, fd: u32 },
    Write { userdata: u64, fd: u32 },
}

impl Subscription {
    fn userdata(&self) -> u64 {
        match *self {
            Subscription::Clock { userdata, .. }
            | Subscription::Read { userdata, .. }
            | Subscription::Write { userdata, .. } => userdata,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Subscription::Clock { .. } => abi::EVENTTYPE_CLOCK,
            Subscription::Read { .. } => abi::EVENTTYPE_FD_READ,
            Subscription::Write { .. } => abi::EVENTTYPE_FD_WRITE,
        }
    }
}

/// A read or write as its synchronous start leaves it: finished, or waiting on a stream.
enum Io {
    /// Finished, with this many bytes read or written.
    Done(u32),
    Stdin {
        input: Input,
        want: usize,
        nonblocking: bool,
    },
    Recv {
        socket: SocketRef,
        want: usize,
        flags: RecvFlags,
    },
    Send {
        socket: SocketRef,
        data: Vec<u8>,
        nonblocking: bool,
    },
    /// A write to an output under flow control: sent once the reader has room.
    Out {
        sink: Output,
        credit: Credit,
        data: Vec<u8>,
    },
}

/// What a finished [`Io`] gives the guest.
enum Transferred {
    /// Bytes written, or read straight into guest memory.
    Count(u32),
    /// Bytes read, still to be copied into the guest's buffers.
    Data(Vec<u8>),
}

impl Io {
    /// Waits, if it must, for the read or write to happen. Touches neither the context nor guest memory.
    async fn finish(self) -> abi::Result<Transferred> {
        match self {
            Io::Done(n) => Ok(Transferred::Count(n)),
            Io::Stdin { want: 0, .. } => Ok(Transferred::Data(Vec::new())),
            Io::Stdin {
                input,
                want,
                nonblocking: true,
            } => match input.ready() {
                Some(_) => Ok(Transferred::Data(input.try_read(want))),
                None => Err(Errno::AGAIN),
            },
            Io::Stdin { input, want, .. } => Ok(Transferred::Data(input.read(want).await)),
            Io::Recv {
                socket,
                want,
                flags,
            } => socket
                .recv(want, flags)
                .await
                .map(Transferred::Data)
                .map_err(io_errno),
            Io::Send {
                socket,
                data,
                nonblocking,
            } => socket
                .send(&data, nonblocking)
                .await
                // At most the guest's iovec total, which fits in its 32-bit address space.
                .map(|n| Transferred::Count(n as u32))
                .map_err(io_errno),
            Io::Out { sink, credit, data } => {
                if !credit.take(data.len()).await {
                    return Err(Errno::PIPE);
                }
                sink(&data);
                Ok(Transferred::Count(data.len() as u32))
            }
        }
    }
}

/// A `sock_accept` as its synchronous start leaves it.
enum Accept {
    /// The connection is at the descriptor written to `out`.
    Done,
    /// Nothing queued on a blocking listener: wait for a connection, to be given these flags.
    Wait { listener: Listener, flags: u16 },
}

fn io_errno(err: std::io::Error) -> Errno {
    match err.kind() {
        std::io::ErrorKind::WouldBlock => Errno::AGAIN,
        std::io::ErrorKind::BrokenPipe => Errno::PIPE,
        _ => Errno::IO,
    }
}

fn nonblocking(flags: u16) -> bool {
    flags & abi::FDFLAGS_NONBLOCK != 0
}

/// The filestat of a stream: a character device or a socket, with no size or times.
fn stream_filestat(filetype: u8) -> [u8; 64] {
    let mut raw = [0u8; 64];
    raw[16] = filetype;
    raw[24..32].copy_from_slice(&1u64.to_le_bytes());
    raw
}

struct Event {
    userdata: u64,
    error: u16,
    kind: u8,
    nbytes: u64,
    flags: u16,
}

impl Event {
    fn bytes(&self) -> [u8; 32] {
        let mut raw = [0u8; 32];
        raw[0..8].copy_from_slice(&self.userdata.to_le_bytes());
        raw[8..10].copy_from_slice(&self.error.to_le_bytes());
        raw[10] = self.kind;
        raw[16..24].copy_from_slice(&self.nbytes.to_le_bytes());
        raw[24..26].copy_from_slice(&self.flags.to_le_bytes());
        raw
    }
}

fn monotonic_now() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // Offset so that no guest sees 0, which some treat as "unset".
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1_000_000_000
}

fn filestat_bytes(stat: &vfs::Stat) -> [u8; 64] {
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

fn set_times(atim: u64, mtim: u64, fst: u16) -> abi::Result<(SetTime, SetTime)> {
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

/// Runs `f` with the guest's memory and the context; turns its result into an errno.
fn with_ctx<T: P1View, R>(
    caller: &mut Caller<'_, T>,
    f: impl FnOnce(&mut P1Ctx, &mut Mem) -> abi::Result<R>,
) -> wasmtime::Result<abi::Result<R>> {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return Err(wasmtime::format_err!(
            "the module exports no memory named `memory`"
        ));
    };
    let (data, state) = memory.data_and_store_mut(caller);
    Ok(f(state.p1(), &mut Mem(data)))
}

fn errno<R>(result: wasmtime::Result<abi::Result<R>>) -> wasmtime::Result<i32> {
    Ok(match result? {
        Ok(_) => 0,
        Err(e) => i32::from(e.0),
    })
}

/// Links every `wasi_snapshot_preview1` function into `linker`.
pub fn add_to_linker<T: P1View>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    // A synchronous host function: `sync!(name, |ctx, mem, arg: ty, ...| body)`; `body` is an `abi::Result`.
    macro_rules! sync {
        ($name:literal, |$ctx:ident, $mem:ident $(, $arg:ident : $ty:ty)*| $body:expr) => {
            linker.func_wrap(
                MODULE,
                $name,
                |mut caller: Caller<'_, T>, $($arg: $ty),*| -> wasmtime::Result<i32> {
                    #[allow(unused_variables)]
                    errno(with_ctx(&mut caller, |$ctx, $mem| $body))
                },
            )?;
        };
    }
    // Path arguments arrive as (pointer, length): read them before the body runs.
    // An absolute path escapes the directory it is relative to: refused, as wasmtime's host refuses it
    // (`ERRNO_PERM`), also as a symbolic link's target.
    macro_rules! path {
        ($mem:ident, $ptr:ident, $len:ident) => {{
            let path = $mem.str($ptr, $len)?;
            if path.starts_with('/') {
                return Err(Errno::PERM);
            }
            path.to_owned()
        }};
    }

    sync!("args_sizes_get", |ctx, mem, count: u32, size: u32| {
        P1Ctx::strings_sizes(&ctx.args, mem, count, size)
    });
    sync!("args_get", |ctx, mem, argv: u32, buf: u32| {
        P1Ctx::strings_get(&ctx.args, mem, argv, buf)
    });
    sync!("environ_sizes_get", |ctx, mem, count: u32, size: u32| {
        P1Ctx::strings_sizes(&ctx.env, mem, count, size)
    });
    sync!("environ_get", |ctx, mem, environ: u32, buf: u32| {
        P1Ctx::strings_get(&ctx.env, mem, environ, buf)
    });
    sync!("clock_res_get", |ctx, mem, clock: u32, out: u32| {
        ctx.now(clock)?;
        mem.put_u64(out, 1)
    });
    sync!("clock_time_get", |ctx,
                             mem,
                             clock: u32,
                             _precision: u64,
                             out: u32| {
        let now = ctx.now(clock)?;
        mem.put_u64(out, now)
    });
    sync!("random_get", |ctx, mem, buf: u32, len: u32| {
        getrandom::fill(mem.slice_mut(buf, len)?).map_err(|_| Errno::IO)
    });

    sync!("fd_advise", |ctx,
                        mem,
                        fd: u32,
                        offset: u64,
                        len: u64,
                        advice: u32| {
        ctx.fd_advise(
            fd,
            offset,
            len,
            u8::try_from(advice).map_err(|_| Errno::INVAL)?,
        )
    });
    sync!("fd_allocate", |ctx, mem, fd: u32, offset: u64, len: u64| {
        ctx.fd_allocate(fd, offset, len)
    });
    sync!("fd_close", |ctx, mem, fd: u32| ctx.fd_close(fd));
    sync!("fd_datasync", |ctx, mem, fd: u32| ctx.fd_sync(fd));
    sync!("fd_sync", |ctx, mem, fd: u32| ctx.fd_sync(fd));
    sync!("fd_fdstat_get", |ctx, mem, fd: u32, out: u32| ctx
        .fd_fdstat_get(mem, fd, out));
    sync!("fd_fdstat_set_flags", |ctx, mem, fd: u32, flags: u32| {
        ctx.fd_fdstat_set_flags(fd, u16::try_from(flags).map_err(|_| Errno::INVAL)?)
    });
    sync!(
        "fd_fdstat_set_rights",
        |ctx, mem, fd: u32, base: u64, inheriting: u64| {
            ctx.fd_fdstat_set_rights(fd, base, inheriting)
        }
    );
    sync!("fd_filestat_get", |ctx, mem, fd: u32, out: u32| ctx
        .fd_filestat_get(mem, fd, out));
    sync!("fd_filestat_set_size", |ctx, mem, fd: u32, size: u64| ctx
        .fd_filestat_set_size(fd, size));
    sync!(
        "fd_filestat_set_times",
        |ctx, mem, fd: u32, atim: u64, mtim: u64, fst: u32| {
            ctx.fd_filestat_set_times(fd, atim, mtim, fst as u16)
        }
    );
    sync!("fd_pread", |ctx,
                       mem,
                       fd: u32,
                       iovs: u32,
                       n: u32,
                       offset: u64,
                       out: u32| {
        let read = ctx.read_file(mem, fd, iovs, n, Some(offset))?;
        mem.put_u32(out, read)
    });
    sync!("fd_pwrite", |ctx,
                        mem,
                        fd: u32,
                        iovs: u32,
                        n: u32,
                        offset: u64,
                        out: u32| {
        let written = ctx.write_file(mem, fd, iovs, n, Some(offset))?;
        mem.put_u32(out, written)
    });
    sync!("fd_prestat_get", |ctx, mem, fd: u32, out: u32| ctx
        .fd_prestat_get(mem, fd, out));
    sync!(
        "fd_prestat_dir_name",
        |ctx, mem, fd: u32, path: u32, len: u32| { ctx.fd_prestat_dir_name(mem, fd, path, len) }
    );
    sync!("fd_readdir", |ctx,
                         mem,
                         fd: u32,
                         buf: u32,
                         len: u32,
                         cookie: u64,
                         out: u32| {
        let used = ctx.fd_readdir(mem, fd, buf, len, cookie)?;
        mem.put_u32(out, used)
    });
    sync!("fd_renumber", |ctx, mem, from: u32, to: u32| ctx
        .fd_renumber(from, to));
    sync!("fd_seek", |ctx,
                      mem,
                      fd: u32,
                      offset: i64,
                      whence: u32,
                      out: u32| {
        let pos = ctx.fd_seek(fd, offset, u8::try_from(whence).map_err(|_| Errno::INVAL)?)?;
        mem.put_u64(out, pos)
    });
    sync!("fd_tell", |ctx, mem, fd: u32, out: u32| {
        let pos = ctx.fd_tell(fd)?;
        mem.put_u64(out, pos)
    });

    sync!(
        "path_create_directory",
        |ctx, mem, fd: u32, p: u32, pl: u32| {
            let path = path!(mem, p, pl);
            let dir = ctx.dir_ino(fd)?;
            ctx.fs().mkdir(dir, &path).map(drop).map_err(Errno::from)
        }
    );
    sync!(
        "path_filestat_get",
        |ctx, mem, fd: u32, flags: u32, p: u32, pl: u32, out: u32| {
            let path = path!(mem, p, pl);
            ctx.path_filestat_get(mem, fd, flags, &path, out)
        }
    );
    sync!(
        "path_filestat_set_times",
        |ctx, mem, fd: u32, flags: u32, p: u32, pl: u32, atim: u64, mtim: u64, fst: u32| {
            let path = path!(mem, p, pl);
            ctx.path_filestat_set_times(fd, flags, &path, atim, mtim, fst as u16)
        }
    );
    sync!("path_link", |ctx,
                        mem,
                        old_fd: u32,
                        flags: u32,
                        op: u32,
                        opl: u32,
                        new_fd: u32,
                        np: u32,
                        npl: u32| {
        let (old, new) = (path!(mem, op, opl), path!(mem, np, npl));
        let (from, to) = (ctx.dir_ino(old_fd)?, ctx.dir_ino(new_fd)?);
        let follow = flags & abi::LOOKUP_SYMLINK_FOLLOW != 0;
        Ok(ctx.fs().link(from, &old, to, &new, follow)?)
    });
    sync!("path_open", |ctx,
                        mem,
                        fd: u32,
                        lookup: u32,
                        p: u32,
                        pl: u32,
                        oflags: u32,
                        base: u64,
                        inheriting: u64,
                        fdflags: u32,
                        out: u32| {
        let path = path!(mem, p, pl);
        mem.slice(out, 4)?;
        let opened = ctx.path_open(
            fd,
            lookup,
            &path,
            oflags as u16,
            base,
            inheriting,
            fdflags as u16,
        )?;
        mem.put_u32(out, opened)
    });
    sync!("path_readlink", |ctx,
                            mem,
                            fd: u32,
                            p: u32,
                            pl: u32,
                            buf: u32,
                            len: u32,
                            out: u32| {
        let path = path!(mem, p, pl);
        let used = ctx.path_readlink(mem, fd, &path, buf, len)?;
        mem.put_u32(out, used)
    });
    sync!(
        "path_remove_directory",
        |ctx, mem, fd: u32, p: u32, pl: u32| {
            let path = path!(mem, p, pl);
            let dir = ctx.dir_ino(fd)?;
            Ok(ctx.fs().rmdir(dir, &path)?)
        }
    );
    sync!("path_rename", |ctx,
                          mem,
                          old_fd: u32,
                          op: u32,
                          opl: u32,
                          new_fd: u32,
                          np: u32,
                          npl: u32| {
        let (old, new) = (path!(mem, op, opl), path!(mem, np, npl));
        let (from, to) = (ctx.dir_ino(old_fd)?, ctx.dir_ino(new_fd)?);
        Ok(ctx.fs().rename(from, &old, to, &new)?)
    });
    sync!("path_symlink", |ctx,
                           mem,
                           op: u32,
                           opl: u32,
                           fd: u32,
                           np: u32,
                           npl: u32| {
        let (target, path) = (path!(mem, op, opl), path!(mem, np, npl));
        let dir = ctx.dir_ino(fd)?;
        Ok(ctx.fs().symlink(&target, dir, &path)?)
    });
    sync!("path_unlink_file", |ctx, mem, fd: u32, p: u32, pl: u32| {
        let path = path!(mem, p, pl);
        let dir = ctx.dir_ino(fd)?;
        Ok(ctx.fs().unlink(dir, &path)?)
    });

    sync!("proc_raise", |ctx, mem, _signal: u32| Err::<(), _>(
        Errno::NOTSUP
    ));
    sync!("sock_shutdown", |ctx, mem, fd: u32, how: u32| ctx
        .sock_shutdown(fd, how));

    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_: Caller<'_, T>, status: u32| -> wasmtime::Result<()> {
            Err(wasmtime_wasi::I32Exit(status as i32).into())
        },
    )?;

    linker.func_wrap_async(MODULE, "sched_yield", |_: Caller<'_, T>, (): ()| {
        Box::new(async {
            tokio::task::yield_now().await;
            Ok(0i32)
        })
    })?;

    // Reads and writes start synchronously and wait only on a stream (see `transfer`).
    linker.func_wrap_async(
        MODULE,
        "fd_read",
        |mut caller: Caller<'_, T>, (fd, iovs, n, out): (u32, u32, u32, u32)| {
            Box::new(async move {
                transfer(&mut caller, (iovs, n, out), None, |ctx, mem| {
                    ctx.fd_read(mem, fd, iovs, n)
                })
                .await
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, T>, (fd, iovs, n, out): (u32, u32, u32, u32)| {
            Box::new(async move {
                transfer(&mut caller, (iovs, n, out), None, |ctx, mem| {
                    ctx.fd_write(mem, fd, iovs, n)
                })
                .await
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "sock_recv",
        |mut caller: Caller<'_, T>,
         (fd, iovs, n, riflags, out, roflags): (u32, u32, u32, u32, u32, u32)| {
            Box::new(async move {
                transfer(&mut caller, (iovs, n, out), Some(roflags), |ctx, mem| {
                    ctx.sock_recv(mem, fd, iovs, n, riflags)
                })
                .await
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "sock_send",
        |mut caller: Caller<'_, T>, (fd, iovs, n, siflags, out): (u32, u32, u32, u32, u32)| {
            Box::new(async move {
                transfer(&mut caller, (iovs, n, out), None, |ctx, mem| {
                    ctx.sock_send(mem, fd, iovs, n, siflags)
                })
                .await
            })
        },
    )?;

    linker.func_wrap_async(
        MODULE,
        "sock_accept",
        |mut caller: Caller<'_, T>, (fd, flags, out): (u32, u32, u32)| {
            Box::new(async move {
                let (listener, flags) =
                    match with_ctx(&mut caller, |ctx, mem| ctx.sock_accept(mem, fd, flags, out))? {
                        Ok(Accept::Done) => return Ok(0),
                        Ok(Accept::Wait { listener, flags }) => (listener, flags),
                        Err(e) => return Ok(i32::from(e.0)),
                    };
                // Waits holding only the listener, never the context or guest memory.
                let accepted = listener.accept().await;
                errno(with_ctx(&mut caller, |ctx, mem| {
                    let socket = accepted.map_err(|_| Errno::INVAL)?;
                    ctx.add_socket(mem, socket, flags, out)
                }))
            })
        },
    )?;

    linker.func_wrap_async(
        MODULE,
        "poll_oneoff",
        |mut caller: Caller<'_, T>, (subs_ptr, events_ptr, n, out): (u32, u32, u32, u32)| {
            Box::new(async move {
                if n == 0 {
                    return Ok(i32::from(Errno::INVAL.0));
                }
                let parsed = with_ctx(&mut caller, |ctx, mem| {
                    mem.slice(events_ptr, n.checked_mul(32).ok_or(Errno::FAULT)?)?;
                    mem.slice(out, 4)?;
                    let subs = ctx.parse_subscriptions(mem, subs_ptr, n)?;
                    let (interests, waits_on_stdin) = ctx.interests(&subs);
                    Ok((subs, interests, waits_on_stdin, ctx.stdin.clone()))
                })?;
                let (subs, interests, waits_on_stdin, stdin) = match parsed {
                    Ok(parsed) => parsed,
                    Err(e) => return Ok(i32::from(e.0)),
                };
                loop {
                    let events = with_ctx(&mut caller, |ctx, _| {
                        Ok(ctx.poll_ready(&subs, Instant::now()))
                    })?
                    .expect("infallible");
                    if !events.is_empty() {
                        return errno(with_ctx(&mut caller, |_, mem| {
                            for (i, event) in events.iter().enumerate() {
                                mem.write(events_ptr + 32 * i as u32, &event.bytes())?;
                            }
                            mem.put_u32(out, events.len() as u32)
                        }));
                    }
                    // Nothing ready: wait for the earliest deadline, stdin or a socket, whichever comes first.
                    let deadline = subs
                        .iter()
                        .filter_map(|s| match s {
                            Subscription::Clock { deadline, .. } => Some(*deadline),
                            _ => None,
                        })
                        .min();
                    let sleep = async {
                        match deadline {
                            Some(at) => tokio::time::sleep_until(at.into()).await,
                            None => std::future::pending().await,
                        }
                    };
                    let input = async {
                        if waits_on_stdin {
                            stdin.wait_ready().await
                        } else {
                            std::future::pending().await
                        }
                    };
                    tokio::select! {
                        () = sleep => {}
                        () = input => {}
                        () = net::any_ready(&interests) => {}
                    }
                }
            })
        },
    )?;
    Ok(())
}

/// Runs a read or write. `start` answers at once or says what to wait for; the wait holds neither the context
/// nor guest memory. Data read goes into the `iovs` array, the byte count to `out`, and for `sock_recv` the
/// output flags (always 0: stream sockets never truncate) to `roflags`.
async fn transfer<T: P1View>(
    caller: &mut Caller<'_, T>,
    (iovs, n, out): (u32, u32, u32),
    roflags: Option<u32>,
    start: impl FnOnce(&mut P1Ctx, &mut Mem) -> abi::Result<Io>,
) -> wasmtime::Result<i32> {
    let started = with_ctx(caller, |ctx, mem| {
        // Results have somewhere to go before anything is consumed.
        mem.slice(out, 4)?;
        if let Some(at) = roflags {
            mem.slice(at, 2)?;
        }
        start(ctx, mem)
    })?;
    let done = match started {
        Ok(io) => io.finish().await,
        Err(e) => Err(e),
    };
    let done = match done {
        Ok(done) => done,
        Err(e) => return Ok(i32::from(e.0)),
    };
    errno(with_ctx(caller, |_, mem| {
        let count = match done {
            Transferred::Count(count) => count,
            // The iovecs were checked before the read; memory never shrinks, so this copy fits.
            Transferred::Data(data) => mem.scatter(&mem.iovecs(iovs, n)?, &data)? as u32,
        };
        mem.put_u32(out, count)?;
        match roflags {
            Some(at) => mem.write(at, &0u16.to_le_bytes()),
            None => Ok(()),
        }
    }))
}
