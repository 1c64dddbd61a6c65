//! A request about an app's dynos on a cluster: this host does its share and asks every other live host to do
//! theirs (the same path with `?local=true`), each within a deadline. A host that does not answer in time is left
//! out, and logged.

use std::future::Future;
use std::time::Duration;

#[allow(unused_imports)]
use super::*;
use crate::api::client::Client;

/// What each other live host answered to `ask` (given a client for its API with this cluster's token) within
/// `within`; nothing when this server runs alone.
pub(super) async fn ask_peers<T, F, Fut>(
    p: &Platform,
    within: Duration,
    ask: F,
) -> ApiResult<Vec<T>>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = crate::api::client::Result<T>>,
{
    let Some(cluster) = p.cluster.clone() else {
        return Ok(Vec::new());
    };
    let hosts = tokio::task::spawn_blocking(move || cluster.hosts())
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    let asks = hosts.into_iter().filter(|h| !h.this).map(|host| {
        let asked = ask(Client::new(host.api.clone(), p.token.clone()));
        async move {
            match tokio::time::timeout(within, asked).await {
                Ok(Ok(answer)) => Some(answer),
                Ok(Err(e)) => {
                    tracing::warn!(host = host.id, "another host refused: {e}");
                    None
                }
                Err(_) => {
                    tracing::warn!(
                        host = host.id,
                        "another host did not answer within {within:?}"
                    );
                    None
                }
            }
        }
    });
    Ok(futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect())
}
