//! Choosing a dyno: requests in flight per dyno, the app's queue while every dyno is busy or booting (H11, H20).

#[allow(unused_imports)]
use super::*;

/// One app's requests: in flight per dyno, and waiting for one.
#[derive(Default)]
pub(super) struct AppLoad {
    /// Listener id → requests in flight on that dyno. Only ever incremented under this lock.
    pub(super) in_flight: Mutex<crate::fastmap::FastMap<usize, Arc<AtomicUsize>>>,
    pub(super) queued: AtomicUsize,
    /// Signalled when a request of the app ends while another is queued.
    pub(super) freed: Notify,
    /// Where the next choice starts looking: dynos equally loaded take turns (one request at a time would
    /// otherwise always go to the first).
    pub(super) turn: AtomicUsize,
}

/// A request's place on a dyno: released (and a queued request woken) when dropped.
pub(crate) struct Slot {
    pub(super) load: Arc<AppLoad>,
    pub(super) count: Arc<AtomicUsize>,
    pub(super) dyno: WebDyno,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        // Only a queued request waits for this (taking the Notify's lock on every request would cost each one a
        // lock shared by all the app's requests). A request that queues after this load sees the freed count:
        // it enables its wait, then looks again (see `acquire`).
        if self.load.queued.load(Ordering::SeqCst) > 0 {
            self.load.freed.notify_waiters();
        }
    }
}

/// A request's place in its app's queue.
pub(super) struct Queued(Arc<AppLoad>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The key of a dyno in the per-dyno counts.
pub(super) fn key(dyno: &WebDyno) -> usize {
    dyno.listener.id()
}

impl Router {
    pub(super) fn load(&self, app: &str) -> Arc<AppLoad> {
        let mut loads = self.inner.loads.lock().expect("router loads");
        if let Some(load) = loads.get(app) {
            return load.clone();
        }
        if loads.len() > 1024 {
            // Forget apps with nothing in flight (destroyed ones, mostly).
            loads.retain(|_, load| Arc::strong_count(load) > 1);
        }
        loads.entry(app.to_string()).or_default().clone()
    }

    /// A place on the up web dyno of `app` with the fewest requests in flight (equals taking turns), not one of
    /// `tried`. Waits for a starting dyno (H20 past the boot timeout), and in the app's queue while every dyno is
    /// at its limit (H11 when the queue is full, H12 past the request timeout).
    pub(super) async fn acquire(
        &self,
        app: &str,
        tried: &mut Vec<usize>,
        started: Instant,
    ) -> Result<Slot, (&'static str, &'static str)> {
        let settings = &self.inner.settings;
        let load = self.load(app);
        self.inner.manager.touch(app);
        let boot_deadline = started + settings.boot_timeout;
        let retry_deadline = started + settings.request_timeout;
        let mut queued: Option<(Queued, tokio::time::Instant)> = None;
        loop {
            // A queued request waits for the next request of the app to end; it registers before it looks at
            // the counts, so that an end between the look and the wait is not missed.
            let freed = load.freed.notified();
            tokio::pin!(freed);
            if queued.is_some() {
                freed.as_mut().enable();
            }
            let mut dynos = self.inner.manager.web_dynos(app);
            if dynos.is_empty() {
                let states: Vec<State> = self
                    .inner
                    .manager
                    .dynos(app)
                    .into_iter()
                    .filter(|d| d.kind == crate::procfile::WEB_TYPE)
                    .map(|d| d.state)
                    .collect();
                // A sleeping app's idle dynos wake for this request, and it waits for them as for any boot.
                if states.contains(&State::Idle) {
                    self.inner.manager.wake(app);
                }
                if states.contains(&State::Starting) || states.contains(&State::Idle) {
                    let now = Instant::now();
                    if now >= boot_deadline {
                        return Err(("H20", "App boot timeout"));
                    }
                    tokio::time::sleep(BOOT_POLL.min(boot_deadline - now)).await;
                    continue;
                }
                return Err(if states.contains(&State::Crashed) {
                    ("H10", "App crashed")
                } else {
                    ("H14", "No web processes running")
                });
            }
            dynos.retain(|d| !tried.contains(&key(d)));
            if dynos.is_empty() {
                // Every dyno that is up turned the request away: give the dyno manager a moment to catch up
                // (a dyno whose instance went away is about to be marked crashed), then try them all again.
                if Instant::now() >= retry_deadline {
                    return Err(("H12", "Request timeout"));
                }
                tried.clear();
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            {
                let mut counts = load.in_flight.lock().expect("in flight");
                if counts.len() > dynos.len() {
                    // Forget the dynos that are gone, once nothing of theirs is in flight.
                    let live: Vec<usize> = dynos.iter().map(key).collect();
                    counts
                        .retain(|id, count| count.load(Ordering::Acquire) > 0 || live.contains(id));
                }
                let turn = load.turn.fetch_add(1, Ordering::Relaxed) % dynos.len();
                dynos.rotate_left(turn);
                let (dyno, count) = dynos
                    .into_iter()
                    .map(|dyno| {
                        let count = counts.entry(key(&dyno)).or_default().clone();
                        (dyno, count)
                    })
                    // SeqCst, as in `Slot::drop`: a queued request that reads every dyno full is then sure that
                    // whoever frees one sees it queued and wakes it.
                    .min_by_key(|(_, count)| count.load(Ordering::SeqCst))
                    .expect("at least one dyno");
                if count.load(Ordering::SeqCst) < settings.max_in_flight {
                    count.fetch_add(1, Ordering::AcqRel);
                    return Ok(Slot {
                        load: load.clone(),
                        count,
                        dyno,
                    });
                }
            }
            // Every dyno is at its limit: wait in the app's queue, if there is room.
            if queued.is_none() {
                if load.queued.fetch_add(1, Ordering::SeqCst) >= settings.max_queue {
                    load.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(("H11", "Backlog too deep"));
                }
                let deadline = tokio::time::Instant::now() + settings.request_timeout;
                queued = Some((Queued(load.clone()), deadline));
                // Look again, now registered for the end of a request.
                continue;
            }
            let deadline = queued.as_ref().expect("queued").1;
            tokio::select! {
                () = &mut freed => {}
                () = tokio::time::sleep(QUEUE_POLL) => {}
                () = tokio::time::sleep_until(deadline) => return Err(("H12", "Request timeout")),
            }
        }
    }
}
