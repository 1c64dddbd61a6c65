//! Logplex: the in-process log multiplexer, one stream per app.
//!
//! Everything that has something to say about an app writes into its stream: the dynos' output, line by line
//! through a `LineWriter` (`app[web.1]`, `app[release.3]`, `app[run.2]`), the platform about the dynos and the
//! router (`wasmdyno[web.1]`, `wasmdyno[router]`), and the API's events (`app[api]: Release v3 created`). This
//! module owns those streams: it keeps the last [`HISTORY_LINES`] lines of each app in memory and hands lines to the
//! [`Session`]s reading it (`wasmdyno logs`, `--tail`), filtered by process type, dyno and source. The platform's own
//! diagnostics (`tracing`) are not part of it. Drains (`drain`) ship each app's stream elsewhere (syslog, HTTPS), reading it
//! through sessions of their own, with a larger queue.
//!
//! # Never blocking a writer
//!
//! [`Logplex::publish`] takes two short locks (the app's stream, then in turn each session's queue) and never waits
//! for a reader. Each session has a queue of at most [`SESSION_BUFFER_LINES`] lines; a line that finds it full is
//! dropped for that session and only counted. When the reader next reads, it first gets an
//! `Error L10 (output buffer overflow): N messages dropped since <timestamp>` line, then what its queue held.
//! Memory is therefore bounded by the number of apps and sessions, whatever is written: each app keeps
//! [`HISTORY_LINES`] lines; each session at most [`HISTORY_LINES`] + [`SESSION_BUFFER_LINES`] (its queue, and what
//! its reader took and has not read yet: the history, then one batch of the queue at a time); a session's losses
//! are two numbers.

#[cfg(feature = "drains")]
pub(crate) mod drain;
mod line;
pub(crate) mod time;
mod writer;

#[cfg(test)]
mod tests;

use crate::fastmap::FastMap;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::SystemTime;

use tokio::sync::Notify;

pub use line::{LogLine, Source, UnknownSource};
pub use time::{ParseTimestampError, Rfc3339};
pub(crate) use writer::LineWriter;

/// Lines kept per app, the most a session can ask for.
pub const HISTORY_LINES: usize = 1_500;
/// Lines of history a session gets when it does not say.
pub const DEFAULT_LINES: usize = 100;
/// The longest text of a line, in bytes; longer lines are split.
pub const MAX_LINE_BYTES: usize = 10_000;
/// Lines a session's queue holds for its reader; lines beyond are dropped for that session and reported (L10).
pub const SESSION_BUFFER_LINES: usize = 1_000;
/// The dyno of the platform lines the multiplexer writes itself (`wasmdyno[logplex]: Error L10 ...`).
pub const LOGPLEX_DYNO: &str = "logplex";

/// The log streams of every app. Cheap to clone: clones share the streams.
///
/// ```
/// use wasmdyno::logs::SessionOptions;
/// use wasmdyno::{logs::LogLine, Logplex};
///
/// let logplex = Logplex::new();
/// logplex.publish("hello", LogLine::app("web.1", "listening on 8080".into()));
/// logplex.publish("hello", LogLine::platform("web.1", "State changed from starting to up".into()));
///
/// let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let mut session = logplex.session("hello", SessionOptions::default());
/// let first = tokio.block_on(session.next()).unwrap();
/// assert_eq!(first.text(), "listening on 8080");
/// assert_eq!(tokio.block_on(session.next()).unwrap().dyno(), "web.1");
/// assert!(tokio.block_on(session.next()).is_none(), "no tail: the history only");
/// ```
#[derive(Clone, Default)]
pub struct Logplex {
    apps: Arc<RwLock<FastMap<String, Arc<AppStream>>>>,
    /// Also given every published line, if set ([`Logplex::observe`]).
    observer: Arc<std::sync::OnceLock<Observer>>,
}

/// What `Logplex::observe` calls with each published line and its app.
pub(crate) type Observer = Box<dyn Fn(&str, &LogLine) + Send + Sync>;

impl Logplex {
    /// No streams yet: each is made by the first line or session of its app.
    ///
    /// ```
    /// let logplex = wasmdyno::Logplex::new();
    /// assert_eq!(logplex.session_count("hello"), 0);
    /// ```
    pub fn new() -> Logplex {
        Logplex::default()
    }

    /// Appends `line` to `app`'s stream (splitting text over 10,000 bytes) and offers it to the sessions
    /// reading the app. Never waits for a reader; the stream is created if it does not exist yet.
    ///
    /// ```
    /// let logplex = wasmdyno::Logplex::new();
    /// logplex.publish("hello", wasmdyno::logs::LogLine::app("api", "Release v3 created".into()));
    /// ```
    pub fn publish(&self, app: &str, line: LogLine) {
        if let Some(observe) = self.observer.get() {
            observe(app, &line);
        }
        self.stream(app).publish(line);
    }

    /// Has `observer` called with every line published from now on, before its sessions get it (a cluster host
    /// copies its lines into the shared history this way). It must not wait: publishers never do. One observer
    /// per multiplexer; a second is refused (`false`).
    #[cfg(feature = "platform")]
    pub(crate) fn observe(&self, observer: Observer) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// A reader of `app`'s stream: the last `options.lines` lines that pass the filter, then with `options.tail`
    /// the new ones as they are published.
    ///
    /// ```
    /// use wasmdyno::{logs::LogLine, logs::Source as LogSource, Logplex, logs::SessionOptions};
    ///
    /// let logplex = Logplex::new();
    /// let mut options = SessionOptions::default();
    /// options.tail = true;
    /// options.filter.source = Some(LogSource::App);
    /// let mut session = logplex.session("hello", options);
    /// assert_eq!(logplex.session_count("hello"), 1);
    /// logplex.publish("hello", LogLine::platform("web.1", "Starting process".into()));
    /// logplex.publish("hello", LogLine::app("web.1", "hi".into()));
    /// let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(tokio.block_on(session.next()).unwrap().text(), "hi");
    /// ```
    pub fn session(&self, app: &str, options: SessionOptions) -> Session {
        self.stream(app).session(options)
    }

    /// Forgets `app`'s stream (apps:destroy): its history goes, its sessions end once they have read what they were
    /// given, and what its dynos still write goes nowhere. A later line for the same name starts a new stream.
    ///
    /// ```
    /// let logplex = wasmdyno::Logplex::new();
    /// logplex.publish("hello", wasmdyno::logs::LogLine::app("web.1", "bye".into()));
    /// logplex.remove_app("hello");
    /// let mut session = logplex.session("hello", Default::default());
    /// let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert!(tokio.block_on(session.next()).is_none());
    /// ```
    pub fn remove_app(&self, app: &str) {
        let removed = write(&self.apps).remove(app);
        if let Some(stream) = removed {
            stream.close();
        }
    }

    /// How many tailing sessions are attached to `app`'s stream.
    ///
    /// ```
    /// let logplex = wasmdyno::Logplex::new();
    /// let mut options = wasmdyno::logs::SessionOptions::default();
    /// options.tail = true;
    /// let session = logplex.session("hello", options);
    /// assert_eq!(logplex.session_count("hello"), 1);
    /// drop(session);
    /// assert_eq!(logplex.session_count("hello"), 0);
    /// ```
    pub fn session_count(&self, app: &str) -> usize {
        read(&self.apps)
            .get(app)
            .map_or(0, |stream| lock(&stream.state).subscribers.len())
    }

    fn stream(&self, app: &str) -> Arc<AppStream> {
        if let Some(stream) = read(&self.apps).get(app) {
            return stream.clone();
        }
        write(&self.apps).entry(app.to_owned()).or_default().clone()
    }
}

impl fmt::Debug for Logplex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logplex")
            .field("apps", &read(&self.apps).len())
            .finish_non_exhaustive()
    }
}

/// What a [`Session`] reads: by default the last 100 lines, without tail, unfiltered.
///
/// ```
/// let mut options = wasmdyno::logs::SessionOptions::default();
/// options.lines = 10;
/// options.filter.ps = Some("web".into());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionOptions {
    /// Lines of history, oldest first (at most 1,500, the history kept; more is taken as that many).
    pub lines: usize,
    /// After the history, follow the stream until the session is dropped or the app removed.
    pub tail: bool,
    /// Which lines.
    pub filter: Filter,
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        SessionOptions {
            lines: DEFAULT_LINES,
            tail: false,
            filter: Filter::default(),
        }
    }
}

/// Which lines a session reads ([`SessionOptions::filter`]): those that pass every condition set.
///
/// ```
/// use wasmdyno::{logs::Filter, logs::LogLine, logs::Source as LogSource, Logplex, logs::SessionOptions};
///
/// let logplex = Logplex::new();
/// logplex.publish("hello", LogLine::app("web.1", "GET /".into()));
/// logplex.publish("hello", LogLine::platform("web.1", "State changed from starting to up".into()));
/// logplex.publish("hello", LogLine::app("worker.1", "job done".into()));
///
/// let mut options = SessionOptions::default();
/// options.filter.ps = Some("web".into());
/// options.filter.source = Some(LogSource::App);
/// let mut session = logplex.session("hello", options);
/// let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert_eq!(tokio.block_on(session.next()).unwrap().text(), "GET /");
/// assert!(tokio.block_on(session.next()).is_none());
/// assert_eq!(Filter::default(), SessionOptions::default().filter, "unfiltered by default");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Filter {
    /// A process type, matching its dynos (`web`: `web.1`, `web.12`..., not `webby.1`) and a dyno of that very name
    /// (`router`, `api`); or, with a dot, one dyno (`web.1`).
    pub ps: Option<String>,
    /// Exactly this dyno.
    pub dyno: Option<String>,
    /// Only the app's lines, or only the platform's.
    pub source: Option<Source>,
}

impl Filter {
    /// Whether `line` passes.
    ///
    /// ```
    /// use wasmdyno::{logs::Filter, logs::LogLine};
    ///
    /// let mut filter = Filter::default();
    /// filter.ps = Some("web".into());
    /// assert!(filter.matches(&LogLine::app("web.2", "hi".into())));
    /// assert!(!filter.matches(&LogLine::app("webby.1", "hi".into())));
    /// ```
    pub fn matches(&self, line: &LogLine) -> bool {
        self.source.is_none_or(|source| source == line.source())
            && self.dyno.as_deref().is_none_or(|dyno| dyno == line.dyno())
            && self
                .ps
                .as_deref()
                .is_none_or(|ps| ps_matches(ps, line.dyno()))
    }
}

fn ps_matches(ps: &str, dyno: &str) -> bool {
    if ps.contains('.') {
        return dyno == ps;
    }
    // `web` is `web.N`, but not `webby.1`.
    dyno.strip_prefix(ps)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// A reader of one app's stream, made by [`Logplex::session`]. Dropping it detaches it from the stream.
///
/// ```
/// use wasmdyno::{logs::LogLine, Logplex, logs::SessionOptions};
///
/// let logplex = Logplex::new();
/// logplex.publish("hello", LogLine::app("web.1", "before".into()));
/// let mut options = SessionOptions::default();
/// options.tail = true;
/// let mut session = logplex.session("hello", options);
/// let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// tokio.block_on(async {
///     assert_eq!(session.next().await.unwrap().text(), "before"); // history
///     logplex.publish("hello", LogLine::app("web.1", "after".into()));
///     assert_eq!(session.next().await.unwrap().text(), "after"); // tail
/// });
/// drop(session);
/// assert_eq!(logplex.session_count("hello"), 0);
/// ```
pub struct Session {
    stream: Arc<AppStream>,
    /// Set while tailing: where the stream puts this session's new lines.
    subscriber: Option<Arc<Subscriber>>,
    /// Lines taken and not yet returned: the history at first, then each batch taken from the queue.
    pending: VecDeque<LogLine>,
}

impl Session {
    /// The next line: history first, then (when tailing) new lines as they come, waiting for them. `None` once the
    /// history is read without tail, or once the app has been removed and the queue is empty.
    ///
    /// Cancel-safe: dropping the future loses no line. A tailing reader that falls 1,000 lines behind loses the
    /// lines past that; it then reads an `Error L10` line from the platform saying how many.
    ///
    /// ```
    /// use wasmdyno::{logs::LogLine, Logplex, logs::SessionOptions};
    ///
    /// let logplex = Logplex::new();
    /// let mut options = SessionOptions::default();
    /// options.tail = true;
    /// let mut session = logplex.session("hello", options);
    /// let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let reader = tokio.spawn(async move {
    ///     let mut texts = Vec::new();
    ///     while let Some(line) = session.next().await {
    ///         texts.push(line.text().to_string());
    ///     }
    ///     texts // `None`: the app was removed and every line read
    /// });
    /// logplex.publish("hello", LogLine::app("web.1", "one".into()));
    /// logplex.publish("hello", LogLine::app("web.1", "two".into()));
    /// logplex.remove_app("hello");
    /// assert_eq!(tokio.block_on(reader).unwrap(), ["one", "two"]);
    /// ```
    pub async fn next(&mut self) -> Option<LogLine> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            let subscriber = self.subscriber.as_ref()?;
            {
                let mut queue = lock(&subscriber.queue);
                if !queue.lines.is_empty() || queue.dropped > 0 {
                    // Take the whole queue at once: one lock per batch rather than per line keeps the reader off the
                    // writer's way. `pending` is empty, so the queue gets back an empty (allocated) deque.
                    std::mem::swap(&mut self.pending, &mut queue.lines);
                    queue.bytes = 0;
                    if let Some(first_drop) = queue.first_drop.take() {
                        let dropped = std::mem::take(&mut queue.dropped);
                        return Some(overflow_line(dropped, first_drop));
                    }
                    continue;
                }
                if queue.closed {
                    return None;
                }
            }
            // A line published after the check above stored a permit, so this does not miss it.
            subscriber.ready.notified().await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(subscriber) = self.subscriber.take() {
            lock(&self.stream.state)
                .subscribers
                .retain(|other| !Arc::ptr_eq(other, &subscriber));
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("tail", &self.subscriber.is_some())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// `Error L10 (output buffer overflow): N messages dropped since <timestamp>`, as Heroku reports a reader's losses.
fn overflow_line(dropped: u64, since: SystemTime) -> LogLine {
    let text = format!(
        "Error L10 (output buffer overflow): {dropped} messages dropped since {}",
        Rfc3339(since)
    );
    LogLine::new(SystemTime::now(), Source::Platform, LOGPLEX_DYNO, text)
}

/// One app's stream.
#[derive(Default)]
struct AppStream {
    state: Mutex<StreamState>,
}

#[derive(Default)]
struct StreamState {
    /// The last [`HISTORY_LINES`] lines, oldest first.
    history: VecDeque<LogLine>,
    /// The tailing sessions.
    subscribers: Vec<Arc<Subscriber>>,
    /// Set by [`Logplex::remove_app`]: lines still published by writers bound to this stream are dropped.
    removed: bool,
}

impl AppStream {
    fn publish(&self, line: LogLine) {
        if line.text().len() <= MAX_LINE_BYTES {
            self.append(line);
        } else {
            line.parts(MAX_LINE_BYTES)
                .for_each(|part| self.append(part));
        }
    }

    fn append(&self, line: LogLine) {
        let mut state = lock(&self.state);
        if state.removed {
            return;
        }
        for subscriber in &state.subscribers {
            subscriber.offer(&line);
        }
        if state.history.len() == HISTORY_LINES {
            state.history.pop_front();
        }
        state.history.push_back(line);
    }

    fn session(self: Arc<Self>, options: SessionOptions) -> Session {
        let SessionOptions {
            lines,
            tail,
            filter,
        } = options;
        let mut pending = VecDeque::new();
        let mut state = lock(&self.state);
        // History and subscription under one lock: the session neither misses nor repeats a line published
        // meanwhile.
        let matching = state
            .history
            .iter()
            .rev()
            .filter(|line| filter.matches(line));
        for line in matching.take(lines.min(HISTORY_LINES)) {
            pending.push_front(line.clone());
        }
        let subscriber = (tail && !state.removed).then(|| {
            let subscriber = Arc::new(Subscriber::new(filter));
            state.subscribers.push(subscriber.clone());
            subscriber
        });
        drop(state);
        Session {
            stream: self,
            subscriber,
            pending,
        }
    }

    fn close(&self) {
        let mut state = lock(&self.state);
        state.removed = true;
        state.history = VecDeque::new();
        for subscriber in state.subscribers.drain(..) {
            subscriber.close();
        }
    }
}

/// A tailing session as the stream sees it: its filter and its queue.
struct Subscriber {
    filter: Filter,
    /// The most lines the queue holds ([`SESSION_BUFFER_LINES`] for sessions, more for drains)...
    capacity: usize,
    /// ...and the most bytes of text (unbounded for sessions).
    max_bytes: usize,
    queue: Mutex<Queue>,
    /// Wakes the reader when its queue stops being empty or is closed.
    ready: Notify,
}

#[derive(Default)]
struct Queue {
    /// At most the subscriber's capacity.
    lines: VecDeque<LogLine>,
    /// Bytes of text in `lines`.
    bytes: usize,
    /// Lines dropped since the reader last took the queue...
    dropped: u64,
    /// ...and the timestamp of the first of them (set exactly when `dropped > 0`).
    first_drop: Option<SystemTime>,
    /// The app was removed: once `lines` is read, the session ends.
    closed: bool,
}

impl Subscriber {
    fn new(filter: Filter) -> Subscriber {
        Subscriber::with_limits(filter, SESSION_BUFFER_LINES, usize::MAX)
    }

    fn with_limits(filter: Filter, capacity: usize, max_bytes: usize) -> Subscriber {
        Subscriber {
            filter,
            capacity,
            max_bytes,
            queue: Mutex::default(),
            ready: Notify::new(),
        }
    }

    /// Queues `line` if it passes the filter and there is room, or counts it as dropped. Never waits.
    fn offer(&self, line: &LogLine) {
        if !self.filter.matches(line) {
            return;
        }
        let mut queue = lock(&self.queue);
        let bytes = queue.bytes + line.text().len();
        if queue.lines.len() >= self.capacity || (bytes > self.max_bytes && !queue.lines.is_empty())
        {
            queue.dropped += 1;
            queue.first_drop.get_or_insert(line.timestamp());
            return;
        }
        // Only a reader that found the queue empty waits, so only the first line into an empty queue wakes it.
        let wake = queue.lines.is_empty();
        queue.bytes = bytes;
        queue.lines.push_back(line.clone());
        drop(queue);
        if wake {
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        lock(&self.queue).closed = true;
        self.ready.notify_one();
    }
}

// The critical sections cannot leave the data half-updated in a way that matters (at worst a line is missing), so a
// panic elsewhere must not take every writer of the platform down with it: poisoning is ignored.

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
