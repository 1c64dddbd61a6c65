#![warn(missing_docs)]
//! wasmdyno: a Heroku-style platform whose dynos are WebAssembly sandboxes.
//!
//! Data flows one way: source → build (buildpacks) → [slug](Slug) → release → formation → dynos run by the
//! [runtime](Runtime), fronted by the [router](Router) and the [logplex](Logplex). The `wasmdyno` binary (feature `platform`, on by default) adds the
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
//!   restarts, preboot and graceful stop; [`Manager::run_one_off`] runs a one-off dyno of an app.
//! - [`prepare`] readies a slug's command (a process type, a command line or a module) as a one-off dyno, with
//!   the environment and command line every dyno gets, and [`Runtime::run`] runs it and returns its [`Exit`].
//! - A [`Router`] serves the web dynos: [`Router::serve`] on a listener, or [`Router::service`] (a hyper
//!   `Service`) in the host's own hyper server.
//! - App log lines go to a [`LogSink`] the host gives ([`Edge::logs`]).
//! - [`Edge`] puts these together for an edge host: a folder of slugs ([`Edge::sync_dir`]) or a central
//!   `wasmdyno serve` to follow ([`Edge::follow`] with [`Central`]), each new release applied with preboot;
//!   [`Edge::deploy`], [`Edge::scale`] and [`Edge::set_config`] change what runs from the host's own code.
//!
//! `wasmdyno serve` is built from the same parts, over a source backed by its state store, and `wasmdyno run`
//! runs a local one-off dyno with [`prepare`]. Everything not re-exported here is private to the crate.
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

// The public API is what this file re-exports; the modules behind it stay private.

// Slugs.
pub use slug::{FileEntry, Limits, Manifest, PackOptions, Packed, Slug, SlugError, pack};

// The sandbox.
pub use runtime::http::{HttpDyno, HttpFailure, HttpSettings};
pub use runtime::net::{Connection, Listener, NetError};
pub use runtime::stdio::{Input, Output};
pub use runtime::vfs::Image;
pub use runtime::{
    CacheOutcome, DynoSize, Exit, Guest, NetworkPolicy, PoolingSettings, Report, RunSpec, Runtime,
    RuntimeConfig, RuntimeError, resolve_module,
};

// The dyno manager and what it runs.
pub use dyno::{
    AppSpec, Attach, DynoError, DynoInfo, Manager, Prepared, ReleaseSpec, Scale,
    Settings as ManagerSettings, Source, SourceError, State as DynoState, prepare,
};

// Logs.
pub use logplex::{
    Filter, LogLine, Logplex, ParseTimestampError, Session, SessionOptions, Source as LogSource,
    UnknownSource,
};

// The router.
pub use router::{ConnectionLimits, Router, RouterService, Routes, Settings as RouterSettings};

// An edge host's parts.
pub use edge::{Central, Edge, EdgeError, EdgeSettings, LogSink, MemorySource};

mod clock;
mod dyno;
mod edge;
mod features;
mod fsutil;
mod ids;
mod logplex;
pub mod metrics;
mod procfile;
mod router;
mod runtime;
mod slug;
mod tls;
mod vars;
mod wire;

#[cfg(feature = "platform")]
mod api;
#[cfg(feature = "platform")]
mod build;
#[cfg(feature = "platform")]
#[doc(hidden)]
pub mod cli;
#[cfg(feature = "platform")]
mod git;
#[cfg(feature = "platform")]
mod store;
