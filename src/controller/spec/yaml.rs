//! YAML access with the path kept for messages.

use serde_yaml::Value;

use super::Reader;
use crate::time::Micros;

pub fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(key).filter(|v| !v.is_null())
}

pub fn string(r: &mut Reader, v: &Value, path: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => {
            r.problem(path, "expected a string", None);
            None
        }
    }
}

/// A YAML number, or a string holding one (Kubernetes' int-or-string); `what` names the kind
/// in the message.
fn numeric<T: std::str::FromStr>(
    r: &mut Reader,
    v: &Value,
    path: &str,
    what: &str,
    of: impl Fn(&serde_yaml::Number) -> Option<T>,
) -> Option<T> {
    let parsed = match v {
        Value::Number(n) => of(n),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    if parsed.is_none() {
        r.problem(path, format!("expected {what}, found {}", show(v)), None);
    }
    parsed
}

pub fn int(r: &mut Reader, v: &Value, path: &str) -> Option<i64> {
    numeric(r, v, path, "an integer", serde_yaml::Number::as_i64)
}

pub fn number(r: &mut Reader, v: &Value, path: &str) -> Option<f64> {
    numeric(r, v, path, "a number", serde_yaml::Number::as_f64)
}

pub fn boolean(r: &mut Reader, v: &Value, path: &str) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => {
            r.problem(path, format!("expected true or false, found {}", show(v)), None);
            None
        }
    }
}

/// A Go duration (`"5m"`, `"1h30m"`) or a number of seconds.
pub fn duration(r: &mut Reader, v: &Value, path: &str) -> Option<Micros> {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(s) if s >= 0.0 => Some(crate::time::from_seconds(s)),
            _ => {
                r.problem(path, format!("{n} is not a duration"), None);
                None
            }
        },
        Value::String(s) => r.duration(path, s),
        _ => {
            r.problem(path, format!("expected a duration such as \"5m\", found {}", show(v)), None);
            None
        }
    }
}

pub fn seq<'a>(r: &mut Reader, v: &'a Value, path: &str) -> &'a [Value] {
    match v.as_sequence() {
        Some(s) => s,
        None => {
            r.problem(path, "expected a list", None);
            &[]
        }
    }
}

pub fn show(v: &Value) -> String {
    serde_yaml::to_string(v).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into())
}
