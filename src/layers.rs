//! The layer rule, kept by a test: each module imports only the layers below it, and the
//! files inside a module import each other without a circle.
//!
//! Why a test and not a workspace of crates (as ripgrep splits its layers): evalr's layers are
//! many and thin (fourteen), most would be crates of one or two files, and every move of a type
//! between layers would churn `Cargo.toml`s and public APIs; a crate split also costs build
//! time on the two-core machines evalr is built on. The test reads what the compiler reads
//! (every `crate::`, `super::` and `use` path outside comments) and fails naming the file,
//! the line and the two layers, which is what a contributor needs to move the type instead.

/// The layers, top to bottom. A module may import modules of the layers below its own, never
/// of its own layer or above. ARCHITECTURE.md states the same order.
pub const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["azureml"],
    &["run"],
    &["live", "batch"],
    &["play"],
    &["examples", "report"],
    &["score"],
    &["results"],
    &["program", "config"],
    &["prices"],
    &["backend", "dataset"],
    &["limiter"],
    &["files", "secret"],
];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use super::LAYERS;

    /// A reference from one file to a module path, with the line it is on.
    struct Reference {
        line: usize,
        path: Vec<String>,
    }

    /// The module path of a source file: `src/run/plan.rs` is `run::plan`, `src/run/mod.rs` is
    /// `run`, `src/lib.rs` is the crate root (empty).
    fn module_of(src: &Path, file: &Path) -> Vec<String> {
        let relative = file.strip_prefix(src).expect("under src");
        let mut parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let last = parts.pop().unwrap_or_default();
        let stem = last.trim_end_matches(".rs");
        if !matches!(stem, "mod" | "lib" | "main") {
            parts.push(stem.to_string());
        }
        parts
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The text of a file without comments, line by line (string contents are kept: a path in
    /// a string is not an import, but none of evalr's strings spells `crate::`).
    fn code_lines(text: &str) -> Vec<String> {
        let mut lines = Vec::new();
        let mut in_block = false;
        for raw in text.lines() {
            let mut line = String::new();
            let mut rest = raw;
            loop {
                if in_block {
                    match rest.find("*/") {
                        Some(end) => {
                            rest = &rest[end + 2..];
                            in_block = false;
                        }
                        None => break,
                    }
                } else {
                    let line_comment = rest.find("//");
                    let block = rest.find("/*");
                    match (line_comment, block) {
                        (Some(l), b) if b.is_none_or(|b| l < b) => {
                            line.push_str(&rest[..l]);
                            break;
                        }
                        (_, Some(b)) => {
                            line.push_str(&rest[..b]);
                            rest = &rest[b + 2..];
                            in_block = true;
                        }
                        _ => {
                            line.push_str(rest);
                            break;
                        }
                    }
                }
            }
            lines.push(line);
        }
        lines
    }

    /// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
    fn expand_use(tree: &str) -> Vec<String> {
        let tree = tree.trim();
        let Some(open) = tree.find('{') else {
            let path = tree.split(" as ").next().unwrap_or(tree).trim();
            return vec![path.trim_end_matches("::").to_string()];
        };
        let prefix = tree[..open].trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&inner[start..]);
        parts
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .flat_map(expand_use)
            .map(|p| {
                if p == "self" || prefix.is_empty() {
                    if p == "self" { prefix.to_string() } else { p }
                } else {
                    format!("{prefix}::{p}")
                }
            })
            .collect()
    }

    /// Every module path a file refers to: its `use` trees and the `crate::`/`super::` paths
    /// written in code.
    fn references(text: &str) -> Vec<Reference> {
        let lines = code_lines(text);
        let mut found = Vec::new();
        let inline = regex::Regex::new(r"\b((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")
            .expect("valid regex");
        let mut statement: Option<(usize, String)> = None;
        for (index, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let trimmed = trimmed
                .strip_prefix("pub(crate) ")
                .or_else(|| trimmed.strip_prefix("pub(super) "))
                .or_else(|| trimmed.strip_prefix("pub "))
                .unwrap_or(trimmed);
            if statement.is_none() && trimmed.starts_with("use ") {
                statement = Some((index + 1, String::new()));
            }
            if let Some((first, text)) = &mut statement {
                text.push_str(line);
                if line.contains(';') {
                    let body = text.trim_start();
                    let body = body[body.find("use ").unwrap_or(0) + 4..]
                        .split(';')
                        .next()
                        .unwrap_or_default();
                    for path in expand_use(body) {
                        found.push(Reference {
                            line: *first,
                            path: path.split("::").map(str::to_string).collect(),
                        });
                    }
                    statement = None;
                }
                continue;
            }
            for capture in inline.captures_iter(line) {
                found.push(Reference {
                    line: index + 1,
                    path: capture[1].split("::").map(str::to_string).collect(),
                });
            }
        }
        found
    }

    /// The module a reference from `from` lands in, as a crate-absolute path; `None` for
    /// paths outside the crate (`std::`, other crates, the file's own items).
    fn resolve(
        from: &[String],
        path: &[String],
        modules: &BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        let mut absolute: Vec<String> = match path.first().map(String::as_str) {
            Some("crate") => path[1..].to_vec(),
            Some("super") => {
                let mut base = from.to_vec();
                let mut rest = path;
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                base
            }
            Some("self") => {
                let mut base = from.to_vec();
                base.extend(path[1..].iter().cloned());
                base
            }
            // A child module of this file, named without `self::` (2018 paths).
            Some(first) => {
                let mut child = from.to_vec();
                child.push(first.to_string());
                if !modules.contains(&child) {
                    return None;
                }
                let mut base = from.to_vec();
                base.extend(path.iter().cloned());
                base
            }
            None => return None,
        };
        while !absolute.is_empty() && !modules.contains(&absolute) {
            absolute.pop();
        }
        (!absolute.is_empty()).then_some(absolute)
    }

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    /// Every source file with its module path and its references.
    fn crate_files() -> Vec<(PathBuf, Vec<String>, Vec<Reference>)> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        files.sort();
        files
            .into_iter()
            .map(|file| {
                let text = std::fs::read_to_string(&file).expect("readable source");
                let module = module_of(&src, &file);
                (file, module, references(&text))
            })
            .collect()
    }

    /// The violations of the layer rule in `files`: (file, line, from, to).
    fn back_imports(
        files: &[(PathBuf, Vec<String>, Vec<Reference>)],
    ) -> Vec<(String, usize, String, String)> {
        let modules: BTreeSet<Vec<String>> = files.iter().map(|(_, m, _)| m.clone()).collect();
        let mut found = Vec::new();
        for (file, module, refs) in files {
            let Some(top) = module.first() else { continue };
            let Some(own) = layer_of(top) else { continue };
            for reference in refs {
                let Some(target) = resolve(module, &reference.path, &modules) else {
                    continue;
                };
                let to = &target[0];
                if to == top {
                    continue;
                }
                if let Some(layer) = layer_of(to)
                    && layer <= own
                {
                    let shown = file
                        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                        .unwrap_or(file);
                    found.push((
                        shown.display().to_string(),
                        reference.line,
                        top.clone(),
                        to.clone(),
                    ));
                }
            }
        }
        found
    }

    /// Circles among the files of one module (its direct submodules as nodes; the module's own
    /// `mod.rs` is left out, since it declares and re-exports its submodules).
    fn circles(files: &[(PathBuf, Vec<String>, Vec<Reference>)]) -> Vec<String> {
        let modules: BTreeSet<Vec<String>> = files.iter().map(|(_, m, _)| m.clone()).collect();
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (_, module, refs) in files {
            for reference in refs {
                let Some(target) = resolve(module, &reference.path, &modules) else {
                    continue;
                };
                // Compare at the first level where the two paths part.
                let common = module
                    .iter()
                    .zip(&target)
                    .take_while(|(a, b)| a == b)
                    .count();
                if common >= module.len() || common >= target.len() {
                    continue; // an ancestor or a descendant: not a sibling
                }
                let from = module[..=common].to_vec();
                let to = target[..=common].to_vec();
                edges.entry(from).or_default().insert(to);
            }
        }
        let mut found = Vec::new();
        for start in edges.keys() {
            // Depth-first search for a path back to `start`.
            let mut stack = vec![(start.clone(), vec![start.join("::")])];
            let mut seen = BTreeSet::new();
            while let Some((node, trail)) = stack.pop() {
                for next in edges.get(&node).into_iter().flatten() {
                    if next == start {
                        found.push(format!("{} -> {}", trail.join(" -> "), start.join("::")));
                    } else if seen.insert(next.clone()) {
                        let mut trail = trail.clone();
                        trail.push(next.join("::"));
                        stack.push((next.clone(), trail));
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    #[test]
    fn every_top_level_module_has_a_layer() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for entry in std::fs::read_dir(&src).expect("src") {
            let path = entry.expect("entry").path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if matches!(name.as_str(), "lib" | "main" | "layers") {
                continue;
            }
            if path.is_dir() || path.extension().is_some_and(|e| e == "rs") {
                assert!(
                    layer_of(&name).is_some(),
                    "src/{name} has no layer in LAYERS (src/layers.rs): give it one, and a row in ARCHITECTURE.md"
                );
            }
        }
    }

    #[test]
    fn no_module_imports_its_own_layer_or_one_above() {
        let found = back_imports(&crate_files());
        assert!(
            found.is_empty(),
            "imports against the layer order (src/layers.rs, ARCHITECTURE.md) - move the type down to the module that owns it instead:\n{}",
            found
                .iter()
                .map(|(file, line, from, to)| format!("  {file}:{line}: `{from}` imports `{to}`"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn no_circle_between_the_files_of_a_module() {
        let found = circles(&crate_files());
        assert!(
            found.is_empty(),
            "circles between submodules:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn the_rule_catches_a_back_import_and_a_circle() {
        // A back-import, as a file would write it: `play` (the row engine) using `run`.
        let text = "use crate::run::RunOptions;\nfn f() { let _ = crate::live::play_rows; }\n";
        let files = vec![
            (
                PathBuf::from("src/play/row.rs"),
                vec!["play".into(), "row".into()],
                references(text),
            ),
            (
                PathBuf::from("src/run/mod.rs"),
                vec!["run".into()],
                Vec::new(),
            ),
            (
                PathBuf::from("src/live/mod.rs"),
                vec!["live".into()],
                Vec::new(),
            ),
        ];
        let found = back_imports(&files);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].2.as_str(), found[0].3.as_str()), ("play", "run"));
        assert_eq!(found[1].3, "live");
        // Two files of one module that import each other.
        let files = vec![
            (
                PathBuf::from("src/backend/openai.rs"),
                vec!["backend".into(), "openai".into()],
                references("use super::embeddings::{post, Other};\n"),
            ),
            (
                PathBuf::from("src/backend/embeddings.rs"),
                vec!["backend".into(), "embeddings".into()],
                references("use crate::backend::{\n    openai::ChatEndpoint,\n    Usage,\n};\n"),
            ),
            (
                PathBuf::from("src/backend/mod.rs"),
                vec!["backend".into()],
                Vec::new(),
            ),
        ];
        let found = circles(&files);
        assert!(
            found
                .iter()
                .any(|c| c == "backend::embeddings -> backend::openai -> backend::embeddings"),
            "{found:?}"
        );
    }

    #[test]
    fn use_trees_expand_into_paths() {
        assert_eq!(
            expand_use("crate::results::{self, Journal, batch_ledger::{BatchLedger, EntryState}}"),
            vec![
                "crate::results",
                "crate::results::Journal",
                "crate::results::batch_ledger::BatchLedger",
                "crate::results::batch_ledger::EntryState"
            ]
        );
        assert_eq!(
            expand_use("super::row::RowFailure as F"),
            vec!["super::row::RowFailure"]
        );
    }
}
