//! The body every response and request takes on its way between router, web dynos and hosts that embed
//! wasmdyno, and the task guard that stops work a caller gave up on. Below both `router` and the web dynos
//! (`web`, `http`, `cgi`), so neither imports the other for them.

use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Bytes;

/// The error a body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body, boxed.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body of `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Aborts a task when dropped, unless disarmed: work a caller gave up on (a timeout, a client gone) stops.
pub(crate) struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl AbortOnDrop {
    pub(crate) fn new(handle: tokio::task::AbortHandle) -> AbortOnDrop {
        AbortOnDrop(Some(handle))
    }

    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}
