//! Packing an app directory into a slug: its files walked, links kept inside the app, and the tar written with
//! the manifest first.

#[allow(unused_imports)]
use super::*;

/// What goes into a slug besides the files: the manifest's other fields.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
/// use wasmdyno::slug::PackOptions;
///
/// let options = PackOptions {
///     process_types: [("web".to_string(), "hello.wasm --port ${PORT}".to_string())].into(),
///     config_vars: [("GREETING".to_string(), "hi".to_string())].into(),
///     buildpack: "wasm".into(),
///     commit: Some("3f2a9c1".into()),
/// };
/// let packed = wasmdyno::slug::pack(app.path(), options)?;
/// assert_eq!(packed.manifest.config_vars["GREETING"], "hi");
/// assert_eq!(packed.manifest.commit.as_deref(), Some("3f2a9c1"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Process type → command (the Procfile's).
    pub process_types: BTreeMap<String, String>,
    /// Default config vars; a release's own override them.
    pub config_vars: BTreeMap<String, String>,
    /// Name of the buildpack that built the app.
    pub buildpack: String,
    /// The source commit, if known.
    pub commit: Option<String>,
}

/// A packed slug, from [`pack`]: the archive bytes, their sha256 and the manifest they hold.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
/// use sha2::Digest;
///
/// let packed = wasmdyno::slug::pack(app.path(), Default::default())?;
/// assert_eq!(packed.sha256, hex::encode(sha2::Sha256::digest(&packed.bytes)));
/// assert_eq!(packed.manifest.files["hello.wasm"].size, 8);
/// // Store it as `<sha256>.tar.gz`: the same tree always packs to the same bytes.
/// std::fs::write(app.path().join(format!("{}.tar.gz", packed.sha256)), &packed.bytes)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Packed {
    /// The gzip tar archive.
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`, in hex: the slug's identity.
    pub sha256: String,
    /// The manifest the archive holds.
    pub manifest: Manifest,
}

/// Packs the directory `app_dir` into a deterministic slug: the same tree and options always give the same bytes.
///
/// Symbolic links are kept as links and must stay inside the app; other special files and `.wat` sources are
/// refused (slugs hold compiled `.wasm` only).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use wasmdyno::{slug::PackOptions, Slug, SlugError};
///
/// let app = tempfile::tempdir()?;
/// std::fs::create_dir(app.path().join("bin"))?;
/// std::fs::write(app.path().join("bin/hello.wasm"), b"\0asm\x01\0\0\0")?;
/// let options = PackOptions {
///     process_types: [("web".to_string(), "bin/hello.wasm".to_string())].into(),
///     ..Default::default()
/// };
/// let packed = wasmdyno::slug::pack(app.path(), options.clone())?;
/// assert_eq!(packed.bytes, wasmdyno::slug::pack(app.path(), options.clone())?.bytes);
/// let slug = Slug::from_bytes(&packed.bytes, Default::default())?;
/// assert!(slug.file("bin/hello.wasm").is_some());
///
/// std::fs::write(app.path().join("hello.wat"), "(module)")?;
/// let err = wasmdyno::slug::pack(app.path(), options).unwrap_err();
/// assert!(matches!(err, SlugError::Pack { .. }), "{err}");
/// # Ok(()) }
/// ```
pub fn pack(app_dir: &Path, options: PackOptions) -> Result<Packed, SlugError> {
    let mut tree = Vec::new();
    walk(app_dir, "", &mut tree)?;

    let mut manifest = Manifest {
        format: FORMAT,
        process_types: options.process_types,
        config_vars: options.config_vars,
        buildpack: options.buildpack,
        size: 0,
        commit: options.commit,
        files: BTreeMap::new(),
        links: BTreeMap::new(),
    };
    for node in &tree {
        match &node.kind {
            NodeKind::File { data, executable } => {
                manifest.size += data.len() as u64;
                manifest.files.insert(
                    node.rel.clone(),
                    FileEntry {
                        sha256: hex::encode(Sha256::digest(data)),
                        size: data.len() as u64,
                        executable: *executable,
                    },
                );
            }
            NodeKind::Link(target) => {
                manifest.links.insert(node.rel.clone(), target.clone());
            }
            NodeKind::Dir => {}
        }
    }

    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    builder.mode(tar::HeaderMode::Deterministic);
    let io = |source| SlugError::Io {
        path: app_dir.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    append(
        &mut builder,
        ".wasmdyno/",
        tar::EntryType::Directory,
        0o755,
        &[],
        None,
    )
    .map_err(io)?;
    append(
        &mut builder,
        MANIFEST_PATH,
        tar::EntryType::Regular,
        0o644,
        &json,
        None,
    )
    .map_err(io)?;
    append(
        &mut builder,
        "app/",
        tar::EntryType::Directory,
        0o755,
        &[],
        None,
    )
    .map_err(io)?;
    for node in &tree {
        let path = format!("app/{}", node.rel);
        match &node.kind {
            NodeKind::Dir => append(
                &mut builder,
                &format!("{path}/"),
                tar::EntryType::Directory,
                0o755,
                &[],
                None,
            ),
            NodeKind::File { data, executable } => {
                let mode = if *executable { 0o755 } else { 0o644 };
                append(
                    &mut builder,
                    &path,
                    tar::EntryType::Regular,
                    mode,
                    data,
                    None,
                )
            }
            NodeKind::Link(target) => append(
                &mut builder,
                &path,
                tar::EntryType::Symlink,
                0o777,
                &[],
                Some(target),
            ),
        }
        .map_err(io)?;
    }
    let bytes = builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .map_err(io)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Packed {
        bytes,
        sha256,
        manifest,
    })
}

pub(super) fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
    link: Option<&str>,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(data.len() as u64);
    match link {
        Some(target) => builder.append_link(&mut header, path, target),
        None => builder.append_data(&mut header, path, data),
    }
}

pub(super) struct Node {
    pub(super) rel: String,
    pub(super) kind: NodeKind,
}

pub(super) enum NodeKind {
    Dir,
    File { data: Vec<u8>, executable: bool },
    Link(String),
}

pub(super) fn walk(dir: &Path, prefix: &str, out: &mut Vec<Node>) -> Result<(), SlugError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SlugError::Io { path, source }
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| SlugError::Pack {
                path: path.clone(),
                reason: format!("file name {n:?} is not UTF-8"),
            })?;
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            out.push(Node {
                rel: rel.clone(),
                kind: NodeKind::Dir,
            });
            walk(&path, &rel, out)?;
        } else if kind.is_file() {
            if name.ends_with(".wat") {
                return Err(SlugError::Pack {
                    path,
                    reason: "slugs hold compiled .wasm, never .wat sources (the wasm buildpack compiles .wat files)"
                        .into(),
                });
            }
            let data = std::fs::read(&path).map_err(io(&path))?;
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            out.push(Node {
                rel,
                kind: NodeKind::File { data, executable },
            });
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io(&path))?;
            let target = target
                .to_str()
                .map(str::to_string)
                .ok_or_else(|| SlugError::Pack {
                    path: path.clone(),
                    reason: "link target is not UTF-8".into(),
                })?;
            if resolve_link(&rel, &target).is_none() {
                return Err(SlugError::Pack {
                    path,
                    reason: format!("symbolic link to {target:?} points outside the app"),
                });
            }
            out.push(Node {
                rel,
                kind: NodeKind::Link(target),
            });
        } else {
            return Err(SlugError::Pack {
                path,
                reason: "only regular files, directories and symbolic links can go into a slug"
                    .into(),
            });
        }
    }
    Ok(())
}
