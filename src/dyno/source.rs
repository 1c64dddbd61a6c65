//! What the dyno manager runs, as a [`Source`] tells it: apps, their current release and formation.

use std::collections::BTreeMap;

use crate::runtime::DynoSize;

/// What the dyno manager and the router run: the apps, and each app's current release and formation.
///
/// `wasmdyno serve` implements it over its state store; an edge host over a folder of slugs or a central server
/// ([`MemorySource`](crate::edge::MemorySource)). Reads are frequent (every reconcile, every routing-table reload) and must be quick: keep the
/// state in memory and refresh it elsewhere.
///
/// ```
/// use std::path::PathBuf;
/// use wasmdyno::{dyno::AppSpec, dyno::ReleaseSpec, dyno::Source, dyno::SourceError};
///
/// /// One app, never changing.
/// struct Fixed(ReleaseSpec);
///
/// impl Source for Fixed {
///     fn apps(&self) -> Result<Vec<AppSpec>, SourceError> {
///         Ok(vec![AppSpec::new("hello")])
///     }
///     fn release(&self, app: &str) -> Result<Option<ReleaseSpec>, SourceError> {
///         Ok((app == "hello").then(|| self.0.clone()))
///     }
///     fn slug_path(&self, sha256: &str) -> PathBuf {
///         PathBuf::from(format!("/srv/slugs/{sha256}.tar.gz"))
///     }
/// }
/// ```
pub trait Source: Send + Sync {
    /// Every app, with its flags.
    fn apps(&self) -> Result<Vec<AppSpec>, SourceError>;
    /// One app; `None` when there is no such app. The default looks through [`apps`](Self::apps).
    fn app(&self, app: &str) -> Result<Option<AppSpec>, SourceError> {
        Ok(self.apps()?.into_iter().find(|a| a.name == app))
    }
    /// The app's current release (the one its dynos run); `None` for an unknown app or one never released.
    fn release(&self, app: &str) -> Result<Option<ReleaseSpec>, SourceError>;
    /// Where the slug with this sha256 is on disk. The manager opens and verifies it, checking that the archive's
    /// sha256 is `sha256`.
    fn slug_path(&self, sha256: &str) -> std::path::PathBuf;
    /// The app's custom hostnames, besides `<app>.<base domain>` (lowercase; may start with `*.`).
    fn domains(&self, _app: &str) -> Result<Vec<String>, SourceError> {
        Ok(Vec::new())
    }
    /// Which of the app's formation dynos (`web.1`, `worker.2`) this host runs, when several hosts share the work;
    /// `None` (the default) runs the whole formation here.
    fn placement(&self, _app: &str) -> Option<std::collections::BTreeSet<String>> {
        None
    }
}

/// A [`Source`] could not be read.
///
/// ```
/// let e = wasmdyno::dyno::SourceError::new("the central server is unreachable");
/// assert_eq!(e.to_string(), "the central server is unreachable");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(String);

impl SourceError {
    /// An error that says `why`.
    ///
    /// ```
    /// let e = wasmdyno::dyno::SourceError::new(format!("cannot read {}", "/srv/slugs"));
    /// assert!(e.to_string().contains("/srv/slugs"));
    /// ```
    pub fn new(why: impl Into<String>) -> SourceError {
        SourceError(why.into())
    }
}

/// An app as a [`Source`] lists it.
///
/// ```
/// let app = wasmdyno::dyno::AppSpec::new("hello");
/// assert!(!app.maintenance && !app.sleep);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppSpec {
    /// The app's name: its hostname is `<name>.<base domain>`.
    pub name: String,
    /// In maintenance mode the router answers every request with H80.
    pub maintenance: bool,
    /// Its web dynos go idle after [`Settings::sleep_after`](super::Settings::sleep_after) without a request.
    pub sleep: bool,
    /// Features turned on (`http-fresh-instances`: a new `wasi:http` instance for every request).
    pub features: std::collections::BTreeSet<String>,
    /// Destinations its dynos may connect to (`host` or `host:port`, public addresses only).
    pub network: Vec<String>,
    /// Exact addresses its dynos may connect to even when loopback or private: the servers of the add-ons the
    /// platform provisioned for it.
    pub endpoints: Vec<std::net::SocketAddr>,
}

impl AppSpec {
    /// An app named `name`, not in maintenance, not sleeping.
    ///
    /// ```
    /// let mut app = wasmdyno::dyno::AppSpec::new("hello");
    /// app.maintenance = true;
    /// assert_eq!(app.name, "hello");
    /// ```
    pub fn new(name: impl Into<String>) -> AppSpec {
        AppSpec {
            name: name.into(),
            maintenance: false,
            sleep: false,
            features: Default::default(),
            network: Vec::new(),
            endpoints: Vec::new(),
        }
    }
}

/// An app's current release as a [`Source`] gives it: what its dynos run.
///
/// ```
/// use wasmdyno::{runtime::DynoSize, dyno::ReleaseSpec};
///
/// let release = ReleaseSpec::new(3, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
///     .config("GREETING", "hi")
///     .scale("web", 2, DynoSize::default());
/// assert_eq!(release.formation["web"].quantity, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReleaseSpec {
    /// 1, 2, 3, ...: a dyno whose release differs is replaced.
    pub version: u64,
    /// The slug's sha256; `None` runs nothing (an app never built).
    pub slug: Option<String>,
    /// Config vars, over the slug's own (`.wasmdyno/slug.json`).
    pub config: BTreeMap<String, String>,
    /// Process type → how many dynos of which size.
    pub formation: BTreeMap<String, Scale>,
}

impl ReleaseSpec {
    /// Release `version` of the slug `sha256`, no config vars, an empty formation.
    ///
    /// ```
    /// let release = wasmdyno::dyno::ReleaseSpec::new(1, "ab12");
    /// assert_eq!(release.slug.as_deref(), Some("ab12"));
    /// assert!(release.config.is_empty() && release.formation.is_empty());
    /// ```
    pub fn new(version: u64, sha256: impl Into<String>) -> ReleaseSpec {
        ReleaseSpec {
            version,
            slug: Some(sha256.into()),
            config: BTreeMap::new(),
            formation: BTreeMap::new(),
        }
    }

    /// Sets a config var.
    ///
    /// ```
    /// let release = wasmdyno::dyno::ReleaseSpec::new(1, "ab12").config("GREETING", "hi");
    /// assert_eq!(release.config["GREETING"], "hi");
    /// ```
    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> ReleaseSpec {
        self.config.insert(name.into(), value.into());
        self
    }

    /// Runs `quantity` dynos of `kind` at `size`.
    ///
    /// ```
    /// use wasmdyno::{runtime::DynoSize, dyno::ReleaseSpec, dyno::Scale};
    /// let release = ReleaseSpec::new(1, "ab12").scale("web", 2, DynoSize::Eco).scale("worker", 1, DynoSize::Basic);
    /// assert_eq!(release.formation["web"], Scale::new(2, DynoSize::Eco));
    /// ```
    pub fn scale(mut self, kind: impl Into<String>, quantity: u32, size: DynoSize) -> ReleaseSpec {
        self.formation.insert(kind.into(), Scale { quantity, size });
        self
    }
}

/// How many dynos of one process type run, and how big.
///
/// ```
/// let one = wasmdyno::dyno::Scale::new(1, wasmdyno::runtime::DynoSize::default());
/// assert_eq!(one.quantity, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scale {
    /// How many dynos (0: none).
    pub quantity: u32,
    /// Each one's memory quota.
    pub size: DynoSize,
}

impl Scale {
    /// `quantity` dynos of `size`.
    ///
    /// ```
    /// let two = wasmdyno::dyno::Scale::new(2, "eco".parse().unwrap());
    /// assert_eq!((two.quantity, two.size), (2, wasmdyno::runtime::DynoSize::Eco));
    /// ```
    pub fn new(quantity: u32, size: DynoSize) -> Scale {
        Scale { quantity, size }
    }
}
