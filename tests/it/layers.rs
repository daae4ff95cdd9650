//! The one-way layering of `src/` (ARCHITECTURE.md, "Layers"), checked by
//! reading the source: every `crate::…` path names the module it reaches,
//! and an edge the rule forbids fails with the file and the edge.
//!
//! A new top-level module must be given a place in [`LAYERS`] before this
//! passes, so nobody adds a room without deciding which floor it is on.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Each top-level module of `src/` and the modules it may use.
const LAYERS: &[(&str, Layer)] = &[
    ("domain", Layer::Domain),
    ("config", Layer::Leaf),
    ("connections", Layer::Leaf),
    ("device_tokens", Layer::Leaf),
    ("metrics", Layer::Leaf),
    ("telemetry", Layer::Leaf),
    ("store", Layer::Store),
    ("commands", Layer::Service),
    ("account_admin", Layer::Service),
    ("api_keys", Layer::Service),
    ("projection", Layer::Service),
    ("public_events", Layer::Service),
    ("queue", Layer::Service),
    ("rate_limit", Layer::Service),
    ("link_keys", Layer::Service),
    ("hashing", Layer::Service),
    ("sessions", Layer::Service),
    ("mail", Layer::Service),
    ("gauges", Layer::Service),
    ("http_server", Layer::Service),
    ("webhooks", Layer::Service),
    ("web", Layer::Process),
    ("worker", Layer::Process),
    ("ops", Layer::Process),
    ("startup", Layer::Assembly),
    ("cli", Layer::Assembly),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    /// Depends on nothing else in the crate.
    Domain,
    /// Anyone may use it; it uses only `domain` and other leaves.
    Leaf,
    /// The event log: only `domain`.
    Store,
    /// Above the store; may use each other, without cycles.
    Service,
    /// `web`, `worker`, `ops`: above the services, never each other.
    Process,
    /// `startup`, `cli`: put everything together.
    Assembly,
}

/// Whether `from` (in layer `a`) may use `to` (in layer `b`).
fn allowed(from: &str, a: Layer, to: &str, b: Layer) -> bool {
    match a {
        Layer::Domain => false,
        Layer::Leaf => matches!(b, Layer::Domain | Layer::Leaf),
        Layer::Store => b == Layer::Domain,
        Layer::Service => b <= Layer::Service,
        Layer::Process => b < Layer::Process,
        // The command line starts processes; startup never parses commands.
        Layer::Assembly => b < Layer::Assembly || (from == "cli" && to == "startup"),
    }
}

/// Modules inside `web` that handlers share; everything else in `src/web/`
/// but `mod.rs` and the router is a handler.
const WEB_SHARED: &[&str] = &[
    "context",
    "openapi",
    "request",
    "request_locale",
    "response",
];
const WEB_ROUTER: &str = "routes";

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

/// The first path segments after every `prefix` (`crate::`, `super::`),
/// expanding a `{a::b, c}` group into `a` and `c`.
fn targets(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let preceded_by_ident = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        rest = &rest[at + prefix.len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut at_item_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        if !item.is_empty() {
                            found.insert(std::mem::take(&mut item));
                        }
                        at_item_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if depth == 1 && at_item_start {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                    } else if !item.is_empty() {
                        found.insert(std::mem::take(&mut item));
                        at_item_start = false;
                    }
                } else if depth > 1 && !item.is_empty() {
                    found.insert(std::mem::take(&mut item));
                    at_item_start = false;
                }
            }
            if !item.is_empty() {
                found.insert(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn top_module(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

fn display(file: &Path) -> String {
    file.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or(file)
        .display()
        .to_string()
}

#[test]
fn dependencies_between_modules_run_one_way() {
    let layers: BTreeMap<&str, Layer> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut service_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = top_module(file) else {
            continue;
        };
        let Some(&from_layer) = layers.get(from.as_str()) else {
            violations.push(format!(
                "{}: module `{from}` has no place in the layers (tests/it/layers.rs)",
                display(file)
            ));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(file).expect("read source"));
        for to in targets(&code, "crate::") {
            if to == from {
                continue;
            }
            let Some(&to_layer) = layers.get(to.as_str()) else {
                // The crate root declares modules and nothing else, so a
                // path through it cannot go around the layers.
                violations.push(format!(
                    "{}: {from} → crate::{to}, which is no module in the layers",
                    display(file)
                ));
                continue;
            };
            if !allowed(&from, from_layer, &to, to_layer) {
                violations.push(format!(
                    "{}: {from} → {to} ({from_layer:?} may not use {to_layer:?})",
                    display(file)
                ));
            }
            if from_layer == Layer::Service && to_layer == Layer::Service {
                service_edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    for cycle in cycles(&service_edges) {
        violations.push(format!("services use each other in a cycle: {cycle}"));
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Each cycle among the services, as `a → b → a`.
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
fn web_handlers_use_only_what_they_share() {
    let web = src().join("web");
    let mut files = Vec::new();
    rust_files(&web, &mut files);
    // A file in a folder of `web` is part of the folder's module.
    let module = |file: &Path| {
        let in_folder = file.parent().is_some_and(|parent| parent != web);
        let name = if in_folder {
            file.parent().and_then(|parent| parent.file_name())
        } else {
            file.file_stem()
        };
        name.and_then(|s| s.to_str()).unwrap_or_default().to_owned()
    };
    let submodules: BTreeSet<String> = files.iter().map(|f| module(f)).collect();
    let mut violations = Vec::new();
    for file in &files {
        let this = module(file);
        if this == "mod" || this == WEB_ROUTER {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(file).expect("read source"));
        for to in targets(&code, "super::") {
            if !submodules.contains(&to) || WEB_SHARED.contains(&to.as_str()) {
                continue;
            }
            let what = if WEB_SHARED.contains(&this.as_str()) {
                "a shared web module"
            } else {
                "a handler"
            };
            violations.push(format!(
                "{}: web::{this} → web::{to} ({what} may use only {WEB_SHARED:?})",
                display(file)
            ));
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_reader_finds_edges_in_use_groups_and_paths() {
    let code = code_of(
        "use crate::{a::b, c, d::{e, f}};\n// crate::commented\nlet x = crate::g::h();\nfoo_crate::i",
    );
    let found: Vec<String> = targets(&code, "crate::").into_iter().collect();
    assert_eq!(found, ["a", "c", "d", "g"]);
    assert!(!allowed("store", Layer::Store, "metrics", Layer::Leaf));
    assert!(!allowed("web", Layer::Process, "worker", Layer::Process));
    assert!(allowed("web", Layer::Process, "commands", Layer::Service));
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
    let store = src().join("store");
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
        "statements on the log outside src/store:\n{}",
        violations.join("\n")
    );
}
