//! Sockets: accepting connections on the listener, receiving, sending, shutting down.

#[allow(unused_imports)]
use super::*;

impl P1Ctx {
    /// `sock_accept`: the next connection at once, or what to wait on for one.
    pub(super) fn sock_accept(
        &mut self,
        mem: &mut Mem,
        fd: u32,
        flags: u32,
        out: u32,
    ) -> abi::Result<Accept> {
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
    pub(super) fn add_socket(
        &mut self,
        mem: &mut Mem,
        socket: GuestSocket,
        flags: u16,
        out: u32,
    ) -> abi::Result<()> {
        let fd = self.insert(Desc::Socket { socket, flags })?;
        mem.put_u32(out, fd)
    }

    pub(super) fn sock_recv(
        &self,
        mem: &Mem,
        fd: u32,
        iovs: u32,
        n: u32,
        riflags: u32,
    ) -> abi::Result<Io> {
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

    pub(super) fn sock_send(
        &self,
        mem: &Mem,
        fd: u32,
        iovs: u32,
        n: u32,
        siflags: u32,
    ) -> abi::Result<Io> {
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

    pub(super) fn sock_shutdown(&self, fd: u32, how: u32) -> abi::Result<()> {
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
}
