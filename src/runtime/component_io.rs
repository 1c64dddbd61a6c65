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
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::stdio::{Credit, Input, Output};

/// An [`Output`] as a component's stdout or stderr. Writes never wait, unless the output has [`Credit`]: then
/// `check-write` offers what credit there is and the stream is ready again when the reader gives some back.
#[derive(Clone)]
pub(crate) struct ComponentOutput(pub(crate) Output, pub(crate) Option<Credit>);

impl IsTerminal for ComponentOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ComponentOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GatedStream {
            output: self.clone(),
            reserved: 0,
        })
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// One `output-stream` over a [`ComponentOutput`]: the credit `check-write` took and `write` has not used yet.
struct GatedStream {
    output: ComponentOutput,
    reserved: usize,
}

/// What one `check-write` offers.
const WRITE_BUDGET: usize = 1024 * 1024;

#[async_trait::async_trait]
impl Pollable for GatedStream {
    async fn ready(&mut self) {
        if let Some(credit) = &self.output.1
            && self.reserved == 0
        {
            credit.available().await;
        }
    }
}

impl OutputStream for GatedStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if let Some(credit) = &self.output.1 {
            if credit.is_closed() {
                return Err(StreamError::Closed);
            }
            if bytes.len() > self.reserved {
                return Err(StreamError::Trap(wasmtime::format_err!(
                    "write of {} bytes exceeds the {} that check-write allowed",
                    bytes.len(),
                    self.reserved
                )));
            }
            self.reserved -= bytes.len();
        }
        (self.output.0)(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        match &self.output.1 {
            None => Ok(WRITE_BUDGET),
            Some(credit) if credit.is_closed() => Err(StreamError::Closed),
            Some(credit) => {
                if self.reserved == 0 {
                    self.reserved = credit.try_take_up_to(WRITE_BUDGET.min(credit.capacity()));
                }
                Ok(self.reserved)
            }
        }
    }
}

impl Drop for GatedStream {
    fn drop(&mut self) {
        if let Some(credit) = &self.output.1 {
            credit.give_back(self.reserved);
        }
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
