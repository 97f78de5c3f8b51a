//! Settings written as one of a few names (`kind = "non_inferiority"`, `on_timeout = "hold"`):
//! typed as they are read, yet an unknown name is kept as written, so validation reports it at
//! its key with the names it could be and a suggestion — with every other problem of the file,
//! where a serde enum would stop the whole read at the first.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::stats::multiple::Correction;

use super::OnTimeout;

/// A type whose values are written as these names.
pub trait Named: Copy + PartialEq + 'static {
    const NAMES: &'static [(&'static str, Self)];

    fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, v)| *v == self).map(|(n, _)| *n).expect("every value has a name")
    }
}

/// One of `T`'s names as the file wrote it, or what it wrote instead.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice<T> {
    Known(T),
    Unknown(String),
}

impl<T: Named> Choice<T> {
    /// What the file says.
    pub fn name(&self) -> &str {
        match self {
            Choice::Known(v) => v.name(),
            Choice::Unknown(text) => text,
        }
    }
}

impl<T: Copy> Choice<T> {
    /// The value, when the file named one.
    pub fn known(&self) -> Option<T> {
        match self {
            Choice::Known(v) => Some(*v),
            Choice::Unknown(_) => None,
        }
    }
}

/// Nothing written: names no value.
impl<T> Default for Choice<T> {
    fn default() -> Self {
        Choice::Unknown(String::new())
    }
}

impl<T: Named> From<T> for Choice<T> {
    fn from(value: T) -> Self {
        Choice::Known(value)
    }
}

/// The value named `text`, if any (as a file would write it: for tests and overrides).
impl<T: Named> From<&str> for Choice<T> {
    fn from(text: &str) -> Self {
        match T::NAMES.iter().find(|(n, _)| *n == text) {
            Some((_, v)) => Choice::Known(*v),
            None => Choice::Unknown(text.to_string()),
        }
    }
}

impl<T: Named> fmt::Display for Choice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de, T: Named> Deserialize<'de> for Choice<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Choice::from(text.as_str()))
    }
}

impl<T: Named> Serialize for Choice<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Declares a fieldless enum with the names it is written as.
macro_rules! named {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $crate::policy::choice::Named for $name {
            const NAMES: &'static [(&'static str, Self)] = &[$(($text, $name::$variant)),+];
        }
    };
}
pub(crate) use named;

named! {
    /// A gate's `kind`, as written (the validated [`super::GateKind`] carries its bounds).
    Kind {
        Threshold = "threshold",
        Ratio = "ratio",
        NonInferiority = "non_inferiority",
        Regression = "regression",
    }
}

named! {
    /// `decision.sequential`: the repeated-look test.
    Test {
        /// Always valid.
        Msprt = "msprt",
        GroupSequential = "group_sequential",
    }
}

named! {
    /// `decision.spending`: the spending function of the group-sequential test.
    SpendingFunction {
        OBrienFleming = "obrien_fleming",
        Pocock = "pocock",
    }
}

impl Named for Correction {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("none", Correction::None),
        ("bonferroni", Correction::Bonferroni),
        ("holm", Correction::Holm),
        ("benjamini_hochberg", Correction::BenjaminiHochberg),
        ("benjamini_yekutieli", Correction::BenjaminiYekutieli),
    ];
}

impl Named for OnTimeout {
    const NAMES: &'static [(&'static str, Self)] =
        &[("hold", OnTimeout::Hold), ("rollback", OnTimeout::Rollback), ("promote", OnTimeout::Promote)];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::raw::{RawDecision, RawGate};
    use crate::policy::{Policy, RawPolicy, TrafficShape};

    #[test]
    fn names_read_and_write_back_as_written() {
        let decision: RawDecision = toml::from_str("correction = \"benjamini_hochberg\"\non_timeout = \"promote\"").unwrap();
        assert_eq!(decision.correction, Some(Choice::Known(Correction::BenjaminiHochberg)));
        assert_eq!(decision.on_timeout, Some(Choice::Known(OnTimeout::Promote)));
        let written = toml::to_string(&decision).unwrap();
        assert_eq!(written, "correction = \"benjamini_hochberg\"\non_timeout = \"promote\"\n");
        // Not a name at all is a type error, as before.
        assert!(toml::from_str::<RawDecision>("on_timeout = 3").is_err());
    }

    #[test]
    fn every_unknown_name_is_reported_at_its_key_with_a_suggestion() {
        let gate: RawGate = toml::from_str("metric = \"error_rate\"\nkind = \"regresion\"").unwrap();
        assert_eq!(gate.kind, Choice::Unknown("regresion".into()));
        assert_eq!(gate.name(), "error_rate regresion");
        let decision: RawDecision = toml::from_str("sequential = \"group_sequental\"\nspending = \"pocok\"").unwrap();
        let raw = RawPolicy { gates: vec![gate], decision: Some(decision), ..Default::default() };
        let mut problems = Vec::new();
        Policy::from_raw(&raw, &TrafficShape { segments: &[], labelled: true }, "s.toml", &mut problems);
        let said: Vec<String> =
            problems.iter().map(|p| format!("{}: {} ({})", p.location, p.message, p.fix.as_deref().unwrap_or(""))).collect();
        assert_eq!(
            said,
            [
                "s.toml: decision.spending = \"pocok\": is not one of: obrien_fleming, pocock (did you mean \"pocock\"?)",
                "s.toml: decision.sequential = \"group_sequental\": is not one of: msprt, group_sequential (did you mean \"group_sequential\"?)",
                "s.toml: gates[0].kind = \"regresion\": is not one of: threshold, ratio, non_inferiority, regression (did you mean \"regression\"?)",
            ]
        );
    }
}
