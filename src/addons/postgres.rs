//! PostgreSQL add-ons: a database and a role of its own per add-on, with a random password, on the server of
//! `WASMDYNO_ADDON_POSTGRES_ADMIN_URL` (a role that may create databases and roles). The role owns its database,
//! no other role may connect to it (`REVOKE CONNECT ... FROM PUBLIC`), and the plan caps its connections.
//! PostgreSQL has no per-database size limit: plans say so rather than pretend.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_postgres::Config;

use super::{Provider, ProviderError, Provisioned, endpoint, ident, random_hex, url_host};

pub(crate) const SERVICE: &str = "postgresql";
pub(crate) const ALIASES: &[&str] = &["heroku-postgresql"];
/// Plans: connections the role may hold at once.
const PLANS: &[(&str, &str, i32)] = &[
    ("mini", "5 connections", 5),
    ("basic", "20 connections", 20),
    ("standard-0", "60 connections", 60),
];
const WAIT: Duration = Duration::from_secs(10);

/// The PostgreSQL provider of one server.
pub(crate) struct Postgres {
    admin: Config,
    /// TLS to the server (`sslmode` in the admin URL, as for the state store), or plain TCP.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The server's address as dynos reach it.
    endpoint: SocketAddr,
}

impl Postgres {
    /// A provider on the server `admin_url` names (a role that may create roles and databases). The server's
    /// host is resolved now: dynos get its address, and only that address and port are opened to them.
    pub(crate) fn new(admin_url: &str) -> Result<Postgres, ProviderError> {
        let tls = crate::store::postgres::tls::from_url(admin_url)
            .map_err(|e| ProviderError(format!("WASMDYNO_ADDON_POSTGRES_ADMIN_URL: {e}")))?;
        let mut admin: Config = tls.url.parse().map_err(|e| {
            ProviderError(format!(
                "WASMDYNO_ADDON_POSTGRES_ADMIN_URL is not a PostgreSQL URL: {e}"
            ))
        })?;
        admin
            .ssl_mode(tls.mode)
            .connect_timeout(WAIT)
            .application_name("wasmdyno-addons");
        let host = match admin.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => {
                return Err(ProviderError(
                    "WASMDYNO_ADDON_POSTGRES_ADMIN_URL must name a TCP host (dynos connect over the network)"
                        .into(),
                ));
            }
        };
        let port = admin.get_ports().first().copied().unwrap_or(5432);
        let endpoint = endpoint(&host, port, "WASMDYNO_ADDON_POSTGRES_ADMIN_URL")?;
        Ok(Postgres {
            admin,
            tls: tls.connector,
            endpoint,
        })
    }

    async fn admin(&self) -> Result<tokio_postgres::Client, ProviderError> {
        let connecting = crate::store::postgres::tls::connect(
            &self.admin,
            self.tls.as_ref(),
            "add-on PostgreSQL admin",
        );
        tokio::time::timeout(WAIT, connecting)
            .await
            .map_err(|_| ProviderError("the add-on PostgreSQL server did not answer".into()))?
            .map_err(|e| ProviderError(format!("cannot reach the add-on PostgreSQL server: {e}")))
    }

    fn url(&self, role: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{role}:{password}@{}:{}/{database}",
            url_host(self.endpoint),
            self.endpoint.port()
        )
    }
}

/// The role and database an add-on's URL names.
fn names(url: &str) -> Result<(String, String), ProviderError> {
    let parsed: Config = url
        .parse()
        .map_err(|_| ProviderError("the add-on's URL is not a PostgreSQL URL".into()))?;
    let role = parsed.get_user().unwrap_or_default().to_string();
    let database = parsed.get_dbname().unwrap_or_default().to_string();
    let ours =
        |s: &str| s.starts_with("wd_") && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ours(&role) || !ours(&database) {
        return Err(ProviderError(
            "the add-on's URL does not name a database this platform made".into(),
        ));
    }
    Ok((role, database))
}

fn failed(what: &str) -> impl Fn(tokio_postgres::Error) -> ProviderError + '_ {
    move |e| {
        let why = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |db| db.message().to_string());
        ProviderError(format!("cannot {what}: {why}"))
    }
}

#[async_trait::async_trait]
impl Provider for Postgres {
    fn service(&self) -> &'static str {
        SERVICE
    }

    fn default_plan(&self) -> &'static str {
        PLANS[0].0
    }

    async fn provision(
        &self,
        app: &str,
        name: &str,
        plan: &str,
    ) -> Result<Provisioned, ProviderError> {
        let Some((_, _, connections)) = PLANS.iter().find(|(p, _, _)| *p == plan) else {
            let plans: Vec<&str> = PLANS.iter().map(|(p, _, _)| *p).collect();
            return Err(ProviderError(format!(
                "unknown {SERVICE} plan {plan:?}; plans are {}",
                plans.join(", ")
            )));
        };
        let ident = format!("wd_{}_{}_{}", ident(app), ident(name), random_hex(4)?);
        let password = random_hex(24)?;
        let admin = self.admin().await?;
        // Role first, then its database (CREATE DATABASE cannot run in a transaction); undone if a step fails.
        admin
            .batch_execute(&format!(
                "CREATE ROLE {ident} LOGIN PASSWORD '{}' CONNECTION LIMIT {connections}",
                verifier(&password)
            ))
            .await
            .map_err(failed("create the add-on's role"))?;
        let made = async {
            // The admin role (if not a superuser) may make a database owned by a role it is a member of.
            admin
                .batch_execute(&format!("GRANT {ident} TO CURRENT_USER"))
                .await
                .map_err(failed("manage the add-on's role"))?;
            admin
                .batch_execute(&format!("CREATE DATABASE {ident} OWNER {ident}"))
                .await
                .map_err(failed("create the add-on's database"))?;
            admin
                .batch_execute(&format!("REVOKE ALL ON DATABASE {ident} FROM PUBLIC"))
                .await
                .map_err(failed("close the add-on's database to other roles"))
        }
        .await;
        if let Err(e) = made {
            let _ = drop_database_and_role(&admin, &ident, &ident).await;
            return Err(e);
        }
        Ok(Provisioned {
            url: self.url(&ident, &password, &ident),
            endpoint: self.endpoint,
            extra: Default::default(),
        })
    }

    async fn deprovision(&self, url: &str) -> Result<(), ProviderError> {
        let (role, database) = names(url)?;
        let admin = self.admin().await?;
        drop_database_and_role(&admin, &role, &database).await
    }

    async fn rotate(&self, url: &str) -> Result<String, ProviderError> {
        let (role, database) = names(url)?;
        let password = random_hex(24)?;
        let admin = self.admin().await?;
        admin
            .batch_execute(&format!(
                "ALTER ROLE {role} PASSWORD '{}'",
                verifier(&password)
            ))
            .await
            .map_err(failed("set the add-on's new password"))?;
        Ok(self.url(&role, &password, &database))
    }
}

/// Drops an add-on's database and then its role; either may already be gone.
///
/// Not with `DROP DATABASE ... WITH (FORCE)`: that needs the right to signal every session in the database, and an
/// autovacuum worker's session belongs to no role, so a non-superuser admin was refused whenever autovacuum
/// happened to be at work there. Instead the role may no longer log in and the database takes no new
/// connections, the role's own sessions are ended, and a plain `DROP DATABASE` runs: it stops autovacuum itself
/// and waits up to 5 s for the sessions still leaving. A session of any other role is not ours to end: the drop
/// then fails and says the database is in use.
async fn drop_database_and_role(
    admin: &tokio_postgres::Client,
    role: &str,
    database: &str,
) -> Result<(), ProviderError> {
    const ATTEMPTS: u32 = 3;
    // `role` and `database` are identifiers this platform made (`names` checks a URL's), safe to splice.
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                 ALTER ROLE {role} NOLOGIN;
               END IF;
               IF EXISTS (SELECT FROM pg_database WHERE datname = '{database}') THEN
                 ALTER DATABASE {database} ALLOW_CONNECTIONS false;
               END IF;
             END $$"
        ))
        .await
        .map_err(failed("close the add-on's database to new sessions"))?;
    for attempt in 1..=ATTEMPTS {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND usename = $2 AND pid <> pg_backend_pid()",
                &[&database, &role],
            )
            .await
            .map_err(failed("end the add-on's sessions"))?;
        match admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {database}"))
            .await
        {
            Ok(()) => break,
            Err(e)
                if attempt < ATTEMPTS
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => {}
            Err(e) => return Err(failed("drop the add-on's database")(e)),
        }
    }
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .map_err(failed("drop the add-on's role"))
}

/// The SCRAM-SHA-256 verifier of `password`, as PostgreSQL stores it (salted, 4096 iterations): sent in place of
/// the password, so that no statement log of the server ever holds a credential.
fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_this_platform_made_are_dropped() {
        assert_eq!(
            names("postgres://wd_a_db_1f2e:pw@127.0.0.1:5432/wd_a_db_1f2e").unwrap(),
            ("wd_a_db_1f2e".into(), "wd_a_db_1f2e".into())
        );
        assert!(names("postgres://postgres:pw@127.0.0.1/postgres").is_err());
        assert!(names("postgres://wd_x:pw@h/wd_x;DROP").is_err());
        assert_eq!(ident("My-App.2"), "my_app_2");
    }
}
