//! `/apps/{app}/slugs` and `/builds`: uploads, downloads for edge hosts, and builds ([`deploy`]) streamed to the
//! client as NDJSON.

#[allow(unused_imports)]
use super::*;
use deploy::Deploy;

/// What an edge host following this server runs for an app: the app, its current release and its formation, read
/// together.
pub(super) async fn get_current_release(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> ApiResult<Json<crate::wire::CurrentRelease>> {
    use crate::wire::{CurrentApp, CurrentRelease, CurrentVersion, ProcessScale};
    let found = p.store.app(&app)?;
    let release = p.store.current_release(&app)?;
    let formation = p.store.formation(&app)?;
    Ok(Json(CurrentRelease {
        app: CurrentApp {
            name: found.name,
            maintenance: found.maintenance,
            sleep: found.sleep,
        },
        release: release.map(|r| CurrentVersion {
            version: r.version,
            slug: r.slug,
            config: r.config,
        }),
        formation: formation
            .into_iter()
            .map(|(kind, e)| {
                let scale = ProcessScale {
                    quantity: e.quantity,
                    size: e.size,
                };
                (kind, scale)
            })
            .collect(),
    }))
}

/// A slug of the app's releases, as stored (an edge host checks its sha256). Only slugs some release of the app
/// names are served, so a token holder reads nothing by guessing ids that belong elsewhere.
pub(super) async fn download_slug(
    State(p): State<Arc<Platform>>,
    Path((app, sha256)): Path<(String, String)>,
) -> ApiResult<Response> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{app} has no release with slug {sha256}"),
        )
    };
    let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid
        || !p
            .store
            .releases(&app)?
            .iter()
            .any(|r| r.slug.as_deref() == Some(sha256.as_str()))
    {
        return Err(not_found());
    }
    let bytes = tokio::fs::read(p.slugs.fetch(&sha256))
        .await
        .map_err(|_| not_found())?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/gzip"),
        )],
        bytes,
    )
        .into_response())
}

pub(super) async fn upload_slug(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    p.store.app(&app)?;
    let slug = Slug::from_bytes(&body, p.limits).map_err(|e| match e {
        crate::slug::SlugError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
        }
        e => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            format!("invalid slug: {e}"),
        ),
    })?;
    p.slugs.put(slug.sha256(), &body).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        )
    })?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": slug.sha256(),
            "size": slug.compressed_size(),
            "process_types": slug.manifest().process_types,
            "buildpack": slug.manifest().buildpack,
        })),
    ))
}

#[derive(Deserialize)]
pub(super) struct BuildQuery {
    commit: Option<String>,
    buildpack: Option<String>,
}

/// Builds a source tarball (gzip tar) on the server and releases the slug ([`deploy::deploy`]), streaming its
/// progress lines and then its result as NDJSON [`BuildEvent`]s.
pub(super) async fn create_build(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
    Query(query): Query<BuildQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    p.store.app(&app)?;
    // Refused before the stream starts, so the status says it: a gzip stream starts with 1f 8b.
    if !body.starts_with(&[0x1f, 0x8b]) {
        return Err(ApiError::bad_request(
            "send the source as a gzip tarball (tar.gz)",
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<BuildEvent>(256);
    tokio::spawn(async move {
        let (lines, mut progress) = tokio::sync::mpsc::channel::<String>(256);
        let options = Deploy {
            commit: query.commit,
            buildpack: query.buildpack,
        };
        let work = deploy::deploy(&p, &app, options, body, lines);
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                Some(line) = progress.recv() => {
                    let _ = tx.send(BuildEvent::Line(line)).await;
                }
                result = &mut work => break result,
            }
        };
        while let Ok(line) = progress.try_recv() {
            let _ = tx.send(BuildEvent::Line(line)).await;
        }
        let last = match result {
            Ok(release) => BuildEvent::Release(release),
            Err(e) => BuildEvent::Error(e.body()),
        };
        let _ = tx.send(last).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).expect("events serialize");
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}
