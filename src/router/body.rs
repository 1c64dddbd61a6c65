//! Bodies on their way through the router: the client's request body (size limit, whether it was all sent) and
//! the dyno's response body (bytes counted, H15 idle cut, H18 cut mid-body, H27 client gone, the router log line
//! written when it ends).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};

use super::pool::Upstream;
use super::{Entry, Slot};

/// Every body the router passes on.
pub use crate::runtime::body::Body;
pub(crate) use crate::runtime::body::{BoxError, empty, full};

/// What became of a request body, for the router to tell H13 from H18, H27 and 413.
#[derive(Default)]
pub(crate) struct Sent {
    /// The whole body went to the dyno.
    pub done: AtomicBool,
    /// It grew past the limit and was cut.
    pub too_large: AtomicBool,
    /// The client failed to send it all (went away mid-body).
    pub client_gone: AtomicBool,
}

/// The client's request body on its way to a dyno.
pub(crate) struct RequestBody {
    inner: Incoming,
    limit: Option<u64>,
    seen: u64,
    sent: Arc<Sent>,
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: Option<u64>) -> (RequestBody, Arc<Sent>) {
        let sent = Arc::new(Sent::default());
        let body = RequestBody {
            inner,
            limit,
            seen: 0,
            sent: sent.clone(),
        };
        (body, sent)
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            None => {
                this.sent.done.store(true, Ordering::Release);
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                this.sent.client_gone.store(true, Ordering::Release);
                Poll::Ready(Some(Err(e.into())))
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.limit.is_some_and(|limit| this.seen > limit) {
                        this.sent.too_large.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err("the request body is too large".into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A dyno's response body on its way to the client. The router's log line for the request is written when it
/// ends, whichever way: complete, cut by the dyno (H18), idle too long (H15), or dropped because the client went
/// away (H27). The dyno's request slot (none for a response forwarded from another host) is released at the end.
pub(crate) struct ResponseBody {
    inner: Body,
    idle: Duration,
    /// Runs while the body waits on the dyno (not while the client is slow to take what it sent); made the first
    /// time it waits (a short response never does).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
    bytes: u64,
    /// The declared `content-length`: once that much is sent, the response is complete, even if the body never
    /// says so (hyper stops reading a body at its length; a `wasi:http` body tells its end only when read again).
    length: Option<u64>,
    status: u16,
    entry: Entry,
    slot: Option<Slot>,
    upstream: Option<Upstream>,
}

impl ResponseBody {
    pub fn new(
        inner: Body,
        status: u16,
        length: Option<u64>,
        idle: Duration,
        entry: Entry,
        slot: Option<Slot>,
        upstream: Option<Upstream>,
    ) -> ResponseBody {
        ResponseBody {
            inner,
            idle,
            timer: None,
            waiting: false,
            bytes: 0,
            length,
            status,
            entry,
            slot,
            upstream,
        }
    }

    /// Everything the response declared has been sent.
    fn complete(&self) -> bool {
        self.length.is_some_and(|length| self.bytes >= length)
    }

    /// The response ended some other way than complete: its connection is closed.
    fn end(&mut self) {
        self.slot = None;
        self.upstream = None;
    }

    /// The response is complete: its connection may serve the dyno's next request.
    fn finish(&mut self) {
        if let Some(upstream) = self.upstream.take() {
            upstream.finish();
        }
        self.slot = None;
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.entry.is_done() {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_ready() {
            this.waiting = false;
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                if this.complete() {
                    this.entry.ok(this.status, this.bytes);
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.entry
                    .error("H18", "Server Request Interrupted", this.bytes);
                this.end();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.entry.ok(this.status, this.bytes);
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !std::mem::replace(&mut this.waiting, true) {
                    let until = tokio::time::Instant::now() + this.idle;
                    match &mut this.timer {
                        Some(timer) => timer.as_mut().reset(until),
                        None => this.timer = Some(Box::pin(tokio::time::sleep_until(until))),
                    }
                }
                let timer = this.timer.as_mut().expect("armed above");
                if timer.as_mut().poll(cx).is_ready() {
                    this.entry.error("H15", "Idle connection", this.bytes);
                    this.end();
                    return Poll::Ready(Some(Err(
                        "the dyno sent nothing for too long (H15)".into()
                    )));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.entry.is_done() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body with nothing in it (HEAD, 204, 304, an empty one) may be dropped unread, and one that sent its
        // declared length is not read again: that is its end.
        if !self.entry.is_done() && (self.inner.is_end_stream() || self.complete()) {
            self.entry.ok(self.status, self.bytes);
            self.finish();
        }
        // Else the entry logs H27 as it drops: the client went away before the end.
        self.entry.bytes = self.bytes;
    }
}
