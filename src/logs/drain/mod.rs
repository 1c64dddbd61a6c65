//! Log drains: each app's stream shipped to up to [`MAX_DRAINS_PER_APP`] destinations, as Logplex does.
//!
//! - `syslog://HOST:PORT` and `syslog+tls://HOST:PORT`: RFC 5424 messages with octet-counting framing on a
//!   long-lived TCP (or TLS) connection ([`frame`] has the exact format).
//! - `http://` and `https://`: the same frames POSTed in batches (`Content-Type: application/logplex-1`,
//!   `Logplex-Msg-Count`, `Logplex-Frame-Id`, `Logplex-Drain-Token`), retried with backoff.
//!
//! # Never blocking the app
//!
//! A drain reads its app's stream through a session of its own, whose queue is the drain's bounded buffer
//! ([`DrainSettings::buffer_lines`] lines, [`DRAIN_BUFFER_BYTES`] bytes of text): publishing a line only offers it
//! to that queue, exactly as for `logs --tail`, and each drain runs as a task of its own. A dead, slow or refusing
//! drain therefore fills its own queue and nothing else; lines that find it full are counted, and once the drain
//! takes its queue again the count goes into the app's stream as
//! `wasmdyno[logplex]: Error L10 (output buffer overflow): N messages dropped since T (drain d.TOKEN)`, which the
//! drain itself delivers next (as do the app's other drains and readers). A drain reconnects by itself, with
//! exponential backoff between failed attempts.

pub mod frame;
mod http;
mod stream;
mod syslog;
mod url;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hyper::body::Bytes;
use rustls::ClientConfig;
use serde::Serialize;

pub use url::{DrainUrl, Protocol};

use super::{
    AppStream, Filter, LOGPLEX_DYNO, LogLine, Logplex, Rfc3339, Session, Source, Subscriber, lock,
};
use frame::Encoder;

/// How many drains an app may have.
pub const MAX_DRAINS_PER_APP: usize = 5;
/// Lines a drain's buffer holds by default.
pub const DRAIN_BUFFER_LINES: usize = 10_000;
/// Bytes of text a drain's buffer holds at most, whatever its number of lines.
pub const DRAIN_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// Frames per HTTP request, at most...
pub const HTTP_BATCH_LINES: usize = 1_000;
/// ...and about this many bytes (a batch is closed once it reaches them).
pub const HTTP_BATCH_BYTES: usize = 1024 * 1024;
/// Bytes of frames written to a syslog connection at once.
const SYSLOG_CHUNK_BYTES: usize = 256 * 1024;

/// How drains behave; the defaults suit production, tests shorten the times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainSettings {
    /// Lines a drain buffers while it cannot keep up; more are dropped and reported (L10).
    pub buffer_lines: usize,
    /// How long connecting, each write, and each HTTP request may take.
    pub timeout: Duration,
    /// The delay after a first failed attempt; it doubles with each further failure...
    pub backoff_base: Duration,
    /// ...up to this.
    pub backoff_cap: Duration,
    /// A PEM file of certificates trusted besides the Mozilla roots (a private collector's CA).
    pub ca_file: Option<PathBuf>,
}

impl Default for DrainSettings {
    fn default() -> DrainSettings {
        DrainSettings {
            buffer_lines: DRAIN_BUFFER_LINES,
            timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

/// A drain to run: its id, its token (the syslog HOSTNAME and `Logplex-Drain-Token`) and its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainSpec {
    pub id: String,
    pub token: String,
    pub url: String,
}

/// How a running drain is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DrainStatus {
    /// Lines the drain took (a 2xx answer, or written to the syslog connection).
    pub delivered: u64,
    /// Lines lost: dropped from its full buffer (reported or not yet), or in batches it refused.
    pub dropped: u64,
    /// Lines waiting in its buffer.
    pub buffered: usize,
    /// Why the last attempt failed, while the drain is failing.
    pub error: Option<String>,
}

/// The running drains of every app. Cheap to clone: clones share the drains.
#[derive(Clone)]
pub struct Drains {
    inner: Arc<Inner>,
}

struct Inner {
    logplex: Logplex,
    settings: Arc<DrainSettings>,
    tls: Arc<ClientConfig>,
    /// app → its running drains.
    running: Mutex<HashMap<String, Vec<Running>>>,
}

struct Running {
    spec: DrainSpec,
    health: Arc<Health>,
    /// The drain's buffer, to tell what it holds and what it dropped since it last took it.
    buffer: Option<Arc<Subscriber>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drains {
    /// Drains reading from `logplex`. A CA file that cannot be read is reported and ignored (the Mozilla roots
    /// still apply).
    pub fn new(logplex: Logplex, settings: DrainSettings) -> Drains {
        let tls = crate::tls::client_config(settings.ca_file.as_deref()).unwrap_or_else(|e| {
            tracing::error!("drains: ignoring WASMDYNO_DRAIN_CA_FILE: {e}");
            crate::tls::client_config(None).expect("the built-in roots make a TLS configuration")
        });
        Drains {
            inner: Arc::new(Inner {
                logplex,
                settings: Arc::new(settings),
                tls,
                running: Mutex::default(),
            }),
        }
    }

    /// Makes `app`'s running drains exactly `specs`: starts those not running yet, stops those not listed, and
    /// leaves the others as they are (their buffers and connections). A spec whose URL does not parse is
    /// reported and skipped. Must be called within a Tokio runtime.
    #[cfg(test)]
    pub fn set(&self, app: &str, specs: Vec<DrainSpec>) {
        let _ = self.sync(app, || Ok::<_, std::convert::Infallible>(specs));
    }

    /// [`set`](Self::set) to what `load` returns, called under the lock of the running drains: two changes at
    /// once cannot leave the older one's list running.
    pub fn sync<E>(
        &self,
        app: &str,
        load: impl FnOnce() -> Result<Vec<DrainSpec>, E>,
    ) -> Result<(), E> {
        let mut running = lock(&self.inner.running);
        let specs = load()?;
        let current = running.remove(app).unwrap_or_default();
        // A drain whose task ended (it cannot, short of a panic) is started again.
        let (keep, stop): (Vec<_>, Vec<_>) = current
            .into_iter()
            .partition(|r| specs.contains(&r.spec) && !r.task.is_finished());
        for drain in stop {
            drain.task.abort();
        }
        let mut drains = keep;
        for spec in specs {
            if drains.iter().any(|r| r.spec == spec) {
                continue;
            }
            match DrainUrl::parse(&spec.url) {
                Ok(url) => drains.push(self.start(app, spec, url)),
                Err(e) => tracing::error!("drain {} of {app}: {e}", spec.token),
            }
        }
        if !drains.is_empty() {
            running.insert(app.to_owned(), drains);
        }
        Ok(())
    }

    /// Stops every drain of `app` (apps:destroy). Lines they had not delivered are dropped.
    pub fn stop_app(&self, app: &str) {
        let stopped = lock(&self.inner.running).remove(app).unwrap_or_default();
        for drain in stopped {
            drain.task.abort();
        }
    }

    /// How the running drain with this id is doing, if it runs.
    pub fn status(&self, app: &str, id: &str) -> Option<DrainStatus> {
        lock(&self.inner.running)
            .get(app)?
            .iter()
            .find(|r| r.spec.id == id)
            .map(|r| {
                let mut status = r.health.status();
                if let Some(buffer) = &r.buffer {
                    let queue = lock(&buffer.queue);
                    status.buffered = queue.lines.len();
                    status.dropped += queue.dropped;
                }
                status
            })
    }

    /// The specs of `app`'s running drains.
    #[cfg(test)]
    pub fn running(&self, app: &str) -> Vec<DrainSpec> {
        lock(&self.inner.running)
            .get(app)
            .map(|drains| drains.iter().map(|r| r.spec.clone()).collect())
            .unwrap_or_default()
    }

    fn start(&self, app: &str, spec: DrainSpec, url: DrainUrl) -> Running {
        let inner = &self.inner;
        let stream = inner.logplex.stream(app);
        let session = stream.attach_drain(inner.settings.buffer_lines, DRAIN_BUFFER_BYTES);
        let health = Arc::new(Health::new(app, &spec, &url));
        let transport = match url.protocol {
            Protocol::Syslog => Transport::Syslog(syslog::SyslogSender::new(
                url,
                inner.tls.clone(),
                inner.settings.clone(),
            )),
            Protocol::Http => Transport::Http(http::HttpSender::new(
                url,
                &spec.token,
                inner.tls.clone(),
                inner.settings.clone(),
            )),
        };
        let buffer = session.subscriber.clone();
        let task = tokio::spawn(run(session, transport, spec.token.clone(), health.clone()));
        Running {
            spec,
            health,
            buffer,
            task,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for drain in self
            .running
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default()
            .into_values()
            .flatten()
        {
            drain.task.abort();
        }
    }
}

impl fmt::Debug for Drains {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let running = lock(&self.inner.running);
        f.debug_struct("Drains")
            .field("apps", &running.len())
            .field("drains", &running.values().map(Vec::len).sum::<usize>())
            .finish_non_exhaustive()
    }
}

impl AppStream {
    /// A tail without history for a drain, whose queue holds `capacity` lines and `max_bytes` bytes of text.
    fn attach_drain(self: Arc<Self>, capacity: usize, max_bytes: usize) -> Session {
        let mut state = lock(&self.state);
        let subscriber = (!state.removed).then(|| {
            let subscriber = Arc::new(Subscriber::with_limits(
                Filter::default(),
                capacity,
                max_bytes,
            ));
            state.subscribers.push(subscriber.clone());
            subscriber
        });
        drop(state);
        Session {
            stream: self,
            subscriber,
            pending: VecDeque::new(),
        }
    }
}

/// Lines a drain lost since it last took its buffer, and when the first of them was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Losses {
    dropped: u64,
    since: SystemTime,
}

impl Session {
    /// Waits for lines and moves all of them into `batch` (which must be empty), with the losses since the last
    /// take. `None` once the app is removed and everything is taken. Cancel-safe.
    async fn take(&mut self, batch: &mut VecDeque<LogLine>) -> Option<Option<Losses>> {
        debug_assert!(batch.is_empty());
        if !self.pending.is_empty() {
            std::mem::swap(batch, &mut self.pending);
            return Some(None);
        }
        let subscriber = self.subscriber.as_ref()?;
        loop {
            {
                let mut queue = lock(&subscriber.queue);
                if !queue.lines.is_empty() || queue.dropped > 0 {
                    // The queue keeps the allocation `batch` had.
                    std::mem::swap(batch, &mut queue.lines);
                    queue.bytes = 0;
                    let dropped = std::mem::take(&mut queue.dropped);
                    let losses = queue
                        .first_drop
                        .take()
                        .map(|since| Losses { dropped, since });
                    return Some(losses);
                }
                if queue.closed {
                    return None;
                }
            }
            subscriber.ready.notified().await;
        }
    }
}

/// `Error L10 (output buffer overflow): N messages dropped since T (drain d.TOKEN)`, into the app's stream.
fn report_losses(stream: &AppStream, token: &str, losses: Losses) {
    let text = format!(
        "Error L10 (output buffer overflow): {} messages dropped since {} (drain {token})",
        losses.dropped,
        Rfc3339(losses.since)
    );
    stream.publish(LogLine::new(
        SystemTime::now(),
        Source::Platform,
        LOGPLEX_DYNO,
        text,
    ));
}

enum Transport {
    Syslog(syslog::SyslogSender),
    Http(http::HttpSender),
}

/// One drain: takes its buffer, frames the lines, delivers them; until its app is removed or it is stopped.
async fn run(mut session: Session, mut transport: Transport, token: String, health: Arc<Health>) {
    let hostname = match transport {
        Transport::Syslog(_) => token.as_str(),
        Transport::Http(_) => "host",
    };
    let mut encoder = Encoder::new(hostname);
    let mut batch = VecDeque::new();
    let mut bytes = Vec::new();
    let mut frames = Vec::new();
    // Frame ids: this run's random prefix and a counter, so a retried batch keeps its id and no two batches share
    // one.
    let mut prefix = [0u8; 8];
    let _ = getrandom::fill(&mut prefix);
    let prefix = hex::encode(prefix);
    let mut sequence = 0u64;
    while let Some(losses) = session.take(&mut batch).await {
        if let Some(losses) = losses {
            health.dropped.fetch_add(losses.dropped, Ordering::Relaxed);
            report_losses(&session.stream, &token, losses);
        }
        while !batch.is_empty() {
            bytes.clear();
            frames.clear();
            let (max_lines, max_bytes) = match transport {
                Transport::Syslog(_) => (usize::MAX, SYSLOG_CHUNK_BYTES),
                Transport::Http(_) => (HTTP_BATCH_LINES, HTTP_BATCH_BYTES),
            };
            let first = batch.front().map(LogLine::timestamp);
            while frames.len() < max_lines && bytes.len() < max_bytes {
                let Some(line) = batch.pop_front() else { break };
                frames.push(bytes.len());
                encoder.encode(&mut bytes, &line);
            }
            let count = frames.len() as u64;
            match &mut transport {
                Transport::Syslog(sender) => {
                    sender.send(&bytes, &frames, &health).await;
                    health.delivered.fetch_add(count, Ordering::Relaxed);
                }
                Transport::Http(sender) => {
                    sequence += 1;
                    let frame_id = format!("{prefix}{sequence:016x}");
                    // The body is copied once: `Bytes` must own it across retries, and `bytes` is reused.
                    let body = Bytes::copy_from_slice(&bytes);
                    match sender.send(body, frames.len(), &frame_id, &health).await {
                        http::Outcome::Delivered => {
                            health.delivered.fetch_add(count, Ordering::Relaxed);
                        }
                        http::Outcome::Refused(_) => {
                            health.dropped.fetch_add(count, Ordering::Relaxed);
                            let since = first.unwrap_or_else(SystemTime::now);
                            report_losses(
                                &session.stream,
                                &token,
                                Losses {
                                    dropped: count,
                                    since,
                                },
                            );
                        }
                    }
                }
            }
        }
    }
    if let Transport::Syslog(sender) = &mut transport {
        sender.close().await;
    }
}

/// Waits between failed attempts: `base`, `2 × base`, ... up to `cap`.
struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    fn new(settings: &DrainSettings) -> Backoff {
        Backoff {
            base: settings.backoff_base,
            cap: settings.backoff_cap,
            failures: 0,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self
            .base
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A drain's counters, and its failures told once per episode in the platform's diagnostics.
struct Health {
    /// `drain d.TOKEN of APP (URL without password)`, for diagnostics.
    name: String,
    delivered: AtomicU64,
    dropped: AtomicU64,
    error: Mutex<Option<String>>,
}

impl Health {
    fn new(app: &str, spec: &DrainSpec, url: &DrainUrl) -> Health {
        Health {
            name: format!("drain {} of {app} ({url})", spec.token),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            error: Mutex::new(None),
        }
    }

    fn failed(&self, reason: &str) {
        let mut error = lock(&self.error);
        if error.is_none() {
            tracing::warn!("{}: {reason}; retrying", self.name);
        }
        *error = Some(reason.to_owned());
    }

    fn ok(&self) {
        let mut error = lock(&self.error);
        if error.take().is_some() {
            tracing::info!("{}: delivering again", self.name);
        }
    }

    fn status(&self) -> DrainStatus {
        DrainStatus {
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            buffered: 0,
            error: lock(&self.error).clone(),
        }
    }
}
