//! The whole path from source to a stored slug, shared by `wasmdyno build` and the server's builds: run the
//! buildpack, verify the slug, compile every process type's module into the code cache, store the slug.

use std::path::PathBuf;

use anyhow::Context;

use super::{BuildRequest, human_size};
use crate::runtime::{CacheOutcome, Runtime, resolve_module};
use crate::slug::{Limits, Slug, SlugStore};

/// A built, verified and stored slug.
pub struct Built {
    pub slug: Slug,
    /// Where the slug store keeps it.
    pub path: PathBuf,
}

/// Builds `request`, passing every progress line to `out`, and stores the slug in `slugs`.
///
/// Modules are compiled before the slug is stored, so a slug in the store always runs, and its dynos boot from
/// the code cache.
pub fn build_and_store(
    request: &BuildRequest,
    runtime: &Runtime,
    slugs: &SlugStore,
    limits: Limits,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<Built> {
    let build = super::build(request, out)?;
    let slug = Slug::from_bytes(&build.slug.bytes, limits).context("the built slug is invalid")?;
    out("-----> Compiling modules");
    let mut compiled = std::collections::BTreeSet::new();
    for command in slug.manifest().process_types.values() {
        let command = crate::procfile::Command::parse(command)?;
        let Some(word) = command.module_word() else {
            continue;
        };
        let (path, wasm) = resolve_module(&slug, &word)?;
        if !compiled.insert(path.clone()) {
            continue;
        }
        let (_, outcome) = runtime
            .load(&wasm)
            .with_context(|| format!("{path} is not a valid WebAssembly module"))?;
        match outcome {
            CacheOutcome::Hit(_) => out(&format!("       {path}: already compiled")),
            CacheOutcome::Compiled(_, took) | CacheOutcome::Uncached(took) => out(&format!(
                "       {path}: compiled in {:.2}s",
                took.as_secs_f64()
            )),
        }
    }
    let path = slugs.put(slug.sha256(), &build.slug.bytes)?;
    out(&format!(
        "-----> Slug {} ({})",
        &slug.sha256()[..12],
        human_size(slug.compressed_size())
    ));
    Ok(Built { slug, path })
}
