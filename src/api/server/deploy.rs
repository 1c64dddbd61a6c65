//! A deploy, free of any transport: a source tarball becomes a slug (the buildpacks, in the build sandbox), then a
//! release (app.json's first-deploy steps around it, the release phase before it goes live). Its progress is lines
//! of text on a channel.
//!
//! `POST /apps/{app}/builds` ([`super::builds`]) streams those lines to its client as NDJSON. `git push` reaches
//! this module through that route: git runs the `pre-receive` hook as a process of its own, and the API is how a
//! process talks to the server (the hook holds the server's token and streams the lines back to the pusher).

use super::app_json::{after_first_release, before_first_release, read_app_json};
#[allow(unused_imports)]
use super::*;
use crate::build::app_json::AppJson;

/// What a deploy is asked for besides its source.
#[derive(Debug, Default)]
pub(crate) struct Deploy {
    /// The commit the source is, for the release's description and the build's `SOURCE_VERSION`.
    pub commit: Option<String>,
    /// A buildpack to use instead of detection.
    pub buildpack: Option<String>,
}

/// Where a deploy's progress lines go (a closed channel drops them; the deploy goes on).
pub(crate) type Progress = tokio::sync::mpsc::Sender<String>;

/// Builds `source` (a gzip tarball) for `app`, one build of an app at a time, and releases the slug.
pub(crate) async fn deploy(
    p: &Arc<Platform>,
    app: &str,
    options: Deploy,
    source: Bytes,
    lines: Progress,
) -> ApiResult<Release> {
    let lock = p.build_locks.of(app);
    let _one_build_at_a_time = match lock.clone().try_lock_owned() {
        Ok(guard) => guard,
        Err(_) => {
            let _ = lines
                .send(format!(
                    "-----> Waiting for another build of {app} to finish"
                ))
                .await;
            lock.lock_owned().await
        }
    };
    let platform = p.clone();
    let app_name = app.to_string();
    let build_lines = lines.clone();
    let commit = options.commit.clone();
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
            request.buildpack = options.buildpack;
            request.work_dir = Some(work);
            request.commit = commit;
            request.wasmdyno_bin = std::env::current_exe().ok();
            request.sandbox = platform.build_sandbox.clone();
            request.env = platform.store.config(&app_name)?;
            let manifest = read_app_json(dir.path(), &request.env, &mut |line| {
                let _ = build_lines.blocking_send(line);
            })?;
            crate::build::build_and_store(
                &request,
                &platform.runtime,
                &platform.slugs,
                platform.limits,
                &mut |line| {
                    let _ = build_lines.blocking_send(line.to_string());
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
    let description = match &options.commit {
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
            let _ = phase_lines.try_send(format!("       {text}"));
        }
    });
    let _ = lines.send("-----> Releasing".to_string()).await;
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
