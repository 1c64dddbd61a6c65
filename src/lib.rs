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
//! The root holds the types most hosts touch: [`Slug`], [`Runtime`] and [`RuntimeConfig`], [`Manager`],
//! [`Router`], [`Logplex`], [`Edge`], and their errors. The rest lives in public modules, one per room:
//!
//! - [`slug`]: [`Slug::open`] reads and verifies a slug (the sha256 of every file; [`Slug::sha256`] is the
//!   archive's); [`slug::pack`] makes one.
//! - [`runtime`]: [`Runtime::new`] builds the wasmtime engine with its compiled-code cache ([`RuntimeConfig`]);
//!   cache keys are the module's sha256 and the engine's compatibility hash, the same in every process and on
//!   every machine with the same engine configuration. [`Runtime::run`] runs a [`runtime::RunSpec`] and returns
//!   its [`runtime::Exit`].
//! - [`dyno`]: a [`dyno::Source`] says what should run: apps and their current [`dyno::ReleaseSpec`] (slug,
//!   config vars, formation of [`dyno::Scale`]s with a [`runtime::DynoSize`]). A [`Manager`] starts and stops the
//!   dynos a source asks for ([`Manager::reconcile`]), with supervision, restarts, preboot and graceful stop;
//!   [`Manager::run_one_off`] runs a one-off dyno of an app. [`dyno::prepare`] readies a slug's command (a
//!   process type, a command line or a module) as a one-off dyno, with the environment and command line every
//!   dyno gets.
//! - [`router`]: a [`Router`] serves the web dynos: [`Router::serve`] on a listener, or [`Router::service`] (a
//!   hyper `Service`) in the host's own hyper server.
//! - [`logs`]: the [`Logplex`] merges every app's lines; an edge host's app lines go to a [`edge::LogSink`]
//!   ([`Edge::logs`]).
//! - [`edge`]: an [`Edge`] puts these together for an edge host: a folder of slugs ([`Edge::sync_dir`]) or a
//!   central `wasmdyno serve` to follow ([`Edge::follow`] with [`edge::Central`]), each new release applied with
//!   preboot, kept in an [`edge::MemorySource`]; [`Edge::deploy`], [`Edge::scale`] and [`Edge::set_config`]
//!   change what runs from the host's own code.
//! - [`metrics`]: what the router and the dyno manager measure, per app and process type.
//!
//! `wasmdyno serve` is built from the same parts, over a source backed by its state store, and `wasmdyno run`
//! runs a local one-off dyno the same way, on a [`Manager`] over an [`edge::MemorySource`]: every dyno, formation,
//! one-off, release phase or local, is started by a dyno manager. [`dyno::prepare`] gives an embedder who runs a
//! guest itself the spec such a one-off dyno gets. Modules not listed here are private to the crate.
//!
//! ```no_run
//! # async fn host() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use wasmdyno::edge::EdgeSettings;
//! use wasmdyno::{Edge, Runtime, RuntimeConfig};
//!
//! let runtime = Runtime::new(RuntimeConfig::default().with_cache_dir(Some("/var/cache/edge".into())))?;
//! let edge = Edge::new(Arc::new(runtime), "/var/lib/edge", EdgeSettings::default());
//! edge.sync_dir("/srv/slugs".as_ref()).await?; // serves /srv/slugs/hello.tar.gz at hello.localhost
//! for app in edge.apps() {
//!     edge.logs(&app, |app: &str, line: &wasmdyno::logs::LogLine| println!("{app}: {line}"));
//! }
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! edge.router().clone().serve(listener, std::future::pending()).await;
//! # Ok(()) }
//! ```
//!
//! `examples/edge_host.rs` is a complete edge host.

// The root holds the few types most hosts touch; the rest of the public API lives in the public modules below.
pub use dyno::{DynoError, Manager};
pub use edge::{Edge, EdgeError};
pub use logs::Logplex;
pub use router::Router;
pub use runtime::{Runtime, RuntimeConfig, RuntimeError};
pub use slug::{Slug, SlugError};

mod clock;
pub mod dyno;
pub mod edge;
mod fastmap;
mod features;
mod fsutil;
mod ids;
pub mod logs;
pub mod metrics;
mod procfile;
pub mod router;
pub mod runtime;
pub mod slug;
mod tls;
mod vars;
mod wire;

#[cfg(feature = "platform")]
mod addons;
#[cfg(feature = "platform")]
mod api;
#[cfg(feature = "platform")]
mod build;
#[cfg(feature = "platform")]
#[doc(hidden)]
pub mod cli;
#[cfg(feature = "platform")]
mod cluster;
#[cfg(feature = "platform")]
mod git;
#[cfg(feature = "platform")]
mod locks;
#[cfg(feature = "platform")]
mod store;
