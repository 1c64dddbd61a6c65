//! What the hosts of a cluster share through the database besides the ledger: who is alive (heartbeats on the
//! database's clock, so hosts' clocks never matter), which host runs which formation dyno (placements), and the
//! slugs themselves.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{PgStore, WRITE_LOCK};
use crate::store::StoreError;

/// One scheduler at a time, on whichever host takes this lock ("wdns").
const SCHEDULER_LOCK: i64 = 0x7764_6e73;
/// Slugs are stored in chunks of this size: no row, and no message, holds a whole large slug.
pub const SLUG_CHUNK: usize = 1024 * 1024;

/// A host as it registers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub id: String,
    /// Its API's address, `http://IP:PORT`.
    pub api: String,
    /// Its router's address, `IP:PORT`.
    pub router: String,
    /// Dyno units (512 MiB each) it can run.
    pub capacity: u32,
}

/// A formation dyno placed on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub app: String,
    pub dyno: String,
    pub host: String,
    pub units: u32,
}

/// What a scheduling round changed.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub added: Vec<Placement>,
    pub removed: Vec<Placement>,
}

/// A formation dyno the ledger asks for, with the units its size takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedDyno {
    pub app: String,
    pub dyno: String,
    pub units: u32,
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The hosts that heartbeat within `$1` seconds, by id.
const LIVE_HOSTS: &str = "SELECT id, api, router, capacity FROM hosts
    WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY id";
/// Every placement, by app and dyno.
const PLACEMENTS: &str = "SELECT app, dyno, host, units FROM placements ORDER BY app, dyno";

fn host_from_row(row: &tokio_postgres::Row) -> Result<Host, StoreError> {
    Ok(Host {
        id: row.try_get(0)?,
        api: row.try_get(1)?,
        router: row.try_get(2)?,
        capacity: u32_of(row.try_get(3)?),
    })
}

fn placement_from_row(row: &tokio_postgres::Row) -> Result<Placement, StoreError> {
    Ok(Placement {
        app: row.try_get(0)?,
        dyno: row.try_get(1)?,
        host: row.try_get(2)?,
        units: u32_of(row.try_get(3)?),
    })
}

impl PgStore {
    /// Registers `host` (or updates it after a restart) and records a heartbeat.
    pub fn register_host(&self, host: &Host) -> Result<(), StoreError> {
        let mut lent = self.take()?;
        pollster::block_on(lent.client().execute(
            "INSERT INTO hosts (id, api, router, capacity, heartbeat_at) VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (id) DO UPDATE SET api = $2, router = $3, capacity = $4, heartbeat_at = now()",
            &[&host.id, &host.api, &host.router, &i64::from(host.capacity)],
        ))?;
        Ok(())
    }

    /// A number that changes whenever the ledger does (any write, through any host).
    pub fn generation(&self) -> Result<i64, StoreError> {
        let mut lent = self.take()?;
        let row = pollster::block_on(
            lent.client()
                .query_one("SELECT n FROM ledger_generation", &[]),
        )?;
        Ok(row.try_get(0)?)
    }

    /// The cluster's secret `name`: `candidate` if no host set it yet, else the one the first host set.
    pub fn shared_secret(&self, name: &str, candidate: &str) -> Result<String, StoreError> {
        let mut lent = self.take()?;
        let client = lent.client();
        pollster::block_on(client.execute(
            "INSERT INTO cluster_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &candidate],
        ))?;
        let row = pollster::block_on(client.query_one(
            "SELECT value FROM cluster_secrets WHERE name = $1",
            &[&name],
        ))?;
        Ok(row.try_get(0)?)
    }

    /// Records that `host` is alive; false if it is not registered (it was removed: register again).
    pub fn heartbeat(&self, host: &str) -> Result<bool, StoreError> {
        let mut lent = self.take()?;
        let updated = pollster::block_on(lent.client().execute(
            "UPDATE hosts SET heartbeat_at = now() WHERE id = $1",
            &[&host],
        ))?;
        Ok(updated == 1)
    }

    /// The hosts that heartbeat within `timeout`, by id.
    pub fn live_hosts(&self, timeout: Duration) -> Result<Vec<Host>, StoreError> {
        let mut lent = self.take()?;
        let rows = pollster::block_on(lent.client().query(LIVE_HOSTS, &[&timeout.as_secs_f64()]))?;
        rows.iter().map(host_from_row).collect()
    }

    /// Every placement.
    pub fn placements(&self) -> Result<Vec<Placement>, StoreError> {
        let mut lent = self.take()?;
        let rows = pollster::block_on(lent.client().query(PLACEMENTS, &[]))?;
        rows.iter().map(placement_from_row).collect()
    }

    /// Runs one round of the scheduler if no other host is running one: `plan` gets the live hosts (heartbeat
    /// within `timeout`), the dynos the ledger wants and the current placements, and returns the placements to
    /// keep or make; every other placement is removed. `None` when another host holds the scheduler's lock, or a
    /// writer the ledger's.
    pub fn schedule(
        &self,
        timeout: Duration,
        plan: impl FnOnce(&[Host], &[WantedDyno], &[Placement]) -> Vec<Placement>,
    ) -> Result<Option<Changes>, StoreError> {
        let mut lent = self.take()?;
        let tx = pollster::block_on(lent.client().transaction())?;
        let locked: bool = pollster::block_on(
            tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SCHEDULER_LOCK]),
        )?
        .try_get(0)?;
        if !locked {
            return Ok(None);
        }
        // Placements change with the ledger's writers out of the way: a formation read here stays true until
        // commit. A writer holding the lock (perhaps a host behind a partition, until the server drops it) is not
        // waited for: the next round tries again, and this host's heartbeats keep their pace.
        let writers_away: bool = pollster::block_on(
            tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&WRITE_LOCK]),
        )?
        .try_get(0)?;
        if !writers_away {
            return Ok(None);
        }
        let hosts = pollster::block_on(tx.query(LIVE_HOSTS, &[&timeout.as_secs_f64()]))?
            .iter()
            .map(host_from_row)
            .collect::<Result<Vec<_>, StoreError>>()?;
        // The formation of every app whose current release has a slug.
        let formation = pollster::block_on(tx.query(
            "SELECT f.app, f.process_type, f.quantity, f.size FROM formation f
             WHERE f.quantity > 0 AND EXISTS (
                 SELECT 1 FROM release_view r WHERE r.app = f.app AND r.status = 'succeeded' AND r.slug IS NOT NULL)
             ORDER BY f.app, f.process_type",
            &[],
        ))?;
        let mut wanted = Vec::new();
        for row in formation {
            let (app, kind): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let quantity: i64 = row.try_get(2)?;
            let size: String = row.try_get(3)?;
            let units = units_of(&size);
            for index in 1..=quantity.clamp(0, 10_000) {
                wanted.push(WantedDyno {
                    app: app.clone(),
                    dyno: format!("{kind}.{index}"),
                    units,
                });
            }
        }
        let current = pollster::block_on(tx.query(PLACEMENTS, &[]))?
            .iter()
            .map(placement_from_row)
            .collect::<Result<Vec<_>, StoreError>>()?;
        let planned = plan(&hosts, &wanted, &current);
        let key = |p: &Placement| (p.app.clone(), p.dyno.clone());
        let planned_keys: BTreeMap<_, _> = planned.iter().map(|p| (key(p), p)).collect();
        let mut removed = Vec::new();
        for old in &current {
            let keep = planned_keys
                .get(&key(old))
                .is_some_and(|new| new.host == old.host && new.units == old.units);
            if !keep {
                pollster::block_on(tx.execute(
                    "DELETE FROM placements WHERE app = $1 AND dyno = $2",
                    &[&old.app, &old.dyno],
                ))?;
                removed.push(old.clone());
            }
        }
        let current_keys: BTreeMap<_, _> = current.iter().map(|p| (key(p), p)).collect();
        let mut added = Vec::new();
        for new in &planned {
            let unchanged = current_keys
                .get(&key(new))
                .is_some_and(|old| old.host == new.host && old.units == new.units);
            if !unchanged {
                pollster::block_on(tx.execute(
                    "INSERT INTO placements (app, dyno, host, units) VALUES ($1, $2, $3, $4)",
                    &[&new.app, &new.dyno, &new.host, &i64::from(new.units)],
                ))?;
                added.push(new.clone());
            }
        }
        if !(added.is_empty() && removed.is_empty()) {
            pollster::block_on(tx.execute(super::NOTIFY_CHANGES, &[]))?;
        }
        pollster::block_on(tx.commit())?;
        Ok(Some(Changes { added, removed }))
    }

    /// Keeps the slug `sha256` (its archive's bytes) for every host, in chunks; nothing if it is already kept.
    pub fn put_slug(&self, sha256: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut lent = self.take()?;
        let tx = pollster::block_on(lent.client().transaction())?;
        let exists =
            pollster::block_on(tx.query_opt("SELECT 1 FROM slugs WHERE sha256 = $1", &[&sha256]))?
                .is_some();
        if exists {
            return Ok(());
        }
        pollster::block_on(tx.execute("DELETE FROM slug_chunks WHERE sha256 = $1", &[&sha256]))?;
        let mut chunks = 0i32;
        for chunk in bytes.chunks(SLUG_CHUNK) {
            pollster::block_on(tx.execute(
                "INSERT INTO slug_chunks (sha256, seq, bytes) VALUES ($1, $2, $3)",
                &[&sha256, &chunks, &chunk],
            ))?;
            chunks += 1;
        }
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        pollster::block_on(tx.execute(
            "INSERT INTO slugs (sha256, size, chunks) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&sha256, &size, &chunks],
        ))?;
        pollster::block_on(tx.commit())?;
        Ok(())
    }

    /// Writes the slug `sha256` into `out`, chunk by chunk (never more than one chunk in memory); false if no host
    /// kept it. The caller checks the bytes' sha256.
    pub fn copy_slug(
        &self,
        sha256: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<bool, StoreError> {
        let mut lent = self.take()?;
        let tx = pollster::block_on(
            lent.client()
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start(),
        )?;
        let Some(row) = pollster::block_on(
            tx.query_opt("SELECT chunks FROM slugs WHERE sha256 = $1", &[&sha256]),
        )?
        else {
            return Ok(false);
        };
        let chunks: i32 = row.try_get(0)?;
        for seq in 0..chunks {
            let row = pollster::block_on(tx.query_one(
                "SELECT bytes FROM slug_chunks WHERE sha256 = $1 AND seq = $2",
                &[&sha256, &seq],
            ))?;
            let bytes: &[u8] = row.try_get(0)?;
            out.write_all(bytes)
                .map_err(|e| StoreError::Corrupt(format!("cannot write slug {sha256}: {e}")))?;
        }
        pollster::block_on(tx.commit())?;
        Ok(true)
    }
}

/// The database as the shared half of every host's slug store: slugs built on one host run on any other.
impl crate::slug::SharedSlugs for PgStore {
    fn put(&self, sha256: &str, bytes: &[u8]) -> Result<(), String> {
        self.put_slug(sha256, bytes).map_err(|e| e.to_string())
    }
    fn copy(&self, sha256: &str, out: &mut dyn std::io::Write) -> Result<bool, String> {
        self.copy_slug(sha256, out).map_err(|e| e.to_string())
    }
}

/// Dyno units (512 MiB each) of a size name; unknown sizes count as one.
pub fn units_of(size: &str) -> u32 {
    size.parse::<crate::runtime::DynoSize>()
        .map(|s| u32::try_from(s.memory().div_ceil(512 * 1024 * 1024)).unwrap_or(u32::MAX))
        .unwrap_or(1)
}
