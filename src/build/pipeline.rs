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
    // Module path → its bytes, and whether only web dynos run it (those may start on baseline code).
    let mut modules: std::collections::BTreeMap<String, (std::sync::Arc<[u8]>, bool)> =
        Default::default();
    for (kind, command) in &slug.manifest().process_types {
        let command = crate::procfile::Command::parse(command)?;
        let Some(word) = command.module_word() else {
            continue;
        };
        let (path, wasm) = resolve_module(&slug, &word)?;
        let web = kind == crate::procfile::WEB_TYPE;
        modules
            .entry(path)
            .and_modify(|(_, web_only)| *web_only &= web)
            .or_insert((wasm, web));
    }
    for (path, (wasm, web_only)) in modules {
        let invalid = || format!("{path} is not a valid WebAssembly module");
        let (outcome, baseline) = if web_only {
            let tiered = runtime.load_tiered(&wasm).with_context(invalid)?;
            (tiered.outcome, tiered.upgrade.is_some())
        } else {
            (runtime.load(&wasm).with_context(invalid)?.1, false)
        };
        let then = if baseline {
            " (baseline code: web dynos start on it while the optimized code is compiled)"
        } else {
            ""
        };
        match outcome {
            CacheOutcome::Hit(_) => out(&format!("       {path}: already compiled{then}")),
            CacheOutcome::Compiled(_, took) | CacheOutcome::Uncached(took) => out(&format!(
                "       {path}: compiled in {:.2}s{then}",
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
