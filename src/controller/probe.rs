//! What a controller's metric query would have returned on the replayed traffic.
//!
//! A controller sees one service: its queries aggregate every request, whatever the segment. Each
//! request goes to the arm its entity hash and the weight in force at its time say ([`Schedule`]),
//! a label counts once it has arrived, and the probe evaluates the mapped canary-replay metric on
//! one arm, or compares the two. It reads the traffic from the fast path's index with the rows of
//! the buckets a query cuts ([`crate::simulate::ranged`]), or with `--reference` from every routed
//! row; both give the same statistics bit for bit.

use super::spec::{Arm, Mapping};
use crate::simulate::metrics::{drift_between, ArmStats, Scale};
use crate::simulate::ranged::{Labels, Ranged, Routing, Sink};
use crate::simulate::replay::Row;
use crate::simulate::router::to_candidate;
use crate::time::Micros;

/// The candidate weight over time: `(from, weight)` in time order; 0 before the first entry. With
/// a mask (A/B testing), the weight applies only to the masked cells until the given time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedule(pub Vec<(Micros, f64)>, pub Option<(Vec<bool>, Micros)>);

impl Schedule {
    /// The weight of `cell`'s requests at `t`.
    pub fn weight(&self, t: Micros, cell: u32) -> f64 {
        match &self.1 {
            Some((mask, until)) if t < *until && !mask[cell as usize] => 0.0,
            _ => self.at(t),
        }
    }

    pub fn at(&self, t: Micros) -> f64 {
        let i = self.0.partition_point(|(from, _)| *from <= t);
        if i == 0 {
            0.0
        } else {
            self.0[i - 1].1
        }
    }

    /// Sets the weight from `t` on (a later change replaces any at the same instant).
    pub fn set(&mut self, t: Micros, weight: f64) {
        if let Some(last) = self.0.last_mut() {
            if last.0 == t {
                last.1 = weight;
                return;
            }
            if last.1 == weight {
                return;
            }
        }
        self.0.push((t, weight));
    }
}

impl Routing for Schedule {
    fn weight(&self, t: Micros, cell: u32) -> f64 {
        Schedule::weight(self, t, cell)
    }

    fn changes_within(&self, a: Micros, b: Micros) -> bool {
        let inside = |t: Micros| t > a && t < b;
        self.0.iter().any(|(t, _)| inside(*t)) || self.1.as_ref().is_some_and(|(_, until)| inside(*until))
    }
}

/// Where the probe reads the traffic.
enum Traffic<'a> {
    /// Every row (the reference).
    Rows(&'a [Row]),
    /// The fast path's summaries and the rows of a few buckets at a time.
    Ranged(&'a Ranged<'a>),
}

pub struct Probe<'a> {
    traffic: Traffic<'a>,
    scale: Scale,
}

/// Both arms of the whole service.
struct Service([ArmStats; 2]);

impl Sink for Service {
    fn add(&mut self, _: u32, _: f64, arm: usize, add: &mut dyn FnMut(&mut ArmStats)) {
        add(&mut self.0[arm]);
    }
}

impl<'a> Probe<'a> {
    /// A probe reading every row (the reference).
    pub fn new(rows: &'a [Row], scale: Scale) -> Self {
        Self { traffic: Traffic::Rows(rows), scale }
    }

    /// A probe reading the fast path's summaries, with their scale.
    pub fn ranged(ranged: &'a Ranged<'a>) -> Self {
        Self { traffic: Traffic::Ranged(ranged), scale: ranged.scale() }
    }

    /// [stable, candidate] statistics of requests in [start, end) under `schedule`; with `mirror`
    /// the candidate also scores every request (its answers discarded), as under traffic mirroring.
    pub fn arms(&self, start: Micros, end: Micros, schedule: &Schedule, mirror: bool) -> [ArmStats; 2] {
        self.arms_with_labels_until(start, end, end, schedule, mirror)
    }

    /// [`Probe::arms`] counting the labels that arrived before `labels_until`.
    fn arms_with_labels_until(&self, start: Micros, end: Micros, labels_until: Micros, schedule: &Schedule, mirror: bool) -> [ArmStats; 2] {
        let rows = match self.traffic {
            Traffic::Rows(rows) => rows,
            Traffic::Ranged(ranged) => {
                let mut service = Service([ArmStats::default(), ArmStats::default()]);
                ranged.visit(start, end, Labels::Before(labels_until), schedule, mirror, &mut service);
                return service.0;
            }
        };
        let a = rows.partition_point(|r| r.time < start);
        let b = rows.partition_point(|r| r.time < end);
        let mut arms = [ArmStats::default(), ArmStats::default()];
        for row in &rows[a..b] {
            let served = usize::from(to_candidate(row.u, schedule.weight(row.time, row.cell)));
            let seen: &[usize] = if mirror { &[0, 1] } else { std::slice::from_ref(&served) };
            for &arm in seen {
                let out = &row.output(arm);
                arms[arm].add(&self.scale.contribution(out));
                if let (Some(y), Some(lt)) = (row.label(), row.label_time()) {
                    if lt < labels_until {
                        if let Some(q) = self.scale.quality(out, y) {
                            arms[arm].add_quality(&q);
                        }
                    }
                }
            }
        }
        arms
    }

    /// The mapped metric over [end − lookback, end), as a Prometheus query would return it: `None`
    /// (an empty result) while a series it reads does not exist yet — the arm has served no request
    /// since the rollout began — and NaN when the series exists but the window holds no data.
    pub fn measure(&self, mapping: &Mapping, end: Micros, lookback: Micros, schedule: &Schedule, mirror: bool) -> Option<f64> {
        let needs: &[usize] = match mapping.arm {
            Arm::Candidate => &[1],
            Arm::Stable => &[0],
            Arm::Difference | Arm::Ratio => &[0, 1],
        };
        if !mirror && !needs.iter().all(|&arm| self.ever_served(arm, end, schedule)) {
            return None;
        }
        let arms = self.arms(end - lookback, end, schedule, mirror);
        Some(self.value(mapping, &arms).unwrap_or(f64::NAN))
    }

    /// Whether `arm` served any request before `until` (the candidate's search starts where the
    /// schedule first routes to it; the stable model serves from the first request).
    fn ever_served(&self, arm: usize, until: Micros, schedule: &Schedule) -> bool {
        let from = if arm == 1 { schedule.0.first().map_or(Micros::MAX, |(t, _)| *t) } else { Micros::MIN };
        let rows = match self.traffic {
            Traffic::Rows(rows) => rows,
            Traffic::Ranged(ranged) => return ranged.served_any(arm, from, until, schedule),
        };
        let a = rows.partition_point(|r| r.time < from);
        rows[a..].iter().take_while(|r| r.time < until).any(|r| usize::from(to_candidate(r.u, schedule.weight(r.time, r.cell))) == arm)
    }

    /// The mapped metric on already gathered arms.
    pub fn value(&self, mapping: &Mapping, arms: &[ArmStats; 2]) -> Option<f64> {
        let [stable, candidate] = arms;
        let raw = if mapping.metric.is_drift() {
            drift_between(mapping.metric, stable, candidate, &self.scale.bins)?
        } else {
            let (s, c) = (|| stable.value(mapping.metric), || candidate.value(mapping.metric));
            match mapping.arm {
                Arm::Candidate => c()?,
                Arm::Stable => s()?,
                Arm::Difference => c()? - s()?,
                Arm::Ratio => {
                    let s = s()?;
                    if s == 0.0 {
                        return None;
                    }
                    c()? / s
                }
            }
        };
        Some(raw * mapping.scale + mapping.offset)
    }

    /// Per-step values of each arm of each mapped metric over [start, end) (Kayenta's time series,
    /// fetched at `end`: a step's labels count when they arrived before `end`); a step without data
    /// is NaN. Each step's requests are read once for all the metrics.
    pub fn series(&self, mappings: &[Mapping], start: Micros, end: Micros, step: Micros, schedule: &Schedule) -> Vec<[Vec<f64>; 2]> {
        let mut out = vec![[Vec::new(), Vec::new()]; mappings.len()];
        let mut t = start;
        while t < end {
            let next = (t + step).min(end);
            let arms = self.arms_with_labels_until(t, next, end, schedule, false);
            for (mapping, series) in mappings.iter().zip(out.iter_mut()) {
                for (arm, values) in series.iter_mut().enumerate() {
                    let v = if mapping.metric.is_drift() { None } else { arms[arm].value(mapping.metric) };
                    values.push(v.map_or(f64::NAN, |v| v * mapping.scale + mapping.offset));
                }
            }
            t = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_holds_each_weight_until_the_next_change() {
        let mut s = Schedule::default();
        s.set(10, 0.1);
        s.set(20, 0.5);
        s.set(20, 0.6);
        s.set(30, 0.6);
        assert_eq!(s.0, vec![(10, 0.1), (20, 0.6)]);
        assert_eq!((s.at(9), s.at(10), s.at(19), s.at(20), s.at(1000)), (0.0, 0.1, 0.1, 0.6, 0.6));
    }
}
