//! The house's rules, checked on the sources: no file in `src/` (tests aside) over 700 lines, and no files that
//! import each other, directly or around a longer cycle (a module and its ancestors aside).

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
fn no_files_import_each_other_around_a_cycle() {
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
    // Edges between a module and its ancestors (`super::*`, the parent's re-exports) are the module tree itself.
    for (module, deps) in edges.iter_mut() {
        deps.retain(|d| !(module.starts_with(d) || d.starts_with(module)));
    }
    let cycles = find_cycles(&edges);
    assert!(
        cycles.is_empty(),
        "files that import each other, around a cycle:\n{}",
        cycles.join("\n")
    );
}

/// Every import cycle (of any length) in `edges`, one per strongly connected group of modules, as
/// `src/a -> src/b -> src/a`.
fn find_cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    type Module = Vec<String>;
    let name = |m: &Module| format!("src/{}", m.join("/"));
    let mut cycles = Vec::new();
    let mut done: BTreeSet<&Module> = BTreeSet::new();
    for start in edges.keys() {
        // A depth-first walk from `start` with its current path: an edge back onto the path closes a cycle.
        let mut path: Vec<(&Module, Vec<&Module>)> = vec![(start, edges[start].iter().collect())];
        let mut on_path: BTreeSet<&Module> = BTreeSet::from([start]);
        while let Some((module, next)) = path.last_mut() {
            let module: &Module = module;
            match next.pop() {
                Some(dep) if on_path.contains(dep) => {
                    let from = path.iter().position(|(m, _)| *m == dep).unwrap();
                    let mut ring: Vec<String> = path[from..].iter().map(|(m, _)| name(m)).collect();
                    ring.push(name(dep));
                    cycles.push(ring.join(" -> "));
                    // One cycle is enough to name the problem; the walk stops here.
                    return cycles;
                }
                Some(dep) if !done.contains(dep) => {
                    on_path.insert(dep);
                    let deps = edges
                        .get(dep)
                        .map(|d| d.iter().collect())
                        .unwrap_or_default();
                    path.push((dep, deps));
                }
                Some(_) => {}
                None => {
                    done.insert(module);
                    on_path.remove(module);
                    path.pop();
                }
            }
        }
    }
    cycles
}

#[test]
fn a_cycle_of_three_files_is_found() {
    let m = |s: &str| vec![s.to_string()];
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    edges.entry(m("a")).or_default().insert(m("b"));
    edges.entry(m("b")).or_default().insert(m("c"));
    edges.entry(m("c")).or_default().insert(m("d"));
    assert!(find_cycles(&edges).is_empty());
    edges.entry(m("c")).or_default().insert(m("a"));
    assert_eq!(find_cycles(&edges), ["src/a -> src/b -> src/c -> src/a"]);
}
