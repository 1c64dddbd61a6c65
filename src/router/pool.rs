//! Keep-alive connections to listener dynos. A response that ends cleanly hands its connection back to its
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

use hyper::client::conn::http1::SendRequest;
use tokio::task::JoinHandle;

use super::body::Body;
use crate::runtime::net::Listener;

/// Idle connections kept per dyno; more are closed.
const MAX_IDLE_PER_DYNO: usize = 32;

/// Idle keep-alive connections to listener dynos, by listener id. Cloning shares it.
#[derive(Clone, Default)]
pub(crate) struct ConnPool {
    state: Arc<Mutex<PoolState>>,
}

#[derive(Default)]
struct PoolState {
    idle: HashMap<usize, Vec<Idle>>,
    /// Listeners with a task that empties their pool when they close.
    watched: HashSet<usize>,
}

/// An idle connection: its sender, and the task driving it (aborted, closing the connection, when dropped).
struct Idle {
    sender: SendRequest<Body>,
    task: Task,
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
    /// An idle connection to the dyno of `listener`, ready for a request, if there is one.
    pub(crate) async fn take(&self, listener: &Listener) -> Option<(SendRequest<Body>, Task)> {
        loop {
            let conn = {
                let mut state = self.state.lock().expect("connection pool");
                let conns = state.idle.get_mut(&listener.id())?;
                let conn = conns.pop();
                if conns.is_empty() {
                    state.idle.remove(&listener.id());
                }
                conn?
            };
            let Idle { mut sender, task } = conn;
            // A connection just handed back may not have settled into waiting for the next request yet; one the
            // dyno closed meanwhile fails here.
            if sender.ready().await.is_ok() {
                return Some((sender, task));
            }
        }
    }

    /// Keeps a connection whose response ended cleanly for the dyno's next request; closes it instead when the
    /// dyno is going away, already has enough idle ones, or has a new connection waiting to be accepted.
    pub(crate) fn put(&self, listener: &Listener, sender: SendRequest<Body>, task: Task) {
        if sender.is_closed() || listener.is_closed() || listener.queued() > 0 {
            return;
        }
        // The watcher below needs a runtime (a body dropped outside one just closes its connection).
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut state = self.state.lock().expect("connection pool");
        if state.idle.len() > 1024 {
            // Forget dynos whose connections all closed (stopped ones, mostly).
            state.idle.retain(|_, conns| {
                conns.retain(|c| !c.sender.is_closed());
                !conns.is_empty()
            });
        }
        let id = listener.id();
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
            conns.push(Idle { sender, task });
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

/// The connection a response is coming over: back to the pool if the response ends cleanly, else closed.
pub(crate) struct Upstream {
    task: Task,
    /// Set for a connection that may take another request once this response is done.
    reuse: Option<(SendRequest<Body>, ConnPool, Listener)>,
}

impl Upstream {
    /// A connection that closes when its response ends.
    pub(crate) fn closing(task: Task) -> Upstream {
        Upstream { task, reuse: None }
    }

    /// A connection that goes back to `pool` when its response ends cleanly.
    pub(crate) fn pooled(
        task: Task,
        sender: SendRequest<Body>,
        pool: ConnPool,
        listener: Listener,
    ) -> Upstream {
        Upstream {
            task,
            reuse: Some((sender, pool, listener)),
        }
    }

    /// Lets the connection's task finish by itself (it hands an upgraded connection over).
    pub(crate) fn detach(self) {
        self.task.detach();
    }

    /// The response was read to its end: the connection may serve the dyno's next request.
    pub(crate) fn finish(self) {
        if let Some((sender, pool, listener)) = self.reuse {
            pool.put(&listener, sender, self.task);
        }
    }
}
