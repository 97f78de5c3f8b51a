//! The router: which arm serves each request.
//!
//! A request goes to the candidate iff its segment is eligible and u < w, where u is the salted
//! hash of its entity (uniform in [0, 1), see [`crate::hash`]) and w the effective weight of its
//! cell. So routing is sticky (an entity's u never changes, so at a given weight it stays in its
//! arm), monotone (raising w only adds entities) and deterministic. The effective weight is the
//! stage weight, limited by the segment policies: zero for excluded values or values whose wave
//! has not started, the final weight for values whose wave has finished, and at most the value's
//! cap.

use serde::Serialize;

use super::replay::Cells;
use crate::policy::Policy;

/// Per cell: eligibility, wave and cap under the segment policies.
#[derive(Debug, Clone)]
pub struct Router {
    cells: Vec<CellRule>,
    /// Number of waves (1 without an ordered rollout).
    pub waves: usize,
    /// Weight of cells whose wave has finished (1 − holdback).
    final_weight: f64,
}

#[derive(Debug, Clone, Copy)]
struct CellRule {
    eligible: bool,
    wave: usize,
    cap: f64,
}

/// Where the rollout is: which stage of which wave.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Position {
    pub wave: usize,
    /// The stage weight (a fraction).
    pub weight: f64,
}

impl Router {
    pub fn new(policy: &Policy, cells: &Cells) -> Router {
        let waves_policy = policy.segment_policies.iter().find(|p| !p.waves.is_empty());
        let waves = waves_policy.map_or(1, |p| {
            let explicit = p.waves.len();
            // Values in no wave form a final wave, if any such value exists.
            let rest = cells.values.iter().enumerate().any(|(c, _)| {
                let v = cells.value(c as u32, &p.column).unwrap_or("");
                !p.waves.iter().any(|w| w.iter().any(|x| x == v))
            });
            explicit + usize::from(rest)
        });
        let rules = (0..cells.len() as u32)
            .map(|cell| {
                let mut rule = CellRule { eligible: true, wave: 0, cap: 1.0 };
                for p in &policy.segment_policies {
                    let v = cells.value(cell, &p.column).unwrap_or("");
                    if p.include.as_ref().is_some_and(|inc| !inc.iter().any(|x| x == v)) || p.exclude.iter().any(|x| x == v) {
                        rule.eligible = false;
                    }
                    if let Some(cap) = p.caps.get(v) {
                        rule.cap = rule.cap.min(*cap);
                    }
                    if !p.waves.is_empty() {
                        rule.wave = p.waves.iter().position(|w| w.iter().any(|x| x == v)).unwrap_or(p.waves.len());
                    }
                }
                rule
            })
            .collect();
        Router { cells: rules, waves, final_weight: 1.0 - policy.ramp.holdback }
    }

    /// The candidate fraction of a cell's requests at this position.
    pub fn weight(&self, cell: u32, at: Position) -> f64 {
        let rule = self.cells[cell as usize];
        if !rule.eligible || rule.wave > at.wave {
            return 0.0;
        }
        let w = if rule.wave < at.wave { self.final_weight } else { at.weight };
        w.min(rule.cap)
    }

    /// Every cell's weight at this position.
    pub fn weights(&self, at: Position) -> Vec<f64> {
        (0..self.cells.len() as u32).map(|c| self.weight(c, at)).collect()
    }
}

/// Whether a request with routing hash `u` goes to the candidate at weight `w`.
pub fn to_candidate(u: f64, w: f64) -> bool {
    u < w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash;
    use crate::policy::raw::RawSegmentPolicy;
    use crate::policy::{RawPolicy, TrafficShape};
    use std::collections::BTreeMap;

    fn cells() -> Cells {
        let mut cells = Cells::new(vec!["origin".into()]);
        for v in ["EWR", "JFK", "LGA"] {
            cells.id(v);
        }
        cells
    }

    fn policy(segment: RawSegmentPolicy, holdback: f64) -> Policy {
        let segments = vec!["origin".to_string()];
        let raw = RawPolicy {
            segment_policy: vec![segment],
            ramp: Some(crate::policy::raw::RawRamp { holdback: Some(holdback), ..Default::default() }),
            ..Default::default()
        };
        let mut problems = Vec::new();
        let p = Policy::from_raw(&raw, &TrafficShape { segments: &segments, labelled: false }, "t.toml", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        p
    }

    #[test]
    fn excluded_and_not_included_segments_never_get_the_candidate() {
        let cells = cells();
        let router = Router::new(
            &policy(RawSegmentPolicy { column: "origin".into(), exclude: vec!["LGA".into()], ..Default::default() }, 0.0),
            &cells,
        );
        assert_eq!(router.weights(Position { wave: 0, weight: 0.25 }), [0.25, 0.25, 0.0]);
        let router = Router::new(
            &policy(RawSegmentPolicy { column: "origin".into(), include: Some(vec!["JFK".into()]), ..Default::default() }, 0.0),
            &cells,
        );
        assert_eq!(router.weights(Position { wave: 0, weight: 1.0 }), [0.0, 1.0, 0.0]);
    }

    #[test]
    fn caps_limit_a_segment_and_waves_order_the_rollout() {
        let cells = cells();
        let capped = policy(
            RawSegmentPolicy { column: "origin".into(), caps: BTreeMap::from([("JFK".to_string(), 10.0)]), ..Default::default() },
            0.0,
        );
        let router = Router::new(&capped, &cells);
        assert_eq!(router.weights(Position { wave: 0, weight: 0.5 }), [0.5, 0.1, 0.5]);
        assert!(capped.weights().contains(&0.1), "the fast path knows the capped weight");
        let waves = policy(
            RawSegmentPolicy { column: "origin".into(), waves: vec![vec!["EWR".into()], vec!["JFK".into()]], ..Default::default() },
            20.0,
        );
        let router = Router::new(&waves, &cells);
        assert_eq!(router.waves, 3, "EWR, JFK, then the rest");
        assert_eq!(router.weights(Position { wave: 0, weight: 0.05 }), [0.05, 0.0, 0.0]);
        // Finished waves stay at the final weight (100% minus the holdback).
        assert_eq!(router.weights(Position { wave: 2, weight: 0.05 }), [0.8, 0.8, 0.05]);
    }

    #[test]
    fn routing_is_sticky_monotone_and_close_to_the_weight() {
        let entities: Vec<String> = (0..20_000).map(|i| format!("N{i:05}")).collect();
        let u: Vec<f64> = entities.iter().map(|e| hash::unit("salt", e.as_bytes())).collect();
        let mut previous: Option<Vec<bool>> = None;
        for w in [0.01, 0.05, 0.25, 0.5, 1.0] {
            let arms: Vec<bool> = u.iter().map(|u| to_candidate(*u, w)).collect();
            // Share within 4 binomial standard deviations of w.
            let share = arms.iter().filter(|a| **a).count() as f64 / u.len() as f64;
            let sd = (w * (1.0 - w) / u.len() as f64).sqrt();
            assert!((share - w).abs() <= 4.0 * sd + 1e-12, "w {w}: share {share}");
            // Monotone: everyone on the candidate at the lower weight stays there.
            if let Some(before) = &previous {
                assert!(before.iter().zip(&arms).all(|(b, a)| !*b || *a));
            }
            // Sticky: the same entity routes the same way again.
            let again: Vec<bool> = entities.iter().map(|e| to_candidate(hash::unit("salt", e.as_bytes()), w)).collect();
            assert_eq!(again, arms);
            previous = Some(arms);
        }
    }
}
