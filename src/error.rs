//! Errors of the library.
//!
//! Invalid input (scenario, traffic data, models) is collected as a list of [`Problem`]s, each naming
//! where it is (file, key path, column or model input), what is wrong and how to fix it, so a user
//! sees every problem at once. Everything else that stops a run is an environment or I/O failure.

use std::fmt;
use std::path::{Path, PathBuf};

/// Process exit codes, as documented in the README.
pub mod exit {
    /// The policy would promote the candidate (or, without a policy, the run succeeded).
    pub const PROMOTE: i32 = 0;
    /// The policy would roll the candidate back.
    pub const ROLLBACK: i32 = 1;
    /// Invalid input: scenario, data or model. The message names the file, key or column.
    pub const INVALID: i32 = 2;
    /// The policy ends held or inconclusive.
    pub const HELD: i32 = 3;
    /// The run could not be carried out: ONNX Runtime unavailable, an output could not be written.
    pub const FAILURE: i32 = 4;
}

/// One thing wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `scenario.toml: traffic.path`, `traffic.parquet: column "temp"`, `stable.onnx: input "input"`.
    pub location: String,
    /// What is wrong, with the offending value.
    pub message: String,
    /// How to fix it, when there is something to say.
    pub fix: Option<String>,
}

impl Problem {
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self { location: location.into(), message: message.into(), fix: None }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

/// Everything that can stop a library call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is invalid; every problem found is listed.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
    /// ONNX Runtime could not be found, fetched or loaded.
    #[error("{0}")]
    Runtime(String),
    /// A file of ours could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Something failed that is not the user's input (a bug or an exhausted resource).
    #[error("{0}")]
    Internal(String),
    /// An operation on our own data failed (an Arrow kernel, a Parquet writer), with the error
    /// that stopped it as its source.
    #[error("{what}: {source}")]
    Failed { what: String, source: Box<dyn std::error::Error + Send + Sync> },
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 1 {
            writeln!(f, "{} problems:", self.0.len())?;
        }
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl Error {
    /// One invalid-input problem.
    pub fn invalid(problem: Problem) -> Self {
        Error::Invalid(vec![problem])
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// `what` failed with `source` (kept as the error's source).
    pub fn failed(what: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Failed { what: what.into(), source: Box::new(source) }
    }

    /// The documented exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) => exit::INVALID,
            Error::Runtime(_) | Error::Io { .. } | Error::Internal(_) | Error::Failed { .. } => exit::FAILURE,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns collected problems into an error, or passes the value through when there are none.
pub fn check<T>(value: T, problems: Vec<Problem>) -> Result<T> {
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(Error::Invalid(problems))
    }
}

/// The closest candidate to a misspelt name, if one is close enough to be a likely intent.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_pick_the_closest_plausible_name() {
        assert_eq!(did_you_mean("pth", ["path", "time", "entity"]), Some("path"));
        assert_eq!(did_you_mean("segmnts", ["segments", "start"]), Some("segments"));
        assert_eq!(did_you_mean("zzz", ["path", "time"]), None);
    }

    #[test]
    fn several_problems_are_listed_with_their_fixes() {
        let err =
            Error::Invalid(vec![Problem::new("a.toml: traffic.path", "missing").fix("add it"), Problem::new("a.toml: name", "empty")]);
        assert_eq!(err.to_string(), "2 problems:\na.toml: traffic.path: missing\n  fix: add it\na.toml: name: empty");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_failure_names_what_failed_and_keeps_its_source() {
        let err = Error::failed("writing checks.parquet", std::io::Error::other("disk full"));
        assert_eq!(err.to_string(), "writing checks.parquet: disk full");
        assert_eq!(std::error::Error::source(&err).map(ToString::to_string), Some("disk full".to_string()));
        assert_eq!(err.exit_code(), exit::FAILURE);
    }
}
