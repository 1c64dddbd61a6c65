//! `/apps/{app}/log-sessions`: history and tails of the app's log stream.

use super::logs_cluster::{merged, ndjson};
#[allow(unused_imports)]
use super::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LogSessionRequest {
    /// History lines to send first (default 100, at most 1,500).
    lines: Option<usize>,
    #[serde(default)]
    tail: bool,
    /// A process type (`web`) or one dyno (`web.1`).
    ps: Option<String>,
    dyno: Option<String>,
    /// `app` or `wasmdyno`.
    source: Option<String>,
    /// Only this host's lines (what a cluster's host asks its peers for).
    #[serde(default)]
    local: bool,
}

/// Creates a log session (as Heroku's `/log-sessions`); its `logplex_url` streams the lines as NDJSON.
pub(super) async fn create_log_session(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    JsonBody(request): JsonBody<LogSessionRequest>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    p.store.app(&app)?;
    let source = match request.source.as_deref() {
        None => None,
        Some("app") => Some(Source::App),
        Some("wasmdyno") => Some(Source::Platform),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_params",
                format!("unknown log source {other:?} (app or wasmdyno)"),
            ));
        }
    };
    let options = SessionOptions {
        lines: request.lines.unwrap_or(100).min(1500),
        tail: request.tail,
        filter: Filter {
            ps: request.ps,
            dyno: request.dyno,
            source,
        },
    };
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(internal)?;
    let id = hex::encode(bytes);
    let mut sessions = p.log_sessions.lock().expect("log sessions");
    // Sessions nobody opened within a minute are forgotten.
    sessions.retain(|_, (_, _, _, at)| at.elapsed() < std::time::Duration::from_secs(60));
    sessions.insert(
        id.clone(),
        (
            app.clone(),
            options,
            request.local,
            std::time::Instant::now(),
        ),
    );
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({ "id": id, "logplex_url": format!("/apps/{app}/log-sessions/{id}") }),
        ),
    ))
}

pub(super) async fn open_log_session(
    State(p): State<Arc<Platform>>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let Some((owner, options, local, _)) = p.log_sessions.lock().expect("log sessions").remove(&id)
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such log session (they are used once)",
        ));
    };
    if owner != app {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such log session",
        ));
    }
    let body = match (&p.cluster, local) {
        (Some(cluster), false) => {
            let cluster = cluster.clone();
            merged(p, cluster, app, options).await
        }
        _ => {
            let session = p.logplex.session(&app, options);
            Body::from_stream(futures_util::stream::unfold(
                session,
                |mut session| async move {
                    let line = session.next().await?;
                    Some((Ok::<_, std::convert::Infallible>(ndjson(&line)), session))
                },
            ))
        }
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}
