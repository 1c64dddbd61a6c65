//! The module a command names in a slug (`app`, `app.wasm`, `./bin/app.wasm`, `/app/app.wasm`, `app.wat`).

#[allow(unused_imports)]
use super::*;

/// Finds the module a command's first word names: `app.wasm`, `./bin/app.wasm`, `/app/app.wasm`, `app`
/// (for `app.wasm`), or `app.wat` (built to `app.wasm`). Returns the module's path in the slug and its bytes.
/// `bash` and `sh` name wasmdyno's built-in shell when the slug has no module of that name.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let app = tempfile::tempdir()?;
/// # std::fs::write(app.path().join("hello.wasm"), b"\0asm\x01\0\0\0")?;
/// # let options = wasmdyno::slug::PackOptions {
/// #     process_types: [("web".to_string(), "hello.wasm".to_string())].into(),
/// #     ..Default::default()
/// # };
/// # let packed = wasmdyno::slug::pack(app.path(), options)?;
/// let slug = wasmdyno::Slug::from_bytes(&packed.bytes, Default::default())?;
/// for word in ["hello", "hello.wasm", "hello.wat", "/app/hello.wasm"] {
///     let (path, _wasm) = wasmdyno::runtime::resolve_module(&slug, word)?;
///     assert_eq!(path, "hello.wasm");
/// }
/// assert!(wasmdyno::runtime::resolve_module(&slug, "other").is_err());
/// # Ok(()) }
/// ```
pub fn resolve_module(slug: &Slug, word: &str) -> Result<(String, Arc<[u8]>), RuntimeError> {
    let trimmed = word
        .strip_prefix("/app/")
        .unwrap_or(word)
        .trim_start_matches('/');
    let mut candidates = vec![trimmed.to_string()];
    if let Some(stem) = trimmed.strip_suffix(".wat") {
        candidates.push(format!("{stem}.wasm"));
    } else if !trimmed.ends_with(".wasm") {
        candidates.push(format!("{trimmed}.wasm"));
    }
    for candidate in candidates {
        if let Some(path) = crate::slug::normalize(&candidate)
            && let Some(bytes) = slug.file(&path)
            && is_component(&bytes).is_ok()
        {
            return Ok((path, bytes));
        }
    }
    if super::shell::is_shell_word(word) {
        return super::shell::builtin(word);
    }
    let available = slug
        .manifest()
        .files
        .keys()
        .filter(|p| p.ends_with(".wasm"))
        .cloned()
        .collect();
    Err(RuntimeError::NoSuchModule {
        word: word.to_string(),
        available,
    })
}
