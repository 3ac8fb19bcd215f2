//! The layering of `src/` (docs/architecture.md): every top-level module has a floor, and a
//! module may only import from floors below its own. Also: no two files import each other,
//! directly or through others (a parent module and its own children excepted, since Rust
//! modules declare their children and children may use their parent's items).
//!
//! Run alone with `cargo test --test it architecture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the ground up. A module may import only from a lower floor.
const FLOORS: &[(&str, u8)] = &[
    ("contract", 0),
    ("error", 1),
    ("proc", 1),
    ("http_client", 1),
    ("inflight", 1),
    ("traces", 1),
    ("ui", 2),
    ("lock", 2),
    ("config", 3),
    ("schedule", 4),
    ("fuse", 5),
    ("platform", 6),
    ("optimize", 6),
    ("plan", 7),
    ("apply", 8),
    ("status", 8),
    ("workspace", 9),
    ("serve", 10),
    ("cli", 11),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/` except test files, as module paths (`fuse::merge`) → text.
fn files() -> BTreeMap<Vec<String>, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(src()) {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let rel = path.strip_prefix(src()).unwrap();
        let stem = rel.file_stem().unwrap().to_string_lossy().into_owned();
        if stem == "tests" || stem.ends_with("_tests") || stem == "testing" || stem == "memory" {
            continue;
        }
        let mut module: Vec<String> = rel
            .parent()
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if stem != "mod" && stem != "lib" && stem != "main" {
            module.push(stem);
        }
        let text = std::fs::read_to_string(path).unwrap();
        // Leave out inline test modules: everything from `#[cfg(test)]\nmod tests {` on.
        let text = match text.find("#[cfg(test)]\nmod tests {") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        out.insert(module, text);
    }
    out
}

/// The module paths a file refers to through `crate::…`, `super::…` and `self::…`, each
/// resolved to the deepest module that exists.
fn references(
    module: &[String],
    text: &str,
    known: &BTreeSet<Vec<String>>,
) -> BTreeSet<Vec<String>> {
    let mut refs = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (start, _) in line.match_indices("crate::") {
            refs.insert(resolve(Vec::new(), &line[start + 7..], known));
        }
        for (start, _) in line.match_indices("super::") {
            if start > 0 && line[..start].ends_with("::") {
                continue;
            }
            // A `mod.rs` file is its directory's module; `super` is its parent.
            let mut base = module.to_vec();
            base.pop();
            refs.insert(resolve(base, &line[start + 7..], known));
        }
        for (start, _) in line.match_indices("self::") {
            if start > 0 && line[..start].ends_with("::") {
                continue;
            }
            refs.insert(resolve(module.to_vec(), &line[start + 6..], known));
        }
    }
    refs.remove(module);
    refs
}

/// `base` extended by the leading identifiers of `rest` as far as they name known modules.
fn resolve(mut base: Vec<String>, rest: &str, known: &BTreeSet<Vec<String>>) -> Vec<String> {
    for part in rest.split("::") {
        let ident: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        let mut next = base.clone();
        next.push(ident.clone());
        if known.contains(&next) {
            base = next;
        } else {
            break;
        }
        if part.len() != ident.len() {
            break;
        }
    }
    base
}

fn floor(module: &[String]) -> Option<u8> {
    let top = module.first()?;
    FLOORS
        .iter()
        .find(|(name, _)| name == top)
        .map(|(_, floor)| *floor)
}

#[test]
fn every_module_has_a_floor_and_imports_only_point_down() {
    let files = files();
    let known: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut problems = Vec::new();
    for (module, text) in &files {
        if module.is_empty() {
            continue; // lib.rs / main.rs: the roof
        }
        let Some(own) = floor(module) else {
            problems.push(format!(
                "`{}` has no floor in FLOORS (tests/it/architecture.rs)",
                module[0]
            ));
            continue;
        };
        for target in references(module, text, &known) {
            if target.first() == module.first() || target.is_empty() {
                continue;
            }
            match floor(&target) {
                Some(to) if to < own => {}
                _ => problems.push(format!(
                    "`{}` (floor {own}) imports `{}` (floor {:?}): imports must point down",
                    module.join("::"),
                    target.join("::"),
                    floor(&target)
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_two_files_import_each_other_even_through_others() {
    // Depth-first search for a back edge; report the first circle found.
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut circle = stack[i..].to_vec();
            circle.push(node.clone());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, stack, done) {
                return Some(circle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let files = files();
    let known: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let is_ancestor = |a: &[String], b: &[String]| b.len() > a.len() && b.starts_with(a);
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, text) in &files {
        let edges = references(module, text, &known)
            .into_iter()
            .filter(|t| !is_ancestor(t, module) && !is_ancestor(module, t))
            .collect();
        graph.insert(module.clone(), edges);
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(circle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            let names: Vec<String> = circle.iter().map(|m| m.join("::")).collect();
            panic!("import circle: {}", names.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_an_upward_import() {
    // The test above must be able to fail: `config` naming `serve` is an upward import.
    let known: BTreeSet<Vec<String>> = [vec!["config".to_string()], vec!["serve".to_string()]]
        .into_iter()
        .collect();
    let refs = references(
        &["config".to_string()],
        "use crate::serve::Runner;\n",
        &known,
    );
    let target = refs.into_iter().next().unwrap();
    assert!(floor(&target).unwrap() > floor(&["config".to_string()]).unwrap());
}

/// One form for module files and one for unit tests (docs/architecture.md, "Files"): a module
/// with children is a directory with a `mod.rs` (never `x.rs` beside `x/`); a module's unit tests
/// are its child module `tests` (inline, or `tests.rs` in the module's directory), never a file
/// reached through `#[path]` or named `*_tests.rs`.
#[test]
fn modules_and_their_unit_tests_have_one_form() {
    let mut problems = Vec::new();
    for entry in walkdir::WalkDir::new(src()) {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let rel = path.strip_prefix(src()).unwrap().display().to_string();
        let stem = path.file_stem().unwrap().to_string_lossy();
        if stem != "mod" && stem != "lib" && stem != "main" && path.with_extension("").is_dir() {
            problems.push(format!("{rel}: a module with children is `{stem}/mod.rs`"));
        }
        if stem.ends_with("_tests") {
            problems.push(format!(
                "{rel}: unit tests are a `tests` module (`tests.rs`)"
            ));
        }
        let text = std::fs::read_to_string(path).unwrap();
        if text.lines().any(|l| l.trim_start().starts_with("#[path")) {
            problems.push(format!("{rel}: `#[path]` hides where a module is"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
