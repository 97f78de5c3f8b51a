//! A variant's overrides applied to the base policy's raw sections, and the result validated
//! against each scenario's traffic.

use std::path::Path;

use serde::Serialize;

use super::space::{Space, Variant};
use super::Case;
use crate::error::{Problem, Result};
use crate::policy::raw::RawSections;
use crate::policy::{Policy, RawPolicy};

/// The base policy's sections (every default written out) with the variant's overrides: applied
/// once per variant, then validated against each scenario's traffic ([`validate`]).
pub(super) fn overridden(base: &RawSections, variant: &Variant) -> std::result::Result<RawPolicy, String> {
    let RawSections { ramp, segment_policy, gates, decision } = base;
    let (mut ramp, mut gates, mut decision) = (to_value(ramp)?, to_value(gates)?, to_value(decision)?);
    for (key, value) in variant {
        let parts: Vec<&str> = key.split('.').collect();
        match parts.as_slice() {
            ["ramp", "stages"] => {
                let weights = value.as_array().ok_or_else(|| format!("{key}: give a list of weights, e.g. [5, 25, 100]"))?;
                let old = ramp.get("stages").and_then(|s| s.as_array()).cloned().unwrap_or_default();
                let stages = weights
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let mut stage = toml::map::Map::new();
                        stage.insert("weight".into(), w.clone());
                        let bake = old.get(i).and_then(|s| s.get("bake")).cloned().unwrap_or_else(|| toml::Value::String("1d".into()));
                        stage.insert("bake".into(), bake);
                        toml::Value::Table(stage)
                    })
                    .collect();
                table(&mut ramp).insert("stages".into(), toml::Value::Array(stages));
            }
            ["ramp", "bake"] => {
                if let Some(stages) = table(&mut ramp).get_mut("stages").and_then(|s| s.as_array_mut()) {
                    for stage in stages.iter_mut().filter(|s| s.get("weight").and_then(as_f64).is_some_and(|w| w < 100.0)) {
                        table(stage).insert("bake".into(), value.clone());
                    }
                }
            }
            ["ramp", field] => {
                table(&mut ramp).insert((*field).into(), value.clone());
            }
            ["decision", field] => {
                table(&mut decision).insert((*field).into(), value.clone());
            }
            ["gates", metric, field] => {
                let mut found = false;
                for gate in gates.as_array_mut().into_iter().flatten().filter(|g| g.get("metric").and_then(|m| m.as_str()) == Some(metric))
                {
                    table(gate).insert((*field).into(), value.clone());
                    found = true;
                }
                if !found {
                    return Err(format!("{key}: the policy has no {metric} gate"));
                }
            }
            _ => return Err(format!("{key}: not a tunable key")),
        }
    }
    Ok(RawPolicy {
        ramp: Some(ramp.try_into().map_err(|e: toml::de::Error| e.message().to_string())?),
        segment_policy: segment_policy.clone(),
        gates: gates.try_into().map_err(|e: toml::de::Error| e.message().to_string())?,
        decision: Some(decision.try_into().map_err(|e: toml::de::Error| e.message().to_string())?),
    })
}

/// A variant's policy validated against the case's traffic (segment columns may differ between logs).
pub(super) fn validate(raw: &RawPolicy, case: &Case) -> std::result::Result<Policy, String> {
    let mut problems = Vec::new();
    let policy = Policy::from_raw(raw, &case.shape(), &case.scenario.file_name(), &mut problems);
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))
    }
}

/// A raw policy section as a TOML value, to apply overrides to.
pub(super) fn to_value(section: &impl Serialize) -> std::result::Result<toml::Value, String> {
    toml::Value::try_from(section).map_err(|e| e.to_string())
}

pub(super) fn table(value: &mut toml::Value) -> &mut toml::map::Map<String, toml::Value> {
    if !value.is_table() {
        *value = toml::Value::Table(toml::map::Map::new());
    }
    value.as_table_mut().expect("a table")
}

pub(super) fn as_f64(value: &toml::Value) -> Option<f64> {
    value.as_float().or_else(|| value.as_integer().map(|i| i as f64))
}

/// Every `gates.<metric>.<field>` parameter names a gate the base policy has: otherwise no variant
/// that sets it would be a valid policy.
pub(super) fn gates_exist(space: &Space, space_path: &Path, base: &Policy, base_file: &str) -> Result<()> {
    let metrics: Vec<&str> = base.gates.iter().map(|g| g.metric.name()).collect();
    let mut problems = Vec::new();
    for (i, key) in space.params.iter().map(|p| &p.key).enumerate() {
        if let ["gates", metric, _] = key.split('.').collect::<Vec<_>>().as_slice() {
            if !metrics.contains(metric) {
                problems.push(
                    Problem::new(
                        format!("{}: param[{i}].key", space_path.display()),
                        format!("\"{key}\": the base policy ({base_file}'s) has no {metric} gate"),
                    )
                    .fix(format!("tune one of its gates ({}), or add a gate on {metric} to {base_file}", metrics.join(", "))),
                );
            }
        }
    }
    crate::error::check((), problems)
}
