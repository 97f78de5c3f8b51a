//! The live controllers teams run today, emulated: their decision rules, exactly as the
//! controllers apply them, so a replay can show what a team's current canary configuration would
//! have done next to a statistically sound policy.
//!
//! Status (issue #7): Argo Rollouts' measurement, metric and run rules ([`argo`]) and its condition
//! expressions ([`condition`]) are in place and tested against the controller's documented edge
//! cases. Not yet: reading Rollout / AnalysisTemplate, Flagger Canary and Kayenta files, mapping
//! their metrics onto canary-replay's, replaying them on the traffic, and the side-by-side report.

pub mod argo;
pub mod condition;
