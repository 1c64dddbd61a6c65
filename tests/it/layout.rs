//! The house's rules, checked on the sources: no file in `src/` (tests aside) over 700 lines, and no two files
//! that import each other (a parent module and its children aside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::*;

/// Every `.rs` file under `src/` but the test files: its module path (`dyno/manager`) and its text.
fn sources() -> BTreeMap<Vec<String>, String> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = repo().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs"))
        .map(|path| {
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            let mut module: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            (module, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

#[test]
fn no_file_passes_700_lines() {
    for (module, text) in sources() {
        // Inline unit tests do not count.
        let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap();
        let lines = code.lines().count();
        assert!(lines <= 700, "src/{} has {lines} lines", module.join("/"));
    }
}

#[test]
fn no_two_files_import_each_other() {
    let sources = sources();
    let modules: BTreeSet<&Vec<String>> = sources.keys().collect();
    // The longest known module a path starts with.
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|candidate| modules.contains(candidate))
    };
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, text) in &sources {
        let code: String = text
            .split("#[cfg(test)]\nmod tests {")
            .next()
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let deps = edges.entry(module.clone()).or_default();
        for (start, _) in code
            .match_indices("crate::")
            .chain(code.match_indices("super::"))
        {
            // Only whole words: `crate::a::b`, `super::a`.
            if start > 0 && code[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let (base, rest) = if code[start..].starts_with("crate::") {
                (Vec::new(), &code[start + 7..])
            } else {
                (
                    module[..module.len().saturating_sub(1)].to_vec(),
                    &code[start + 7..],
                )
            };
            let mut path = base;
            for segment in rest.split("::") {
                let word: String = segment
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if word.is_empty() {
                    break;
                }
                path.push(word.clone());
                if word.len() != segment.len() {
                    break;
                }
            }
            if let Some(target) = resolve(&path).filter(|t| t != module) {
                deps.insert(target);
            }
        }
    }
    let mut cycles = Vec::new();
    for (a, deps) in &edges {
        for b in deps {
            let related = a.starts_with(b) || b.starts_with(a);
            if a < b && !related && edges.get(b).is_some_and(|d| d.contains(a)) {
                cycles.push(format!("src/{} <-> src/{}", a.join("/"), b.join("/")));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files that import each other:\n{}",
        cycles.join("\n")
    );
}
