//! Reads, writes and accepts that may wait: what their synchronous start leaves, and how they finish.

#[allow(unused_imports)]
use super::*;

/// A read or write as its synchronous start leaves it: finished, or waiting on a stream.
pub(super) enum Io {
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
pub(super) enum Transferred {
    /// Bytes written, or read straight into guest memory.
    Count(u32),
    /// Bytes read, still to be copied into the guest's buffers.
    Data(Vec<u8>),
}

impl Io {
    /// Waits, if it must, for the read or write to happen. Touches neither the context nor guest memory.
    pub(super) async fn finish(self) -> abi::Result<Transferred> {
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
pub(super) enum Accept {
    /// The connection is at the descriptor written to `out`.
    Done,
    /// Nothing queued on a blocking listener: wait for a connection, to be given these flags.
    Wait { listener: Listener, flags: u16 },
}
