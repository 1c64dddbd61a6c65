//! What should run on an edge host, in memory: apps, their releases and formations, slugs checked by sha256.

#[allow(unused_imports)]
use super::*;

/// What should run, in memory: apps and their current releases, slugs in a folder as `<sha256>.tar.gz`.
///
/// ```
/// use wasmdyno::{dyno::AppSpec, dyno::ReleaseSpec, dyno::Source};
/// use wasmdyno::edge::MemorySource;
///
/// let source = MemorySource::new("/var/lib/edge/slugs");
/// source.set(AppSpec::new("hello"), Some(ReleaseSpec::new(1, "ab12")));
/// assert_eq!(source.release("hello").unwrap().unwrap().version, 1);
/// assert!(source.slug_path("ab12").ends_with("ab12.tar.gz"));
/// ```
pub struct MemorySource {
    dir: PathBuf,
    apps: RwLock<BTreeMap<String, (AppSpec, Option<ReleaseSpec>)>>,
}

impl MemorySource {
    /// An empty source keeping its slugs in `dir`.
    ///
    /// ```
    /// use wasmdyno::dyno::Source;
    /// let source = wasmdyno::edge::MemorySource::new("/var/lib/edge/slugs");
    /// assert!(source.apps().unwrap().is_empty());
    /// ```
    pub fn new(dir: impl Into<PathBuf>) -> MemorySource {
        MemorySource {
            dir: dir.into(),
            apps: RwLock::default(),
        }
    }

    /// Sets an app and its current release (`None`: runs nothing). A [`Manager`] over the source applies it at its
    /// next [`reconcile`](Manager::reconcile).
    ///
    /// ```
    /// use wasmdyno::{dyno::AppSpec, runtime::DynoSize, edge::MemorySource, dyno::ReleaseSpec, dyno::Source};
    ///
    /// let source = MemorySource::new("/var/lib/edge/slugs");
    /// let release = ReleaseSpec::new(2, "ab12").scale("web", 2, DynoSize::Eco);
    /// source.set(AppSpec::new("hello"), Some(release.clone()));
    /// assert_eq!(source.release("hello").unwrap(), Some(release));
    /// ```
    pub fn set(&self, app: AppSpec, release: Option<ReleaseSpec>) {
        let mut apps = self.apps.write().expect("apps");
        apps.insert(app.name.clone(), (app, release));
    }

    /// Changes an app's current release in place; false (and nothing changed) if the app has no release.
    ///
    /// ```
    /// use wasmdyno::{dyno::AppSpec, runtime::DynoSize, edge::MemorySource, dyno::ReleaseSpec, dyno::Source};
    ///
    /// let source = MemorySource::new("/var/lib/edge/slugs");
    /// assert!(!source.update("hello", |release| release.version += 1));
    /// source.set(AppSpec::new("hello"), Some(ReleaseSpec::new(1, "ab12")));
    /// assert!(source.update("hello", |release| *release = release.clone().scale("web", 2, DynoSize::Eco)));
    /// assert_eq!(source.release("hello").unwrap().unwrap().formation["web"].quantity, 2);
    /// ```
    pub fn update(&self, app: &str, change: impl FnOnce(&mut ReleaseSpec)) -> bool {
        let mut apps = self.apps.write().expect("apps");
        match apps.get_mut(app).and_then(|(_, release)| release.as_mut()) {
            Some(release) => {
                change(release);
                true
            }
            None => false,
        }
    }

    /// Forgets an app; false if there was none.
    ///
    /// ```
    /// let source = wasmdyno::edge::MemorySource::new("/var/lib/edge/slugs");
    /// source.set(wasmdyno::dyno::AppSpec::new("hello"), None);
    /// assert!(source.remove("hello"));
    /// assert!(!source.remove("hello"));
    /// ```
    pub fn remove(&self, app: &str) -> bool {
        self.apps.write().expect("apps").remove(app).is_some()
    }

    /// Verifies a slug (every file's sha256 and, when given, the archive's) and keeps it in the folder, as
    /// `<sha256>.tar.gz`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let app = tempfile::tempdir()?;
    /// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
    /// # let options = wasmdyno::slug::PackOptions {
    /// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
    /// #     ..Default::default()
    /// # };
    /// # let packed = wasmdyno::slug::pack(app.path(), options)?;
    /// use wasmdyno::{EdgeError, edge::MemorySource, dyno::Source};
    ///
    /// let work = tempfile::tempdir()?;
    /// let source = MemorySource::new(work.path());
    /// let slug = source.add_slug(&packed.bytes, Some(&packed.sha256), Default::default())?;
    /// assert!(source.slug_path(slug.sha256()).is_file());
    /// let wrong = "0".repeat(64);
    /// let err = source.add_slug(&packed.bytes, Some(&wrong), Default::default()).unwrap_err();
    /// assert!(matches!(err, EdgeError::Sha256Mismatch { .. }));
    /// # Ok(()) }
    /// ```
    pub fn add_slug(
        &self,
        bytes: &[u8],
        sha256: Option<&str>,
        limits: Limits,
    ) -> Result<Slug, EdgeError> {
        let slug = Slug::from_bytes(bytes, limits)?;
        if let Some(expected) = sha256
            && expected != slug.sha256()
        {
            return Err(EdgeError::Sha256Mismatch {
                expected: expected.to_string(),
                actual: slug.sha256().to_string(),
            });
        }
        crate::slug::SlugStore::new(&self.dir).put(slug.sha256(), bytes)?;
        Ok(slug)
    }
}

impl Source for MemorySource {
    fn apps(&self) -> Result<Vec<AppSpec>, SourceError> {
        let apps = self.apps.read().expect("apps");
        Ok(apps.values().map(|(app, _)| app.clone()).collect())
    }

    fn release(&self, app: &str) -> Result<Option<ReleaseSpec>, SourceError> {
        let apps = self.apps.read().expect("apps");
        Ok(apps.get(app).and_then(|(_, release)| release.clone()))
    }

    fn slug_path(&self, sha256: &str) -> PathBuf {
        crate::slug::SlugStore::new(&self.dir).path(sha256)
    }
}
