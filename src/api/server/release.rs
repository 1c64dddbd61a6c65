//! Releases and their release phase: one at a time per app, the phase as the one-off dyno `release.N`, a
//! pending release failed rather than left pending when its phase never finishes.

#[allow(unused_imports)]
use super::*;

impl Platform {
    /// Makes a release with `make` (told whether a release phase must run first), then runs that phase.
    /// Release-phase output goes to `out` line by line as well as into the release's record.
    pub(super) async fn release(
        &self,
        app: &str,
        slug: Option<String>,
        make: impl FnOnce(&dyn Store, bool) -> Result<Release, StoreError>,
        out: Option<Output>,
    ) -> Result<Release, ApiError> {
        let lock = self.release_lock(app);
        let _one_at_a_time = lock.lock().await;
        let slug = match slug {
            Some(slug) => Some(slug),
            None => self.base_slug(app)?,
        };
        let pending = self.has_release_phase(slug.as_deref())?;
        let release = make(self.store.as_ref(), pending)?;
        self.routes.invalidate();
        self.api_log(app, release.description.clone());
        self.api_log(app, format!("Release v{} created", release.version));
        let release = if release.status == crate::store::ReleaseStatus::Pending {
            // Should this request go away mid-phase (its client gone), the release fails rather than stay pending.
            let unfinished = Unfinished {
                store: self.store.clone(),
                app: app.to_string(),
                version: Some(release.version),
            };
            let (succeeded, output) = match self.release_phase(app, &release, out).await {
                Ok(result) => result,
                Err(e) => (false, format!("release phase could not start: {e}\n")),
            };
            if !succeeded {
                self.api_log(
                    app,
                    format!(
                        "Release v{} failed: its release command did not succeed",
                        release.version
                    ),
                );
            }
            unfinished.finished();
            self.store
                .record_release_result(app, release.version, succeeded, output)?
        } else {
            release
        };
        self.routes.invalidate();
        if release.status == crate::store::ReleaseStatus::Succeeded {
            self.first_deploy_scales_web(app, &release)?;
            self.manager.reconcile(app).await;
        }
        Ok(release)
    }

    /// As on Heroku, the first release that has a `web` process type scales `web=1`.
    pub(super) fn first_deploy_scales_web(
        &self,
        app: &str,
        release: &Release,
    ) -> Result<(), ApiError> {
        let Some(sha) = &release.slug else {
            return Ok(());
        };
        if self
            .store
            .formation(app)?
            .contains_key(crate::procfile::WEB_TYPE)
        {
            return Ok(());
        }
        if self
            .open_slug(sha)?
            .manifest()
            .process_types
            .contains_key(crate::procfile::WEB_TYPE)
        {
            let change = ScaleChange {
                quantity: Some(1),
                size: None,
            };
            self.store.scale(
                app,
                BTreeMap::from([(crate::procfile::WEB_TYPE.to_string(), change)]),
            )?;
            self.api_log(app, "Scaled to web@1:standard-1x".into());
        }
        Ok(())
    }

    /// Runs the slug's `release` command as the one-off dyno `release.N` under the dyno manager, with the
    /// release's config vars and the app's network destinations, for at most the release phase timeout, keeping
    /// the tail of its output; destroying the app stops it.
    pub(super) async fn release_phase(
        &self,
        app: &str,
        release: &Release,
        out: Option<Output>,
    ) -> Result<(bool, String), String> {
        let sha = release.slug.as_deref().ok_or("the release has no slug")?;
        let mut spec = crate::dyno::ReleaseSpec::new(release.version, sha);
        spec.config = release.config.clone();
        let captured = Arc::new(Mutex::new(OutputTail::default()));
        let sink = captured.clone();
        let dyno = format!("release.{}", release.version);
        let stream = Mutex::new(LineWriter::new(self.logplex.clone(), app, &dyno));
        let capture: Output = Arc::new(move |data: &[u8]| {
            sink.lock().expect("capture").push(data);
            stream.lock().expect("release stream").write(data);
            if let Some(out) = &out {
                out(data);
            }
        });
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
        let attach = crate::dyno::Attach {
            stdin: crate::runtime::stdio::Input::closed(),
            stdout: capture.clone(),
            stderr: capture,
            exit: exit_tx,
        };
        let manager = self.manager.clone();
        let (app_name, spec_for_start) = (app.to_string(), spec.clone());
        // Opening the slug and compiling its module can take a while: off the async threads.
        tokio::task::spawn_blocking(move || {
            manager.run_release_phase(&app_name, &spec_for_start, attach)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let stop = Arc::new(tokio::sync::Notify::new());
        self.release_phases
            .lock()
            .expect("release phases")
            .insert(app.to_string(), stop.clone());
        // Whoever waits for the phase may go away (a client that hangs up drops its request): the dyno is then
        // stopped, so that no release dyno outlives its deadline.
        let mut running = RunningPhase {
            platform: self,
            app,
            dyno: Some(dyno.clone()),
        };
        let timeout = self.manager.settings().release_phase_timeout;
        let ended = tokio::select! {
            status = exit_rx => Some(status.map_err(|_| "the release phase ended without a status".to_string())),
            () = tokio::time::sleep(timeout) => None,
            // The app's destruction stops every dyno of it, this one too.
            () = stop.notified() => return Err("the app is being destroyed".to_string()),
        };
        if ended.is_some() {
            running.dyno = None;
        }
        let status = match ended {
            Some(Ok(status)) => status,
            Some(Err(why)) => return Err(why),
            None => {
                let line = format!(
                    "release command still running after {} seconds (WASMDYNO_RELEASE_PHASE_TIMEOUT): stopped",
                    timeout.as_secs_f64()
                );
                self.logplex
                    .publish(app, LogLine::platform(&dyno, line.clone()));
                if let Some(dyno) = running.dyno.take() {
                    self.manager.stop_dyno(app, &dyno).await;
                }
                let mut output = captured.lock().expect("capture").text();
                output.push_str(&line);
                output.push('\n');
                return Ok((false, output));
            }
        };
        let mut output = captured.lock().expect("capture").text();
        if status != 0 {
            output.push_str(&format!("release command exited with status {status}\n"));
        }
        Ok((status == 0, output))
    }
}

/// A release phase being waited for: when dropped, forgets the app's running phase and stops its dyno, unless it
/// ended (`dyno` is `None`).
struct RunningPhase<'a> {
    platform: &'a Platform,
    app: &'a str,
    dyno: Option<String>,
}

impl Drop for RunningPhase<'_> {
    fn drop(&mut self) {
        self.platform
            .release_phases
            .lock()
            .expect("release phases")
            .remove(self.app);
        if let Some(dyno) = self.dyno.take() {
            let (manager, app) = (self.platform.manager.clone(), self.app.to_string());
            tokio::spawn(async move { manager.stop_dyno(&app, &dyno).await });
        }
    }
}

/// Fails a pending release when dropped before [`Unfinished::finished`]: the request running its release phase
/// went away, and the ledger must not keep a release pending forever.
pub(super) struct Unfinished {
    pub(super) store: Arc<dyn Store>,
    pub(super) app: String,
    pub(super) version: Option<u64>,
}

impl Unfinished {
    pub(super) fn finished(mut self) {
        self.version = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(version) = self.version {
            let why = "release phase interrupted: the request that ran it went away\n";
            if let Err(e) = self
                .store
                .record_release_result(&self.app, version, false, why.into())
            {
                tracing::warn!(
                    app = self.app,
                    version,
                    "cannot fail the interrupted release: {e}"
                );
            }
        }
    }
}

/// The last [`OutputTail::LIMIT`] bytes of a release phase's output: what its release record keeps.
#[derive(Default)]
pub(super) struct OutputTail {
    pub(super) bytes: Vec<u8>,
    pub(super) dropped: u64,
}

impl OutputTail {
    const LIMIT: usize = 64 * 1024;

    pub(super) fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > 2 * Self::LIMIT {
            let cut = self.bytes.len() - Self::LIMIT;
            self.bytes.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    pub(super) fn text(&self) -> String {
        let start = self.bytes.len().saturating_sub(Self::LIMIT);
        let dropped = self.dropped + start as u64;
        let tail = String::from_utf8_lossy(&self.bytes[start..]);
        if dropped == 0 {
            tail.into_owned()
        } else {
            format!("[{dropped} earlier bytes of output not kept]\n{tail}")
        }
    }
}
