//! Redis add-ons: an ACL user per add-on on the server of `WASMDYNO_ADDON_REDIS_ADMIN_URL` (a user that may manage
//! ACLs), with a random password, allowed only the keys and channels under its own prefix and no administrative or
//! dangerous command (`KEYS`, `FLUSHALL`, `CONFIG`, ...). The app gets `REDIS_URL` and `REDIS_KEY_PREFIX`. Redis
//! cannot cap one user's memory or connections, so the one plan sets no limit it could not keep.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Provider, ProviderError, Provisioned, endpoint, ident, random_hex, url_host};

pub(crate) const SERVICE: &str = "redis";
pub(crate) const ALIASES: &[&str] = &["heroku-redis"];
const PLANS: &[&str] = &["mini"];
const WAIT: Duration = Duration::from_secs(10);
/// Keys removed per round when an add-on is destroyed.
const SCAN_BATCH: usize = 500;

/// The Redis provider of one server.
pub(crate) struct Redis {
    admin: redis::Client,
    /// The server's address as dynos reach it.
    endpoint: SocketAddr,
}

impl Redis {
    /// A provider on the server `admin_url` names. Its host is resolved now: dynos get its address, and only that
    /// address and port are opened to them.
    pub(crate) fn new(admin_url: &str) -> Result<Redis, ProviderError> {
        let admin = redis::Client::open(admin_url).map_err(|e| {
            ProviderError(format!(
                "WASMDYNO_ADDON_REDIS_ADMIN_URL is not a Redis URL: {e}"
            ))
        })?;
        let (host, port) = match &admin.get_connection_info().addr {
            redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            _ => {
                return Err(ProviderError(
                    "WASMDYNO_ADDON_REDIS_ADMIN_URL must name a TCP host without TLS (dynos connect over the network)"
                        .into(),
                ));
            }
        };
        let endpoint = endpoint(&host, port, "WASMDYNO_ADDON_REDIS_ADMIN_URL")?;
        Ok(Redis { admin, endpoint })
    }

    async fn admin(&self) -> Result<redis::aio::MultiplexedConnection, ProviderError> {
        tokio::time::timeout(WAIT, self.admin.get_multiplexed_async_connection())
            .await
            .map_err(|_| ProviderError("the add-on Redis server did not answer".into()))?
            .map_err(|e| ProviderError(format!("cannot reach the add-on Redis server: {e}")))
    }

    fn url(&self, user: &str, password: &str) -> String {
        format!(
            "redis://{user}:{password}@{}:{}/0",
            url_host(self.endpoint),
            self.endpoint.port()
        )
    }
}

/// The user an add-on's URL names, if this platform made it.
fn user_of(url: &str) -> Result<String, ProviderError> {
    let info: redis::ConnectionInfo = redis::IntoConnectionInfo::into_connection_info(url)
        .map_err(|_| ProviderError("the add-on's URL is not a Redis URL".into()))?;
    let user = info.redis.username.unwrap_or_default();
    if !user.starts_with("wd_") || !user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ProviderError(
            "the add-on's URL does not name a user this platform made".into(),
        ));
    }
    Ok(user)
}

/// Ends `user`'s connections (best effort: a user with none is not an error).
async fn disconnect(admin: &mut redis::aio::MultiplexedConnection, user: &str) {
    let _: redis::RedisResult<redis::Value> = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(user)
        .query_async(admin)
        .await;
}

fn failed(what: &str) -> impl Fn(redis::RedisError) -> ProviderError + '_ {
    move |e| ProviderError(format!("cannot {what}: {e}"))
}

#[async_trait::async_trait]
impl Provider for Redis {
    fn service(&self) -> &'static str {
        SERVICE
    }

    fn default_plan(&self) -> &'static str {
        PLANS[0]
    }

    async fn provision(
        &self,
        app: &str,
        name: &str,
        plan: &str,
    ) -> Result<Provisioned, ProviderError> {
        if !PLANS.contains(&plan) {
            return Err(ProviderError(format!(
                "unknown {SERVICE} plan {plan:?}; plans are {}",
                PLANS.join(", ")
            )));
        }
        let user = format!("wd_{}_{}_{}", ident(app), ident(name), random_hex(4)?);
        let password = random_hex(24)?;
        let mut admin = self.admin().await?;
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user)
            .arg("reset")
            .arg("on")
            .arg(format!(">{password}"))
            .arg(format!("~{user}:*"))
            .arg(format!("&{user}:*"))
            .arg("+@all")
            .arg("-@admin")
            .arg("-@dangerous")
            .exec_async(&mut admin)
            .await
            .map_err(failed("create the add-on's user"))?;
        Ok(Provisioned {
            url: self.url(&user, &password),
            endpoint: self.endpoint,
            extra: [("KEY_PREFIX".to_string(), format!("{user}:"))].into(),
        })
    }

    async fn deprovision(&self, url: &str) -> Result<(), ProviderError> {
        let user = user_of(url)?;
        let mut admin = self.admin().await?;
        redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&user)
            .exec_async(&mut admin)
            .await
            .map_err(failed("remove the add-on's user"))?;
        disconnect(&mut admin, &user).await;
        // Its keys go too, a batch at a time.
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{user}:*"))
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut admin)
                .await
                .map_err(failed("find the add-on's keys"))?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .exec_async(&mut admin)
                    .await
                    .map_err(failed("remove the add-on's keys"))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn rotate(&self, url: &str) -> Result<String, ProviderError> {
        let user = user_of(url)?;
        let password = random_hex(24)?;
        let mut admin = self.admin().await?;
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user)
            .arg("resetpass")
            .arg(format!(">{password}"))
            .exec_async(&mut admin)
            .await
            .map_err(failed("set the add-on's new password"))?;
        // Connections made with the old password end.
        disconnect(&mut admin, &user).await;
        Ok(self.url(&user, &password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_users_this_platform_made_are_removed() {
        assert_eq!(
            user_of("redis://wd_a_redis_1f2e:pw@127.0.0.1:6379/0").unwrap(),
            "wd_a_redis_1f2e"
        );
        assert!(user_of("redis://default:pw@127.0.0.1:6379/0").is_err());
        assert!(user_of("redis://127.0.0.1:6379/0").is_err());
    }
}
