//! The two ends of a connection: the host's [`Connection`] (what the router copies bytes to and from) and the
//! guest's socket (what `sock_recv`, `sock_send` and `poll_oneoff` work on).

#[allow(unused_imports)]
use super::*;

/// The host end of a connection to a guest: bytes written here are what the guest reads, and the other way
/// round. Dropping it is closing the connection; [`shutdown`](tokio::io::AsyncWriteExt::shutdown) closes only
/// the direction to the guest (the guest reads end of stream) and keeps reading its reply.
///
/// ```
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let listener = wasmdyno::runtime::net::Listener::new(8);
/// let tokio = tokio::runtime::Builder::new_current_thread().build()?;
/// tokio.block_on(async {
///     let mut conn = listener.connect().await?;
///     // Buffered for the guest (up to 64 KiB each way) until it reads them.
///     conn.write_all(b"ping").await?;
///     conn.shutdown().await?; // the guest reads end of stream after "ping"
///     listener.close(); // ... but it never accepted: the connection is dropped
///     let mut reply = Vec::new();
///     conn.read_to_end(&mut reply).await?;
///     assert!(reply.is_empty());
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Connection {
    pub(super) to_guest: Arc<Pipe>,
    pub(super) from_guest: Arc<Pipe>,
}

/// How many bytes the guest has read from a [`Connection`], which it may already have handed over.
pub(crate) struct GuestReads(pub(super) Arc<Pipe>);

impl GuestReads {
    /// The bytes the guest has read from the host so far.
    pub(crate) fn count(&self) -> u64 {
        self.0.state().taken
    }
}

impl Connection {
    /// A counter of the bytes the guest reads from this connection, kept after the connection is handed over.
    pub(crate) fn guest_reads(&self) -> GuestReads {
        GuestReads(self.to_guest.clone())
    }

    /// Waits until the guest has taken this connection from `listener`'s backlog. Fails with
    /// [`NetError::Closed`] when it never will: the listener closed (dropping its backlog), or no guest instance
    /// accepts on it any more (it exited or crashed; the connection is then withdrawn). Either way the guest saw
    /// nothing of the connection, so the caller may take its request elsewhere.
    pub(crate) async fn accepted(&self, listener: &Listener) -> Result<(), NetError> {
        loop {
            let changed = listener.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.from_guest.acceptance() {
                Some(true) => return Ok(()),
                Some(false) => return Err(NetError::Closed),
                None => {}
            }
            if !listener.is_accepting() {
                listener.withdraw(self);
                return match self.from_guest.acceptance() {
                    Some(true) => Ok(()),
                    _ => Err(NetError::Closed),
                };
            }
            tokio::select! {
                () = &mut changed => {}
                () = poll_fn(|cx| self.from_guest.poll_acceptance(cx)) => {}
            }
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if self.from_guest.poll_readable(cx, 1).is_pending() {
            return Poll::Pending;
        }
        // End of stream reads nothing; only this end reads the pipe, so what was ready is still there.
        if let Some(data) = self.from_guest.read(buf.remaining(), false) {
            buf.put_slice(&data);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.to_guest.write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.to_guest.poll_writable(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Bytes are with the guest as soon as they are written.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.to_guest.close_write();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.to_guest.close_write();
        self.from_guest.close_read();
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

/// The guest end of a connection, owned by a descriptor: dropping it closes both directions.
pub(crate) struct GuestSocket(pub(super) SocketRef);

impl GuestSocket {
    /// A handle for calls that wait; it does not keep the connection open.
    pub(crate) fn handle(&self) -> &SocketRef {
        &self.0
    }
}

impl Drop for GuestSocket {
    fn drop(&mut self) {
        self.0.incoming.close_read();
        self.0.outgoing.close_write();
    }
}

/// The guest's view of a connection, as used by the preview-1 host.
#[derive(Clone)]
pub(crate) struct SocketRef {
    /// Host → guest.
    pub(super) incoming: Arc<Pipe>,
    /// Guest → host.
    pub(super) outgoing: Arc<Pipe>,
}

/// How a guest reads a socket.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RecvFlags {
    /// Leave the bytes buffered (`RECV_PEEK`).
    pub peek: bool,
    /// Wait for the whole length, end of stream aside (`RECV_WAITALL`).
    pub wait_all: bool,
    /// Answer `WouldBlock` instead of waiting.
    pub nonblocking: bool,
}

impl SocketRef {
    /// Reads up to `max` bytes; empty at end of stream (or for `max == 0`). `WouldBlock` when nonblocking and
    /// nothing is buffered.
    pub(crate) async fn recv(&self, max: usize, flags: RecvFlags) -> io::Result<Vec<u8>> {
        let pipe = &self.incoming;
        if max == 0 {
            return Ok(Vec::new());
        }
        if flags.peek {
            // A waiting peek with WAITALL waits for the whole length, or as much as the buffer can ever hold.
            let min = if flags.wait_all { max.min(BUFFER) } else { 1 };
            if !flags.nonblocking {
                poll_fn(|cx| pipe.poll_readable(cx, min)).await;
            }
            return pipe
                .read(max, true)
                .ok_or_else(|| io::ErrorKind::WouldBlock.into());
        }
        let mut got = Vec::new();
        loop {
            match pipe.read(max - got.len(), false) {
                Some(data) => {
                    let end = data.is_empty();
                    got.extend(data);
                    if end || !flags.wait_all || got.len() == max {
                        return Ok(got);
                    }
                }
                None if flags.nonblocking => {
                    return if got.is_empty() {
                        Err(io::ErrorKind::WouldBlock.into())
                    } else {
                        Ok(got)
                    };
                }
                None => {}
            }
            poll_fn(|cx| pipe.poll_readable(cx, 1)).await;
        }
    }

    /// Writes `data`: all of it when blocking (waiting for room), as much as fits when `nonblocking`
    /// (`WouldBlock` if nothing does). `BrokenPipe` once the peer is gone or this end shut down; bytes written
    /// before that are reported as written.
    pub(crate) async fn send(&self, data: &[u8], nonblocking: bool) -> io::Result<usize> {
        let pipe = &self.outgoing;
        let mut sent = 0;
        loop {
            match pipe.write(&data[sent..]) {
                Ok(n) => {
                    sent += n;
                    if sent == data.len() {
                        return Ok(sent);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !nonblocking => {
                    poll_fn(|cx| pipe.poll_writable(cx)).await;
                }
                Err(_) if sent > 0 => return Ok(sent),
                Err(e) => return Err(e),
            }
        }
    }

    /// `SHUT_RD`: reads see end of stream; what the peer sends from now on is dropped and fails on its side.
    pub(crate) fn shutdown_read(&self) {
        self.incoming.close_read();
    }

    /// `SHUT_WR`: the peer reads end of stream; writes here fail with a broken pipe.
    pub(crate) fn shutdown_write(&self) {
        self.outgoing.close_write();
    }

    pub(crate) fn readable(&self) -> Option<Ready> {
        self.incoming.readable()
    }

    /// A poll answered it readable ([`Ready::since`]).
    pub(crate) fn answered(&self) {
        self.incoming.answered();
    }

    pub(crate) fn writable(&self) -> Option<Ready> {
        self.outgoing.writable()
    }
}

/// What a `poll_oneoff` call waits for on one descriptor.
pub(crate) enum Interest {
    Read(SocketRef),
    Write(SocketRef),
    Accept(Listener),
}

impl Interest {
    pub(super) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Interest::Read(socket) => socket.incoming.poll_readable(cx, 1),
            Interest::Write(socket) => socket.outgoing.poll_writable(cx),
            Interest::Accept(listener) => listener.poll_acceptable(cx),
        }
    }
}

/// Waits until one of `interests` is ready; never, if there are none.
pub(crate) async fn any_ready(interests: &[Interest]) {
    poll_fn(|cx| {
        if interests.iter().any(|i| i.poll(cx).is_ready()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
