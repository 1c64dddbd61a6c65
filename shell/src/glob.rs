//! `*` and `?` in unquoted words, matched against the filesystem (`ls *.wasm`); only a path's last component may
//! hold them.

use std::fs;

pub fn escape_glob(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('*', "\\*")
        .replace('?', "\\?")
}

/// The paths `pattern` matches; only its last component may hold `*` and `?`.
pub fn glob(pattern: &str) -> Vec<String> {
    let (dir, name) = match pattern.rfind('/') {
        Some(i) => (&pattern[..=i], &pattern[i + 1..]),
        None => ("", pattern),
    };
    if dir.contains(['*', '?']) && !dir.contains('\\') {
        return vec![];
    }
    let plain_dir = dir.replace('\\', "");
    let Ok(entries) = fs::read_dir(if plain_dir.is_empty() {
        "."
    } else {
        &plain_dir
    }) else {
        return vec![];
    };
    let pattern: Vec<char> = name.chars().collect();
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') || name.starts_with('.'))
        .filter(|n| wildcard(&pattern, &n.chars().collect::<Vec<_>>()))
        .map(|n| format!("{plain_dir}{n}"))
        .collect();
    found.sort();
    found
}

/// `*` and `?` (with `\` escaping either) against `name`.
fn wildcard(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|skip| wildcard(rest, &name[skip..])),
        Some(('?', rest)) => !name.is_empty() && wildcard(rest, &name[1..]),
        Some(('\\', rest)) if !rest.is_empty() => {
            name.first() == Some(&rest[0]) && wildcard(&rest[1..], &name[1..])
        }
        Some((c, rest)) => name.first() == Some(c) && wildcard(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let p = |s: &str| s.chars().collect::<Vec<_>>();
        assert!(wildcard(&p("*.wasm"), &p("app.wasm")));
        assert!(!wildcard(&p("*.wasm"), &p("app.wat")));
        assert!(wildcard(&p("a?c"), &p("abc")));
        assert!(!wildcard(&p("a\\*c"), &p("abc")));
        assert!(wildcard(&p("a\\*c"), &p("a*c")));
    }
}
