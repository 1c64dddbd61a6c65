//! `/apps/{app}/slugs` and `/builds`: uploads, downloads for edge hosts, and builds streamed to the client
//! then released.

use super::app_json::{after_first_release, before_first_release, read_app_json};
#[allow(unused_imports)]
use super::*;
use crate::build::app_json::AppJson;

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

/// Builds a source tarball (gzip tar) on the server, streaming the output as NDJSON [`BuildEvent`]s while it
/// runs, and releases the slug.
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
        let lines = tx.clone();
        let result = build_and_release(&p, &app, query, body, lines).await;
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

pub(super) async fn build_and_release(
    p: &Arc<Platform>,
    app: &str,
    query: BuildQuery,
    source: Bytes,
    lines: tokio::sync::mpsc::Sender<BuildEvent>,
) -> ApiResult<Release> {
    let lock = p.build_locks.of(app);
    let _one_build_at_a_time = match lock.clone().try_lock_owned() {
        Ok(guard) => guard,
        Err(_) => {
            let _ = lines
                .send(BuildEvent::Line(format!(
                    "-----> Waiting for another build of {app} to finish"
                )))
                .await;
            lock.lock_owned().await
        }
    };
    let platform = p.clone();
    let app_name = app.to_string();
    let build_lines = lines.clone();
    let commit = query.commit.clone();
    let built = tokio::task::spawn_blocking(
        move || -> ApiResult<(crate::build::Built, Option<AppJson>)> {
            let work = platform.home.join("tmp");
            std::fs::create_dir_all(&work).map_err(internal)?;
            let dir = tempfile::Builder::new()
                .prefix("source-")
                .tempdir_in(&work)
                .map_err(internal)?;
            // `unpack` refuses entries that would land outside `dir`.
            tar::Archive::new(flate2::read::GzDecoder::new(&source[..]))
                .unpack(dir.path())
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_params",
                        format!("the source is not a gzip tarball: {e}"),
                    )
                })?;
            let mut request = BuildRequest::new(
                dir.path(),
                platform
                    .home
                    .join("build-cache")
                    .join(format!("app-{app_name}")),
            );
            request.buildpack = query.buildpack;
            request.work_dir = Some(work);
            request.commit = commit;
            request.wasmdyno_bin = std::env::current_exe().ok();
            request.sandbox = platform.build_sandbox.clone();
            request.env = platform.store.config(&app_name)?;
            let manifest = read_app_json(dir.path(), &request.env, &mut |line| {
                let _ = build_lines.blocking_send(BuildEvent::Line(line));
            })?;
            crate::build::build_and_store(
                &request,
                &platform.runtime,
                &platform.slugs,
                platform.limits,
                &mut |line| {
                    let _ = build_lines.blocking_send(BuildEvent::Line(line.to_string()));
                },
            )
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "build_failed",
                    format!("{e:#}"),
                )
            })
            .map(|built| (built, manifest))
        },
    )
    .await
    .map_err(internal)??;
    let (built, manifest) = built;
    // The first deploy sets app.json's config defaults and provisions its add-ons before its release (so that a
    // release phase reaches them), then scales as it says and runs its postdeploy script.
    let first = p.base_slug(app)?.is_none();
    let manifest = manifest.filter(|_| first);
    if let Some(manifest) = &manifest {
        before_first_release(p, app, manifest, &lines).await?;
    }

    let sha = built.slug.sha256().to_string();
    let description = match &query.commit {
        Some(commit) => format!("Deploy {}", commit.chars().take(7).collect::<String>()),
        None => format!("Deploy {}", &sha[..7]),
    };
    let phase_lines = lines.clone();
    let pending_line = Arc::new(Mutex::new(Vec::<u8>::new()));
    let echo: Output = Arc::new(move |data: &[u8]| {
        // Release-phase output, passed on a line at a time.
        let mut buf = pending_line.lock().expect("line buffer");
        buf.extend_from_slice(data);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let _ = phase_lines.try_send(BuildEvent::Line(format!("       {text}")));
        }
    });
    let _ = lines
        .send(BuildEvent::Line("-----> Releasing".into()))
        .await;
    let new = NewRelease {
        slug: Some(sha.clone()),
        config: None,
        description,
        pending: false,
    };
    let release = p
        .release(
            app,
            Some(sha),
            |store, pending| store.create_release(app, NewRelease { pending, ..new }),
            Some(echo),
        )
        .await?;
    if let Some(manifest) = &manifest
        && release.status == crate::store::ReleaseStatus::Succeeded
    {
        after_first_release(p, app, manifest, &lines).await?;
    }
    Ok(release)
}
