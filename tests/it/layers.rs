//! The rings of `src/` (ARCHITECTURE.md, "Rings"), checked by reading the
//! source: every `crate::…` path names the ring and the module it reaches,
//! and an edge the rules forbid fails with the file and the edge.
//!
//! - `domain` uses nothing of Porter but itself;
//! - `platform` uses the domain and other platform modules, without cycles;
//! - a feature (`features/<capability>`) uses the domain, the platform and
//!   another feature's use case, never its adapters (`http`, `cli`, `job`),
//!   and the features use each other without cycles;
//! - `shell` uses anything; nothing else uses the shell.
//!
//! A file outside the four rings fails too, so nobody adds a room without
//! deciding which ring it is in.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The rings, innermost first; a ring may use only itself and those before it.
const RINGS: &[&str] = &["domain", "platform", "features", "shell"];

/// A feature's adapters: how HTTP, the command line and the worker's jobs
/// reach its use case. Another feature may not use them.
const ADAPTERS: &[&str] = &["http", "cli", "job"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The source without comments, so docs that mention a module are no edge.
fn code_of(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |end| &after[end..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
        } else {
            let c = rest.chars().next().expect("not empty");
            code.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    code
}

/// Every path after `crate::`, as its segments, with `{a::b, c::{d, e}}`
/// groups expanded into `a::b`, `c::d` and `c::e`.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        rest = &rest[at + "crate::".len()..];
        if !preceded_by_ident {
            tree(rest, Vec::new(), &mut found);
        }
    }
    found
}

/// Reads the use tree at the start of `text` under `prefix` into `found`;
/// returns what follows it.
fn tree<'a>(mut text: &'a str, mut prefix: Vec<String>, found: &mut Vec<Vec<String>>) -> &'a str {
    loop {
        text = text.trim_start();
        if let Some(group) = text.strip_prefix('{') {
            text = group;
            loop {
                text = text.trim_start().trim_start_matches(',').trim_start();
                if let Some(after) = text.strip_prefix('}') {
                    return after;
                }
                if text.is_empty() {
                    return text;
                }
                text = tree(text, prefix.clone(), found);
            }
        }
        let name: String = text
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        text = &text[name.len()..];
        if !name.is_empty() && name != "self" {
            prefix.push(name);
        }
        match text.strip_prefix("::") {
            Some(after) => text = after,
            None => {
                if !prefix.is_empty() {
                    found.push(prefix);
                }
                return text;
            }
        }
    }
}

/// Where a file is: its ring and, for `platform` and `features`, the module
/// or capability in it (`features/sign_in/http.rs` is `features`,
/// `sign_in`).
fn place_of(file: &Path) -> Option<(String, String)> {
    let relative = file.strip_prefix(src()).ok()?;
    let mut parts = relative.components().map(|c| {
        c.as_os_str()
            .to_str()
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_owned()
    });
    let ring = parts.next()?;
    let unit = parts.next().unwrap_or_default();
    Some((ring, unit))
}

/// Why `from` (ring, unit) may not use `path`, if it may not.
fn refusal(from: &(String, String), path: &[String]) -> Option<String> {
    let ring_of = |name: &str| RINGS.iter().position(|r| *r == name);
    let (Some(from_ring), Some(to)) = (ring_of(&from.0), path.first()) else {
        return None;
    };
    let Some(to_ring) = ring_of(to) else {
        return Some(format!("crate::{to} is in no ring"));
    };
    if to_ring > from_ring {
        return Some(format!("{} may not use {to}", from.0));
    }
    let other_unit = path.get(1).filter(|unit| **unit != from.1);
    if from.0 == "features"
        && to == "features"
        && let (Some(unit), Some(adapter)) = (other_unit, path.get(2))
        && ADAPTERS.contains(&adapter.as_str())
    {
        return Some(format!(
            "a feature may use another's use case, not its adapter features::{unit}::{adapter}"
        ));
    }
    None
}

fn display(file: &Path) -> String {
    file.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or(file)
        .display()
        .to_string()
}

#[test]
fn every_path_stays_in_its_ring_or_goes_inward() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = place_of(file) else { continue };
        if matches!(from.0.as_str(), "lib" | "main") {
            continue;
        }
        if !RINGS.contains(&from.0.as_str()) {
            violations.push(format!("{}: outside the rings {RINGS:?}", display(file)));
            continue;
        }
        let code = code_of(&std::fs::read_to_string(file).expect("read source"));
        for path in crate_paths(&code) {
            if let Some(why) = refusal(&from, &path) {
                violations.push(format!(
                    "{}: crate::{}: {why}",
                    display(file),
                    path.join("::")
                ));
            }
            if let [ring, unit, ..] = path.as_slice() {
                let within = *ring == from.0 && *unit != from.1;
                if within && matches!(ring.as_str(), "platform" | "features") {
                    edges
                        .entry(format!("{ring}::{}", from.1))
                        .or_default()
                        .insert(format!("{ring}::{unit}"));
                }
            }
        }
    }
    for cycle in cycles(&edges) {
        violations.push(format!(
            "modules of one ring use each other in a cycle: {cycle}"
        ));
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Each cycle in `edges`, as `a → b → a`.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        found: &mut Vec<String>,
    ) {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            found.push(cycle.join(" → "));
            return;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, found);
        }
        path.pop();
    }
    let mut found = Vec::new();
    for node in edges.keys() {
        visit(node, edges, &mut Vec::new(), &mut found);
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_reader_finds_paths_in_use_groups_and_the_rules_refuse_what_they_say() {
    let code = code_of(
        "use crate::{a::b, c, d::{self, e, f::{g}}};\n// crate::commented\nlet x = crate::h::i();\nfoo_crate::j",
    );
    let found: Vec<String> = crate_paths(&code).iter().map(|p| p.join("::")).collect();
    assert_eq!(found, ["a::b", "c", "d", "d::e", "d::f::g", "h::i"]);
    let at = |ring: &str, unit: &str| (ring.to_owned(), unit.to_owned());
    let path = |p: &str| p.split("::").map(str::to_owned).collect::<Vec<_>>();
    assert!(refusal(&at("domain", "account"), &path("platform::store")).is_some());
    assert!(refusal(&at("platform", "store"), &path("features::admin")).is_some());
    assert!(refusal(&at("features", "admin"), &path("shell::web::ROUTES")).is_some());
    assert!(refusal(&at("features", "admin"), &path("webhooks::manage")).is_some());
    assert!(
        refusal(
            &at("features", "admin"),
            &path("features::webhooks::http::list")
        )
        .is_some()
    );
    assert!(
        refusal(
            &at("features", "admin"),
            &path("features::webhooks::manage::Change")
        )
        .is_none()
    );
    assert!(refusal(&at("features", "admin"), &path("features::admin::http::x")).is_none());
    assert!(refusal(&at("shell", "web"), &path("features::admin::http::x")).is_none());
    let cyclic = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(cycles(&cyclic), ["a → b → a", "b → a → b"]);
}

#[test]
fn only_the_store_has_statements_on_the_log() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let store = src().join("platform").join("store");
    let statement = ["FROM", "INTO", "UPDATE", "JOIN", "TABLE"];
    let tables = ["events", "checkpoints", "unique_claims"];
    let mut violations = Vec::new();
    for file in files.iter().filter(|file| !file.starts_with(&store)) {
        let code = code_of(&std::fs::read_to_string(file).expect("read source"));
        let words: Vec<&str> = code
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|word| !word.is_empty())
            .collect();
        for pair in words.windows(2) {
            if statement.contains(&pair[0]) && tables.contains(&pair[1]) {
                violations.push(format!("{}: `{} {}`", display(file), pair[0], pair[1]));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "statements on the log outside src/platform/store:\n{}",
        violations.join("\n")
    );
}
