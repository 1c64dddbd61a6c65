//! The built-in buildpacks, compiled into the binary so an installed `wasmdyno` needs no checkout beside it.
//! They are written out into each build's work directory before they run.

use std::path::{Path, PathBuf};

use super::{BuildError, Buildpack, io};

/// A built-in buildpack: its name and its files (path within the buildpack, text). Files under `bin/` are
/// executable; others (a buildpack's `lib/`) are read by its scripts, next to them.
type Builtin = (&'static str, &'static [(&'static str, &'static str)]);

macro_rules! buildpack {
    ($name:literal $(, $extra:literal)*) => {
        (
            $name,
            &[
                ("bin/detect", include_str!(concat!("../../buildpacks/", $name, "/bin/detect"))),
                ("bin/compile", include_str!(concat!("../../buildpacks/", $name, "/bin/compile"))),
                ("bin/release", include_str!(concat!("../../buildpacks/", $name, "/bin/release"))),
                $(($extra, include_str!(concat!("../../buildpacks/", $name, "/", $extra))),)*
            ],
        )
    };
}

/// Detection order: language buildpacks first, so a Rust or Go app with a stray `.wasm` is built from source; Python
/// before Node.js, so a Python app with a `package.json` for its assets stays a Python app.
const BUILTIN: [Builtin; 6] = [
    buildpack!("rust"),
    buildpack!("go", "lib/preinit_main.go", "lib/preinit_runtime.go"),
    buildpack!(
        "python",
        "lib/plan.py",
        "lib/fetch_wit.py",
        "lib/export_stdlib.py",
        "lib/wasmdyno_wsgi.py",
        "lib/wasmdyno_cli.py",
        "lib/wasmdyno_python.py"
    ),
    buildpack!("nodejs", "lib/adapter.js", "lib/build.mjs"),
    buildpack!("c"),
    buildpack!("wasm"),
];

/// Names of the built-in buildpacks, in detection order.
pub const BUILTIN_NAMES: [&str; 6] = [
    BUILTIN[0].0,
    BUILTIN[1].0,
    BUILTIN[2].0,
    BUILTIN[3].0,
    BUILTIN[4].0,
    BUILTIN[5].0,
];

fn write(work: &Path, name: &str, files: &[(&str, &str)]) -> Result<Buildpack, BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = work.join("buildpacks").join(name);
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot write buildpacks"))?;
        }
        std::fs::write(&path, text).map_err(io("cannot write buildpacks"))?;
        let mode = if file.starts_with("bin/") {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
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
        .map(|(name, files)| write(work, name, files))
        .collect()
}

/// A buildpack named by the user: a built-in name or a directory holding `bin/{detect,compile,release}`.
pub(super) fn resolve(name: &str, work: &Path) -> Result<Buildpack, BuildError> {
    if let Some((name, files)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        return write(work, name, files);
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
