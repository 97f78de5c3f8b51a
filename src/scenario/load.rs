//! Reading a scenario file: TOML syntax, then keys and types, then values.
//!
//! serde stops at the first unknown key or wrong type. To report them all at once, deserialization
//! is retried after removing each offending key from the parsed table, collecting a problem (with
//! its key path and a suggestion) per round.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::raw::RawScenario;
use super::{validate, Scenario};
use crate::error::{did_you_mean, Error, Problem, Result};

/// Reads, parses and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(
            Problem::new(path.display().to_string(), format!("cannot read the scenario: {e}"))
                .fix("check the path; `canary-replay init > scenario.toml` writes a template"),
        )
    })?;
    parse_str(&text, path)
}

/// Parses and validates scenario text; `path` names the file in messages and anchors relative paths.
pub fn parse_str(text: &str, path: &Path) -> Result<Scenario> {
    let file = path.display().to_string();
    let table: toml::Table =
        toml::from_str(text).map_err(|e| Error::invalid(Problem::new(&file, format!("not valid TOML: {}", e.to_string().trim_end()))))?;
    let (raw, mut problems, placeholders) = deserialize_all::<RawScenario>(table, &file);
    let scenario = raw.map(|raw| {
        let mut value_problems = Vec::new();
        let scenario = validate::validate(raw, path, &mut value_problems);
        // Keys already reported as missing hold placeholders: say nothing more about them.
        value_problems.retain(|p| !placeholders.iter().any(|k| p.location.starts_with(&format!("{file}: {k}"))));
        problems.extend(value_problems);
        scenario
    });
    match scenario {
        Some(scenario) if problems.is_empty() => Ok(scenario),
        _ => Err(Error::Invalid(problems)),
    }
}

/// Deserializes `table`, collecting every unknown key and type error rather than stopping at the
/// first. A missing required key gets a placeholder (an empty string or table) so the rest can
/// still be checked; the placeholders' key paths are returned so later checks stay quiet on them.
fn deserialize_all<T: DeserializeOwned>(mut table: toml::Table, file: &str) -> (Option<T>, Vec<Problem>, Vec<String>) {
    let mut problems = Vec::new();
    let mut reported: Vec<String> = Vec::new();
    let mut placeholders: Vec<String> = Vec::new();
    for _ in 0..256 {
        let value = toml::Value::Table(table.clone());
        let err = match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => return (Some(v), problems, placeholders),
            Err(err) => err,
        };
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        // toml appends "in `key`" on a second line; the path already says where.
        let message = err.inner().to_string();
        let message = message.lines().next().unwrap_or_default().trim_end().to_string();
        if let Some((key, expected)) = parse_unknown_field(&message) {
            // The path may already end with the unknown key; keep only its parent.
            let parent = match path.rsplit_once('.') {
                Some((parent, last)) if last == key => parent.to_string(),
                None if path == key => String::new(),
                _ => path.clone(),
            };
            let full = join_path(&parent, &key);
            let mut problem = Problem::new(format!("{file}: {full}"), "unknown key");
            if let Some(s) = did_you_mean(&key, expected.iter().map(String::as_str)) {
                problem = problem.fix(format!("did you mean `{}`?", join_path(&parent, s)));
            } else if !expected.is_empty() {
                problem = problem.fix(format!("known keys here: {}", expected.join(", ")));
            }
            problems.push(problem);
            if !remove_key(&mut table, &parent, Some(&key)) {
                break;
            }
        } else if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            let full = join_path(&path, field);
            if !reported.contains(&full) {
                problems.push(Problem::new(format!("{file}: {full}"), "required key is missing"));
            }
            placeholders.push(full.clone());
            if !insert_key(&mut table, &path, field, toml::Value::String(String::new())) {
                break;
            }
        } else if placeholders.contains(&path) && message.contains("expected struct") {
            // The placeholder should have been a table.
            let (parent, key) = path.rsplit_once('.').unwrap_or(("", path.as_str()));
            if !insert_key(&mut table, parent, key, toml::Value::Table(toml::Table::new())) {
                break;
            }
        } else {
            problems.push(Problem::new(format!("{file}: {path}"), describe_type_error(&message)));
            reported.push(path.clone());
            if !remove_key(&mut table, &path, None) {
                break;
            }
        }
    }
    (None, problems, placeholders)
}

/// Sets `parent.key = value` (creating nothing along the way); false when `parent` is not a table.
fn insert_key(table: &mut toml::Table, parent: &str, key: &str, value: toml::Value) -> bool {
    let mut current = table;
    for segment in parse_path(parent) {
        let next = match segment {
            Segment::Key(k) => current.get_mut(&k),
            Segment::Index(_) => None,
        };
        match next {
            Some(toml::Value::Table(t)) => current = t,
            _ => return false,
        }
    }
    current.insert(key.to_string(), value);
    true
}

/// `unknown field `pth`, expected one of `path`, `time`` → ("pth", ["path", "time"]).
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((key.to_string(), expected))
}

fn describe_type_error(message: &str) -> String {
    // serde says "invalid type: string \"x\", expected i64"; keep it, minus the noise.
    message.replace("invalid type: ", "wrong type: ")
}

fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() || parent == "." {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Removes `parent.key` (or the value at `path` when `key` is `None`) from the table.
/// Returns false when nothing could be removed, so the caller stops retrying.
fn remove_key(table: &mut toml::Table, path: &str, key: Option<&str>) -> bool {
    let mut segments = parse_path(path);
    let last = match key {
        Some(k) => Segment::Key(k.to_string()),
        None => match segments.pop() {
            Some(s) => s,
            None => return false,
        },
    };
    let mut value: &mut toml::Value = match segments.first() {
        Some(Segment::Key(k)) => match table.get_mut(k) {
            Some(v) => v,
            None => return false,
        },
        Some(Segment::Index(_)) => return false,
        None => {
            return match last {
                Segment::Key(k) => table.remove(&k).is_some(),
                Segment::Index(_) => false,
            }
        }
    };
    for segment in &segments[1..] {
        value = match (segment, value) {
            (Segment::Key(k), toml::Value::Table(t)) => match t.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Index(i), toml::Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, value) {
        (Segment::Key(k), toml::Value::Table(t)) => t.remove(&k).is_some(),
        // A wrong element inside an array: drop the element so the rest can still be checked.
        (Segment::Index(i), toml::Value::Array(a)) if i < a.len() => {
            a.remove(i);
            true
        }
        _ => false,
    }
}

enum Segment {
    Key(String),
    Index(usize),
}

/// Splits `ramp.stages[2].weight` into keys and indices.
fn parse_path(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    if path.is_empty() || path == "." {
        return out;
    }
    for part in path.split('.') {
        let mut rest = part;
        if let Some(bracket) = rest.find('[') {
            if bracket > 0 {
                out.push(Segment::Key(rest[..bracket].to_string()));
            }
            rest = &rest[bracket..];
            while let Some(end) = rest.find(']') {
                if let Ok(i) = rest[1..end].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &rest[end + 1..];
            }
        } else {
            out.push(Segment::Key(rest.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_messages_are_understood() {
        let (key, expected) = parse_unknown_field("unknown field `pth`, expected one of `path`, `time`").unwrap();
        assert_eq!(key, "pth");
        assert_eq!(expected, ["path", "time"]);
        let (key, expected) = parse_unknown_field("unknown field `x`, expected `columns`").unwrap();
        assert_eq!((key.as_str(), expected), ("x", vec!["columns".to_string()]));
    }

    #[test]
    fn keys_are_removed_by_path() {
        let mut table: toml::Table = toml::from_str("[a]\nb = [{c = 1, d = 2}]\n").unwrap();
        assert!(remove_key(&mut table, "a.b[0]", Some("d")));
        assert_eq!(table.to_string(), "[[a.b]]\nc = 1\n");
        assert!(remove_key(&mut table, "a.b[0].c", None));
        assert!(!remove_key(&mut table, "a.zz", None));
    }
}
