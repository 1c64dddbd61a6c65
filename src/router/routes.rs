//! The routing table: which app a Host names, and whether that app can take requests (maintenance mode, a
//! release with a slug). The router reads it on every request, so it is an in-memory snapshot of the store,
//! reloaded only when something it holds may have changed.
//!
//! Whoever changes apps, maintenance mode, releases or domains calls [`Routes::invalidate`] after the store has
//! the change (the API does, before it answers). Each snapshot remembers the generation it was loaded at; a
//! lookup that finds an older generation reloads, so a change is visible to the first request after the call,
//! even when a reload that started before the change finishes after it. A snapshot is also reloaded after
//! [`TTL`], for changes made to the database by anything else.
//!
//! Hosts resolve in this order: a custom domain (`www.example.com`), the app's default domain
//! (`<app>.<base domain>`), then a wildcard custom domain (`*.example.com` matches `a.example.com`, one label).

use crate::fastmap::FastMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

#[cfg(feature = "platform")]
use serde::{Deserialize, Serialize};

use crate::dyno::{Source, SourceError};
#[cfg(feature = "platform")]
use crate::store::{Store, StoreError, normalize_hostname};

/// A snapshot older than this is reloaded even if nobody said it changed.
pub const TTL: Duration = Duration::from_secs(10);

/// What the router needs to know about an app for each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRoute {
    pub name: String,
    /// In maintenance mode every request gets H80.
    pub maintenance: bool,
    /// Has a current release with a slug (else H81).
    pub released: bool,
    /// Connections to its listening dynos are kept alive between requests (unless the app has the
    /// `http-disable-keepalive-to-dyno` feature).
    pub keep_alive: bool,
}

#[cfg(feature = "platform")]
/// One of an app's hostnames, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// The hostname, e.g. `hello.localhost` or `www.example.com`.
    pub hostname: String,
    /// `default` for `<app>.<base domain>` (every app has it) or `custom`.
    pub kind: String,
    /// Where a custom domain's DNS points: a CNAME to the app's default domain.
    pub cname: Option<String>,
    /// The app it routes to.
    pub app: String,
}

/// The routing table of one server: which app a request's Host names. Cloning shares it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use http_body_util::Empty;
/// use hyper::body::Bytes;
/// use wasmdyno::{dyno::AppSpec, Logplex, Manager, edge::MemorySource, Router, router::Routes, Runtime, RuntimeConfig};
///
/// let work = tempfile::tempdir()?;
/// let source = Arc::new(MemorySource::new(work.path()));
/// source.set(AppSpec::new("hello"), None); // an app never released
/// let routes = Routes::from_source(source.clone(), "apps.example.com");
/// let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
/// let manager = Manager::new(runtime, source, Default::default(), Logplex::new(), Default::default());
/// let router = Router::new(manager, routes, Logplex::new(), Default::default());
///
/// let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
/// tokio.block_on(async {
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
///     let addr = listener.local_addr()?;
///     tokio::spawn(router.serve(listener, std::future::pending()));
///     let status = |host: &'static str| async move {
///         let stream = tokio::net::TcpStream::connect(addr).await?;
///         let io = hyper_util::rt::TokioIo::new(stream);
///         let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
///         tokio::spawn(connection);
///         let request = hyper::Request::get("/").header("host", host).body(Empty::<Bytes>::new())?;
///         Ok::<_, Box<dyn std::error::Error>>(sender.send_request(request).await?.status())
///     };
///     assert_eq!(status("hello.apps.example.com").await?, 503, "H81: hello has no release yet");
///     assert_eq!(status("other.apps.example.com").await?, 404, "no such app");
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Routes {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn Source>,
    /// Where custom domains are added and removed (`wasmdyno serve`); an edge host's table is read-only.
    #[cfg(feature = "platform")]
    store: Option<Arc<dyn Store>>,
    base_domain: String,
    /// Bumped by every [`Routes::invalidate`].
    generation: AtomicU64,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// One reload at a time; the others wait for it and use its result.
    loading: Mutex<()>,
}

struct Snapshot {
    generation: u64,
    loaded: Instant,
    apps: FastMap<String, AppRoute>,
    /// Custom hostname → app.
    domains: FastMap<String, String>,
    /// `*.example.com` as `example.com` → app.
    wildcards: FastMap<String, String>,
}

impl Routes {
    /// A table over `store` for apps at `<app>.<base_domain>`, which also adds and removes custom domains.
    #[cfg(feature = "platform")]
    pub(crate) fn new(store: Arc<dyn Store>, base_domain: &str) -> Routes {
        // The table never opens slugs: the slug folder of this source is never read.
        let source = crate::dyno::StoreSource::new(
            store.clone(),
            crate::slug::SlugStore::new(std::path::PathBuf::new()),
        );
        Routes::build(Arc::new(source), Some(store), base_domain)
    }

    /// A read-only table over `source` for apps at `<app>.<base_domain>` (and their
    /// [`Source::domains`](crate::dyno::Source::domains)). The table is a snapshot of `source`, reloaded once it is
    /// older than 10 seconds: a change in `source` is seen within that time, or at once after
    /// [`invalidate`](Self::invalidate).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use wasmdyno::{Logplex, Manager, edge::MemorySource, Router, router::Routes, Runtime, RuntimeConfig};
    ///
    /// let source = Arc::new(MemorySource::new("/var/lib/edge/slugs"));
    /// // `hello` is served at hello.apps.example.com.
    /// let routes = Routes::from_source(source.clone(), "apps.example.com");
    /// let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
    /// let manager = Manager::new(runtime, source, Default::default(), Logplex::new(), Default::default());
    /// let router = Router::new(manager, routes, Logplex::new(), Default::default());
    /// # drop(router);
    /// # Ok(()) }
    /// ```
    pub fn from_source(source: Arc<dyn Source>, base_domain: &str) -> Routes {
        #[cfg(feature = "platform")]
        return Routes::build(source, None, base_domain);
        #[cfg(not(feature = "platform"))]
        return Routes::build(source, base_domain);
    }

    fn build(
        source: Arc<dyn Source>,
        #[cfg(feature = "platform")] store: Option<Arc<dyn Store>>,
        base_domain: &str,
    ) -> Routes {
        Routes {
            inner: Arc::new(Inner {
                source,
                #[cfg(feature = "platform")]
                store,
                base_domain: base_domain.trim_matches('.').to_ascii_lowercase(),
                generation: AtomicU64::new(0),
                snapshot: RwLock::new(None),
                loading: Mutex::new(()),
            }),
        }
    }

    /// The app's default hostname, `<app>.<base domain>`.
    pub(crate) fn default_host(&self, app: &str) -> String {
        format!("{app}.{}", self.inner.base_domain)
    }

    /// Says that apps, maintenance mode, releases or domains changed in the source: the next lookup reloads.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use wasmdyno::{dyno::AppSpec, edge::MemorySource, router::Routes};
    ///
    /// let source = Arc::new(MemorySource::new("/var/lib/edge/slugs"));
    /// let routes = Routes::from_source(source.clone(), "apps.example.com");
    /// source.set(AppSpec::new("hello"), None);
    /// routes.invalidate(); // the router sees `hello` from its next request on
    /// ```
    pub fn invalidate(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The app `host` (lowercase, without a port) routes to, if any.
    pub(crate) fn lookup(&self, host: &str) -> Result<Option<AppRoute>, SourceError> {
        let snapshot = self.current()?;
        let host = host.strip_suffix('.').unwrap_or(host);
        let name = snapshot
            .domains
            .get(host)
            .map(String::as_str)
            .or_else(|| {
                host.strip_suffix(self.inner.base_domain.as_str())
                    .and_then(|rest| rest.strip_suffix('.'))
                    .filter(|name| !name.is_empty() && !name.contains('.'))
            })
            .or_else(|| {
                let (_, parent) = host.split_once('.')?;
                snapshot.wildcards.get(parent).map(String::as_str)
            });
        Ok(name.and_then(|name| snapshot.apps.get(name)).cloned())
    }

    fn current(&self) -> Result<Arc<Snapshot>, SourceError> {
        let fresh = |snapshot: &Option<Arc<Snapshot>>| {
            let generation = self.inner.generation.load(Ordering::Acquire);
            snapshot
                .as_ref()
                .filter(|s| s.generation == generation && s.loaded.elapsed() < TTL)
                .cloned()
        };
        if let Some(snapshot) = fresh(&self.inner.snapshot.read().expect("routes")) {
            return Ok(snapshot);
        }
        let _one_reload = self.inner.loading.lock().expect("routes reload");
        if let Some(snapshot) = fresh(&self.inner.snapshot.read().expect("routes")) {
            return Ok(snapshot);
        }
        // The generation is read before the store: a change made during the load bumps it past this one, and
        // the next lookup loads again.
        let generation = self.inner.generation.load(Ordering::Acquire);
        let snapshot = Arc::new(self.load(generation)?);
        *self.inner.snapshot.write().expect("routes") = Some(snapshot.clone());
        Ok(snapshot)
    }

    fn load(&self, generation: u64) -> Result<Snapshot, SourceError> {
        let source = &self.inner.source;
        let mut snapshot = Snapshot {
            generation,
            loaded: Instant::now(),
            apps: FastMap::default(),
            domains: FastMap::default(),
            wildcards: FastMap::default(),
        };
        for app in source.apps()? {
            // An app destroyed while we read has no release and no domains (the source says so).
            let release = source.release(&app.name)?;
            for hostname in source.domains(&app.name)? {
                match hostname.strip_prefix("*.") {
                    Some(parent) => snapshot
                        .wildcards
                        .insert(parent.to_string(), app.name.clone()),
                    None => snapshot.domains.insert(hostname, app.name.clone()),
                };
            }
            snapshot.apps.insert(
                app.name.clone(),
                AppRoute {
                    released: release.is_some_and(|r| r.slug.is_some()),
                    maintenance: app.maintenance,
                    keep_alive: !app.features.contains(crate::features::NO_KEEPALIVE_TO_DYNO),
                    name: app.name,
                },
            );
        }
        Ok(snapshot)
    }
}

/// Custom domains, kept in the store of `wasmdyno serve`.
#[cfg(feature = "platform")]
impl Routes {
    fn store(&self) -> &Arc<dyn Store> {
        self.inner
            .store
            .as_ref()
            .expect("custom domains are managed on a table made by Routes::new")
    }

    /// The app's hostnames: its default domain, then its custom domains by name.
    pub(crate) fn domains(&self, app: &str) -> Result<Vec<DomainInfo>, StoreError> {
        let custom = self.store().domains(app)?;
        let mut all = vec![DomainInfo {
            hostname: self.default_host(app),
            kind: "default".into(),
            cname: None,
            app: app.to_string(),
        }];
        all.extend(custom.into_iter().map(|d| self.custom(d.app, d.hostname)));
        Ok(all)
    }

    /// Routes a custom hostname to `app`, after [`check_domain`](Self::check_domain).
    pub(crate) fn add_domain(&self, app: &str, hostname: &str) -> Result<DomainInfo, StoreError> {
        self.store().app(app)?;
        let hostname = self.check_domain(app, hostname)?;
        let domain = self.store().add_domain(app, &hostname)?;
        self.invalidate();
        Ok(self.custom(domain.app, domain.hostname))
    }

    /// Stops routing a custom hostname to `app`.
    pub(crate) fn remove_domain(
        &self,
        app: &str,
        hostname: &str,
    ) -> Result<DomainInfo, StoreError> {
        let hostname = normalize_hostname(hostname).unwrap_or_else(|_| hostname.to_string());
        self.store().remove_domain(app, &hostname)?;
        self.invalidate();
        Ok(self.custom(app.to_string(), hostname))
    }

    fn custom(&self, app: String, hostname: String) -> DomainInfo {
        DomainInfo {
            cname: Some(self.default_host(&app)),
            hostname,
            kind: "custom".into(),
            app,
        }
    }

    /// Checks a custom hostname for `app` and normalizes it (lowercase, no trailing dot). A hostname is a DNS
    /// name, without scheme, port or path; `*.` in front makes a wildcard for one more label. Names under the
    /// base domain are the apps' default domains: an app may add names under its own (`api.<app>.<base>`), but
    /// `<other>.<base>` and what is under it belong to that app (a conflict, as a domain of another app is), and
    /// the base domain itself is no app's.
    pub(crate) fn check_domain(&self, app: &str, hostname: &str) -> Result<String, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidHostname {
            hostname: hostname.to_string(),
            reason: reason.to_string(),
        };
        if hostname.contains("://") || hostname.contains('/') {
            return Err(invalid(
                "give a hostname such as www.example.com, not a URL",
            ));
        }
        if hostname.contains(':') {
            return Err(invalid(
                "a hostname has no port: the router serves every domain on its own port",
            ));
        }
        let hostname = normalize_hostname(hostname)?;
        let base = self.inner.base_domain.as_str();
        let exact = hostname.strip_prefix("*.").unwrap_or(&hostname);
        if exact == base {
            return Err(invalid(&format!(
                "{base} is the platform's base domain; apps live under it as <app>.{base}"
            )));
        }
        let Some(under) = hostname
            .strip_suffix(base)
            .and_then(|rest| rest.strip_suffix('.'))
        else {
            return Ok(hostname);
        };
        let owner = under.rsplit('.').next().unwrap_or(under).to_string();
        if owner == "*" {
            return Err(invalid(&format!(
                "a wildcard over {base} would take every app's default domain"
            )));
        }
        if owner == app {
            return if under == app {
                Err(invalid(&format!(
                    "{hostname} is already {app}'s default domain"
                )))
            } else {
                Ok(hostname)
            };
        }
        match self.store().app(&owner) {
            Ok(_) => Err(StoreError::DomainExists {
                hostname,
                app: owner,
            }),
            Err(e) if e.kind() == crate::store::ErrorKind::NotFound => Err(invalid(&format!(
                "names under {owner}.{base} are reserved for an app named {owner}"
            ))),
            Err(e) => Err(e),
        }
    }
}

#[cfg(all(test, feature = "platform"))]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn routes() -> (tempfile::TempDir, Routes, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        (dir, Routes::new(store.clone(), "localhost"), store)
    }

    #[test]
    fn hosts_resolve_to_apps_by_custom_default_and_wildcard_domains() {
        let (_dir, routes, store) = routes();
        store.create_app("one").unwrap();
        store.create_app("two").unwrap();
        routes.add_domain("one", "WWW.Example.com.").unwrap();
        routes.add_domain("two", "*.example.com").unwrap();
        routes.add_domain("two", "api.two.localhost").unwrap();
        let app = |host: &str| routes.lookup(host).unwrap().map(|a| a.name);
        assert_eq!(app("www.example.com").as_deref(), Some("one"), "exact wins");
        assert_eq!(app("shop.example.com").as_deref(), Some("two"));
        assert_eq!(app("a.b.example.com"), None, "a wildcard covers one label");
        assert_eq!(app("example.com"), None);
        assert_eq!(app("one.localhost").as_deref(), Some("one"));
        assert_eq!(app("one.localhost.").as_deref(), Some("one"));
        assert_eq!(app("api.two.localhost").as_deref(), Some("two"));
        assert_eq!(app("x.one.localhost"), None);
        assert_eq!(app("three.localhost"), None);
        assert_eq!(app("localhost"), None);
    }

    #[test]
    fn changes_are_seen_after_invalidate_and_not_before() {
        let (_dir, routes, store) = routes();
        store.create_app("app").unwrap();
        let route = routes.lookup("app.localhost").unwrap().unwrap();
        assert!(!route.maintenance && !route.released);
        store.set_maintenance("app", true).unwrap();
        assert!(
            !routes.lookup("app.localhost").unwrap().unwrap().maintenance,
            "cached: the store is not read per request"
        );
        routes.invalidate();
        assert!(routes.lookup("app.localhost").unwrap().unwrap().maintenance);
        store.destroy_app("app").unwrap();
        routes.invalidate();
        assert_eq!(routes.lookup("app.localhost").unwrap(), None);
    }

    #[test]
    fn custom_domains_are_checked() {
        let (_dir, routes, store) = routes();
        store.create_app("one").unwrap();
        store.create_app("two").unwrap();
        let check = |app: &str, host: &str| routes.check_domain(app, host);
        assert_eq!(check("one", "WWW.Example.COM").unwrap(), "www.example.com");
        assert_eq!(check("one", "*.example.com").unwrap(), "*.example.com");
        assert_eq!(
            check("one", "api.one.localhost").unwrap(),
            "api.one.localhost"
        );
        for bad in [
            "www.example.com:8080",
            "http://www.example.com",
            "www.example.com/path",
            "bad host.com",
            "*",
            "a.*.com",
            "localhost",
            "*.localhost",
            "one.localhost",
            "three.localhost",
            "api.three.localhost",
        ] {
            assert!(
                matches!(check("one", bad), Err(StoreError::InvalidHostname { .. })),
                "{bad}: {:?}",
                check("one", bad)
            );
        }
        for taken in ["two.localhost", "api.two.localhost", "*.two.localhost"] {
            assert!(
                matches!(check("one", taken), Err(StoreError::DomainExists { ref app, .. }) if app == "two"),
                "{taken}"
            );
        }
        routes.add_domain("one", "www.example.com").unwrap();
        let err = routes.add_domain("two", "www.example.com").unwrap_err();
        assert_eq!(err.kind(), crate::store::ErrorKind::Conflict, "{err}");
        let all = routes.domains("one").unwrap();
        assert_eq!(all[0].hostname, "one.localhost");
        assert_eq!(all[0].kind, "default");
        assert_eq!(all[1].hostname, "www.example.com");
        assert_eq!(all[1].cname.as_deref(), Some("one.localhost"));
        routes.remove_domain("one", "WWW.example.com").unwrap();
        assert_eq!(routes.lookup("www.example.com").unwrap(), None);
    }
}
