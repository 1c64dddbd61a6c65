//! Integration tests: the real `wasmdyno` binary, real buildpack scripts, real wasmtime.

mod buildpack;
mod cache;
mod cluster;
mod components;
mod containment;
mod drains;
mod dynos;
mod edge;
mod env;
mod git;
mod hardening;
mod http;
mod layout;
mod listener;
mod metrics;
mod platform;
mod postgres;
mod rebinding;
mod release_phase;
mod router;
mod run;
mod rust_offline;
mod samples;
mod sandbox;
mod slugs;
mod support;
