//! The README and `docs/` stay true to the tool: every link between them reaches a file and a
//! heading that exist, and every `canary-replay` command they show names a real subcommand with
//! flags it accepts (checked against the binary's own `--help`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn documents() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
        .collect::<String>()
        .replace(' ', "-")
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line));
        }
    }
    out
}

#[test]
fn every_link_between_the_documents_reaches_a_heading() {
    let texts: BTreeMap<PathBuf, String> = documents().into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect();
    let mut broken = Vec::new();
    let mut checked = 0;
    for (file, text) in &texts {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let target = &rest[..rest.find(')').unwrap_or(rest.len())];
            if target.starts_with("http") || target.contains(' ') {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
            let resolved = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            checked += 1;
            if !resolved.exists() {
                broken.push(format!("{}: {target}: no such file", file.display()));
            } else if !fragment.is_empty() {
                let text = texts.get(&resolved.canonicalize().unwrap()).cloned().or_else(|| {
                    texts.iter().find(|(p, _)| p.canonicalize().unwrap() == resolved.canonicalize().unwrap()).map(|(_, t)| t.clone())
                });
                if !text.is_some_and(|t| anchors(&t).contains(fragment)) {
                    broken.push(format!("{}: {target}: no such heading", file.display()));
                }
            }
        }
    }
    assert!(checked > 12, "only {checked} links found: is the README still split into docs/?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The flags `canary-replay <subcommand> --help` lists.
fn flags_of(subcommand: &[&str]) -> Option<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_canary-replay")).args(subcommand).arg("--help").output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn every_command_shown_names_a_real_subcommand_and_real_flags() {
    let mut helps: BTreeMap<Vec<String>, Option<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in documents() {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut in_code = false;
        for line in text.lines() {
            if line.starts_with("```") {
                in_code = !in_code;
                continue;
            }
            let command = line.split('#').next().unwrap_or("").trim();
            let Some(args) = command.strip_prefix("canary-replay ").or_else(|| command.strip_prefix("cargo run --release -- ")) else {
                continue;
            };
            if !in_code {
                continue;
            }
            let words: Vec<&str> = args.split_whitespace().collect();
            let depth = if words.first() == Some(&"shard") { 2 } else { 1 };
            let subcommand: Vec<String> = words.iter().take(depth).map(|w| w.to_string()).collect();
            let help =
                helps.entry(subcommand.clone()).or_insert_with(|| flags_of(&subcommand.iter().map(String::as_str).collect::<Vec<_>>()));
            checked += 1;
            let Some(help) = help else {
                wrong.push(format!("{}: `{command}`: no subcommand {}", file.display(), subcommand.join(" ")));
                continue;
            };
            for flag in words.iter().filter(|w| w.starts_with("--") || (w.starts_with('-') && w.len() == 2)) {
                let flag = flag.trim_start_matches('[').split(['=', ']']).next().unwrap();
                if !help.split(|c: char| c.is_whitespace() || c == ',').any(|w| w == flag) {
                    wrong.push(format!("{}: `{command}`: {} takes no {flag}", file.display(), subcommand.join(" ")));
                }
            }
        }
    }
    assert!(checked > 8, "only {checked} commands found");
    assert!(wrong.is_empty(), "commands that would not run:\n{}", wrong.join("\n"));
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for must in [
        "## The two commands",
        "cargo run --release -- run scenarios/flights-2013.toml",
        "cargo test --release",
        "## Exit codes",
        "## Scenario files",
        "## Where to go next",
    ] {
        assert!(readme.contains(must), "the README lost {must:?}");
    }
    assert!(readme.lines().count() < 260, "the README has grown to {} lines: move reference material to docs/", readme.lines().count());
    assert!(Path::new(&repo().join("docs/scenarios.md")).exists());
}
