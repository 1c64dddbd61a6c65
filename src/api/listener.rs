//! The API's own connection budget, apart from the router's: capped connections in all and per client address,
//! and a deadline for the first request head, so that no load on the router and no slow client locks the
//! operator out. Clients without the token get `Connection: close`, so an open API connection is either an
//! authenticated one or one still inside its first-head deadline.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::router::{ConnectionAdmission, ConnectionLimits, refuse_connection};

/// The API's caps: the CLI opens a few connections at a time; a log tail or an attached run holds one each.
pub(crate) const API_CONNECTIONS: ConnectionLimits = ConnectionLimits {
    total: 1024,
    per_client: 256,
};

/// How long a new connection has to send its first request head.
pub(crate) const FIRST_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A TCP listener that admits connections within [`ConnectionLimits`].
pub(crate) struct LimitedListener {
    inner: TcpListener,
    admission: ConnectionAdmission,
    first_head: Duration,
}

impl LimitedListener {
    pub(crate) fn new(
        inner: TcpListener,
        limits: ConnectionLimits,
        first_head: Duration,
    ) -> LimitedListener {
        LimitedListener {
            inner,
            admission: ConnectionAdmission::new(limits),
            first_head,
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            let (stream, peer) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("API accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.admission.admit(peer.ip()) {
                Ok(permit) => {
                    let guarded = Guarded {
                        stream,
                        _permit: permit,
                        head: Some(HeadDeadline {
                            sleep: Box::pin(tokio::time::sleep(self.first_head)),
                            matched: 0,
                        }),
                    };
                    return (guarded, peer);
                }
                Err(why) => refuse_connection(stream, why),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An admitted connection: holds its place until closed, and fails its reads when the first request head is
/// not complete by its deadline.
pub(crate) struct Guarded {
    stream: TcpStream,
    _permit: crate::router::ConnectionPermit,
    head: Option<HeadDeadline>,
}

struct HeadDeadline {
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// How much of `\r\n\r\n` the bytes read so far end with.
    matched: usize,
}

impl HeadDeadline {
    /// Follows the bytes read; true once the head's blank line has passed.
    fn complete(&mut self, bytes: &[u8]) -> bool {
        const END: &[u8] = b"\r\n\r\n";
        for &b in bytes {
            self.matched = if b == END[self.matched] {
                self.matched + 1
            } else if b == b'\r' {
                1
            } else {
                0
            };
            if self.matched == END.len() {
                return true;
            }
        }
        false
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Some(head) = &mut this.head {
            match &polled {
                Poll::Ready(Ok(())) => {
                    if head.complete(&buf.filled()[before..]) {
                        this.head = None;
                    }
                }
                Poll::Pending => {
                    if head.sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no complete request head in time",
                        )));
                    }
                }
                Poll::Ready(Err(_)) => {}
            }
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_head_ends_at_its_blank_line_across_reads() {
        let mut head = HeadDeadline {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            matched: 0,
        };
        assert!(!head.complete(b"GET / HTTP/1.1\r\nHost: x\r"));
        assert!(!head.complete(b"\n\r"));
        assert!(head.complete(b"\nbody"));
    }
}
