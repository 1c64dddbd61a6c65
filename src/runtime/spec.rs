//! What a guest run is given (its spec: argv, environment, size, filesystem, streams, listener, policy) and what
//! it gives back (its exit).

#[allow(unused_imports)]
use super::*;

/// Memory quotas by dyno size, as Heroku's sizes name them. Parses from its name (`eco`, `standard-1x`, ...) or
/// Heroku's aliases `1X` and `2X`; the default is `standard-1x`.
///
/// ```
/// use wasmdyno::runtime::DynoSize;
///
/// let size: DynoSize = "2X".parse()?;
/// assert_eq!(size, DynoSize::Standard2X);
/// assert_eq!(size.name(), "standard-2x");
/// assert_eq!(size.memory(), 1024 * 1024 * 1024);
/// assert_eq!(DynoSize::default(), DynoSize::Standard1X);
/// assert!("huge".parse::<DynoSize>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DynoSize {
    /// `eco`: 512 MiB.
    Eco,
    /// `basic`: 512 MiB.
    Basic,
    /// `standard-1x` (`1X`): 512 MiB, the default.
    #[default]
    Standard1X,
    /// `standard-2x` (`2X`): 1 GiB.
    Standard2X,
    /// `performance-m`: 2.5 GiB.
    PerformanceM,
    /// `performance-l`: 14 GiB.
    PerformanceL,
}

impl DynoSize {
    /// Every size, smallest first.
    ///
    /// ```
    /// assert_eq!(wasmdyno::runtime::DynoSize::ALL[0], wasmdyno::runtime::DynoSize::Eco);
    /// ```
    pub const ALL: [DynoSize; 6] = [
        DynoSize::Eco,
        DynoSize::Basic,
        DynoSize::Standard1X,
        DynoSize::Standard2X,
        DynoSize::PerformanceM,
        DynoSize::PerformanceL,
    ];

    /// The size's name, as `ps` shows it and [`FromStr`](std::str::FromStr) parses it.
    ///
    /// ```
    /// use wasmdyno::runtime::DynoSize;
    /// assert_eq!(DynoSize::PerformanceM.name(), "performance-m");
    /// assert_eq!(DynoSize::PerformanceM.name().parse::<DynoSize>(), Ok(DynoSize::PerformanceM));
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            DynoSize::Eco => "eco",
            DynoSize::Basic => "basic",
            DynoSize::Standard1X => "standard-1x",
            DynoSize::Standard2X => "standard-2x",
            DynoSize::PerformanceM => "performance-m",
            DynoSize::PerformanceL => "performance-l",
        }
    }

    /// The dyno's memory quota in bytes: its linear memories and its filesystem's writes together.
    ///
    /// ```
    /// assert_eq!(wasmdyno::runtime::DynoSize::Eco.memory(), 512 * 1024 * 1024);
    /// ```
    pub fn memory(self) -> usize {
        const MB: usize = 1024 * 1024;
        match self {
            DynoSize::Eco | DynoSize::Basic | DynoSize::Standard1X => 512 * MB,
            DynoSize::Standard2X => 1024 * MB,
            DynoSize::PerformanceM => 2560 * MB,
            DynoSize::PerformanceL => 14 * 1024 * MB,
        }
    }
}

impl std::str::FromStr for DynoSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "1x" => "standard-1x",
            "2x" => "standard-2x",
            other => other,
        };
        DynoSize::ALL
            .into_iter()
            .find(|size| size.name() == alias)
            .ok_or_else(|| {
                let names: Vec<_> = DynoSize::ALL.iter().map(|s| s.name()).collect();
                format!("unknown dyno size {s:?} (sizes: {})", names.join(", "))
            })
    }
}

/// Hears a line about a dyno from the platform (for the app's log stream as `wasmdyno[web.1]: ...`), such as
/// `Error R14 (Memory quota exceeded)`; [`RunSpec::platform`] is one.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use wasmdyno::{runtime::Report, runtime::RunSpec};
///
/// let lines = Arc::new(Mutex::new(Vec::new()));
/// let seen = lines.clone();
/// let report: Report = Arc::new(move |line: &str| seen.lock().unwrap().push(format!("wasmdyno[web.1]: {line}")));
/// let mut spec = RunSpec::new(vec!["web.wasm".into()], Default::default(), Default::default());
/// spec.platform = report.clone();
/// report("Error R14 (Memory quota exceeded)");
/// assert_eq!(lines.lock().unwrap()[0], "wasmdyno[web.1]: Error R14 (Memory quota exceeded)");
/// ```
pub type Report = Arc<dyn Fn(&str) + Send + Sync>;

/// How a guest ended, from [`Runtime::run`].
///
/// ```
/// use wasmdyno::runtime::Exit;
///
/// assert_eq!(Exit::Status(3).code(), 3);
/// let exit = Exit::Trap("wasm trap: unreachable".into());
/// assert_eq!(exit.code(), 134);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// The guest exited (returned from `_start`/`run`, or called `proc_exit`) with this status.
    Status(i32),
    /// The guest trapped; the text says where and why.
    Trap(String),
}

impl Exit {
    /// The process exit code a command line reports: the guest's own status, or 134 for a trap as
    /// `wasmtime run` does.
    ///
    /// ```
    /// assert_eq!(wasmdyno::runtime::Exit::Status(0).code(), 0);
    /// assert_eq!(wasmdyno::runtime::Exit::Trap("out of fuel".into()).code(), 134);
    /// ```
    pub fn code(&self) -> i32 {
        match self {
            Exit::Status(code) => *code,
            Exit::Trap(_) => 134,
        }
    }
}

/// What a guest runs with: argv, environment, size, filesystem, streams and limits. Start from [`RunSpec::new`]
/// and set what differs.
///
/// ```
/// use std::collections::BTreeMap;
/// use std::time::Duration;
/// use wasmdyno::{runtime::DynoSize, runtime::RunSpec};
///
/// let env = BTreeMap::from([("GREETING".to_string(), "hi".to_string())]);
/// let mut spec = RunSpec::new(vec!["hello.wasm".into(), "--loud".into()], env, DynoSize::Eco);
/// spec.deadline = Some(Duration::from_secs(30));
/// assert_eq!(spec.argv[0], "hello.wasm");
/// assert_eq!(spec.env["GREETING"], "hi");
/// assert!(spec.listener.is_none() && spec.port.is_none());
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RunSpec {
    /// argv, with argv\[0\] the module's name.
    pub argv: Vec<String>,
    /// The environment (config vars): the guest sees nothing else of the host's.
    pub env: BTreeMap<String, String>,
    /// The memory quota.
    pub size: DynoSize,
    /// The release's `app/` tree, the guest's `/`.
    pub image: Arc<Image>,
    /// The guest's standard input (closed unless set).
    pub stdin: Input,
    /// Where its standard output goes (discarded unless set).
    pub stdout: Output,
    /// Where its standard error goes (discarded unless set).
    pub stderr: Output,
    /// Where lines about the guest from the platform go (`Error R14 (Memory quota exceeded)`).
    pub platform: Report,
    /// A web dyno's listener: a preview-1 guest gets it at fd 4, announced as `WASMDYNO_LISTEN_FD=4`.
    /// (Components ignore it: they would bind `$PORT` with `wasi:sockets`.)
    pub listener: Option<Listener>,
    /// The longest the guest may run; past it, it is interrupted and its exit is a trap that says so.
    pub deadline: Option<Duration>,
    /// A loopback port a component may listen on with `wasi:sockets` (a web component binding `$PORT`).
    pub port: Option<u16>,
    /// The destinations its outgoing `wasi:http` requests and `wasi:sockets` connections may reach (public
    /// addresses only); by default none.
    pub network: NetworkPolicy,
    /// Flow control on stdout: writes wait for the reader (a CGI response's client), or for the dyno's log rate.
    pub(crate) stdout_credit: Option<stdio::Credit>,
    /// Flow control on stderr: writes wait for the dyno's log rate.
    pub(crate) stderr_credit: Option<stdio::Credit>,
    /// A quota shared with other runs (a CGI dyno's concurrent requests); a quota of its own by default.
    pub(crate) quota: Option<Arc<Quota>>,
    /// Counts the epoch ticks (milliseconds) that found the guest running: its CPU time, sampled.
    pub(crate) cpu: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// A filesystem shared with another guest of the dyno (a module the built-in shell started), instead of a
    /// fresh layer over the image.
    pub(crate) fs: Option<Arc<std::sync::Mutex<vfs::Fs>>>,
    /// The modules a core-module guest may start in its dyno (`wasmdyno.spawn`): the built-in shell's commands.
    pub(crate) commands: Option<Arc<dyn p1::Commands>>,
    /// For a background dyno: it pauses while the router serves requests ([`super::share`]), counted here.
    pub(crate) background: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// For a pre-initialized command ([`super::preinit`]): the state its `_initialize` left, restored instead of
    /// running it again.
    pub(crate) snapshot: Option<Arc<super::preinit::Snapshot>>,
}

impl RunSpec {
    /// A spec with an empty filesystem, stdin at end of file and output discarded.
    ///
    /// ```
    /// let spec = wasmdyno::runtime::RunSpec::new(vec!["app.wasm".into()], Default::default(), Default::default());
    /// assert_eq!(spec.size, wasmdyno::runtime::DynoSize::Standard1X);
    /// assert!(spec.deadline.is_none());
    /// ```
    pub fn new(argv: Vec<String>, env: BTreeMap<String, String>, size: DynoSize) -> Self {
        RunSpec {
            argv,
            env,
            size,
            image: Arc::new(Image::new([], [], 0)),
            stdin: Input::closed(),
            stdout: stdio::discard(),
            stderr: stdio::discard(),
            platform: Arc::new(|_: &str| {}),
            listener: None,
            deadline: None,
            port: None,
            network: NetworkPolicy::default(),
            stdout_credit: None,
            stderr_credit: None,
            quota: None,
            cpu: None,
            fs: None,
            commands: None,
            background: None,
            snapshot: None,
        }
    }

    /// Makes the guest a web dyno that accepts connections on `listener` (see [`RunSpec::listener`]).
    ///
    /// ```
    /// use wasmdyno::{runtime::net::Listener, runtime::RunSpec};
    ///
    /// let spec = RunSpec::new(vec!["web.wasm".into()], Default::default(), Default::default())
    ///     .with_listener(Listener::new(64));
    /// assert!(spec.listener.is_some());
    /// ```
    pub fn with_listener(mut self, listener: Listener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Gives the guest `image` as its filesystem (usually a slug's: [`Image::from_slug`]).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let app = tempfile::tempdir()?;
    /// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
    /// # let options = wasmdyno::slug::PackOptions {
    /// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let packed = wasmdyno::slug::pack(app.path(), options)?;
    /// use std::sync::Arc;
    /// use wasmdyno::{runtime::Image, runtime::RunSpec, Slug};
    ///
    /// let slug = Slug::from_bytes(&packed.bytes, Default::default())?;
    /// let spec = RunSpec::new(vec!["hello.wasm".into()], Default::default(), Default::default())
    ///     .with_image(Arc::new(Image::from_slug(&slug)));
    /// # drop(spec);
    /// # Ok(()) }
    /// ```
    pub fn with_image(mut self, image: Arc<Image>) -> Self {
        self.image = image;
        self
    }

    /// Attaches the guest to this process's standard streams (as `wasmdyno run` does).
    ///
    /// ```
    /// let spec = wasmdyno::runtime::RunSpec::new(vec!["cat.wasm".into()], Default::default(), Default::default())
    ///     .with_host_stdio();
    /// # drop(spec);
    /// ```
    pub fn with_host_stdio(mut self) -> Self {
        self.stdin = Input::from_reader(std::io::stdin());
        self.stdout = stdio::host_stdout();
        self.stderr = stdio::host_stderr();
        self.platform = Arc::new(|line: &str| eprintln!("{line}"));
        self
    }
}
