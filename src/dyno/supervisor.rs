//! One dyno's supervisor: boots its process, runs it, restarts it with backoff, cycles and stops it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::launch::{self, PlatformVars, Want};
use super::state::Inner;
use super::*;
use crate::logs::{LineWriter, LogLine};
use crate::runtime::cgi::CgiDyno;
use crate::runtime::net::Listener;
use crate::runtime::shell::SlugCommands;
use crate::runtime::stdio::{Credit, Input, Output};
use crate::runtime::web::WebHandler;
use crate::runtime::{Exit, Guest, RunSpec, Upgrade};

/// The task that keeps one dyno running.
pub(super) struct Supervisor {
    pub(super) inner: Arc<Inner>,
    pub(super) app: String,
    pub(super) name: String,
    pub(super) want: Want,
    pub(super) info: Arc<Mutex<DynoInfo>>,
    /// The dyno's memory budget, given to each run.
    pub(super) quota: Arc<crate::runtime::vfs::Quota>,
    /// The dyno's CPU time, counted by each run.
    pub(super) cpu: Arc<std::sync::atomic::AtomicU64>,
    pub(super) listener: Option<Listener>,
    pub(super) shared_listener: Arc<Mutex<Option<Listener>>>,
    pub(super) shared_handler: Arc<Mutex<Option<WebHandler>>>,
    pub(super) stop: watch::Receiver<bool>,
    /// A one-off dyno runs once, is never restarted, and leaves the app's dyno list when it ends.
    pub(super) one_off: bool,
    /// The terminal of an attached one-off dyno.
    pub(super) attach: Option<Attach>,
    /// How the last run ended, as an exit status (134 for a trap, 137 when interrupted after a stop).
    pub(super) exit_status: Option<i32>,
    /// While the dyno runs baseline code: when its optimized code is ready (shared with the manager).
    pub(super) upgrade: Arc<Mutex<Option<Upgrade>>>,
}

/// The terminal of an attached one-off dyno ([`Manager::run_one_off`]): its standard streams, and where its exit
/// status goes.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // `ECHO`: a core module that copies its standard input to its standard output.
/// # const ECHO: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/doc/echo.wasm"));
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("echo.wasm"), ECHO)?;
/// # let options = wasmdyno::slug::PackOptions {
/// #     process_types: [("console".to_string(), "echo.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let packed = wasmdyno::slug::pack(app.path(), options)?;
/// use std::sync::{Arc, Mutex};
/// use wasmdyno::{dyno::AppSpec, dyno::Attach, runtime::stdio::Input, Logplex, Manager, edge::MemorySource, dyno::ReleaseSpec, Runtime, RuntimeConfig};
///
/// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
/// tokio.block_on(async {
///     let work = tempfile::tempdir()?;
///     let source = Arc::new(MemorySource::new(work.path()));
///     let sha = source.add_slug(&packed.bytes, None, Default::default())?.sha256().to_string();
///     source.set(AppSpec::new("hello"), Some(ReleaseSpec::new(1, sha)));
///     let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
///     let manager = Manager::new(runtime, source, Default::default(), Logplex::new(), Default::default());
///
///     // `wasmdyno run console`: what is typed goes to its stdin, its output comes back.
///     let (keys, typed) = tokio::sync::mpsc::channel(8);
///     let screen = Arc::new(Mutex::new(Vec::new()));
///     let shown = screen.clone();
///     let (exit, status) = tokio::sync::oneshot::channel();
///     let attach = Attach {
///         stdin: Input::from_channel(typed),
///         stdout: Arc::new(move |data: &[u8]| shown.lock().unwrap().extend_from_slice(data)),
///         stderr: Arc::new(|_: &[u8]| {}),
///         exit,
///     };
///     manager.run_one_off("hello", "console", &[], Default::default(), Default::default(), Some(attach))?;
///     keys.send(b"hi\n".to_vec()).await?;
///     drop(keys); // end of file: the guest exits
///     assert_eq!(status.await?, 0);
///     assert_eq!(*screen.lock().unwrap(), b"hi\n");
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok(()) }
/// ```
pub struct Attach {
    /// Its standard input.
    pub stdin: Input,
    /// Where its standard output goes.
    pub stdout: Output,
    /// Where its standard error goes, with the platform's own errors for the user (a trap, R99).
    pub stderr: Output,
    /// Gets its exit status when it ends (134 for a trap, 137 when interrupted after a stop).
    pub exit: tokio::sync::oneshot::Sender<i32>,
}

/// How one run of a dyno's process ended.
pub(super) enum Ended {
    Exited(Exit),
    /// The manager asked it to stop and it did (or was interrupted).
    Stopped,
    /// It is due for its daily restart.
    Cycle,
    /// Its app sleeps and nobody asked for it for a while: it goes idle until a request wakes it.
    Sleep,
    Failed(String),
}

impl Drop for Supervisor {
    /// However the dyno ended (a stop during a crash backoff returns early), its listener is closed: whatever
    /// holds a clone (the router's connection pool) sees it go.
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.close();
        }
    }
}

impl Supervisor {
    pub(super) fn log(&self, text: impl Into<String>) {
        self.inner
            .logplex
            .publish(&self.app, LogLine::platform(&self.name, text.into()));
    }

    pub(super) fn set_state(&self, state: State) {
        let mut info = self.info.lock().expect("dyno info");
        if info.state != state {
            let from = info.state;
            info.state = state;
            info.updated_at = unix_now();
            drop(info);
            self.log(format!(
                "State changed from {} to {}",
                from.as_str(),
                state.as_str()
            ));
        }
    }

    pub(super) async fn run(mut self) {
        self.supervise().await;
        if let Some(attach) = self.attach.take() {
            let status = self.exit_status.unwrap_or(1);
            let _ = attach.exit.send(status);
        }
    }

    pub(super) async fn supervise(&mut self) {
        let mut crashes = 0u32;
        loop {
            self.log(format!(
                "Starting process with command `{}`",
                self.want.command
            ));
            let ended = self.run_once().await;
            match ended {
                Ended::Stopped => {
                    self.set_state(State::Down);
                    return;
                }
                Ended::Cycle => {
                    self.log("Cycling");
                    self.set_state(State::Starting);
                    continue;
                }
                Ended::Sleep => {
                    self.set_state(State::Idle);
                    let activity = self.inner.activity(&self.app);
                    let mut wakes = activity.wakes.subscribe();
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = wakes.changed() => {}
                        _ = stop.wait_for(|stop| *stop) => {
                            self.set_state(State::Down);
                            return;
                        }
                    }
                    self.log("Unidling");
                    self.set_state(State::Starting);
                    continue;
                }
                Ended::Exited(exit) => {
                    self.exit_status = Some(exit.code());
                    match &exit {
                        Exit::Status(code) => {
                            self.log(format!("Process exited with status {code}"))
                        }
                        Exit::Trap(trap) => {
                            let cause = crate::runtime::trap_cause(trap);
                            self.log(format!("Process trapped: {cause}"));
                            if let Some(attach) = &self.attach {
                                (attach.stderr)(format!("Error: trapped: {trap}\n").as_bytes());
                            }
                            self.log("Process exited with status 134");
                        }
                    }
                }
                Ended::Failed(reason) => {
                    if let Some(attach) = &self.attach {
                        (attach.stderr)(
                            format!("Error R99 (Platform error) -> {reason}\n").as_bytes(),
                        );
                    }
                    self.exit_status = Some(1);
                    self.log(format!("Error R99 (Platform error) -> {reason}"))
                }
            }
            if self.one_off {
                self.set_state(State::Down);
                let mut apps = self.inner.apps.lock().expect("apps lock");
                if let Some(dynos) = apps.get_mut(&self.app) {
                    dynos.remove(&self.name);
                }
                return;
            }
            self.set_state(State::Crashed);
            self.info.lock().expect("dyno info").restarts += 1;
            crashes += 1;
            let delay = self.inner.settings.backoff(crashes);
            if !delay.is_zero() {
                let mut stop = self.stop.clone();
                let stopped = tokio::select! {
                    () = tokio::time::sleep(delay) => false,
                    _ = stop.wait_for(|stop| *stop) => true,
                };
                if stopped {
                    self.set_state(State::Down);
                    return;
                }
            }
            if *self.stop.borrow() {
                self.set_state(State::Down);
                return;
            }
            self.set_state(State::Starting);
        }
    }

    /// The dyno's platform variables; `port` is its `$PORT`, if it serves HTTP.
    pub(super) fn platform_vars(&self, port: Option<u16>) -> PlatformVars {
        PlatformVars {
            dyno: self.name.clone(),
            release: launch::release_label(self.want.release, &self.want.slug),
            port,
        }
    }

    /// The guest's spec when `$PORT` is `port`: the one every kind of dyno gets from [`launch::spec`].
    fn spec(&self, port: Option<u16>, module: &str) -> RunSpec {
        launch::spec(
            &self.want.line,
            &self.want.env,
            &self.platform_vars(port),
            module,
            self.want.size,
            self.want.booted.image.clone(),
        )
    }

    /// Boots and runs the process once.
    pub(super) async fn run_once(&mut self) -> Ended {
        // Web dynos served on a listener (or as handlers) say port 5000; a component that binds `$PORT` itself
        // gets a real loopback port below, and its command line is expanded again with it.
        let listener_port = self.listener.is_some().then_some(launch::LISTENER_PORT);
        let (guest, module) = match self.boot(listener_port).await {
            Ok(ready) => ready,
            Err(reason) => return Ended::Failed(reason),
        };
        let mut spec = self.spec(listener_port, &module);
        spec.quota = Some(self.quota.clone());
        spec.cpu = Some(self.cpu.clone());
        if self.listener.is_none() {
            // Background work: it steps aside while the router serves requests.
            spec.background = Some(Arc::default());
        }
        spec.network = self
            .inner
            .activity(&self.app)
            .network
            .lock()
            .expect("network policy")
            .clone();
        let close_stdin = match &self.attach {
            Some(attach) => {
                spec.stdin = attach.stdin.clone();
                spec.stdout = attach.stdout.clone();
                spec.stderr = attach.stderr.clone();
                attach.stdin.closer()
            }
            None => {
                let (stdin, close_stdin) = Input::held_open();
                let stdout = self.output();
                spec.stdin = stdin;
                spec.stdout = stdout.clone();
                spec.stderr = stdout;
                // One log rate for the dyno's two streams: past it, its writes wait.
                let rate = Credit::refilling(self.inner.settings.log_rate);
                spec.stdout_credit = Some(rate.clone());
                spec.stderr_credit = Some(rate);
                close_stdin
            }
        };
        spec.platform = {
            let (logplex, app, name) = (
                self.inner.logplex.clone(),
                self.app.clone(),
                self.name.clone(),
            );
            Arc::new(move |text: &str| {
                logplex.publish(&app, LogLine::platform(&name, text.to_string()))
            })
        };
        if self.listener.is_some() {
            let mut settings = self.inner.settings.http.clone();
            settings.fresh_instances |= self
                .inner
                .activity(&self.app)
                .fresh_instances
                .load(std::sync::atomic::Ordering::Relaxed);
            if self.want.line.is_cgi() {
                let cgi = CgiDyno::new(
                    self.inner.runtime.clone(),
                    guest,
                    spec,
                    settings.max_instances,
                    settings.deadline,
                );
                return self.serve_handler(WebHandler::Cgi(Arc::new(cgi))).await;
            }
            match self.inner.runtime.http_dyno(&guest, spec.clone(), settings) {
                Ok(Some(pool)) => return self.serve_handler(WebHandler::Http(pool)).await,
                Ok(None) => {}
                Err(e) => return Ended::Failed(e.to_string()),
            }
        } else if self.want.line.is_cgi() {
            return Ended::Failed(format!(
                "`cgi` serves web requests: declare it as `web: {}`",
                self.want.command
            ));
        }
        // A web component that is not a `wasi:http` handler binds `$PORT` on loopback with `wasi:sockets`.
        let mut port = None;
        if self.listener.is_some() && matches!(guest, Guest::Component(_)) {
            match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(addr) => {
                    port = Some(addr.port());
                    let with_port = self.spec(port, &module);
                    (spec.env, spec.argv, spec.port) = (with_port.env, with_port.argv, port);
                }
                Err(e) => return Ended::Failed(format!("no loopback port for $PORT: {e}")),
            }
        } else if let Some(listener) = &self.listener {
            spec = spec.with_listener(listener.clone());
        }
        let runtime = self.inner.runtime.clone();
        spec.commands = SlugCommands::for_shell(&runtime, &self.want.booted.slug, &spec);
        let running = runtime.run(&guest, spec);
        tokio::pin!(running);
        if let Some(ended) = self.wait_until_bound(running.as_mut(), port).await {
            return ended;
        }
        let cycle = self.inner.settings.cycle_after + jitter(self.inner.settings.cycle_jitter);
        let mut unresponsive_for = None;
        let why_stop = tokio::select! {
            result = &mut running => {
                return match result {
                    Ok(exit) => Ended::Exited(exit),
                    Err(e) => Ended::Failed(e.to_string()),
                };
            }
            _ = self.stop.wait_for(|stop| *stop) => Ended::Stopped,
            () = tokio::time::sleep(cycle) => Ended::Cycle,
            () = sleepy(&self.inner, &self.app, self.listener.is_some()) => Ended::Sleep,
            stalled = unresponsive(self.listener.clone(), self.inner.settings.unresponsive_after) => {
                unresponsive_for = Some(stalled);
                Ended::Stopped
            }
        };
        if let Some(stalled) = unresponsive_for {
            self.log(format!(
                "Error R18 (Unresponsive) -> Web process accepted no connection for {:.1} seconds while requests waited",
                stalled.as_secs_f64()
            ));
            self.log("Stopping process by interrupting it");
            return Ended::Exited(Exit::Status(137));
        }
        if matches!(why_stop, Ended::Sleep) {
            self.log("Idling");
        }
        // Graceful stop: tell the process in ways a WASI program sees, then give it the stop timeout.
        self.log("Stopping process");
        *self.shared_handler.lock().expect("web handler") = None;
        close_stdin.close();
        if let Some(listener) = &self.listener {
            listener.close();
        }
        let timeout = self.inner.settings.stop_timeout;
        let ended = tokio::time::timeout(timeout, &mut running).await;
        self.exit_status = Some(match &ended {
            Ok(Ok(exit)) => exit.code(),
            Ok(Err(_)) => 1,
            Err(_) => 137,
        });
        match ended {
            Ok(Ok(Exit::Status(code))) => self.log(format!("Process exited with status {code}")),
            Ok(Ok(Exit::Trap(_))) => self.log("Process exited with status 134"),
            Ok(Err(e)) => self.log(format!("Process failed: {e}")),
            Err(_) => {
                self.log(format!(
                    "Error R12 (Exit timeout) -> Process failed to exit within {} seconds of being told to stop",
                    timeout.as_secs_f64()
                ));
                self.log("Stopping process by interrupting it");
            }
        }
        if matches!(why_stop, Ended::Cycle | Ended::Sleep) && self.listener.is_some() {
            // A cycled web dyno gets a new listener: the old one is closed for good.
            let fresh = Listener::new(self.inner.settings.listen_backlog);
            *self.shared_listener.lock().expect("listener") = Some(fresh.clone());
            self.listener = Some(fresh);
        }
        why_stop
    }

    /// Marks the dyno up: a worker at once, a web dyno that listens once it accepts (Heroku's "bound to $PORT"),
    /// so the router never sends to a dyno that is still booting. One that does not accept within the boot
    /// timeout gets R10 and is stopped, to be restarted as a crash. `Some` when the run ended here.
    pub(super) async fn wait_until_bound<F, E>(
        &mut self,
        running: std::pin::Pin<&mut F>,
        port: Option<u16>,
    ) -> Option<Ended>
    where
        F: std::future::Future<Output = Result<Exit, E>>,
        E: std::fmt::Display,
    {
        let Some(listener) = self.listener.clone() else {
            self.set_state(State::Up);
            return None;
        };
        // Bound: the listener accepts, or for a component on `$PORT`, the port takes a connection.
        let bound = async {
            match port {
                None => listener.accepting().await,
                Some(port) => loop {
                    if tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok()
                    {
                        *self.shared_handler.lock().expect("web handler") =
                            Some(WebHandler::Port(port));
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                },
            }
        };
        let timeout = self.inner.settings.boot_timeout;
        let mut stop = self.stop.clone();
        tokio::select! {
            result = running => Some(match result {
                Ok(exit) => Ended::Exited(exit),
                Err(e) => Ended::Failed(e.to_string()),
            }),
            () = bound => {
                self.set_state(State::Up);
                None
            }
            // Stopping while booting: the caller's graceful stop sees the signal at once.
            _ = stop.wait_for(|stop| *stop) => None,
            () = tokio::time::sleep(timeout) => {
                self.log(format!(
                    "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {} seconds of launch",
                    timeout.as_secs_f64()
                ));
                self.log("Stopping process by interrupting it");
                Some(Ended::Exited(Exit::Status(137)))
            }
        }
    }

    /// Serves as a `wasi:http` or CGI web dyno until told to stop or cycle; then lets requests in flight finish.
    pub(super) async fn serve_handler(&mut self, handler: WebHandler) -> Ended {
        *self.shared_handler.lock().expect("web handler") = Some(handler.clone());
        self.set_state(State::Up);
        let cycle = self.inner.settings.cycle_after + jitter(self.inner.settings.cycle_jitter);
        let why_stop = tokio::select! {
            _ = self.stop.wait_for(|stop| *stop) => Ended::Stopped,
            () = tokio::time::sleep(cycle) => Ended::Cycle,
            () = sleepy(&self.inner, &self.app, true) => Ended::Sleep,
        };
        if matches!(why_stop, Ended::Sleep) {
            self.log("Idling");
        }
        self.log("Stopping process");
        *self.shared_handler.lock().expect("web handler") = None;
        let timeout = self.inner.settings.stop_timeout;
        if handler.close(timeout).await {
            self.exit_status = Some(0);
            self.log("Process exited with status 0");
        } else {
            self.exit_status = Some(137);
            self.log(format!(
                "Error R12 (Exit timeout) -> Requests still running {} seconds after the dyno was told to stop",
                timeout.as_secs_f64()
            ));
            self.log("Stopping process by interrupting it");
        }
        why_stop
    }

    /// The dyno's stdout and stderr, line by line into the app's stream.
    pub(super) fn output(&self) -> Output {
        let writer = Mutex::new(LineWriter::new(
            self.inner.logplex.clone(),
            &self.app,
            &self.name,
        ));
        Arc::new(move |data: &[u8]| writer.lock().expect("line writer").write(data))
    }
}

/// Resolves, with how long, when `listener` has had connections waiting and none accepted for `after` (never
/// without a listener).
pub(super) async fn unresponsive(listener: Option<Listener>, after: Duration) -> Duration {
    let Some(listener) = listener else {
        return std::future::pending().await;
    };
    let tick = (after / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if let Some(stalled) = listener.stalled_for().filter(|s| *s >= after) {
            return stalled;
        }
    }
}

/// Resolves when a web dyno of a sleeping app has had no request for [`Settings::sleep_after`] (never for
/// other dynos).
pub(super) async fn sleepy(inner: &Inner, app: &str, web: bool) {
    if !web {
        return std::future::pending().await;
    }
    let activity = inner.activity(app);
    let after = inner.settings.sleep_after;
    let since = inner.now_ms();
    let tick = (after / 4).clamp(Duration::from_millis(5), Duration::from_secs(10));
    loop {
        tokio::time::sleep(tick).await;
        let last = activity
            .last_request
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(since);
        let quiet = Duration::from_millis(inner.now_ms().saturating_sub(last));
        if activity.sleep.load(std::sync::atomic::Ordering::Relaxed) && quiet >= after {
            return;
        }
    }
}

/// A random duration up to `max`.
pub(super) fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return max;
    }
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    Duration::from_nanos(u64::from_le_bytes(bytes) % max.as_nanos().max(1) as u64)
}
