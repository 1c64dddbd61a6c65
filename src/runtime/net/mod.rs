//! Listener sockets for web dynos that listen (preview-1 programs accepting on fd 4), with connections that are
//! in-process byte streams rather than kernel sockets.
//!
//! The host side is a [`Listener`]: the router accepts a TCP connection, calls [`Listener::connect`] and copies
//! bytes between the two ends. The guest side lives in the preview-1 host (`p1`): `sock_accept` takes the
//! next queued connection, and reads, writes and `poll_oneoff` work on it without ever blocking a runtime thread.
//!
//! Each connection is a pair of bounded pipes (one per direction, [`BUFFER`] bytes each), so readiness is exact:
//! a socket is readable when bytes are buffered or its peer closed, and writable when its outgoing pipe has room.
//! Either end going away (a dropped [`Connection`], a guest's `fd_close`, a dropped dyno) is seen by the other as
//! end of stream on reads and a broken pipe on writes.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

mod pipe;
mod socket;
#[cfg(test)]
mod tests;
#[allow(unused_imports)]
use {pipe::*, socket::*};

pub(crate) use pipe::Ready;
pub use socket::Connection;
pub(crate) use socket::{GuestReads, GuestSocket, Interest, RecvFlags, SocketRef, any_ready};

/// Bytes buffered in each direction of a connection before the writer has to wait.
pub const BUFFER: usize = 64 * 1024;

/// Errors from a [`Listener`].
///
/// ```
/// let listener = wasmdyno::runtime::net::Listener::new(8);
/// listener.close();
/// let tokio = tokio::runtime::Builder::new_current_thread().build()?;
/// let err = tokio.block_on(listener.connect()).unwrap_err();
/// assert_eq!(err, wasmdyno::runtime::net::NetError::Closed);
/// assert_eq!(err.to_string(), "the dyno's listener is closed");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The listener was closed: the dyno is stopping and takes no new connections.
    #[error("the dyno's listener is closed")]
    Closed,
}

/// The host side of a web dyno's listening socket. Cloning shares it.
///
/// A listener outlives the guest instances that accept on it, like a socket passed to a restarted process:
/// connections queued while no instance is accepting wait for the next one. [`Listener::close`] ends it for good.
///
/// ```
/// use tokio::io::AsyncWriteExt;
/// use wasmdyno::{runtime::net::Listener, runtime::RunSpec};
///
/// let listener = Listener::new(8);
/// // A preview-1 guest accepts on it at fd 4.
/// let spec = RunSpec::new(vec!["web.wasm".into()], Default::default(), Default::default())
///     .with_listener(listener.clone());
/// # drop(spec);
/// let tokio = tokio::runtime::Builder::new_current_thread().build()?;
/// tokio.block_on(async {
///     // The router's side: a connection waits in the backlog until the guest accepts it.
///     let mut conn = listener.connect().await?;
///     conn.write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n").await?;
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// listener.close(); // the dyno is stopping
/// assert!(listener.is_closed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Listener {
    shared: Arc<Shared>,
}

struct Shared {
    /// Connections queued before [`Listener::connect`] waits; at least 1.
    backlog: usize,
    state: Mutex<ListenState>,
    /// Signalled when a queued connection is taken, when the listener closes, and when a guest starts accepting.
    changed: Notify,
}

#[derive(Default)]
struct ListenState {
    queue: VecDeque<GuestSocket>,
    closed: bool,
    /// Has an attached guest called `sock_accept` or polled the listener since it was attached?
    accepting: bool,
    /// Guest descriptors referring to this listener.
    attached: usize,
    /// Guest calls waiting for a connection.
    acceptors: Wakers,
    /// Since when connections have waited with none taken: set when the queue fills from empty and on every
    /// accept that leaves it non-empty; `None` while it is empty.
    waiting_since: Option<std::time::Instant>,
    /// When the queue last filled from empty, the listener closed, or a poll last answered it ([`pipe::stamp`]).
    since: u64,
}

impl Listener {
    /// A listener that queues up to `backlog` connections (at least one) before [`connect`](Self::connect) waits.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let listener = wasmdyno::runtime::net::Listener::new(1);
    /// let tokio = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    /// tokio.block_on(async {
    ///     let _first = listener.connect().await.unwrap();
    ///     // The backlog is full until the guest accepts: the next connection waits.
    ///     let second = tokio::time::timeout(Duration::from_millis(20), listener.connect()).await;
    ///     assert!(second.is_err());
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(backlog: usize) -> Listener {
        Listener {
            shared: Arc::new(Shared {
                backlog: backlog.max(1),
                state: Mutex::default(),
                changed: Notify::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, ListenState> {
        // The state stays consistent even if a holder panicked: every change is a single assignment or push.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a connection to the guest: returns the host end, whose guest end is queued for the guest's
    /// `sock_accept`. Waits while the backlog is full; fails once the listener is closed.
    ///
    /// Cancel-safe: dropping the future before it completes queues nothing.
    ///
    /// ```
    /// use wasmdyno::{runtime::net::Listener, runtime::net::NetError};
    ///
    /// let listener = Listener::new(8);
    /// let tokio = tokio::runtime::Builder::new_current_thread().build()?;
    /// let conn = tokio.block_on(listener.connect());
    /// assert!(conn.is_ok());
    /// listener.close();
    /// assert_eq!(tokio.block_on(listener.connect()).unwrap_err(), NetError::Closed);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn connect(&self) -> Result<Connection, NetError> {
        loop {
            // Created before the check so that a change between the check and the wait is not missed.
            let changed = self.shared.changed.notified();
            {
                let mut state = self.state();
                if state.closed {
                    return Err(NetError::Closed);
                }
                if state.queue.len() < self.shared.backlog {
                    let (host, guest) = pair();
                    if state.queue.is_empty() {
                        state.waiting_since = Some(std::time::Instant::now());
                        state.since = pipe::stamp();
                    }
                    state.queue.push_back(guest);
                    let acceptors = std::mem::take(&mut state.acceptors);
                    drop(state);
                    acceptors.wake_all();
                    return Ok(host);
                }
            }
            changed.await;
        }
    }

    /// Stops the listener for good: new connections are refused, queued ones are dropped (their host ends read
    /// end of stream), and the guest's `sock_accept` answers `EINVAL` from now on, as a shut-down listening
    /// socket does. This is a web dyno's graceful stop: Go's `http.Serve` returns an error and a Rust server's
    /// `accept` fails.
    ///
    /// ```
    /// use tokio::io::AsyncReadExt;
    /// use wasmdyno::{runtime::net::Listener, runtime::net::NetError};
    ///
    /// let listener = Listener::new(8);
    /// let tokio = tokio::runtime::Builder::new_current_thread().build()?;
    /// tokio.block_on(async {
    ///     let mut queued = listener.connect().await?;
    ///     listener.close();
    ///     // Never accepted: dropped with the backlog, so it reads end of stream.
    ///     let mut reply = Vec::new();
    ///     queued.read_to_end(&mut reply).await?;
    ///     assert!(reply.is_empty());
    ///     assert_eq!(listener.connect().await.unwrap_err(), NetError::Closed);
    ///     Ok::<(), Box<dyn std::error::Error>>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        let mut state = self.state();
        if state.queue.is_empty() {
            state.since = pipe::stamp();
        }
        state.closed = true;
        let refused = std::mem::take(&mut state.queue);
        state.waiting_since = None;
        let acceptors = std::mem::take(&mut state.acceptors);
        drop(state);
        drop(refused);
        acceptors.wake_all();
        self.shared.changed.notify_waiters();
    }

    /// How long connections have been waiting with none accepted (`None` when none waits): a guest that does
    /// not accept while this grows has stopped making progress.
    pub(crate) fn stalled_for(&self) -> Option<std::time::Duration> {
        self.state().waiting_since.map(|since| since.elapsed())
    }

    /// Has [`close`](Self::close) been called?
    ///
    /// ```
    /// let listener = wasmdyno::runtime::net::Listener::new(8);
    /// let clone = listener.clone();
    /// assert!(!listener.is_closed());
    /// clone.close();
    /// assert!(listener.is_closed(), "clones share the listener");
    /// ```
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Connections queued and not yet accepted by the guest.
    pub(crate) fn queued(&self) -> usize {
        self.state().queue.len()
    }

    /// Is the guest accepting? True from the guest's first `sock_accept` on the listener (or first `poll_oneoff`
    /// on it) until the instance goes away, so a restarted dyno has to accept again. This is what Heroku's R10
    /// (boot timeout) watches.
    pub(crate) fn is_accepting(&self) -> bool {
        self.state().accepting
    }

    /// Waits until the guest is accepting, as it is from its first `sock_accept` on the listener (or first
    /// `poll_oneoff` on it) until its instance goes away: a restarted dyno has to accept again. This is what
    /// Heroku's R10 (boot timeout) watches; combine it with a timer. It does not return when the listener closes.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let listener = wasmdyno::runtime::net::Listener::new(8);
    /// let tokio = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    /// // No guest accepts on this listener, so its boot timeout passes.
    /// let boot_timeout = Duration::from_millis(20);
    /// let booted = tokio.block_on(async { tokio::time::timeout(boot_timeout, listener.accepting()).await });
    /// assert!(booted.is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn accepting(&self) {
        loop {
            let changed = self.shared.changed.notified();
            if self.is_accepting() {
                return;
            }
            changed.await;
        }
    }

    /// Waits until the listener is closed (its dyno is stopping).
    pub(crate) async fn closed(&self) {
        loop {
            let changed = self.shared.changed.notified();
            if self.is_closed() {
                return;
            }
            changed.await;
        }
    }

    /// An identity for this listener, shared by its clones (the router keys its per-dyno counts by it).
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    /// Takes `conn` out of the backlog if the guest has not accepted it yet (it then reads as refused); true if
    /// it was still queued.
    pub(crate) fn withdraw(&self, conn: &Connection) -> bool {
        let mut state = self.state();
        let withdrawn = state
            .queue
            .iter()
            .position(|guest| Arc::ptr_eq(&guest.0.incoming, &conn.to_guest))
            .and_then(|i| state.queue.remove(i));
        if state.queue.is_empty() {
            state.waiting_since = None;
        }
        drop(state);
        let found = withdrawn.is_some();
        // Dropping the guest end, outside the lock, is what the host end reads as refused.
        drop(withdrawn);
        if found {
            self.shared.changed.notify_waiters();
        }
        found
    }

    // ---- the guest side, used by the preview-1 host

    /// A guest descriptor for this listener. While at least one exists the listener counts as attached; when
    /// the last goes (the instance closed it or was dropped), the listener stops counting as accepting.
    pub(crate) fn attach(&self) -> GuestListener {
        self.state().attached += 1;
        GuestListener(self.clone())
    }

    fn mark_accepting(&self, state: &mut ListenState) {
        if !state.accepting {
            state.accepting = true;
            self.shared.changed.notify_waiters();
        }
    }

    /// Takes the next queued connection: `Ok(None)` when none is queued.
    pub(crate) fn try_accept(&self) -> Result<Option<GuestSocket>, NetError> {
        let mut state = self.state();
        self.mark_accepting(&mut state);
        if state.closed {
            return Err(NetError::Closed);
        }
        let next = state.queue.pop_front();
        if next.is_some() {
            state.waiting_since = (!state.queue.is_empty()).then(std::time::Instant::now);
        }
        // Marked while the listener is locked, so that `withdraw` and `Connection::accepted` never disagree.
        let wake = next
            .as_ref()
            .map(|socket| socket.0.outgoing.mark_accepted());
        drop(state);
        if let Some(wake) = wake {
            wake.wake_all();
        }
        if next.is_some() {
            // Room in the backlog for a waiting `connect`.
            self.shared.changed.notify_waiters();
        }
        Ok(next)
    }

    /// Waits for the next connection.
    pub(crate) async fn accept(&self) -> Result<GuestSocket, NetError> {
        loop {
            if let Some(socket) = self.try_accept()? {
                return Ok(socket);
            }
            poll_fn(|cx| self.poll_acceptable(cx)).await;
        }
    }

    /// Would `sock_accept` answer at once (a connection is queued, or the listener is closed)?
    pub(crate) fn acceptable(&self) -> Option<Ready> {
        let mut state = self.state();
        // A guest polling its listener is accepting too (Go polls before its first accept after EAGAIN).
        self.mark_accepting(&mut state);
        if state.closed {
            Some(Ready {
                since: state.since,
                ..Ready::HANGUP
            })
        } else if state.queue.is_empty() {
            None
        } else {
            Some(Ready {
                since: state.since,
                ..Ready::bytes(state.queue.len())
            })
        }
    }

    /// A poll answered it ready to accept ([`Ready::since`]).
    pub(crate) fn answered(&self) {
        self.state().since = pipe::stamp();
    }

    fn poll_acceptable(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        if state.closed || !state.queue.is_empty() {
            Poll::Ready(())
        } else {
            state.acceptors.register(cx.waker());
            Poll::Pending
        }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Listener")
            .field("backlog", &self.shared.backlog)
            .field("queued", &state.queue.len())
            .field("closed", &state.closed)
            .field("accepting", &state.accepting)
            .finish()
    }
}

/// A guest's descriptor for a [`Listener`]: detaches when dropped.
pub(crate) struct GuestListener(Listener);

impl GuestListener {
    pub(crate) fn listener(&self) -> &Listener {
        &self.0
    }
}

impl Drop for GuestListener {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.attached = state.attached.saturating_sub(1);
        if state.attached == 0 && state.accepting {
            state.accepting = false;
            // Connections waiting in `Connection::accepted` learn that no instance will take them.
            self.0.shared.changed.notify_waiters();
        }
    }
}
