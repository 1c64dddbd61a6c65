//! wasmdyno: a Heroku-style platform whose dynos are WebAssembly sandboxes.
//!
//! Data flows one way: source → build (buildpacks) → [slug] → release → formation → dynos run by the [runtime],
//! fronted by the [router] and the [logplex]. The `wasmdyno` binary (feature `platform`, on by default) adds the
//! state store, the control API, the build system and the command line; without it (`default-features = false`)
//! the crate is what an edge host embeds, with no SQLite, git or buildpack code.
//!
//! # Embedding
//!
//! The API is small and lives at the crate root:
//!
//! - [`Slug::open`] reads and verifies a slug (the sha256 of every file; [`Slug::sha256`] is the archive's).
//! - [`Runtime::new`] builds the wasmtime engine with its compiled-code cache ([`RuntimeConfig`]); cache keys are
//!   the module's sha256 and the engine's compatibility hash, the same in every process and on every machine with
//!   the same engine configuration.
//! - A [`Source`] says what should run: apps and their current [`ReleaseSpec`] (slug, config vars, formation of
//!   [`Scale`]s with a [`DynoSize`]). [`MemorySource`] keeps that in memory.
//! - A [`Manager`] starts and stops the dynos a source asks for ([`Manager::reconcile`]), with supervision,
//!   restarts, preboot and graceful stop; [`Manager::run_one_off`] runs a one-off dyno, and [`Runtime::run`]
//!   runs a guest directly and returns its [`Exit`] status.
//! - A [`Router`] serves the web dynos: [`Router::serve`] on a listener, or [`Router::service`] (a hyper
//!   `Service`) in the host's own hyper server.
//! - App log lines go to a [`LogSink`] the host gives ([`Edge::logs`]).
//! - [`Edge`] puts these together for an edge host: a folder of slugs ([`Edge::sync_dir`]) or a central
//!   `wasmdyno serve` to follow ([`Edge::follow`] with [`edge::Central`]), each new release applied with preboot.
//!
//! `wasmdyno serve` is built from the same parts, over a source backed by its state store.
//!
//! ```no_run
//! # async fn host() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use wasmdyno::{Edge, EdgeSettings, Runtime, RuntimeConfig};
//!
//! let runtime = Runtime::new(RuntimeConfig::default().with_cache_dir(Some("/var/cache/edge".into())))?;
//! let edge = Edge::new(Arc::new(runtime), "/var/lib/edge", EdgeSettings::default());
//! edge.sync_dir("/srv/slugs".as_ref()).await?; // serves /srv/slugs/hello.tar.gz at hello.localhost
//! for app in edge.apps() {
//!     edge.logs(&app, |app: &str, line: &wasmdyno::LogLine| println!("{app}: {line}"));
//! }
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! edge.router().clone().serve(listener, std::future::pending()).await;
//! # Ok(()) }
//! ```
//!
//! `examples/edge_host.rs` is a complete edge host.

/// The dyno manager and what it runs.
pub use dyno::{AppSpec, Manager, ReleaseSpec, Scale, Source, SourceError};
/// An edge host's parts.
pub use edge::{Edge, EdgeError, EdgeSettings, LogSink, MemorySource};
/// App log lines.
pub use logplex::{LogLine, Logplex};
/// The router.
pub use router::{Router, RouterService};
/// The sandbox: a [`Runtime`] runs a guest of a slug once and returns its [`Exit`] status.
///
/// ```no_run
/// # async fn one_off() -> Result<(), Box<dyn std::error::Error>> {
/// use std::collections::BTreeMap;
/// use std::sync::Arc;
/// use wasmdyno::{DynoSize, RunSpec, Runtime, RuntimeConfig, Slug};
///
/// let slug = Slug::open("hello.tar.gz".as_ref(), Default::default())?;
/// let runtime = Runtime::new(RuntimeConfig::default().with_cache_dir(Some("/var/cache/wasmdyno".into())))?;
/// let (module, wasm) = wasmdyno::runtime::resolve_module(&slug, "hello.wasm")?;
/// let (guest, _cached) = runtime.load(&wasm)?;
/// let image = Arc::new(wasmdyno::runtime::vfs::Image::from_slug(&slug));
/// let spec = RunSpec::new(vec![module], BTreeMap::new(), DynoSize::default())
///     .with_image(image)
///     .with_host_stdio();
/// let exit = runtime.run(&guest, spec).await?;
/// println!("exit status {}", exit.code());
/// # Ok(()) }
/// ```
pub use runtime::{DynoSize, Exit, PoolingSettings, RunSpec, Runtime, RuntimeConfig};
/// Slugs: [`Slug::open`] reads one and checks the sha256 of every file.
///
/// ```no_run
/// let slug = wasmdyno::Slug::open("hello.tar.gz".as_ref(), wasmdyno::Limits::default())?;
/// println!("{} runs {:?}", slug.sha256(), slug.manifest().process_types);
/// # Ok::<(), wasmdyno::slug::SlugError>(())
/// ```
pub use slug::{Limits, Slug};

pub mod edge;
pub mod logplex;
pub mod procfile;
pub mod runtime;
pub mod slug;

mod fsutil;

#[cfg(feature = "platform")]
pub(crate) mod api;
#[cfg(feature = "platform")]
pub(crate) mod build;
#[cfg(feature = "platform")]
#[doc(hidden)]
pub mod cli;
pub mod dyno;
#[cfg(feature = "platform")]
pub(crate) mod git;
pub mod router;
#[cfg(feature = "platform")]
pub(crate) mod store;
