//! `poll_oneoff`: subscriptions, what is ready now, and what to wait on.

#[allow(unused_imports)]
use super::*;

impl P1Ctx {
    /// Answers the subscriptions that are ready now; empty if none is (the caller waits, then asks again).
    ///
    /// Of the sockets and listeners ready to read or accept, only the one that has waited longest (since it
    /// became ready, or since a poll last answered it) is answered; the others stay ready for the next call, and
    /// the one answered goes to the back of the line. A guest serving many connections thus takes their
    /// requests in the order they came, whatever order it runs a batch of events in (Go's scheduler runs a batch
    /// last event first: given them all, it served first the connection that had waited least), and one that
    /// leaves a descriptor ready without reading it still gets to the others in turn.
    pub(super) fn poll_ready(&self, subs: &[Subscription], now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let mut oldest: Option<(u64, Event, &Desc)> = None;
        for sub in subs {
            let event = |error: Errno, nbytes: u64, flags: u16| Event {
                userdata: sub.userdata(),
                error: error.0,
                kind: sub.kind(),
                nbytes,
                flags,
            };
            // Sockets report through flags, never `error`: Go's poller takes an error event as a broken
            // descriptor and fails the reads that would still find data.
            let event_of = |ready: net::Ready| {
                let hangup = if ready.hangup { abi::EVENTRW_HANGUP } else { 0 };
                event(Errno::SUCCESS, ready.bytes as u64, hangup)
            };
            let mut waited = |ready: net::Ready, desc| {
                if oldest
                    .as_ref()
                    .is_none_or(|(since, ..)| ready.since < *since)
                {
                    oldest = Some((ready.since, event_of(ready), desc));
                }
            };
            match *sub {
                Subscription::Clock { deadline, .. } => {
                    if deadline <= now {
                        events.push(event(Errno::SUCCESS, 0, 0));
                    }
                }
                Subscription::Read { fd, .. } => match self.fds.get(&fd) {
                    None => events.push(event(Errno::BADF, 0, 0)),
                    Some(Desc::Stdin { .. }) => {
                        if let Some(n) = self.stdin.ready() {
                            let hangup = if n == 0 { abi::EVENTRW_HANGUP } else { 0 };
                            events.push(event(Errno::SUCCESS, n as u64, hangup));
                        }
                    }
                    Some(Desc::File(f)) => {
                        let size = self.fs().stat(f.ino).map_or(0, |s| s.size);
                        events.push(event(Errno::SUCCESS, size.saturating_sub(f.pos), 0));
                    }
                    Some(desc @ Desc::Socket { socket, .. }) => {
                        if let Some(ready) = socket.handle().readable() {
                            waited(ready, desc);
                        }
                    }
                    // Readable when a connection is queued (or the listener closed).
                    Some(desc @ Desc::Listener { listener, .. }) => {
                        if let Some(ready) = listener.listener().acceptable() {
                            waited(ready, desc);
                        }
                    }
                    Some(Desc::Out { .. }) => events.push(event(Errno::BADF, 0, 0)),
                    Some(Desc::Dir(_)) => events.push(event(Errno::ISDIR, 0, 0)),
                },
                Subscription::Write { fd, .. } => match self.fds.get(&fd) {
                    None | Some(Desc::Stdin { .. }) => events.push(event(Errno::BADF, 0, 0)),
                    Some(Desc::Dir(_)) => events.push(event(Errno::ISDIR, 0, 0)),
                    Some(Desc::Socket { socket, .. }) => {
                        events.extend(socket.handle().writable().map(event_of));
                    }
                    // A listener is never writable; say so rather than let the guest wait forever.
                    Some(Desc::Listener { .. }) => events.push(event(Errno::NOTCONN, 0, 0)),
                    Some(_) => events.push(event(Errno::SUCCESS, 0, 0)),
                },
            }
        }
        if let Some((_, event, desc)) = oldest {
            match desc {
                Desc::Socket { socket, .. } => socket.handle().answered(),
                Desc::Listener { listener, .. } => listener.listener().answered(),
                _ => {}
            }
            events.push(event);
        }
        events
    }

    /// What the subscriptions wait on besides clocks: sockets and listeners, and whether stdin.
    pub(super) fn interests(&self, subs: &[Subscription]) -> (Vec<net::Interest>, bool) {
        let mut interests = Vec::new();
        let mut stdin = false;
        for sub in subs {
            // Everything else is ready at once or never becomes ready.
            match *sub {
                Subscription::Read { fd, .. } => match self.fds.get(&fd) {
                    Some(Desc::Stdin { .. }) => stdin = true,
                    Some(Desc::Socket { socket, .. }) => {
                        interests.push(net::Interest::Read(socket.handle().clone()));
                    }
                    Some(Desc::Listener { listener, .. }) => {
                        interests.push(net::Interest::Accept(listener.listener().clone()));
                    }
                    _ => {}
                },
                Subscription::Write { fd, .. } => {
                    if let Some(Desc::Socket { socket, .. }) = self.fds.get(&fd) {
                        interests.push(net::Interest::Write(socket.handle().clone()));
                    }
                }
                Subscription::Clock { .. } => {}
            }
        }
        (interests, stdin)
    }

    pub(super) fn parse_subscriptions(
        &self,
        mem: &Mem,
        ptr: u32,
        n: u32,
    ) -> abi::Result<Vec<Subscription>> {
        // As poll(2) refuses more descriptors than a process may open: the host's list stays small.
        if n > MAX_SUBSCRIPTIONS {
            return Err(Errno::INVAL);
        }
        let raw = mem.slice(ptr, n.checked_mul(48).ok_or(Errno::FAULT)?)?;
        let now = Instant::now();
        let mut subs = Vec::with_capacity(n as usize);
        for s in raw.chunks_exact(48) {
            let u64_at = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
            let u32_at = |at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
            let userdata = u64_at(0);
            subs.push(match s[8] {
                abi::EVENTTYPE_CLOCK => {
                    let (clock, timeout) = (u32_at(16), u64_at(24));
                    let flags = u16::from_le_bytes([s[40], s[41]]);
                    let wait = if flags & abi::SUBCLOCK_ABSTIME != 0 {
                        Duration::from_nanos(timeout.saturating_sub(self.now(clock)?))
                    } else {
                        self.now(clock)?; // validates the clock id
                        Duration::from_nanos(timeout)
                    };
                    Subscription::Clock {
                        userdata,
                        deadline: now
                            .checked_add(wait)
                            .unwrap_or(now + Duration::from_secs(1 << 40)),
                    }
                }
                abi::EVENTTYPE_FD_READ => Subscription::Read {
                    userdata,
                    fd: u32_at(16),
                },
                abi::EVENTTYPE_FD_WRITE => Subscription::Write {
                    userdata,
                    fd: u32_at(16),
                },
                _ => return Err(Errno::INVAL),
            });
        }
        Ok(subs)
    }
}

#[derive(Clone, Copy)]
pub(super) enum Subscription {
    Clock { userdata: u64, deadline: Instant },
    Read { userdata: u64, fd: u32 },
    Write { userdata: u64, fd: u32 },
}

impl Subscription {
    pub(super) fn userdata(&self) -> u64 {
        match *self {
            Subscription::Clock { userdata, .. }
            | Subscription::Read { userdata, .. }
            | Subscription::Write { userdata, .. } => userdata,
        }
    }

    pub(super) fn kind(&self) -> u8 {
        match self {
            Subscription::Clock { .. } => abi::EVENTTYPE_CLOCK,
            Subscription::Read { .. } => abi::EVENTTYPE_FD_READ,
            Subscription::Write { .. } => abi::EVENTTYPE_FD_WRITE,
        }
    }
}

pub(super) struct Event {
    pub(super) userdata: u64,
    pub(super) error: u16,
    pub(super) kind: u8,
    pub(super) nbytes: u64,
    pub(super) flags: u16,
}

impl Event {
    pub(super) fn bytes(&self) -> [u8; 32] {
        let mut raw = [0u8; 32];
        raw[0..8].copy_from_slice(&self.userdata.to_le_bytes());
        raw[8..10].copy_from_slice(&self.error.to_le_bytes());
        raw[10] = self.kind;
        raw[16..24].copy_from_slice(&self.nbytes.to_le_bytes());
        raw[24..26].copy_from_slice(&self.flags.to_le_bytes());
        raw
    }
}
