//! One direction of a connection: a bounded byte pipe with exact readiness and the wakers waiting on it.

#[allow(unused_imports)]
use super::*;

/// How ready a descriptor is, for `poll_oneoff`: bytes readable (or writable, or connections queued), and
/// whether the other end has gone (end of stream, broken pipe, closed listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    pub bytes: usize,
    pub hangup: bool,
    /// When it became ready to read or accept (or was last answered ready), as a [`stamp`]: the lower, the
    /// longer it has waited (0 for readiness to write, which nothing queues behind).
    pub since: u64,
}

impl Ready {
    pub(super) const HANGUP: Ready = Ready {
        bytes: 0,
        hangup: true,
        since: 0,
    };

    pub(super) fn bytes(bytes: usize) -> Ready {
        Ready {
            bytes,
            hangup: false,
            since: 0,
        }
    }
}

/// A number from a process-wide counter: stamps taken later are larger. Orders the moments descriptors became
/// ready, so that `poll_oneoff` can answer the one that has waited longest ([`super::super::p1`]).
pub(super) fn stamp() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Tasks to wake when a pipe or listener changes. Several may wait on one (a dyno instance and a router task).
#[derive(Default)]
pub(super) struct Wakers(Vec<Waker>);

impl Wakers {
    pub(super) fn register(&mut self, waker: &Waker) {
        if !self.0.iter().any(|w| w.will_wake(waker)) {
            self.0.push(waker.clone());
        }
    }

    /// Wakes every waiter; call after releasing the lock the set was taken from.
    pub(super) fn wake_all(self) {
        self.0.into_iter().for_each(Waker::wake);
    }
}

/// One direction of a connection: a bounded byte buffer with a reading and a writing end.
#[derive(Default)]
pub(super) struct Pipe {
    pub(super) state: Mutex<PipeState>,
}

#[derive(Default)]
pub(super) struct PipeState {
    pub(super) buf: VecDeque<u8>,
    /// The writing end shut down or went away: the reader sees end of stream once `buf` is drained.
    pub(super) write_closed: bool,
    /// The reading end shut down or went away: writes fail with a broken pipe.
    pub(super) read_closed: bool,
    /// The guest took the connection from the listener's backlog (set on the guest → host pipe).
    pub(super) accepted: bool,
    /// Bytes the reading end has taken so far.
    pub(super) taken: u64,
    /// When `buf` last filled from empty, an end closed, or a poll last answered it readable ([`stamp`]).
    pub(super) since: u64,
    pub(super) readers: Wakers,
    pub(super) writers: Wakers,
}

impl Pipe {
    pub(super) fn state(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads (or with `peek`, copies) up to `max` bytes: `None` if nothing is buffered yet, empty at end of
    /// stream.
    pub(super) fn read(&self, max: usize, peek: bool) -> Option<Vec<u8>> {
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
    pub(super) fn write(&self, data: &[u8]) -> io::Result<usize> {
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
        if state.buf.is_empty() {
            state.since = stamp();
        }
        state.buf.extend(&data[..n]);
        let readers = std::mem::take(&mut state.readers);
        drop(state);
        readers.wake_all();
        Ok(n)
    }

    pub(super) fn readable(&self) -> Option<Ready> {
        let state = self.state();
        let hangup = state.write_closed || state.read_closed;
        (hangup || !state.buf.is_empty()).then_some(Ready {
            bytes: state.buf.len(),
            hangup,
            since: state.since,
        })
    }

    /// A poll answered it readable: it goes to the back of the line of descriptors waiting to be answered.
    pub(super) fn answered(&self) {
        self.state().since = stamp();
    }

    pub(super) fn writable(&self) -> Option<Ready> {
        let state = self.state();
        if state.read_closed || state.write_closed {
            Some(Ready::HANGUP)
        } else {
            let room = BUFFER - state.buf.len();
            (room > 0).then(|| Ready::bytes(room))
        }
    }

    /// Ready when at least `min` bytes are buffered or no more will come.
    pub(super) fn poll_readable(&self, cx: &mut Context<'_>, min: usize) -> Poll<()> {
        let mut state = self.state();
        if state.buf.len() >= min || state.write_closed || state.read_closed {
            Poll::Ready(())
        } else {
            state.readers.register(cx.waker());
            Poll::Pending
        }
    }

    pub(super) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        if state.buf.len() < BUFFER || state.write_closed || state.read_closed {
            Poll::Ready(())
        } else {
            state.writers.register(cx.waker());
            Poll::Pending
        }
    }

    /// Records that the guest accepted the connection; returns the host tasks to wake.
    pub(super) fn mark_accepted(&self) -> Wakers {
        let mut state = self.state();
        state.accepted = true;
        std::mem::take(&mut state.readers)
    }

    /// Has the guest accepted the connection (`Some(true)`), or dropped it unaccepted (`Some(false)`)?
    pub(super) fn acceptance(&self) -> Option<bool> {
        let state = self.state();
        if state.accepted {
            Some(true)
        } else if state.write_closed {
            Some(false)
        } else {
            None
        }
    }

    pub(super) fn poll_acceptance(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        if state.accepted || state.write_closed {
            Poll::Ready(())
        } else {
            state.readers.register(cx.waker());
            Poll::Pending
        }
    }

    /// The reader is done: buffered and future bytes are dropped, and writers see a broken pipe.
    pub(super) fn close_read(&self) {
        let mut state = self.state();
        // Ready to read from now (end of stream), unless it already was: then it keeps its place.
        if state.buf.is_empty() && !state.write_closed {
            state.since = stamp();
        }
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
    pub(super) fn close_write(&self) {
        let mut state = self.state();
        if state.buf.is_empty() && !state.read_closed {
            state.since = stamp();
        }
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
pub(super) fn pair() -> (Connection, GuestSocket) {
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
