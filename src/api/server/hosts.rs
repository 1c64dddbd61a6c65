//! `/hosts`: the hosts of a cluster (servers sharing one PostgreSQL store) and the dynos placed on each.

#[allow(unused_imports)]
use super::*;
use crate::cluster::HostStatus;

/// The live hosts; one server alone (SQLite) is a cluster of none and says so.
pub(super) async fn list_hosts(State(p): State<Arc<Platform>>) -> ApiResult<Json<Vec<HostStatus>>> {
    let Some(cluster) = p.cluster.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_a_cluster",
            "this server runs alone: hosts share the work when each runs `wasmdyno serve --store postgres://...` \
             on one database"
                .to_string(),
        ));
    };
    let hosts = tokio::task::spawn_blocking(move || cluster.hosts())
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    Ok(Json(hosts))
}
