//! Keep-alive connections to listener dynos (and to other cluster hosts' routers). A response that ends cleanly hands its connection back to its
//! dyno's pool, and the next request to that dyno takes it instead of opening a new one, as Heroku's router keeps
//! connections to dynos open.
//!
//! A guest that serves one connection at a time (a single-threaded wasm server) sits reading the next request
//! from its idle keep-alive connection and accepts no other. So an idle connection never stands in the way of
//! a new one: it is closed rather than pooled while a connection waits in the dyno's backlog, and the pool of a
//! dyno whose new connection is not accepted promptly is emptied ([`ConnPool::release`]), as is the pool of a
//! dyno that is stopping, so that guest sees its listener close rather than wait on an idle connection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use tokio::task::JoinHandle;

use crate::runtime::body::Body;
use crate::runtime::net::{GuestReads, Listener};

/// Idle connections kept per dyno; more are closed.
const MAX_IDLE_PER_DYNO: usize = 32;

/// How long a pooled connection may take to be ready for its next request (it is at once, unless something is
/// wrong with it); past that it is closed.
const READY_WITHIN: Duration = Duration::from_millis(100);

/// A connection to a dyno the router can send requests on.
pub(crate) struct Conn {
    pub(crate) sender: SendRequest<Body>,
    pub(crate) task: Task,
    /// What the guest has read of everything sent on it: unchanged after a failed send, the dyno saw nothing.
    pub(crate) reads: GuestReads,
}

/// Idle keep-alive connections to listener dynos, by listener id. Cloning shares it.
#[derive(Clone, Default)]
pub(crate) struct ConnPool {
    state: Arc<Mutex<PoolState>>,
}

#[derive(Default)]
struct PoolState {
    idle: HashMap<usize, Vec<Conn>>,
    /// Listeners with a task that empties their pool when they close.
    watched: HashSet<usize>,
}

/// The task driving one connection to a dyno; aborted (the connection closed) when dropped, unless detached.
pub(crate) struct Task(Option<JoinHandle<()>>);

impl Task {
    pub(crate) fn new(task: JoinHandle<()>) -> Task {
        Task(Some(task))
    }

    /// Lets the task finish by itself (it hands an upgraded connection over).
    pub(crate) fn detach(mut self) {
        self.0.take();
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl ConnPool {
    /// An idle connection to the dyno of `listener`, ready for a request, if there is one (none for a dyno that
    /// is stopping, or that has a new connection waiting to be accepted).
    pub(crate) async fn take(&self, listener: &Listener) -> Option<Conn> {
        if listener.is_closed() || listener.queued() > 0 {
            return None;
        }
        loop {
            let mut conn = {
                let mut state = self.state.lock().expect("connection pool");
                let conns = state.idle.get_mut(&listener.id())?;
                let conn = conns.pop();
                if conns.is_empty() {
                    state.idle.remove(&listener.id());
                }
                conn?
            };
            // A connection just handed back may not have settled into waiting for the next request yet; one the
            // dyno closed meanwhile fails here.
            if let Ok(Ok(())) = tokio::time::timeout(READY_WITHIN, conn.sender.ready()).await {
                return Some(conn);
            }
        }
    }

    /// Keeps a connection whose response ended cleanly for the dyno's next request; closes it instead when the
    /// dyno is going away, already has enough idle ones, or has a new connection waiting to be accepted.
    pub(crate) fn put(&self, listener: &Listener, conn: Conn) {
        if conn.sender.is_closed() || listener.is_closed() || listener.queued() > 0 {
            return;
        }
        // The watcher below needs a runtime (a body dropped outside one just closes its connection).
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut state = self.state.lock().expect("connection pool");
        let id = listener.id();
        // A dyno's entry goes when its listener closes, which it does however the dyno ends.
        if state.watched.insert(id) {
            let (pool, listener) = (self.clone(), listener.clone());
            runtime.spawn(async move {
                listener.closed().await;
                let mut state = pool.state.lock().expect("connection pool");
                state.watched.remove(&id);
                state.idle.remove(&id);
            });
        }
        let conns = state.idle.entry(id).or_default();
        if conns.len() < MAX_IDLE_PER_DYNO {
            conns.push(conn);
        }
    }

    /// Closes the idle connections to the dyno of `listener` (which is slow to accept a new one: it may be
    /// waiting on one of them).
    pub(crate) fn release(&self, listener: &Listener) {
        let dropped = self
            .state
            .lock()
            .expect("connection pool")
            .idle
            .remove(&listener.id());
        drop(dropped);
    }
}

/// A connection to another host's router: its sender and the task driving it.
type PeerConn = (SendRequest<Body>, Task);

/// Idle keep-alive connections to other cluster hosts' routers, by address. Cloning shares it.
#[derive(Clone, Default)]
pub(crate) struct PeerPool {
    idle: Arc<Mutex<HashMap<std::net::SocketAddr, Vec<PeerConn>>>>,
}

impl PeerPool {
    /// An idle connection to `peer`, ready for a request, if there is one.
    pub(crate) async fn take(
        &self,
        peer: std::net::SocketAddr,
    ) -> Option<(SendRequest<Body>, Task)> {
        loop {
            let (mut sender, task) = {
                let mut idle = self.idle.lock().expect("peer pool");
                let conns = idle.get_mut(&peer)?;
                let conn = conns.pop();
                if conns.is_empty() {
                    idle.remove(&peer);
                }
                conn?
            };
            // One the other host closed while it sat idle (its router's keep-alive timeout) fails here.
            if let Ok(Ok(())) = tokio::time::timeout(READY_WITHIN, sender.ready()).await {
                return Some((sender, task));
            }
        }
    }

    /// Keeps a connection whose response ended cleanly, up to [`MAX_IDLE_PER_DYNO`] per host.
    pub(crate) fn put(&self, peer: std::net::SocketAddr, sender: SendRequest<Body>, task: Task) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("peer pool");
        let conns = idle.entry(peer).or_default();
        if conns.len() < MAX_IDLE_PER_DYNO {
            conns.push((sender, task));
        }
    }
}

/// The connection a response is coming over: back to the pool if the response ends cleanly, else closed.
pub(crate) enum Upstream {
    /// A connection that closes when its response ends.
    Closing(Task),
    /// A connection that goes back to the pool when its response ends cleanly.
    Pooled(Conn, ConnPool, Listener),
    /// A connection to another host's router, back to its pool when the response ends cleanly.
    Peer(SendRequest<Body>, Task, PeerPool, std::net::SocketAddr),
}

impl Upstream {
    /// Lets the connection's task finish by itself (it hands an upgraded connection over).
    pub(crate) fn detach(self) {
        match self {
            Upstream::Closing(task)
            | Upstream::Pooled(Conn { task, .. }, ..)
            | Upstream::Peer(_, task, ..) => task.detach(),
        }
    }

    /// The response was read to its end: the connection may serve the dyno's next request.
    pub(crate) fn finish(self) {
        match self {
            Upstream::Pooled(conn, pool, listener) => pool.put(&listener, conn),
            Upstream::Peer(sender, task, pool, peer) => pool.put(peer, sender, task),
            Upstream::Closing(_) => {}
        }
    }
}
