//! The library's modules import one way: no top-level module of `src/` reaches itself through
//! `crate::` paths (test code aside). A circle here is what issue 19 took apart — `scenario` loading
//! controllers, `policy` reading `scenario`'s types, `report` and `run` importing each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules its non-test code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let test_only = test_only_files(&files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| !test_only.contains(*f)) {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        // Test modules at the end of a file are test code; comments are not imports.
        let code: String =
            text.split("#[cfg(test)]").next().unwrap().lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        let entry = graph.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() && name != top {
                entry.insert(name);
            }
        }
    }
    graph
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Files of modules declared under `#[cfg(test)]` (`#[cfg(test)] mod tests;`).
fn test_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let dir =
            if file.file_name().is_some_and(|n| n == "mod.rs") { file.parent().unwrap().to_path_buf() } else { file.with_extension("") };
        for (i, _) in text.match_indices("#[cfg(test)]\nmod ") {
            let name: String = text[i + 17..].chars().take_while(|c| *c != ';' && *c != ' ').collect();
            out.insert(dir.join(format!("{name}.rs")));
        }
    }
    out
}

#[test]
fn no_module_reaches_itself_through_its_imports() {
    let graph = imports();
    assert!(graph.contains_key("scenario") && graph.contains_key("report"), "the source was not found: {graph:?}");
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(module) = stack.pop() {
            for next in graph.get(&module).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let circles: Vec<String> = graph
        .iter()
        .flat_map(|(module, names)| {
            names.iter().filter(|n| reach(n).contains(module)).map(move |n| format!("{module} → {n} → … → {module}"))
        })
        .collect();
    assert!(circles.is_empty(), "modules import each other: {circles:#?}");
    // The layers the redesign settled, spelled out.
    for (low, high) in [("policy", "scenario"), ("scenario", "controller"), ("report", "run"), ("storage", "scenario")] {
        assert!(!reach(low).contains(high), "{low} reaches {high}");
    }
}
