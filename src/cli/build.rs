//! `wasmdyno build`: app directory → slug.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use sha2::{Digest, Sha256};

use crate::build::{BuildRequest, Built, build_and_store, human_size};
use crate::runtime::Runtime;
use crate::slug::SlugStore;

/// Build an app into a slug with its buildpack.
///
/// Detects the buildpack (rust, go, python, nodejs, c, wasm) unless one is named, runs it, packs the result into a
/// deterministic slug stored under $WASMDYNO_HOME/slugs, and compiles every process type's module into the
/// compiled-code cache.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The app's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Also write the slug to this file.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// A built-in buildpack (rust, go, python, nodejs, c, wasm) or the path of a buildpack directory.
    #[arg(short, long, value_name = "NAME|PATH", env = "WASMDYNO_BUILDPACK")]
    buildpack: Option<String>,
    /// Config var given to the buildpack (in ENV_DIR); repeatable, or `"A=1;B=2"`.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl BuildArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let env = super::env::parse_env_args(&self.env)?;
        let runtime = super::runtime()?;
        let built = build_app(&self.dir, self.buildpack.as_deref(), env, &runtime)?;
        if let Some(output) = &self.output {
            std::fs::copy(&built.path, output)
                .with_context(|| format!("cannot write the slug to {}", output.display()))?;
        }
        let manifest = built.slug.manifest();
        if self.json {
            let json = serde_json::json!({
                "sha256": built.slug.sha256(),
                "size": built.slug.compressed_size(),
                "unpacked_size": manifest.size,
                "path": built.path,
                "output": self.output,
                "buildpack": manifest.buildpack,
                "process_types": manifest.process_types,
                "config_vars": manifest.config_vars,
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            println!("slug:     {}", built.slug.sha256());
            println!("size:     {}", human_size(built.slug.compressed_size()));
            println!(
                "path:     {}",
                self.output.as_ref().unwrap_or(&built.path).display()
            );
            println!("buildpack: {}", manifest.buildpack);
            println!("process types:");
            if manifest.process_types.is_empty() {
                println!("  (none)");
            }
            for (kind, command) in &manifest.process_types {
                println!("  {kind}: {command}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Builds `dir` (progress on stderr), stores the slug content-addressed, and compiles its process types' modules.
pub(crate) fn build_app(
    dir: &Path,
    buildpack: Option<&str>,
    env: BTreeMap<String, String>,
    runtime: &Runtime,
) -> anyhow::Result<Built> {
    let home = super::home_dir();
    super::private_home(&home)?;
    let source = dir
        .canonicalize()
        .with_context(|| format!("cannot build {}: no such directory", dir.display()))?;
    // One build cache per app directory, kept across builds.
    let app_key = hex::encode(&Sha256::digest(source.as_os_str().as_encoded_bytes())[..8]);
    let mut request = BuildRequest::new(&source, home.join("build-cache").join(app_key));
    request.buildpack = buildpack.map(str::to_string);
    request.env = env;
    request.work_dir = Some(home.join("tmp"));
    request.wasmdyno_bin = std::env::current_exe().ok();
    request.sandbox = super::build_sandbox()?;
    let slugs = SlugStore::new(home.join("slugs"));
    build_and_store(
        &request,
        runtime,
        &slugs,
        super::slug_limits()?,
        &mut |line| eprintln!("{line}"),
    )
    .with_context(|| format!("build of {} failed", dir.display()))
}
