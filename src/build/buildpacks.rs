//! The built-in buildpacks, compiled into the binary so an installed `wasmdyno` needs no checkout beside it.
//! They are written out into each build's work directory before they run.

use std::path::{Path, PathBuf};

use super::{BuildError, Buildpack, io};

macro_rules! buildpack {
    ($name:literal) => {
        (
            $name,
            [
                (
                    "detect",
                    include_str!(concat!("../../buildpacks/", $name, "/bin/detect")),
                ),
                (
                    "compile",
                    include_str!(concat!("../../buildpacks/", $name, "/bin/compile")),
                ),
                (
                    "release",
                    include_str!(concat!("../../buildpacks/", $name, "/bin/release")),
                ),
            ],
        )
    };
}

/// Detection order: language buildpacks first, so a Rust or Go app with a stray `.wasm` is built from source.
const BUILTIN: [(&str, [(&str, &str); 3]); 4] = [
    buildpack!("rust"),
    buildpack!("go"),
    buildpack!("c"),
    buildpack!("wasm"),
];

/// Names of the built-in buildpacks, in detection order.
pub const BUILTIN_NAMES: [&str; 4] = [BUILTIN[0].0, BUILTIN[1].0, BUILTIN[2].0, BUILTIN[3].0];

fn write(work: &Path, name: &str, scripts: &[(&str, &str); 3]) -> Result<Buildpack, BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = work.join("buildpacks").join(name);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(io("cannot write buildpacks"))?;
    for (step, text) in scripts {
        let path = bin.join(step);
        std::fs::write(&path, text).map_err(io("cannot write buildpacks"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io("cannot write buildpacks"))?;
    }
    Ok(Buildpack {
        label: name.to_string(),
        dir,
    })
}

/// All built-in buildpacks, in detection order.
pub(super) fn materialize_all(work: &Path) -> Result<Vec<Buildpack>, BuildError> {
    BUILTIN
        .iter()
        .map(|(name, scripts)| write(work, name, scripts))
        .collect()
}

/// A buildpack named by the user: a built-in name or a directory holding `bin/{detect,compile,release}`.
pub(super) fn resolve(name: &str, work: &Path) -> Result<Buildpack, BuildError> {
    if let Some((name, scripts)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        return write(work, name, scripts);
    }
    let dir = PathBuf::from(name);
    let complete = ["detect", "compile", "release"]
        .iter()
        .all(|step| dir.join("bin").join(step).is_file());
    if !complete {
        return Err(BuildError::UnknownBuildpack(name.to_string()));
    }
    let dir = dir
        .canonicalize()
        .map_err(io(format!("cannot resolve buildpack {name}")))?;
    Ok(Buildpack {
        label: name.to_string(),
        dir,
    })
}
