//! Reading a slug: its tar entries checked one by one (paths, links, types, sizes against the limits), then the
//! whole against its manifest.

#[allow(unused_imports)]
use super::*;

/// Normalises a relative path inside the app (`./a//b` → `a/b`); `None` if it would leave the app.
pub(crate) fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Resolves a link target relative to the link's directory, refusing absolute targets and escapes.
pub(super) fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.is_empty() {
        return None;
    }
    let dir = link.rsplit_once('/').map_or("", |(d, _)| d);
    let joined = if dir.is_empty() {
        target.to_string()
    } else {
        format!("{dir}/{target}")
    };
    normalize(&joined).filter(|p| !p.is_empty())
}

pub(super) type Entries = (
    Option<Manifest>,
    BTreeMap<String, Arc<[u8]>>,
    BTreeMap<String, String>,
);

pub(super) fn read_entries(bytes: &[u8], limits: Limits) -> Result<Entries, SlugError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut manifest = None;
    let mut files: BTreeMap<String, Arc<[u8]>> = BTreeMap::new();
    let mut links = BTreeMap::new();
    let mut unpacked: u64 = 0;
    for entry in archive.entries().map_err(SlugError::Archive)? {
        let mut entry = entry.map_err(SlugError::Archive)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw)
            .map_err(|e| bad(&String::from_utf8_lossy(e.as_bytes()), "path is not UTF-8"))?;
        let kind = entry.header().entry_type();
        if name.starts_with('/') {
            return Err(bad(&name, "absolute paths are not allowed"));
        }
        if name.split('/').any(|c| c == "..") {
            return Err(bad(&name, "`..` would escape the slug"));
        }
        let trimmed = name.trim_end_matches('/');
        if trimmed == ".wasmdyno" && kind.is_dir() {
            continue;
        }
        if trimmed == MANIFEST_PATH {
            if !kind.is_file() {
                return Err(bad(&name, "the manifest must be a regular file"));
            }
            let mut text = Vec::new();
            (&mut entry)
                .take(16 * 1024 * 1024)
                .read_to_end(&mut text)
                .map_err(SlugError::Archive)?;
            let parsed: Manifest =
                serde_json::from_slice(&text).map_err(|e| SlugError::BadManifest(e.to_string()))?;
            if parsed.format != FORMAT {
                return Err(SlugError::BadManifest(format!(
                    "format {} is not supported (this wasmdyno reads format {FORMAT})",
                    parsed.format
                )));
            }
            manifest = Some(parsed);
            continue;
        }
        if trimmed == "app" && kind.is_dir() {
            continue;
        }
        let Some(rel) = trimmed.strip_prefix("app/") else {
            return Err(bad(&name, "everything in a slug lives under app/"));
        };
        let rel = normalize(rel)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| bad(&name, "path escapes app/"))?;
        match kind {
            tar::EntryType::Directory => {}
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(SlugError::Archive)?;
                unpacked = unpacked.saturating_add(size);
                if unpacked > limits.max_unpacked {
                    return Err(SlugError::UnpackedTooLarge {
                        limit: limits.max_unpacked,
                    });
                }
                let mut data = Vec::with_capacity(size as usize);
                (&mut entry)
                    .take(size)
                    .read_to_end(&mut data)
                    .map_err(SlugError::Archive)?;
                if files.insert(rel, data.into()).is_some() {
                    return Err(bad(&name, "appears twice"));
                }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(SlugError::Archive)?
                    .ok_or_else(|| bad(&name, "symbolic link without a target"))?;
                let target = target.to_string_lossy().into_owned();
                if resolve_link(&rel, &target).is_none() {
                    return Err(bad(
                        &name,
                        format!("symbolic link to {target:?} points outside app/"),
                    ));
                }
                links.insert(rel, target);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(SlugError::Archive)?
                    .ok_or_else(|| bad(&name, "hard link without a target"))?;
                let target = target.to_string_lossy().into_owned();
                let inside = target
                    .strip_prefix("app/")
                    .and_then(normalize)
                    .and_then(|t| files.get(&t).cloned());
                let data = inside.ok_or_else(|| {
                    bad(
                        &name,
                        format!(
                            "hard link to {target:?} points outside app/ or to no earlier file"
                        ),
                    )
                })?;
                files.insert(rel, data);
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(bad(&name, "device files are not allowed"));
            }
            tar::EntryType::Fifo => return Err(bad(&name, "FIFOs are not allowed")),
            other => return Err(bad(&name, format!("entry type {other:?} is not allowed"))),
        }
    }
    Ok((manifest, files, links))
}

pub(super) fn verify(
    manifest: &Manifest,
    files: &BTreeMap<String, Arc<[u8]>>,
    links: &BTreeMap<String, String>,
) -> Result<(), SlugError> {
    for (path, data) in files {
        let Some(expected) = manifest.files.get(path) else {
            return Err(SlugError::Mismatch(format!(
                "app/{path} is not listed in the manifest"
            )));
        };
        if expected.size != data.len() as u64
            || hex::encode(Sha256::digest(data)) != expected.sha256
        {
            return Err(SlugError::Mismatch(format!(
                "app/{path} does not match its sha256 in the manifest (corrupted or altered)"
            )));
        }
    }
    if let Some(missing) = manifest.files.keys().find(|p| !files.contains_key(*p)) {
        return Err(SlugError::Mismatch(format!(
            "app/{missing} is listed in the manifest but missing"
        )));
    }
    if links != &manifest.links {
        return Err(SlugError::Mismatch(
            "symbolic links differ from the manifest".into(),
        ));
    }
    let size: u64 = manifest.files.values().map(|f| f.size).sum();
    if size != manifest.size {
        return Err(SlugError::Mismatch(format!(
            "manifest size {} is not the sum of its files ({size})",
            manifest.size
        )));
    }
    for (name, command) in &manifest.process_types {
        if !crate::procfile::is_valid_type(name) {
            return Err(SlugError::BadManifest(format!(
                "process type {name:?} is not a valid name"
            )));
        }
        crate::procfile::Command::parse(command)
            .map_err(|e| SlugError::BadManifest(format!("process type {name:?}: {e}")))?;
    }
    Ok(())
}
