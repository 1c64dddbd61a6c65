//! What a backend of the store gives the operations of `ledger`: transactions ([`Backend`]) and, inside them, the
//! row-level queries of [`Tx`]; and the row encodings both backends share (JSON columns, release rows).

use std::collections::BTreeSet;

use super::{Addon, App, Domain, Drain, Formation, Release, ReleaseStatus, StoreError};

/// A yes/no column of an app.
#[derive(Debug, Clone, Copy)]
pub enum Flag {
    Maintenance,
    Sleep,
}

/// Which of an app's releases to load, newest first.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    All,
    Version(u64),
    /// Status `succeeded`.
    Succeeded,
    /// Status `succeeded`, older than this version.
    SucceededBefore(u64),
    /// Status other than `failed`.
    NotFailed,
}

/// The row-level queries of one transaction. Releases come back decoded, with their status (that of their
/// latest event) and output (of the latest event that has one).
pub trait Tx {
    /// The app without its features.
    fn app(&mut self, name: &str) -> Result<Option<App>, StoreError>;
    /// Every app without its features, by name.
    fn apps(&mut self) -> Result<Vec<App>, StoreError>;
    fn insert_app(&mut self, app: &App) -> Result<(), StoreError>;
    /// Deletes the app and, by the schema's cascades, all of it.
    fn delete_app(&mut self, name: &str) -> Result<(), StoreError>;
    fn set_flag(&mut self, app: &str, flag: Flag, on: bool) -> Result<(), StoreError>;
    fn features(&mut self, app: &str) -> Result<BTreeSet<String>, StoreError>;
    fn set_feature(&mut self, app: &str, feature: &str, on: bool) -> Result<(), StoreError>;
    fn insert_destination(&mut self, app: &str, destination: &str) -> Result<(), StoreError>;
    /// How many rows went.
    fn delete_destination(&mut self, app: &str, destination: &str) -> Result<u64, StoreError>;
    fn destinations(&mut self, app: &str) -> Result<Vec<String>, StoreError>;
    fn releases(
        &mut self,
        app: &str,
        which: Which,
        limit: Option<u32>,
    ) -> Result<Vec<Release>, StoreError>;
    /// The release row (its status goes in with [`append_event`](Self::append_event)).
    fn insert_release(&mut self, release: &Release) -> Result<(), StoreError>;
    /// 1 + the app's highest version.
    fn next_version(&mut self, app: &str) -> Result<u64, StoreError>;
    fn append_event(
        &mut self,
        app: &str,
        version: u64,
        status: ReleaseStatus,
        output: Option<&str>,
    ) -> Result<(), StoreError>;
    fn formation(&mut self, app: &str) -> Result<Formation, StoreError>;
    /// Sets the given parts of one process type's entry, creating it (quantity 0, the default size) if new.
    fn upsert_formation(
        &mut self,
        app: &str,
        process_type: &str,
        quantity: Option<u32>,
        size: Option<&str>,
    ) -> Result<(), StoreError>;
    fn addon(&mut self, app: &str, name: &str) -> Result<Option<Addon>, StoreError>;
    fn addons(&mut self, app: &str) -> Result<Vec<Addon>, StoreError>;
    fn insert_addon(&mut self, addon: &Addon) -> Result<(), StoreError>;
    fn delete_addon(&mut self, app: &str, name: &str) -> Result<(), StoreError>;
    /// Replaces the add-on's config vars.
    fn update_addon_config(&mut self, addon: &Addon) -> Result<(), StoreError>;
    /// The app a hostname routes to, if any.
    fn domain_owner(&mut self, hostname: &str) -> Result<Option<String>, StoreError>;
    fn insert_domain(&mut self, domain: &Domain) -> Result<(), StoreError>;
    /// How many rows went.
    fn delete_domain(&mut self, app: &str, hostname: &str) -> Result<u64, StoreError>;
    fn domains(&mut self, app: &str) -> Result<Vec<Domain>, StoreError>;
    /// Oldest first.
    fn drains(&mut self, app: &str) -> Result<Vec<Drain>, StoreError>;
    fn insert_drain(&mut self, drain: &Drain) -> Result<(), StoreError>;
    fn delete_drain(&mut self, id: &str) -> Result<(), StoreError>;
}

/// Transactions of a backend. `write` runs `f` serialized with every other writer and commits if it succeeds (an
/// error rolls everything back); with `release` set, the release failpoints are armed around its commit.
pub trait Backend: Send + Sync {
    fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
    fn write<T>(
        &self,
        release: bool,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
}

/// JSON for a column (the config snapshot, add-on lists).
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode as JSON: {e}")))
}

/// A JSON column decoded; `what` names it in the error.
pub fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what} is not valid: {e}")))
}

/// A version as both backends store it (a signed 64-bit integer). Versions past `i64::MAX` cannot exist; such a
/// request matches nothing.
pub fn version_param(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// A release row as both backends store it, before its JSON and status are decoded.
pub struct ReleaseRow {
    pub app: String,
    pub version: i64,
    pub slug: Option<String>,
    pub config: String,
    pub addons: String,
    pub description: String,
    pub created_at: i64,
    pub status: Option<String>,
    pub output: Option<String>,
}

impl ReleaseRow {
    pub fn decode(self) -> Result<Release, StoreError> {
        let what = format!("release v{} of {}", self.version, self.app);
        let version = u64::try_from(self.version)
            .map_err(|_| StoreError::Corrupt(format!("{what} has a negative version")))?;
        let status = self
            .status
            .ok_or_else(|| StoreError::Corrupt(format!("{what} has no status event")))?
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))?;
        Ok(Release {
            config: from_json(&format!("the config of {what}"), &self.config)?,
            addons: from_json(&format!("the add-on list of {what}"), &self.addons)?,
            app: self.app,
            version,
            slug: self.slug,
            description: self.description,
            created_at: self.created_at,
            status,
            output: self.output,
        })
    }
}

/// An add-on row, before its JSON columns are decoded.
pub fn decode_addon(
    (app, name, service, plan, config, hosts): (String, String, String, String, String, String),
) -> Result<Addon, StoreError> {
    Ok(Addon {
        config: from_json(&format!("the config of add-on {name}"), &config)?,
        hosts: from_json(&format!("the hosts of add-on {name}"), &hosts)?,
        app,
        name,
        service,
        plan,
    })
}

/// The SQL condition (after `app = $1`) that selects `which`, and the version it binds as the second parameter.
pub fn release_filter(which: Which) -> (&'static str, Option<i64>) {
    match which {
        Which::All => ("", None),
        Which::Version(v) => ("AND version = ?2", Some(version_param(v))),
        Which::Succeeded => ("AND status = 'succeeded'", None),
        Which::SucceededBefore(v) => (
            "AND status = 'succeeded' AND version < ?2",
            Some(version_param(v)),
        ),
        Which::NotFailed => ("AND status <> 'failed'", None),
    }
}
