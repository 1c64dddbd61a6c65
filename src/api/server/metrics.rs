//! `/apps/{app}/metrics` (an app's router metrics by process type, minute by minute) and `/metrics` (every app's,
//! in the Prometheus text format).

#[allow(unused_imports)]
use super::*;

#[derive(serde::Deserialize)]
pub(super) struct MetricsQuery {
    /// Only this process type (`web`, or `router` for requests no dyno took).
    #[serde(rename = "type")]
    process_type: Option<String>,
    /// The newest minutes to return (all of the last day's by default).
    minutes: Option<usize>,
}

pub(super) async fn app_metrics(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    Query(query): Query<MetricsQuery>,
) -> ApiResult<Json<Vec<crate::metrics::TypeMetrics>>> {
    p.store.app(&app)?;
    let mut series = p.metrics.app(&app, crate::clock::unix_now());
    if let Some(kind) = &query.process_type {
        series.retain(|s| &s.process_type == kind);
    }
    if let Some(minutes) = query.minutes {
        for s in &mut series {
            s.minutes.truncate(minutes);
        }
    }
    Ok(Json(series))
}

pub(super) async fn prometheus(State(p): State<Arc<Platform>>) -> Response {
    let text = crate::metrics::prometheus(&p.metrics.all(crate::clock::unix_now()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
