//! A dyno's standard streams as WASI 0.2 components see them: our [`Input`] and [`Output`] behind
//! wasmtime-wasi's `StdinStream`/`StdoutStream`, so a component's output reaches the dyno's log stream (or the
//! attached terminal) exactly as a preview-1 guest's does, and nothing of the host's own stdio leaks in.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use hyper::body::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::stdio::{Input, Output};

/// An [`Output`] as a component's stdout or stderr. Writes never wait: the output decides what to do with them.
#[derive(Clone)]
pub(crate) struct ComponentOutput(pub(crate) Output);

impl IsTerminal for ComponentOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ComponentOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for ComponentOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for ComponentOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        (self.0)(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1024 * 1024)
    }
}

impl AsyncWrite for ComponentOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        (self.0)(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// An [`Input`] as a component's stdin. Every stream made from it reads the same buffer.
#[derive(Clone)]
pub(crate) struct ComponentInput(pub(crate) Input);

impl IsTerminal for ComponentInput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for ComponentInput {
    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(InputReader {
            input: self.0.clone(),
            waiting: Mutex::new(None),
        })
    }
}

type Waiting = Pin<Box<dyn Future<Output = ()> + Send>>;

struct InputReader {
    input: Input,
    /// The wait for data in progress (behind a mutex only so the reader is `Sync`).
    waiting: Mutex<Option<Waiting>>,
}

impl AsyncRead for InputReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.input.ready().is_some() {
                let data = this.input.try_read(buf.remaining());
                buf.put_slice(&data);
                // Nothing read while ready means end of file, which an unchanged `buf` says.
                return Poll::Ready(Ok(()));
            }
            let waiting = this.waiting.get_mut().expect("input reader");
            let future = waiting.get_or_insert_with(|| {
                let input = this.input.clone();
                Box::pin(async move { input.wait_ready().await })
            });
            match future.as_mut().poll(cx) {
                Poll::Ready(()) => *waiting = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
