//! wasmdyno: a Heroku-style platform whose dynos are WebAssembly sandboxes.
//!
//! Data flows one way: source → [build] (buildpacks) → [slug] → dynos run by the [runtime]. The crate is also a
//! library for hosts that embed the runtime; the `platform` feature (on by default) adds the build system and the
//! command line.

pub mod logplex;
pub mod procfile;
pub mod runtime;
pub mod slug;

mod fsutil;

#[cfg(feature = "platform")]
pub mod api;
#[cfg(feature = "platform")]
pub mod build;
#[cfg(feature = "platform")]
#[doc(hidden)]
pub mod cli;
#[cfg(feature = "platform")]
pub mod dyno;
#[cfg(feature = "platform")]
pub(crate) mod git;
#[cfg(feature = "platform")]
pub mod router;
#[cfg(feature = "platform")]
pub mod store;
