//! The platform's state: apps, the append-only ledger of releases, config vars, formation, add-ons, domains, log
//! drains and maintenance mode. This is the single source of truth of `wasmdyno serve`; the dyno manager and the router
//! reconcile toward what it holds.
//!
//! Everything goes through the [`Store`] trait, with two backends: [`SqliteStore`] (one file, the default for one
//! host) and [`PgStore`] (one PostgreSQL database that several hosts share). The operations are written once
//! (`ledger`) over each backend's transactions and row queries; each backend's schema enforces the ledger's rules
//! again, for anything that writes around this code.
//!
//! # The release ledger
//! A release is the slug, the config vars and the attached add-ons an app runs with. Releases are numbered v1, v2,
//! ... per app without gaps, and are never changed or removed (the schema itself refuses it) except when their app
//! is destroyed. What happens to a release afterwards (its release phase succeeding or failing) is appended as an
//! event; a release's [`ReleaseStatus`] is the status of its latest event.
//!
//! - The **current release** is the newest release that succeeded: what dynos run.
//! - The **base release** is the newest release that did not fail: what the next release starts from. While the
//!   newest release is pending, no release can be made (a release is never based on an unfinished one, and a second
//!   `config:set` must not lose the first); a failed release's config and slug are not carried forward. A release
//!   phase that never finished (the server stopped, the request went away) is recorded as failed.
//!
//! Every operation is atomic: it either happens entirely or not at all, and concurrent writers (threads, or
//! processes sharing the database file) never see each other's partial work or collide on version numbers.

mod backend;
mod ledger;
pub(crate) mod postgres;
mod sqlite;
mod validate;

#[cfg(test)]
mod tests;

pub use postgres::PgStore;
#[cfg(test)]
use sqlite::SCHEMA_VERSION;
pub use sqlite::SqliteStore;
#[cfg(test)]
use validate::{CONFIG_LIMIT, MAX_QUANTITY};
pub use validate::{check_addon_name, check_app_name, check_config_name, normalize_hostname};

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::runtime::DynoSize;

/// An app: the unit that has releases, config, formation, add-ons and domains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    /// Unix seconds (UTC); [`format_timestamp`] renders it as RFC 3339.
    pub created_at: i64,
    /// In maintenance mode the router answers every request with a maintenance page (H80) instead of the app.
    pub maintenance: bool,
    /// A sleeping app's web dynos go `idle` after a while without requests; the next request wakes them.
    #[serde(default)]
    pub sleep: bool,
    /// The [`FEATURES`] turned on for this app (`features:enable`).
    #[serde(default)]
    pub features: std::collections::BTreeSet<String>,
}

/// App features (`features`, `features:enable NAME`), as Heroku Labs has them: name and what it does.
pub const FEATURES: &[(&str, &str)] = &[
    (
        crate::features::HTTP_FRESH_INSTANCES,
        "A new wasi:http instance for every request (per-request isolation) instead of warm instances that serve \
         many requests in turn",
    ),
    (
        crate::features::NO_KEEPALIVE_TO_DYNO,
        "A new connection from the router to a web dyno that listens for every request, closed after the \
         response, instead of keep-alive connections",
    ),
];

/// Where a release is in its life. A release without a release phase is [`Succeeded`](Self::Succeeded) at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseStatus {
    /// Its release phase has not finished yet.
    Pending,
    Succeeded,
    /// Its release phase failed: it never goes live and its config is not carried into later releases.
    Failed,
}

impl ReleaseStatus {
    /// The lowercase name, as stored and as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Succeeded => "succeeded",
            ReleaseStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ReleaseStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(ReleaseStatus::Pending),
            "succeeded" => Ok(ReleaseStatus::Succeeded),
            "failed" => Ok(ReleaseStatus::Failed),
            other => Err(format!("unknown release status {other:?}")),
        }
    }
}

/// One entry of the release ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub app: String,
    /// 1, 2, 3, ... per app, without gaps.
    pub version: u64,
    /// The sha256 of the slug; `None` until the app's first build (v1 has none).
    pub slug: Option<String>,
    /// The full set of config vars of this release (a snapshot, not a diff).
    pub config: BTreeMap<String, String>,
    /// Names of the add-ons attached at this release.
    pub addons: Vec<String>,
    /// What made this release, as Heroku words it: `Set FOO config var`, `Rollback to v3`, `Deploy 1a2b3c4`.
    pub description: String,
    /// Unix seconds (UTC).
    pub created_at: i64,
    /// The status of the latest event of this release.
    pub status: ReleaseStatus,
    /// The release phase's output, when one ran.
    pub output: Option<String>,
}

/// A release to create with [`Store::create_release`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRelease {
    /// The slug's sha256; `None` keeps the base release's slug.
    pub slug: Option<String>,
    /// The complete config; `None` keeps the base release's config.
    pub config: Option<BTreeMap<String, String>>,
    pub description: String,
    /// `true` when a release phase must run first: the release is [`ReleaseStatus::Pending`] until
    /// [`Store::record_release_result`] is called, otherwise it is [`ReleaseStatus::Succeeded`] at once.
    pub pending: bool,
}

/// An add-on attached to an app: a service that sets config vars and may open network destinations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addon {
    pub app: String,
    pub name: String,
    pub service: String,
    pub plan: String,
    /// The config vars it sets, e.g. `DATABASE_URL`.
    pub config: BTreeMap<String, String>,
    /// Network destinations the app's dynos may reach because of it, e.g. `db.example.com:5432`.
    pub hosts: Vec<String>,
}

/// An add-on to attach with [`Store::create_addon`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAddon {
    pub name: String,
    pub service: String,
    pub plan: String,
    pub config: BTreeMap<String, String>,
    pub hosts: Vec<String>,
}

/// How many dynos of one process type run, and how big they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormationEntry {
    pub quantity: u32,
    /// A dyno size name, e.g. `standard-1x` (see [`DynoSize`]).
    pub size: String,
}

/// An app's formation: process type → entry.
pub type Formation = BTreeMap<String, FormationEntry>;

/// A change to one process type of a formation, for [`Store::scale`]. `None` leaves that part as it is (a new
/// process type starts at quantity 0, size `standard-1x`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleChange {
    pub quantity: Option<u32>,
    /// A dyno size name or alias (`1x`, `2x`); stored under its canonical name.
    pub size: Option<String>,
}

/// A custom hostname routed to an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub app: String,
    /// Lowercase, without a trailing dot; may start with `*.` (a wildcard domain).
    pub hostname: String,
}

/// A log drain of an app: where its log stream is shipped (see [`crate::logs::drain`]). Drains make no release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    pub app: String,
    /// A UUID.
    pub id: String,
    /// `syslog://HOST:PORT`, `syslog+tls://HOST:PORT`, `http(s)://...`; unique per app.
    pub url: String,
    /// `d.<UUID>`: the HOSTNAME of its syslog messages and its `Logplex-Drain-Token`.
    pub token: String,
    /// Unix seconds (UTC).
    pub created_at: i64,
}

/// The platform's state. Every method is one atomic operation; see the [module docs](self) for the ledger rules.
///
/// Methods that take an app name fail with [`StoreError::AppNotFound`] when there is no such app.
pub trait Store: Send + Sync {
    /// Creates an app with release v1 ("Initial release": no slug, no config, succeeded).
    fn create_app(&self, name: &str) -> Result<App, StoreError>;
    /// One app.
    fn app(&self, name: &str) -> Result<App, StoreError>;
    /// All apps, by name.
    fn apps(&self) -> Result<Vec<App>, StoreError>;
    /// Removes an app and everything of it: releases, config, formation, add-ons, domains.
    fn destroy_app(&self, name: &str) -> Result<(), StoreError>;
    /// Turns maintenance mode on or off.
    fn set_maintenance(&self, app: &str, on: bool) -> Result<App, StoreError>;
    /// Turns sleeping (web dynos idle when unused) on or off.
    fn set_sleep(&self, app: &str, on: bool) -> Result<App, StoreError>;
    /// Turns one of the [`FEATURES`] on or off.
    fn set_feature(&self, app: &str, feature: &str, on: bool) -> Result<App, StoreError>;
    /// Lets the app's dynos reach `destination` (`host` or `host:port`); returns it normalized.
    fn allow_destination(&self, app: &str, destination: &str) -> Result<String, StoreError>;
    /// Takes back [`allow_destination`](Self::allow_destination).
    fn deny_destination(&self, app: &str, destination: &str) -> Result<(), StoreError>;
    /// The destinations the app allowed, sorted.
    fn destinations(&self, app: &str) -> Result<Vec<String>, StoreError>;

    /// Appends a release; see [`NewRelease`] for the defaults.
    fn create_release(&self, app: &str, release: NewRelease) -> Result<Release, StoreError>;
    /// The config vars new releases start from (the base release's; see the [module docs](self)).
    fn config(&self, app: &str) -> Result<BTreeMap<String, String>, StoreError>;
    /// Sets (`Some`) and unsets (`None`) config vars and appends a release with the result, described like
    /// Heroku's (`Set FOO, BAR config vars`). Every name is checked before anything is written. An empty change is
    /// refused ([`StoreError::EmptyConfigChange`]); a change that leaves the config as it was still makes a
    /// release, as on Heroku, since asking for one is asking to restart with it.
    fn set_config(
        &self,
        app: &str,
        changes: BTreeMap<String, Option<String>>,
        pending: bool,
    ) -> Result<Release, StoreError>;
    /// Appends a release "Rollback to vN" with the slug, config and add-on list of release `version`, or, for
    /// `None`, of the newest succeeded release before the current one. Add-ons themselves are not re-attached or
    /// detached: a rollback restores the config an add-on set, not the add-on.
    fn rollback(
        &self,
        app: &str,
        version: Option<u64>,
        pending: bool,
    ) -> Result<Release, StoreError>;
    /// Records the outcome of a pending release's release phase. A release's result is recorded once: a release
    /// that is not pending any more is refused with [`StoreError::ReleaseNotPending`].
    fn record_release_result(
        &self,
        app: &str,
        version: u64,
        succeeded: bool,
        output: String,
    ) -> Result<Release, StoreError>;
    /// All releases, newest first.
    fn releases(&self, app: &str) -> Result<Vec<Release>, StoreError>;
    /// One release.
    fn release(&self, app: &str, version: u64) -> Result<Release, StoreError>;
    /// The newest succeeded release: what the app's dynos run.
    fn current_release(&self, app: &str) -> Result<Option<Release>, StoreError>;

    /// The formation, by process type.
    fn formation(&self, app: &str) -> Result<Formation, StoreError>;
    /// Changes quantities and sizes, all or none, and returns the new formation. Scaling makes no release (as on
    /// Heroku). The store does not know the slug's process types: checking them is the caller's job.
    fn scale(
        &self,
        app: &str,
        changes: BTreeMap<String, ScaleChange>,
    ) -> Result<Formation, StoreError>;

    /// Attaches an add-on and appends a release "Attach NAME (SERVICE:PLAN)" whose config adds the add-on's vars.
    /// A var the app already has is refused ([`StoreError::AddonConfigConflict`]) rather than overwritten.
    fn create_addon(
        &self,
        app: &str,
        addon: NewAddon,
        pending: bool,
    ) -> Result<(Addon, Release), StoreError>;
    /// Detaches an add-on and appends a release "Detach NAME" without its vars.
    fn destroy_addon(&self, app: &str, name: &str, pending: bool) -> Result<Release, StoreError>;
    /// Gives the add-on `name` new values for its config vars (rotated credentials), in a new release.
    fn rotate_addon(
        &self,
        app: &str,
        name: &str,
        config: BTreeMap<String, String>,
        pending: bool,
    ) -> Result<(Addon, Release), StoreError>;
    /// The attached add-ons, by name.
    fn addons(&self, app: &str) -> Result<Vec<Addon>, StoreError>;

    /// Routes a hostname to the app (normalized by [`normalize_hostname`]); a hostname belongs to one app at most.
    fn add_domain(&self, app: &str, hostname: &str) -> Result<Domain, StoreError>;
    /// Stops routing a hostname to the app.
    fn remove_domain(&self, app: &str, hostname: &str) -> Result<(), StoreError>;
    /// The app's domains, by hostname.
    fn domains(&self, app: &str) -> Result<Vec<Domain>, StoreError>;

    /// Adds a log drain (its URL checked by [`DrainUrl::parse`](crate::logs::drain::DrainUrl::parse)), with a
    /// new id and token; at most [`MAX_DRAINS_PER_APP`](crate::logs::drain::MAX_DRAINS_PER_APP) per app, one
    /// per URL.
    fn add_drain(&self, app: &str, url: &str) -> Result<Drain, StoreError>;
    /// Removes the drain with this id, token or URL and returns it.
    fn remove_drain(&self, app: &str, drain: &str) -> Result<Drain, StoreError>;
    /// The app's drains, oldest first.
    fn drains(&self, app: &str) -> Result<Vec<Drain>, StoreError>;
}

/// What a [`StoreError`] means to a caller such as the API (which maps it to an HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The thing asked about does not exist (404).
    NotFound,
    /// It conflicts with what exists (409).
    Conflict,
    /// The request itself is wrong (422).
    Invalid,
    /// The store failed (500).
    Internal,
}

/// Everything that can go wrong in the store. Messages are meant for users: they say what was wrong and, where
/// there is one, what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no app named {0:?} (`wasmdyno apps` lists them)")]
    AppNotFound(String),
    #[error("an app named {0:?} already exists; choose another name")]
    AppExists(String),
    #[error("invalid app name {name:?}: {reason}")]
    InvalidAppName { name: String, reason: String },
    #[error("app {app:?} has no release v{version} (`wasmdyno releases` lists them)")]
    ReleaseNotFound { app: String, version: u64 },
    #[error(
        "release v{version} of {app:?} has already {status}; a release's result is recorded once"
    )]
    ReleaseNotPending {
        app: String,
        version: u64,
        status: ReleaseStatus,
    },
    #[error(
        "release v{version} of {app:?} is still running its release phase; try again when it has finished \
         (`wasmdyno releases` shows its status)"
    )]
    ReleasePending { app: String, version: u64 },
    #[error(
        "invalid config var name {0:?}: names use letters, digits and underscores and do not start with a digit"
    )]
    InvalidConfigName(String),
    #[error(
        "config var {0} is set by the platform and cannot be set or unset (reserved: PORT, DYNO, WASMDYNO_*)"
    )]
    ReservedConfigName(String),
    #[error("invalid value for config var {name}: {reason}")]
    InvalidConfigValue { name: String, reason: String },
    #[error(
        "config vars would take {size} bytes (names plus values), over the limit of {limit}; unset some, or keep \
         large data in the slug or an add-on"
    )]
    ConfigTooLarge { size: usize, limit: usize },
    #[error("no config vars to set or unset were given")]
    EmptyConfigChange,
    #[error(
        "release v{version} failed, so it cannot be rolled back to; choose a release that succeeded"
    )]
    RollbackToFailed { version: u64 },
    #[error("there is no earlier successful release to roll back to")]
    NoPreviousRelease,
    #[error(
        "release v{version} used add-on {addon:?}, which has been destroyed (its data and credentials are gone); \
         roll back to a later release, or create the add-on again and deploy"
    )]
    RollbackToDestroyedAddon { version: u64, addon: String },
    #[error("add-on {addon:?} does not set config var {var}; a rotation replaces the vars it set")]
    AddonRotationMismatch { addon: String, var: String },
    #[error("invalid add-on name {name:?}: {reason}")]
    InvalidAddonName { name: String, reason: String },
    #[error("invalid add-on {name:?}: {reason}")]
    InvalidAddon { name: String, reason: String },
    #[error("app {app:?} already has an add-on named {name:?}; choose another name")]
    AddonExists { app: String, name: String },
    #[error("app {app:?} has no add-on named {name:?} (`wasmdyno addons` lists them)")]
    AddonNotFound { app: String, name: String },
    #[error("add-on {addon:?} sets config var {var}, which the app already has; unset it first")]
    AddonConfigConflict { addon: String, var: String },
    #[error("invalid process type {0:?}: process types use letters, digits, `_` and `-`")]
    InvalidProcessType(String),
    #[error("unknown dyno size {0:?}; sizes are {sizes}", sizes = dyno_size_names())]
    InvalidDynoSize(String),
    #[error(
        "cannot scale {process_type} to {quantity} dynos: the limit is {limit} per process type"
    )]
    QuantityTooLarge {
        process_type: String,
        quantity: u32,
        limit: u32,
    },
    #[error("unknown feature {0:?}; features are {names}", names = feature_names())]
    UnknownFeature(String),
    #[error("invalid network destination {destination:?}: {reason}")]
    InvalidDestination { destination: String, reason: String },
    #[error("app {app:?} does not allow {destination} (`wasmdyno network` lists what it allows)")]
    DestinationNotFound { app: String, destination: String },
    #[error("invalid hostname {hostname:?}: {reason}")]
    InvalidHostname { hostname: String, reason: String },
    #[error("domain {hostname} is already attached to app {app:?}")]
    DomainExists { hostname: String, app: String },
    #[error("app {app:?} has no domain {hostname} (`wasmdyno domains` lists them)")]
    DomainNotFound { app: String, hostname: String },
    #[error("invalid drain URL {url:?}: {reason}")]
    InvalidDrainUrl { url: String, reason: String },
    #[error("app {app:?} already has a drain to {url}")]
    DrainExists { app: String, url: String },
    #[error("app {app:?} already has {limit} drains, the most an app may have; remove one first")]
    TooManyDrains { app: String, limit: usize },
    #[error("app {app:?} has no drain {drain:?} (`wasmdyno drains` lists them)")]
    DrainNotFound { app: String, drain: String },
    #[error("cannot open the state store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the state store {store} has schema version {found}, newer than this wasmdyno understands ({supported}); \
         upgrade wasmdyno"
    )]
    SchemaTooNew {
        /// The file, or the PostgreSQL URL without its password.
        store: String,
        found: u32,
        supported: u32,
    },
    #[error(
        "{path} is an SQLite database but not a wasmdyno state store; point WASMDYNO_HOME elsewhere"
    )]
    ForeignDatabase { path: PathBuf },
    #[error(
        "the PostgreSQL database {url} has tables of its own and no wasmdyno schema; give wasmdyno a database of \
         its own (CREATE DATABASE wasmdyno) and point --store at it"
    )]
    ForeignPostgres { url: String },
    #[error("cannot reach the PostgreSQL state store {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("PostgreSQL state store error: {0}")]
    Postgres(String),
    #[error("state store error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("the state store holds unexpected data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// What kind of failure this is, for mapping to a status code.
    pub fn kind(&self) -> ErrorKind {
        use StoreError::*;
        match self {
            AppNotFound(_)
            | ReleaseNotFound { .. }
            | AddonNotFound { .. }
            | DomainNotFound { .. }
            | DestinationNotFound { .. }
            | DrainNotFound { .. } => ErrorKind::NotFound,
            AppExists(_)
            | AddonExists { .. }
            | DomainExists { .. }
            | DrainExists { .. }
            | TooManyDrains { .. }
            | AddonConfigConflict { .. }
            | ReleaseNotPending { .. }
            | ReleasePending { .. }
            | RollbackToFailed { .. }
            | RollbackToDestroyedAddon { .. }
            | NoPreviousRelease => ErrorKind::Conflict,
            InvalidAppName { .. }
            | InvalidConfigName(_)
            | ReservedConfigName(_)
            | InvalidConfigValue { .. }
            | ConfigTooLarge { .. }
            | EmptyConfigChange
            | InvalidAddonName { .. }
            | InvalidAddon { .. }
            | InvalidProcessType(_)
            | InvalidDynoSize(_)
            | QuantityTooLarge { .. }
            | InvalidHostname { .. }
            | UnknownFeature(_)
            | InvalidDestination { .. }
            | AddonRotationMismatch { .. }
            | InvalidDrainUrl { .. } => ErrorKind::Invalid,
            Open { .. }
            | SchemaTooNew { .. }
            | ForeignDatabase { .. }
            | ForeignPostgres { .. }
            | Unreachable { .. }
            | Postgres(_)
            | Database(_)
            | Corrupt(_) => ErrorKind::Internal,
        }
    }
}

fn feature_names() -> String {
    let names: Vec<&str> = FEATURES.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

fn dyno_size_names() -> String {
    DynoSize::ALL.map(DynoSize::name).join(", ")
}

/// The environment variable that arms a [`failpoint`].
pub const FAILPOINT_ENV: &str = "WASMDYNO_FAILPOINT";
/// Inside the transaction that appends a release (by `create_release`, `set_config` or `rollback`), after the
/// release is written and before COMMIT: the release must not exist after a crash here.
pub const FAILPOINT_RELEASE_BEFORE_COMMIT: &str = "release.before_commit";
/// Right after that transaction commits: the release must exist, complete, after a crash here.
pub const FAILPOINT_RELEASE_AFTER_COMMIT: &str = "release.after_commit";
/// Inside the transaction that migrates the schema, before COMMIT: the database must be left at its old version.
pub const FAILPOINT_MIGRATION_BEFORE_COMMIT: &str = "migration.before_commit";

/// Aborts the process when the failpoint armed with [`arm_failpoint`] (the CLI arms `WASMDYNO_FAILPOINT`) is
/// `name`: crash-consistency tests set it to kill the server at a precise step and check what survives.
///
/// Failpoints: [`release.before_commit`](FAILPOINT_RELEASE_BEFORE_COMMIT),
/// [`release.after_commit`](FAILPOINT_RELEASE_AFTER_COMMIT) (in `create_release`, `set_config` and `rollback`;
/// not in `create_app` or the add-on operations, so a test can set an app up first), and
/// [`migration.before_commit`](FAILPOINT_MIGRATION_BEFORE_COMMIT).
pub fn failpoint(name: &str) {
    if failpoint_hit(ARMED.get().and_then(Option::as_deref), name) {
        eprintln!("wasmdyno: failpoint {name} reached, aborting");
        std::process::abort();
    }
}

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Arms the failpoint `name` for this process (once; later calls change nothing).
pub(crate) fn arm_failpoint(name: Option<String>) {
    let _ = ARMED.set(name);
}

fn failpoint_hit(armed: Option<&str>, name: &str) -> bool {
    armed == Some(name)
}

/// Formats unix seconds as an RFC 3339 UTC timestamp, e.g. `2024-05-01T12:00:00Z` (for JSON and logs).
#[cfg(test)]
pub fn format_timestamp(secs: i64) -> String {
    let (date, time) = date_time(secs);
    format!("{date}T{time}Z")
}

/// Formats unix seconds for people, e.g. `2024-05-01 12:00:00 UTC` (for the CLI's tables).
pub fn format_time(secs: i64) -> String {
    let (date, time) = date_time(secs);
    format!("{date} {time} UTC")
}

/// `YYYY-MM-DD` and `HH:MM:SS` in UTC.
fn date_time(secs: i64) -> (String, String) {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let time = secs.rem_euclid(86_400);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            time / 3600,
            time % 3600 / 60,
            time % 60
        ),
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// The current time in unix seconds, as the store dates things.
pub use crate::clock::unix_now;
