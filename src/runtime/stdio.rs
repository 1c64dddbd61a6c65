//! A dyno's standard streams. Input is pumped into a buffer the guest reads (and polls) without blocking the
//! runtime's threads; output goes to a sink: the terminal for `wasmdyno run`, the app's log stream for dynos.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::Notify;

/// Bytes buffered from an input before the pump waits for the guest to read them.
const INPUT_BUFFER: usize = 64 * 1024;

#[derive(Default)]
struct InputState {
    buf: VecDeque<u8>,
    eof: bool,
}

/// A guest's standard input ([`RunSpec::stdin`](crate::runtime::RunSpec::stdin)): a buffer fed by a pump (a reader on its
/// own thread, or a channel), which the guest reads and polls without blocking the runtime's threads. Cloning
/// shares it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // `ECHO`: a core module that copies its standard input to its standard output.
/// # const ECHO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/echo.wasm"));
/// use std::sync::{Arc, Mutex};
/// use wasmdyno::{runtime::Exit, runtime::stdio::Input, runtime::RunSpec, Runtime, RuntimeConfig};
///
/// let runtime = Runtime::new(RuntimeConfig::default())?;
/// let (echo, _) = runtime.load(ECHO)?;
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let mut spec = RunSpec::new(vec!["echo.wasm".into()], Default::default(), Default::default());
/// spec.stdin = Input::from_reader(&b"hello\n"[..]);
/// spec.stdout = Arc::new(move |data: &[u8]| sink.lock().unwrap().extend_from_slice(data));
/// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
/// assert_eq!(tokio.block_on(runtime.run(&echo, spec))?, Exit::Status(0));
/// assert_eq!(*seen.lock().unwrap(), b"hello\n");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Input {
    state: Arc<Mutex<InputState>>,
    /// Signalled when data or EOF arrives.
    readable: Arc<Notify>,
    /// Signalled when the guest consumed data (the pump, a plain thread, may read more).
    drained: Arc<Condvar>,
}

impl Input {
    /// An input that is at end of file from the start (what a dyno without attached stdin reads).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // `ECHO`: a core module that copies its standard input to its standard output.
    /// # const ECHO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/echo.wasm"));
    /// use std::sync::{Arc, Mutex};
    /// use wasmdyno::{runtime::Exit, runtime::stdio::Input, runtime::RunSpec, Runtime, RuntimeConfig};
    ///
    /// let runtime = Runtime::new(RuntimeConfig::default())?;
    /// let (echo, _) = runtime.load(ECHO)?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// let mut spec = RunSpec::new(vec!["echo.wasm".into()], Default::default(), Default::default());
    /// spec.stdin = Input::closed(); // also what `RunSpec::new` sets
    /// spec.stdout = Arc::new(move |data: &[u8]| sink.lock().unwrap().extend_from_slice(data));
    /// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    /// assert_eq!(tokio.block_on(runtime.run(&echo, spec))?, Exit::Status(0));
    /// assert!(seen.lock().unwrap().is_empty(), "the guest read end of file at once");
    /// # Ok(()) }
    /// ```
    pub fn closed() -> Input {
        let input = Input::new();
        input.state.lock().expect("input lock").eof = true;
        input
    }

    fn new() -> Input {
        Input {
            state: Arc::default(),
            readable: Arc::new(Notify::new()),
            drained: Arc::new(Condvar::new()),
        }
    }

    /// An input read from `source` on its own thread (blocking reads stay off the async runtime). End of file (or a
    /// read error) from `source` is end of file for the guest.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // `ECHO`: a core module that copies its standard input to its standard output.
    /// # const ECHO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/echo.wasm"));
    /// use std::sync::{Arc, Mutex};
    /// use wasmdyno::{runtime::Exit, runtime::stdio::Input, runtime::RunSpec, Runtime, RuntimeConfig};
    ///
    /// let runtime = Runtime::new(RuntimeConfig::default())?;
    /// let (echo, _) = runtime.load(ECHO)?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// let mut spec = RunSpec::new(vec!["echo.wasm".into()], Default::default(), Default::default());
    /// // Any `Read + Send`: a file, a pipe, this process's stdin (`RunSpec::with_host_stdio`).
    /// spec.stdin = Input::from_reader(std::io::Cursor::new(b"line one\nline two\n".to_vec()));
    /// spec.stdout = Arc::new(move |data: &[u8]| sink.lock().unwrap().extend_from_slice(data));
    /// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    /// assert_eq!(tokio.block_on(runtime.run(&echo, spec))?, Exit::Status(0));
    /// assert_eq!(*seen.lock().unwrap(), b"line one\nline two\n");
    /// # Ok(()) }
    /// ```
    pub fn from_reader(mut source: impl Read + Send + 'static) -> Input {
        let input = Input::new();
        let pump = input.clone();
        std::thread::Builder::new()
            .name("wasmdyno-stdin".into())
            .spawn(move || {
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    // Wait while the buffer is full so a guest that never reads does not grow it without bound.
                    {
                        let state = pump.state.lock().expect("input lock");
                        let _unused = pump
                            .drained
                            .wait_while(state, |s| s.buf.len() >= INPUT_BUFFER)
                            .expect("input lock");
                    }
                    let n = match source.read(&mut chunk) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => 0,
                    };
                    let mut state = pump.state.lock().expect("input lock");
                    if n == 0 {
                        state.eof = true;
                    } else {
                        state.buf.extend(&chunk[..n]);
                    }
                    drop(state);
                    pump.readable.notify_waiters();
                    if n == 0 {
                        return;
                    }
                }
            })
            .expect("spawn stdin pump");
        input
    }

    /// An input fed by the chunks sent on `chunks`; end of file when every sender is gone. The senders wait
    /// while the guest has not read what came before (the channel's bound plus 64 KiB).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // `ECHO`: a core module that copies its standard input to its standard output.
    /// # const ECHO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/echo.wasm"));
    /// use std::sync::{Arc, Mutex};
    /// use wasmdyno::{runtime::Exit, runtime::stdio::Input, runtime::RunSpec, Runtime, RuntimeConfig};
    ///
    /// let runtime = Runtime::new(RuntimeConfig::default())?;
    /// let (echo, _) = runtime.load(ECHO)?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// let (chunks, received) = tokio::sync::mpsc::channel(8);
    /// let mut spec = RunSpec::new(vec!["echo.wasm".into()], Default::default(), Default::default());
    /// spec.stdin = Input::from_channel(received);
    /// spec.stdout = Arc::new(move |data: &[u8]| sink.lock().unwrap().extend_from_slice(data));
    /// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    /// let exit = tokio.block_on(async {
    ///     let guest = tokio::spawn(async move { runtime.run(&echo, spec).await });
    ///     chunks.send(b"typed ".to_vec()).await?;
    ///     chunks.send(b"at a terminal".to_vec()).await?;
    ///     drop(chunks); // end of file
    ///     Ok::<_, Box<dyn std::error::Error>>(guest.await??)
    /// })?;
    /// assert_eq!(exit, Exit::Status(0));
    /// assert_eq!(*seen.lock().unwrap(), b"typed at a terminal");
    /// # Ok(()) }
    /// ```
    pub fn from_channel(chunks: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Input {
        Input::from_reader(ChannelReader {
            chunks,
            pending: Vec::new(),
            at: 0,
        })
    }

    /// A handle that ends this input from the outside (see [`InputCloser`]).
    pub(crate) fn closer(&self) -> InputCloser {
        InputCloser(self.clone())
    }

    /// Is a read ready now (data buffered or end of file)? With the number of bytes buffered.
    pub(crate) fn ready(&self) -> Option<usize> {
        let state = self.state.lock().expect("input lock");
        (!state.buf.is_empty() || state.eof).then_some(state.buf.len())
    }

    /// Waits until a read would not block.
    pub(crate) async fn wait_ready(&self) {
        loop {
            let notified = self.readable.notified();
            if self.ready().is_some() {
                return;
            }
            notified.await;
        }
    }

    /// Reads up to `max` bytes, waiting for at least one; empty at end of file.
    pub(crate) async fn read(&self, max: usize) -> Vec<u8> {
        self.wait_ready().await;
        self.try_read(max)
    }

    /// Reads what is buffered now, up to `max` bytes.
    pub(crate) fn try_read(&self, max: usize) -> Vec<u8> {
        let mut state = self.state.lock().expect("input lock");
        let n = max.min(state.buf.len());
        let data: Vec<u8> = state.buf.drain(..n).collect();
        drop(state);
        self.drained.notify_all();
        data
    }
}

/// `Read` over a channel of chunks; runs on the input's pump thread, so blocking there is fine.
struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.pending.len() {
            match self.chunks.blocking_recv() {
                Some(chunk) => {
                    self.pending = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Where a dyno's stdout or stderr goes: called with the bytes of each write, in order (not split into lines).
/// The guest waits while it runs, so it should be quick: a dyno's log writer, a terminal, a buffer.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // `ECHO`: a core module that copies its standard input to its standard output.
/// # const ECHO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/echo.wasm"));
/// use std::sync::{Arc, Mutex};
/// use wasmdyno::{runtime::Exit, runtime::stdio::Input, runtime::stdio::Output, runtime::RunSpec, Runtime, RuntimeConfig};
///
/// let captured = Arc::new(Mutex::new(Vec::new()));
/// let sink = captured.clone();
/// let output: Output = Arc::new(move |data: &[u8]| sink.lock().unwrap().extend_from_slice(data));
///
/// let runtime = Runtime::new(RuntimeConfig::default())?;
/// let (echo, _) = runtime.load(ECHO)?;
/// let mut spec = RunSpec::new(vec!["echo.wasm".into()], Default::default(), Default::default());
/// spec.stdin = Input::from_reader(&b"to stdout"[..]);
/// spec.stdout = output.clone();
/// spec.stderr = output;
/// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
/// assert_eq!(tokio.block_on(runtime.run(&echo, spec))?, Exit::Status(0));
/// assert_eq!(*captured.lock().unwrap(), b"to stdout");
/// # Ok(()) }
/// ```
pub type Output = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Flow control for an [`Output`] whose reader may be slower than the guest (a CGI response to a slow client):
/// the guest's writes take credit, and wait while there is none; the reader gives credit back as it hands the
/// bytes on. So at most `capacity` bytes sit between guest and reader. Closed (the reader gone), writes fail
/// with a broken pipe.
#[derive(Clone, Debug)]
pub(crate) struct Credit {
    permits: Arc<tokio::sync::Semaphore>,
    capacity: usize,
}

impl Credit {
    pub(crate) fn new(capacity: usize) -> Credit {
        Credit {
            permits: Arc::new(tokio::sync::Semaphore::new(capacity)),
            capacity,
        }
    }

    /// A rate limit of `per_second` bytes (at least 1), with bursts of up to a second's worth: a task of the
    /// current runtime gives credit back every [`REFILL_EVERY`], until the last clone of the credit is dropped.
    /// Writers beyond the rate wait, as a program writing to a slow pipe does.
    pub(crate) fn refilling(per_second: usize) -> Credit {
        let per_second = per_second.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let credit = Credit::new(per_second);
        let permits = Arc::downgrade(&credit.permits);
        let step = (per_second as f64 * REFILL_EVERY.as_secs_f64()).ceil() as usize;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(REFILL_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(permits) = permits.upgrade() else {
                    return;
                };
                if permits.is_closed() {
                    return;
                }
                let room = per_second.saturating_sub(permits.available_permits());
                permits.add_permits(step.min(room));
            }
        });
        credit
    }

    /// The most one write may take at once.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Waits for `bytes` (at most [`Credit::capacity`]) of credit and takes it; `false` once closed.
    pub(crate) async fn take(&self, bytes: usize) -> bool {
        let bytes = bytes.min(self.capacity) as u32;
        match self.permits.acquire_many(bytes).await {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// Takes up to `bytes` of credit without waiting; how much it took (0 when there is none or it is closed).
    pub(crate) fn try_take_up_to(&self, bytes: usize) -> usize {
        let available = self.permits.available_permits().min(bytes);
        match self.permits.try_acquire_many(available as u32) {
            Ok(permit) => {
                permit.forget();
                available
            }
            Err(_) => 0,
        }
    }

    /// Resolves when some credit is free (or the credit is closed).
    pub(crate) async fn available(&self) {
        let _ = self.permits.acquire().await;
    }

    pub(crate) fn give_back(&self, bytes: usize) {
        self.permits.add_permits(bytes);
    }

    /// The reader is gone: writes waiting and to come fail.
    pub(crate) fn close(&self) {
        self.permits.close();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.permits.is_closed()
    }
}

/// How often a [rate-limited](Credit::refilling) credit is topped up.
const REFILL_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// An output that writes to this process's stdout.
pub fn host_stdout() -> Output {
    Arc::new(|data| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(data);
        let _ = out.flush();
    })
}

/// An output that writes to this process's stderr.
pub fn host_stderr() -> Output {
    Arc::new(|data| {
        let _ = std::io::stderr().lock().write_all(data);
    })
}

/// An output that discards everything.
pub fn discard() -> Output {
    Arc::new(|_| {})
}

/// Ends an [`Input`] from the outside: its reader then sees end of file (how a worker dyno is told to stop).
pub struct InputCloser(Input);

impl InputCloser {
    /// Ends the input: reads see end of file once what was written is consumed.
    pub fn close(&self) {
        self.0.state.lock().expect("input lock").eof = true;
        self.0.readable.notify_waiters();
    }
}

impl Input {
    /// An input with nothing to read that stays open until its [`InputCloser`] closes it.
    pub(crate) fn held_open() -> (Input, InputCloser) {
        let input = Input::new();
        (input.clone(), InputCloser(input))
    }
}
