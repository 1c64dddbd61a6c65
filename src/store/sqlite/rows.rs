//! Queries shared by the operations, and rows decoded into the store's types. Each takes the connection (or
//! transaction) of the operation it serves.

#[allow(unused_imports)]
use super::*;

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode as JSON: {e}")))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what} is not valid: {e}")))
}

pub(super) fn version_param(version: u64) -> i64 {
    // Versions past i64::MAX cannot exist; such a request matches nothing.
    i64::try_from(version).unwrap_or(i64::MAX)
}

pub(super) fn app_from_row(row: &Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        name: row.get(0)?,
        created_at: row.get(1)?,
        maintenance: row.get(2)?,
        sleep: row.get(3)?,
        features: Default::default(),
    })
}

/// Fills in the app's features (a table of their own).
pub(super) fn with_features(conn: &Connection, mut app: App) -> Result<App, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT name FROM app_features WHERE app = ?1")?;
    app.features = stmt
        .query_map([&app.name], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(app)
}

pub(super) fn require_app(conn: &Connection, name: &str) -> Result<App, StoreError> {
    conn.prepare_cached("SELECT name, created_at, maintenance, sleep FROM apps WHERE name = ?1")?
        .query_row([name], app_from_row)
        .optional()?
        .ok_or_else(|| StoreError::AppNotFound(name.to_owned()))
}

/// [`require_app`] with the app's features: for the calls that return the app, not those that only need it to
/// exist.
pub(super) fn full_app(conn: &Connection, name: &str) -> Result<App, StoreError> {
    require_app(conn, name).and_then(|app| with_features(conn, app))
}

/// The app's drains, oldest first.
pub(super) fn load_drains(conn: &Connection, app: &str) -> Result<Vec<Drain>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT app, id, url, token, created_at FROM log_drains WHERE app = ?1 ORDER BY created_at, rowid",
    )?;
    let drains = stmt
        .query_map([app], |row| {
            Ok(Drain {
                app: row.get(0)?,
                id: row.get(1)?,
                url: row.get(2)?,
                token: row.get(3)?,
                created_at: row.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(drains)
}

/// A random (version 4) UUID for a new row.
pub(super) fn new_uuid() -> Result<String, StoreError> {
    crate::ids::uuid_v4().map_err(|e| StoreError::Corrupt(format!("no randomness for an id: {e}")))
}

/// A `release_view` row as stored, before its JSON and status are decoded.
pub(super) struct ReleaseRow {
    app: String,
    version: i64,
    slug: Option<String>,
    config: String,
    addons: String,
    description: String,
    created_at: i64,
    status: Option<String>,
    output: Option<String>,
}

impl ReleaseRow {
    pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<ReleaseRow> {
        Ok(ReleaseRow {
            app: row.get(0)?,
            version: row.get(1)?,
            slug: row.get(2)?,
            config: row.get(3)?,
            addons: row.get(4)?,
            description: row.get(5)?,
            created_at: row.get(6)?,
            status: row.get(7)?,
            output: row.get(8)?,
        })
    }

    pub(super) fn decode(self) -> Result<Release, StoreError> {
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

/// The releases of `app`, newest first, at most `limit` of them, that match `filter`: an SQL condition on
/// `release_view` (`AND ...`) appended after `app = ?1`, in which `?2` is bound to `version` when one is given.
/// Filters are constants of this module, so each has one cached statement.
pub(super) fn query_releases(
    conn: &Connection,
    app: &str,
    filter: &str,
    limit: Option<u32>,
    version: Option<i64>,
) -> Result<Vec<Release>, StoreError> {
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM release_view WHERE app = ?1 {filter} ORDER BY version DESC{limit}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = match version {
        Some(version) => stmt
            .query_map(params![app, version], ReleaseRow::from_row)?
            .collect::<Result<Vec<_>, _>>()?,
        None => stmt
            .query_map(params![app], ReleaseRow::from_row)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    rows.into_iter().map(ReleaseRow::decode).collect()
}

pub(super) fn load_release(
    conn: &Connection,
    app: &str,
    version: u64,
) -> Result<Release, StoreError> {
    query_releases(
        conn,
        app,
        "AND version = ?2",
        Some(1),
        Some(version_param(version)),
    )?
    .pop()
    .ok_or_else(|| StoreError::ReleaseNotFound {
        app: app.to_owned(),
        version,
    })
}

pub(super) fn current_release(conn: &Connection, app: &str) -> Result<Option<Release>, StoreError> {
    Ok(query_releases(conn, app, "AND status = 'succeeded'", Some(1), None)?.pop())
}

/// What a new release starts from: the newest release that did not fail. Refused while the newest release is
/// still pending: a release is never based on one whose release phase has not finished.
pub(super) fn next_release_base(conn: &Connection, app: &str) -> Result<Release, StoreError> {
    let base = base_release(conn, app)?;
    if base.status == ReleaseStatus::Pending {
        return Err(StoreError::ReleasePending {
            app: app.to_owned(),
            version: base.version,
        });
    }
    Ok(base)
}

/// The newest release that did not fail: the config the app has.
pub(super) fn base_release(conn: &Connection, app: &str) -> Result<Release, StoreError> {
    query_releases(conn, app, "AND status <> 'failed'", Some(1), None)?
        .pop()
        // v1 never fails, so every app has one.
        .ok_or_else(|| StoreError::Corrupt(format!("app {app} has no release that did not fail")))
}

pub(super) fn append_event(
    conn: &Connection,
    app: &str,
    version: u64,
    status: ReleaseStatus,
    output: Option<&str>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO release_events (app, version, seq, status, output, at)
         SELECT ?1, ?2, COALESCE(MAX(seq), 0) + 1, ?3, ?4, ?5 FROM release_events WHERE app = ?1 AND version = ?2",
    )?
    .execute(params![app, version_param(version), status.as_str(), output, unix_now()])?;
    Ok(())
}

/// Appends the next release of `app` with its first event. The config is checked here, so no path can write an
/// invalid one.
pub(super) fn insert_release(
    conn: &Connection,
    app: &str,
    slug: Option<String>,
    config: BTreeMap<String, String>,
    addons: Vec<String>,
    description: String,
    pending: bool,
) -> Result<Release, StoreError> {
    check_config(&config)?;
    let version: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = ?1")?
        .query_row([app], |row| row.get(0))?;
    let version = u64::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("app {app} has bad versions")))?;
    let created_at = unix_now();
    conn.prepare_cached(
        "INSERT INTO releases (app, version, slug, config, addons, description, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        app,
        version_param(version),
        slug,
        to_json(&config)?,
        to_json(&addons)?,
        description,
        created_at
    ])?;
    let status = if pending {
        ReleaseStatus::Pending
    } else {
        ReleaseStatus::Succeeded
    };
    append_event(conn, app, version, status, None)?;
    Ok(Release {
        app: app.to_owned(),
        version,
        slug,
        config,
        addons,
        description,
        created_at,
        status,
        output: None,
    })
}

pub(super) fn addon_from_row(
    row: &Row<'_>,
) -> rusqlite::Result<(String, String, String, String, String, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

pub(super) fn decode_addon(
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

pub(super) fn load_formation(conn: &Connection, app: &str) -> Result<Formation, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT process_type, quantity, size FROM formation WHERE app = ?1")?;
    let rows = stmt.query_map([app], |row| {
        Ok((
            row.get::<_, String>(0)?,
            FormationEntry {
                quantity: row.get(1)?,
                size: row.get(2)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<Formation, _>>()?)
}
