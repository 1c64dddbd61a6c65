//! One-off dynos: `run.N` (attached to a terminal, or detached with its output in the app's log stream) and the
//! release phase's `release.N`. Each runs once on a release and is never restarted.

#[allow(unused_imports)]
use super::*;

impl Manager {
    /// Starts a one-off dyno `run.N` on the app's current release. It runs once and is never restarted. `command`
    /// is a process type (plus `args`), or a command line. Detached (`attach` is `None`), its output goes to the
    /// app's stream; attached, it uses the given streams and sends its exit status when it ends. See [`Manager`] for
    /// an attached one.
    /// ```no_run
    /// # async fn host(manager: wasmdyno::Manager) {
    /// // Detached: `heroku run:detached`; its output goes to the app's log stream.
    /// let args = ["--verbose".to_string()];
    /// let dyno = manager.run_one_off("hello", "worker", &args, Default::default(), Default::default(), None);
    /// println!("started {}", dyno.unwrap().name);
    /// # }
    /// ```
    pub fn run_one_off(
        &self,
        app: &str,
        command: &str,
        args: &[String],
        env: BTreeMap<String, String>,
        size: DynoSize,
        attach: Option<Attach>,
    ) -> Result<DynoInfo, DynoError> {
        let err = |e: SourceError| DynoError::Command(e.to_string());
        let release = self
            .inner
            .source
            .release(app)
            .map_err(err)?
            .filter(|r| r.slug.is_some())
            .ok_or_else(|| {
                DynoError::Command(format!(
                    "{app} has no release with a slug yet: deploy first"
                ))
            })?;
        let number = self
            .inner
            .one_offs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let one_off = OneOff {
            name: format!("run.{number}"),
            kind: "run",
            command,
            args,
            env,
            size,
        };
        self.start_one_off(app, &release, one_off, attach)
    }

    /// Starts the release phase of `release` (pending: not yet the app's current release) as the one-off dyno
    /// `release.N`: the slug's `release` command, with the release's config vars and the app's network
    /// destinations, shown by `ps` and in the logs as `release.N`. Its output and exit status go to `attach`.
    #[cfg(feature = "platform")]
    pub(crate) fn run_release_phase(
        &self,
        app: &str,
        release: &ReleaseSpec,
        attach: Attach,
    ) -> Result<DynoInfo, DynoError> {
        let one_off = OneOff {
            name: format!("release.{}", release.version),
            kind: crate::procfile::RELEASE_TYPE,
            command: crate::procfile::RELEASE_TYPE,
            args: &[],
            env: BTreeMap::new(),
            size: DynoSize::default(),
        };
        self.start_one_off(app, release, one_off, Some(attach))
    }

    /// Starts a dyno that runs once on `release` and is never restarted.
    pub(super) fn start_one_off(
        &self,
        app: &str,
        release: &ReleaseSpec,
        one_off: OneOff<'_>,
        attach: Option<Attach>,
    ) -> Result<DynoInfo, DynoError> {
        let sha = release.slug.clone().ok_or_else(|| {
            DynoError::Command(format!("release v{} has no slug", release.version))
        })?;
        let booted = self.booted(&sha)?;
        // A one-off dyno may be the app's first (its release phase): its network destinations are the app's now.
        self.refresh_settings(app);
        let command = one_off.command;
        let line = Command::resolve(&booted.slug.manifest().process_types, command, one_off.args)
            .map_err(|e| DynoError::Command(format!("{command:?}: {e}")))?;
        let full_env = launch::layers(&booted.slug, &release.config, one_off.env);
        let want = Want {
            kind: one_off.kind.into(),
            command: line.as_str().to_string(),
            line,
            size: one_off.size,
            release: release.version,
            slug: sha,
            env: full_env,
            booted,
        };
        // Listed before its supervisor can run: a dyno that ends at once removes itself from a list it is in, never
        // from one it joins later (where it would stay, ended, for good).
        let mut apps = self.inner.apps.lock().expect("apps lock");
        let dyno = self.start(app, &one_off.name, want, attach);
        let info = dyno.info.lock().expect("dyno info").clone();
        apps.entry(app.to_string())
            .or_default()
            .insert(one_off.name, dyno);
        Ok(info)
    }
}

/// What a one-off dyno runs: its name (`run.N`, `release.N`), kind, command and arguments, extra environment
/// and size.
pub(super) struct OneOff<'a> {
    pub(super) name: String,
    pub(super) kind: &'a str,
    pub(super) command: &'a str,
    pub(super) args: &'a [String],
    pub(super) env: BTreeMap<String, String>,
    pub(super) size: DynoSize,
}

/// Is `name` a dyno that runs once (`run.N`, or the release phase's `release.N`), never part of the formation?
pub(super) fn is_one_off(name: &str) -> bool {
    name.starts_with("run.") || name.starts_with("release.")
}
