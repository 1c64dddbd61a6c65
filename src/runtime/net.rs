//! Listener sockets for web dynos that listen (preview-1 programs accepting on fd 4), with connections that are
//! in-process byte streams rather than kernel sockets.
//!
//! The host side is a [`Listener`]: the router accepts a TCP connection, calls [`Listener::connect`] and copies
//! bytes between the two ends. The guest side lives in the preview-1 host ([`super::p1`]): `sock_accept` takes the
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

/// Bytes buffered in each direction of a connection before the writer has to wait.
pub const BUFFER: usize = 64 * 1024;

/// Errors from a [`Listener`].
///
/// ```
/// let listener = wasmdyno::Listener::new(8);
/// listener.close();
/// let tokio = tokio::runtime::Builder::new_current_thread().build()?;
/// let err = tokio.block_on(listener.connect()).unwrap_err();
/// assert_eq!(err, wasmdyno::NetError::Closed);
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
/// use wasmdyno::{Listener, RunSpec};
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
}

impl Listener {
    /// A listener that queues up to `backlog` connections (at least one) before [`connect`](Self::connect) waits.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let listener = wasmdyno::Listener::new(1);
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
    /// use wasmdyno::{Listener, NetError};
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
    /// use wasmdyno::{Listener, NetError};
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
    /// let listener = wasmdyno::Listener::new(8);
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
    /// let listener = wasmdyno::Listener::new(8);
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
            Some(Ready::HANGUP)
        } else if state.queue.is_empty() {
            None
        } else {
            Some(Ready::bytes(state.queue.len()))
        }
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

/// How ready a descriptor is, for `poll_oneoff`: bytes readable (or writable, or connections queued), and
/// whether the other end has gone (end of stream, broken pipe, closed listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    pub bytes: usize,
    pub hangup: bool,
}

impl Ready {
    const HANGUP: Ready = Ready {
        bytes: 0,
        hangup: true,
    };

    fn bytes(bytes: usize) -> Ready {
        Ready {
            bytes,
            hangup: false,
        }
    }
}

/// Tasks to wake when a pipe or listener changes. Several may wait on one (a dyno instance and a router task).
#[derive(Default)]
struct Wakers(Vec<Waker>);

impl Wakers {
    fn register(&mut self, waker: &Waker) {
        if !self.0.iter().any(|w| w.will_wake(waker)) {
            self.0.push(waker.clone());
        }
    }

    /// Wakes every waiter; call after releasing the lock the set was taken from.
    fn wake_all(self) {
        self.0.into_iter().for_each(Waker::wake);
    }
}

/// One direction of a connection: a bounded byte buffer with a reading and a writing end.
#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
}

#[derive(Default)]
struct PipeState {
    buf: VecDeque<u8>,
    /// The writing end shut down or went away: the reader sees end of stream once `buf` is drained.
    write_closed: bool,
    /// The reading end shut down or went away: writes fail with a broken pipe.
    read_closed: bool,
    /// The guest took the connection from the listener's backlog (set on the guest → host pipe).
    accepted: bool,
    /// Bytes the reading end has taken so far.
    taken: u64,
    readers: Wakers,
    writers: Wakers,
}

impl Pipe {
    fn state(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads (or with `peek`, copies) up to `max` bytes: `None` if nothing is buffered yet, empty at end of
    /// stream.
    fn read(&self, max: usize, peek: bool) -> Option<Vec<u8>> {
        let mut state = self.state();
        if state.buf.is_empty() {
            return (state.write_closed || state.read_closed).then(Vec::new);
        }
        let n = max.min(state.buf.len());
        if peek {
            return Some(state.buf.iter().take(n).copied().collect());
        }
        let data: Vec<u8> = state.buf.drain(..n).collect();
        state.taken += n as u64;
        let writers = std::mem::take(&mut state.writers);
        drop(state);
        writers.wake_all();
        Some(data)
    }

    /// Appends as much of `data` as fits; `WouldBlock` when the buffer is full, `BrokenPipe` when the reader is
    /// gone or this end shut down.
    fn write(&self, data: &[u8]) -> io::Result<usize> {
        let mut state = self.state();
        if state.read_closed || state.write_closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = data.len().min(BUFFER - state.buf.len());
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        state.buf.extend(&data[..n]);
        let readers = std::mem::take(&mut state.readers);
        drop(state);
        readers.wake_all();
        Ok(n)
    }

    fn readable(&self) -> Option<Ready> {
        let state = self.state();
        let hangup = state.write_closed || state.read_closed;
        (hangup || !state.buf.is_empty()).then_some(Ready {
            bytes: state.buf.len(),
            hangup,
        })
    }

    fn writable(&self) -> Option<Ready> {
        let state = self.state();
        if state.read_closed || state.write_closed {
            Some(Ready::HANGUP)
        } else {
            let room = BUFFER - state.buf.len();
            (room > 0).then(|| Ready::bytes(room))
        }
    }

    /// Ready when at least `min` bytes are buffered or no more will come.
    fn poll_readable(&self, cx: &mut Context<'_>, min: usize) -> Poll<()> {
        let mut state = self.state();
        if state.buf.len() >= min || state.write_closed || state.read_closed {
            Poll::Ready(())
        } else {
            state.readers.register(cx.waker());
            Poll::Pending
        }
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        if state.buf.len() < BUFFER || state.write_closed || state.read_closed {
            Poll::Ready(())
        } else {
            state.writers.register(cx.waker());
            Poll::Pending
        }
    }

    /// Records that the guest accepted the connection; returns the host tasks to wake.
    fn mark_accepted(&self) -> Wakers {
        let mut state = self.state();
        state.accepted = true;
        std::mem::take(&mut state.readers)
    }

    /// Has the guest accepted the connection (`Some(true)`), or dropped it unaccepted (`Some(false)`)?
    fn acceptance(&self) -> Option<bool> {
        let state = self.state();
        if state.accepted {
            Some(true)
        } else if state.write_closed {
            Some(false)
        } else {
            None
        }
    }

    fn poll_acceptance(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        if state.accepted || state.write_closed {
            Poll::Ready(())
        } else {
            state.readers.register(cx.waker());
            Poll::Pending
        }
    }

    /// The reader is done: buffered and future bytes are dropped, and writers see a broken pipe.
    fn close_read(&self) {
        let mut state = self.state();
        state.read_closed = true;
        state.buf = VecDeque::new();
        let (readers, writers) = (
            std::mem::take(&mut state.readers),
            std::mem::take(&mut state.writers),
        );
        drop(state);
        readers.wake_all();
        writers.wake_all();
    }

    /// The writer is done: the reader sees end of stream after what is buffered.
    fn close_write(&self) {
        let mut state = self.state();
        state.write_closed = true;
        let (readers, writers) = (
            std::mem::take(&mut state.readers),
            std::mem::take(&mut state.writers),
        );
        drop(state);
        readers.wake_all();
        writers.wake_all();
    }
}

/// A connected pair: the host end and the guest end.
fn pair() -> (Connection, GuestSocket) {
    let (to_guest, from_guest) = (Arc::new(Pipe::default()), Arc::new(Pipe::default()));
    let host = Connection {
        to_guest: to_guest.clone(),
        from_guest: from_guest.clone(),
    };
    let guest = GuestSocket(SocketRef {
        incoming: to_guest,
        outgoing: from_guest,
    });
    (host, guest)
}

/// The host end of a connection to a guest: bytes written here are what the guest reads, and the other way
/// round. Dropping it is closing the connection; [`shutdown`](tokio::io::AsyncWriteExt::shutdown) closes only
/// the direction to the guest (the guest reads end of stream) and keeps reading its reply.
///
/// ```
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let listener = wasmdyno::Listener::new(8);
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
    to_guest: Arc<Pipe>,
    from_guest: Arc<Pipe>,
}

/// How many bytes the guest has read from a [`Connection`], which it may already have handed over.
pub(crate) struct GuestReads(Arc<Pipe>);

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
pub(crate) struct GuestSocket(SocketRef);

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
    incoming: Arc<Pipe>,
    /// Guest → host.
    outgoing: Arc<Pipe>,
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
    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;

    use super::*;

    const LONG: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn bytes_flow_both_ways_and_closing_ends_the_stream() {
        let listener = Listener::new(4);
        let mut host = listener.connect().await.unwrap();
        let guest = listener.try_accept().unwrap().expect("queued");
        host.write_all(b"ping").await.unwrap();
        let got = guest.handle().recv(16, RecvFlags::default()).await.unwrap();
        assert_eq!(got, b"ping");
        assert_eq!(guest.handle().send(b"pong", false).await.unwrap(), 4);
        drop(guest);
        let mut reply = Vec::new();
        host.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"pong", "the reply, then end of stream");
        let broken = host.write_all(b"more").await.unwrap_err();
        assert_eq!(broken.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn a_dropped_host_end_is_end_of_stream_and_a_broken_pipe_for_the_guest() {
        let listener = Listener::new(1);
        let mut host = listener.connect().await.unwrap();
        let guest = listener.try_accept().unwrap().unwrap();
        host.write_all(b"last words").await.unwrap();
        drop(host);
        let socket = guest.handle();
        assert_eq!(
            socket.readable(),
            Some(Ready {
                bytes: 10,
                hangup: true
            })
        );
        let flags = RecvFlags::default();
        assert_eq!(socket.recv(64, flags).await.unwrap(), b"last words");
        assert!(socket.recv(64, flags).await.unwrap().is_empty());
        let err = socket.send(b"hello?", false).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(socket.writable(), Some(Ready::HANGUP));
    }

    #[tokio::test]
    async fn a_full_pipe_blocks_the_writer_until_the_reader_drains_it() {
        let listener = Listener::new(1);
        let mut host = listener.connect().await.unwrap();
        let guest = listener.try_accept().unwrap().unwrap();
        let socket = guest.handle().clone();
        let big = vec![7u8; BUFFER + 10];
        assert_eq!(
            socket.send(&big, true).await.unwrap(),
            BUFFER,
            "as much as fits"
        );
        assert_eq!(socket.writable(), None);
        let err = socket.send(b"x", true).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let writer = tokio::spawn(async move { socket.send(&[1u8; 100], false).await });
        let mut sink = vec![0u8; BUFFER + 100];
        timeout(LONG, host.read_exact(&mut sink))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(timeout(LONG, writer).await.unwrap().unwrap().unwrap(), 100);
    }

    #[tokio::test]
    async fn peek_and_wait_all() {
        let listener = Listener::new(1);
        let mut host = listener.connect().await.unwrap();
        let guest = listener.try_accept().unwrap().unwrap();
        let socket = guest.handle().clone();
        host.write_all(b"abc").await.unwrap();
        let peek = RecvFlags {
            peek: true,
            ..RecvFlags::default()
        };
        assert_eq!(socket.recv(2, peek).await.unwrap(), b"ab");
        let wait_all = RecvFlags {
            wait_all: true,
            ..RecvFlags::default()
        };
        let reader = tokio::spawn(async move { socket.recv(6, wait_all).await });
        tokio::task::yield_now().await;
        host.write_all(b"def").await.unwrap();
        let got = timeout(LONG, reader).await.unwrap().unwrap().unwrap();
        assert_eq!(got, b"abcdef");
        let nonblocking = RecvFlags {
            nonblocking: true,
            ..RecvFlags::default()
        };
        let err = guest.handle().recv(1, nonblocking).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[tokio::test]
    async fn connect_waits_while_the_backlog_is_full() {
        let listener = Listener::new(1);
        let _first = listener.connect().await.unwrap();
        let waiting = tokio::spawn({
            let listener = listener.clone();
            async move { listener.connect().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(listener.queued(), 1);
        let _accepted = listener.try_accept().unwrap().unwrap();
        timeout(LONG, waiting).await.unwrap().unwrap().unwrap();
        assert_eq!(listener.queued(), 1);
    }

    #[tokio::test]
    async fn close_refuses_queued_and_new_connections_and_ends_accept() {
        let listener = Listener::new(8);
        let mut queued = listener.connect().await.unwrap();
        let acceptor = tokio::spawn({
            let listener = listener.clone();
            async move {
                let first = listener.accept().await.map(drop);
                let second = listener.accept().await.map(drop);
                (first, second)
            }
        });
        let (first, second) = {
            // Let the acceptor take the queued connection and start waiting for the next.
            while listener.queued() > 0 {
                tokio::task::yield_now().await;
            }
            tokio::task::yield_now().await;
            listener.close();
            timeout(LONG, acceptor).await.unwrap().unwrap()
        };
        assert_eq!(first, Ok(()));
        assert_eq!(second, Err(NetError::Closed));
        assert_eq!(listener.connect().await.unwrap_err(), NetError::Closed);
        assert!(listener.is_closed());
        // The accepted connection was dropped by the acceptor: end of stream.
        let mut rest = Vec::new();
        queued.read_to_end(&mut rest).await.unwrap();

        let listener = Listener::new(8);
        let mut refused = listener.connect().await.unwrap();
        listener.close();
        assert_eq!(listener.queued(), 0);
        assert_eq!(refused.read(&mut [0u8; 8]).await.unwrap(), 0);
        assert!(refused.write_all(b"GET /").await.is_err());
    }

    #[tokio::test]
    async fn accepting_is_reported_until_the_guest_detaches() {
        let listener = Listener::new(1);
        let guest = listener.attach();
        assert!(!listener.is_accepting());
        let watcher = tokio::spawn({
            let listener = listener.clone();
            async move { listener.accepting().await }
        });
        tokio::task::yield_now().await;
        assert!(!watcher.is_finished());
        assert_eq!(guest.listener().acceptable(), None);
        timeout(LONG, watcher).await.unwrap().unwrap();
        assert!(listener.is_accepting());
        drop(guest);
        assert!(
            !listener.is_accepting(),
            "a restarted instance must accept again"
        );
    }

    #[tokio::test]
    async fn accepted_says_whether_the_guest_took_the_connection() {
        let listener = Listener::new(4);
        let guest = listener.attach();
        assert_eq!(guest.listener().acceptable(), None, "polling is accepting");
        let conn = listener.connect().await.unwrap();
        let waiting = tokio::spawn({
            let listener = listener.clone();
            async move { conn.accepted(&listener).await.map(|()| conn) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let _taken = listener.try_accept().unwrap().expect("queued");
        let conn = timeout(LONG, waiting).await.unwrap().unwrap().unwrap();
        assert_eq!(conn.accepted(&listener).await, Ok(()), "and stays so");

        // Queued when the listener closes: refused, so the request may go elsewhere.
        let queued = listener.connect().await.unwrap();
        listener.close();
        assert_eq!(queued.accepted(&listener).await, Err(NetError::Closed));

        // Queued when the instance goes away: withdrawn and refused.
        let listener = Listener::new(4);
        let guest = listener.attach();
        let _ = guest.listener().acceptable();
        let queued = listener.connect().await.unwrap();
        let waiting = tokio::spawn({
            let listener = listener.clone();
            async move { queued.accepted(&listener).await }
        });
        tokio::task::yield_now().await;
        drop(guest);
        assert_eq!(
            timeout(LONG, waiting).await.unwrap().unwrap(),
            Err(NetError::Closed)
        );
        assert_eq!(listener.queued(), 0, "withdrawn from the backlog");
    }

    #[tokio::test]
    async fn any_ready_wakes_on_a_connection_or_data() {
        let listener = Listener::new(2);
        let interests = [Interest::Accept(listener.clone())];
        let waiter = tokio::spawn(async move { any_ready(&interests).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let mut host = listener.connect().await.unwrap();
        timeout(LONG, waiter).await.unwrap().unwrap();

        let guest = listener.try_accept().unwrap().unwrap();
        let interests = [Interest::Read(guest.handle().clone())];
        let waiter = tokio::spawn(async move { any_ready(&interests).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        host.write_all(b"x").await.unwrap();
        timeout(LONG, waiter).await.unwrap().unwrap();
    }
}
