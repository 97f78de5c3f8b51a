//! The live controllers teams run today, emulated on the replayed traffic: Argo Rollouts
//! ([`rollout`], with the analysis rules of [`argo`] and the conditions of [`condition`]),
//! Flagger ([`flagger`]) and Kayenta ([`kayenta`]), each read from its own files as its owners
//! write them ([`spec`]). Every controller's metric maps onto a canary-replay metric, arm and
//! scale; the [`probe`] computes what its query would have returned on the traffic routed the way
//! that controller routed it. The outcome becomes a [`Run`] so it is graded against the same
//! oracle as the canary-replay policy.

pub mod argo;
pub mod condition;
pub mod export;
pub mod flagger;
pub mod kayenta;
pub mod probe;
pub mod rollout;
pub mod spec;
#[cfg(test)]
mod tests;

use serde::Serialize;

use self::probe::{Probe, Schedule};
use self::spec::{Controller, Spec};
use crate::simulate::replay::Cells;
use crate::simulate::{Outcome, Period, Run};
use crate::time::Micros;

/// How many timeline entries a controller keeps (decisions and weight changes always; passing
/// measurements are only counted).
const MAX_EVENTS: usize = 400;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub time: Micros,
    /// Candidate weight in force (a fraction).
    pub weight: f64,
    pub what: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Events {
    pub list: Vec<Event>,
    /// Measurements or judgments taken.
    pub measurements: u64,
    /// Notable entries not kept (over [`MAX_EVENTS`]).
    pub omitted: u64,
}

impl Events {
    pub fn push(&mut self, time: Micros, schedule: &Schedule, what: String) {
        self.list.push(Event { time, weight: schedule.at(time), what });
    }

    /// A measurement; kept in the timeline when `notable` (not a plain pass) and room is left.
    pub fn measurement(&mut self, time: Micros, schedule: &Schedule, what: String, notable: bool) {
        self.measurements += 1;
        if notable {
            if self.list.len() < MAX_EVENTS {
                self.push(time, schedule, what);
            } else {
                self.omitted += 1;
            }
        }
    }
}

/// What an emulated controller did.
#[derive(Debug, Clone, PartialEq)]
pub struct Emulated {
    pub outcome: Outcome,
    pub decided_at: Micros,
    pub reason: String,
    /// The window of the measurement or judgment that decided (for grading a rollback).
    pub deciding_window: (Micros, Micros),
    /// The candidate's weight over time, after the decision included.
    pub schedule: Schedule,
    pub events: Events,
    /// What the emulation could not reproduce faithfully.
    pub caveats: Vec<String>,
}

impl Emulated {
    /// The controller decides at `at`: after a rollback no request goes to the candidate; after a
    /// promotion every request does (any A/B routing ends); a hold keeps the weight.
    pub fn decided(
        outcome: Outcome,
        at: Micros,
        reason: String,
        window: (Micros, Micros),
        mut schedule: Schedule,
        mut events: Events,
        caveats: Vec<String>,
    ) -> Emulated {
        match outcome {
            Outcome::RolledBack => schedule.set(at, 0.0),
            Outcome::Promoted => {
                schedule.set(at, 1.0);
                if let Some((_, until)) = schedule.1.as_mut() {
                    *until = (*until).min(at);
                }
            }
            Outcome::Held => {}
        }
        events.push(at, &schedule, format!("{}: {reason}", outcome.name()));
        Emulated { outcome, decided_at: at, reason, deciding_window: window, schedule, events, caveats }
    }

    /// As a simulation [`Run`] over [origin, end), each cell at the controller's weight.
    pub fn run(&self, origin: Micros, end: Micros, cells: usize) -> Run {
        let weights = |t: Micros| -> Vec<f64> { (0..cells as u32).map(|c| self.schedule.weight(t, c)).collect() };
        let mut changes: Vec<Micros> = self
            .schedule
            .0
            .iter()
            .map(|(t, _)| *t)
            .chain(self.schedule.1.as_ref().map(|(_, until)| *until))
            .filter(|t| *t > origin && *t < end)
            .collect();
        changes.sort_unstable();
        changes.dedup();
        let mut periods = Vec::new();
        let mut from = origin;
        for t in changes {
            periods.push(Period { start: from, end: t, weights: weights(from) });
            from = t;
        }
        periods.push(Period { start: from, end: end.max(from), weights: weights(from) });
        Run {
            outcome: self.outcome,
            decided_at: self.decided_at,
            reason: self.reason.clone(),
            origin,
            end,
            // Grading reads the periods; a controller's steps are in its own timeline.
            stages: Vec::new(),
            checks: Vec::new(),
            periods,
            deciding_window: self.deciding_window,
        }
    }
}

/// Replays one controller over [origin, end). `default_window` is the lookback of a query that
/// names none (the scenario's check interval).
pub fn emulate(
    controller: &Controller,
    spec: &Spec,
    probe: &Probe,
    cells: &Cells,
    origin: Micros,
    end: Micros,
    default_window: Micros,
) -> Emulated {
    match controller {
        Controller::Argo(r) => rollout::emulate(r, spec, probe, origin, end, default_window),
        Controller::Flagger(c) => flagger::emulate(c, spec, probe, cells, origin, end),
        Controller::Kayenta(k) => kayenta::emulate(k, spec, probe, origin, end),
    }
}
