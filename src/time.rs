//! Event time: microseconds since the Unix epoch in UTC, and the durations of scenario files.
//!
//! Replayed time never comes from the wall clock; every instant here is read from data or config.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
pub const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
pub const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// A duration in (fractional) hours.
pub fn hours(micros: Micros) -> f64 {
    micros as f64 / MICROS_PER_HOUR as f64
}

/// A duration in (fractional) days.
pub fn days(micros: Micros) -> f64 {
    micros as f64 / MICROS_PER_DAY as f64
}

/// Seconds as microseconds, rounded to the nearest.
pub fn from_seconds(seconds: f64) -> Micros {
    (seconds * MICROS_PER_SECOND as f64).round() as Micros
}

/// Parses a duration such as `90s`, `15m`, `6h`, `1d`, `1h30m` or `250ms` into microseconds.
pub fn parse_duration(text: &str) -> Result<Micros, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{text}` is not a duration: expected a number before `{rest}`"));
        }
        let number: f64 =
            rest[..digits].parse().map_err(|_| format!("`{text}` is not a duration: `{}` is not a number", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1_000.0,
            "s" => 1e6,
            "m" | "min" => 60e6,
            "h" => 3_600e6,
            "d" => 86_400e6,
            "w" => 604_800e6,
            "" => return Err(format!("`{text}` has no unit: write e.g. `{number}s`, `{number}m` or `{number}h`")),
            other => return Err(format!("`{text}`: unknown unit `{other}` (use ms, s, m, h, d or w)")),
        };
        rest = &rest[unit_len..];
        total = total.saturating_add((number * unit).round() as i64);
    }
    Ok(total)
}

/// Formats a duration in the largest units that keep it exact: `1d6h`, `90s`, `250ms`.
pub fn format_duration(micros: Micros) -> String {
    if micros == 0 {
        return "0s".into();
    }
    let sign = if micros < 0 { "-" } else { "" };
    let mut rest = micros.unsigned_abs();
    let mut out = String::from(sign);
    for (unit, size) in [("d", 86_400_000_000u64), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1_000)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    if rest > 0 {
        out.push_str(&format!("{rest}us"));
    }
    out
}

/// A duration for people: the two largest units, rounded (`137d22h`, `4h30m`, `45s`).
pub fn format_approx(micros: Micros) -> String {
    let units = [("d", 86_400_000_000i64), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)];
    let micros = micros.max(0);
    for (i, (name, size)) in units.iter().enumerate() {
        if micros >= *size || i == units.len() - 1 {
            let whole = micros / size;
            return match units.get(i + 1) {
                Some((next, next_size)) => {
                    let rest = ((micros % size) as f64 / *next_size as f64).round() as i64;
                    let (whole, rest) = if rest * next_size >= *size { (whole + 1, 0) } else { (whole, rest) };
                    if rest == 0 {
                        format!("{whole}{name}")
                    } else {
                        format!("{whole}{name}{rest}{next}")
                    }
                }
                None => format!("{whole}{name}"),
            };
        }
    }
    "0s".into()
}

/// Parses an RFC 3339 instant (`2013-09-01T00:00:00Z`), a date-time without offset (taken as
/// UTC) or a date (midnight UTC).
pub fn parse_timestamp(text: &str) -> Result<Micros, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc).timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_micros());
    }
    Err(format!("`{text}` is not a timestamp: write RFC 3339, e.g. 2013-09-01T00:00:00Z"))
}

/// Parses the inclusive end of a window: as [`parse_timestamp`], except that a date alone means
/// the whole day (its last microsecond), so `end = "2013-10-31"` keeps October 31st.
pub fn parse_inclusive_end(text: &str) -> Result<Micros, String> {
    let start = parse_timestamp(text)?;
    let date_only = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").is_ok();
    Ok(if date_only { start + 86_400 * MICROS_PER_SECOND - 1 } else { start })
}

/// Formats an instant as RFC 3339 in UTC, with sub-second digits only when needed.
pub fn format_timestamp(micros: Micros) -> String {
    match DateTime::<Utc>::from_timestamp_micros(micros) {
        Some(t) if micros % MICROS_PER_SECOND == 0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => format!("{micros}us"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("90s"), Ok(90 * MICROS_PER_SECOND));
        assert_eq!(parse_duration("1h30m"), Ok(5_400 * MICROS_PER_SECOND));
        assert_eq!(parse_duration("1d"), Ok(86_400 * MICROS_PER_SECOND));
        assert_eq!(parse_duration("250ms"), Ok(250_000));
        assert_eq!(parse_duration("0.5h"), Ok(1_800 * MICROS_PER_SECOND));
        assert!(parse_duration("6").unwrap_err().contains("no unit"));
        assert!(parse_duration("6y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("h").is_err());
        assert_eq!(format_duration(parse_duration("1d6h").unwrap()), "1d6h");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_approx(parse_duration("137d22h11m59s").unwrap()), "137d22h");
        assert_eq!(format_approx(parse_duration("4h29m40s").unwrap()), "4h30m");
        assert_eq!(format_approx(parse_duration("1h59m40s").unwrap()), "2h");
        assert_eq!(format_approx(parse_duration("45s").unwrap()), "45s");
    }

    #[test]
    fn timestamps_parse_and_print() {
        let t = parse_timestamp("2013-09-01T00:00:00Z").unwrap();
        assert_eq!(t, 1_377_993_600 * MICROS_PER_SECOND);
        assert_eq!(parse_timestamp("2013-09-01T02:00:00+02:00"), Ok(t));
        assert_eq!(parse_timestamp("2013-09-01"), Ok(t));
        assert_eq!(parse_timestamp("2013-09-01 00:00:00"), Ok(t));
        assert_eq!(format_timestamp(t), "2013-09-01T00:00:00Z");
        assert_eq!(format_timestamp(t + 5), "2013-09-01T00:00:00.000005Z");
        assert!(parse_timestamp("September").is_err());
        assert_eq!(parse_inclusive_end("2013-09-01"), Ok(t + 86_400 * MICROS_PER_SECOND - 1));
        assert_eq!(parse_inclusive_end("2013-09-01T00:00:00Z"), Ok(t));
    }
}

/// A timestamp as written in the scenario: an RFC 3339 string or a TOML date-time literal.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(untagged)]
pub enum RawTime {
    Text(String),
    Toml(toml::value::Datetime),
}

impl RawTime {
    pub fn parse(&self) -> Result<Micros, String> {
        parse_timestamp(&self.text())
    }

    /// As the inclusive end of a window: a date alone covers the whole day.
    pub fn parse_end(&self) -> Result<Micros, String> {
        parse_inclusive_end(&self.text())
    }

    fn text(&self) -> String {
        match self {
            RawTime::Text(s) => s.clone(),
            RawTime::Toml(d) => d.to_string(),
        }
    }
}
