//! `/apps/{app}/metrics` (an app's router metrics by process type, minute by minute, and its dynos' memory and
//! restarts) and `/metrics` (every app's, in the Prometheus text format).

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

/// An app's metrics: what the router measured per process type, and each dyno's memory and restarts now.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AppMetrics {
    /// Per process type, minute by minute.
    pub types: Vec<crate::metrics::TypeMetrics>,
    /// The app's dynos, with `memory_bytes`, `memory_peak_bytes` and `restarts`.
    pub dynos: Vec<crate::dyno::DynoInfo>,
}

pub(super) async fn app_metrics(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    Query(query): Query<MetricsQuery>,
) -> ApiResult<Json<AppMetrics>> {
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
    let mut dynos = p.manager.dynos(&app);
    if let Some(kind) = &query.process_type {
        dynos.retain(|d| &d.kind == kind);
    }
    dynos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(AppMetrics {
        types: series,
        dynos,
    }))
}

pub(super) async fn prometheus(State(p): State<Arc<Platform>>) -> ApiResult<Response> {
    let mut text = crate::metrics::prometheus(&p.metrics.all(crate::clock::unix_now()));
    let mut dynos = Vec::new();
    for app in p.store.apps()? {
        for dyno in p.manager.dynos(&app.name) {
            dynos.push((app.name.clone(), dyno));
        }
    }
    text.push_str(&crate::metrics::prometheus_dynos(&dynos));
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
