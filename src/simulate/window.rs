//! The statistics a check reads: for every scope (all traffic, and each value of the segment
//! columns the gates name), the stable-served and candidate-served arms, kept apart by the
//! routing weight their cells had. Cells at different weights (segment caps) are compared within
//! their weight and combined by traffic share, so a cap never confounds the comparison; cells at
//! weight 0 or 1 have no comparison and are left out.

use std::borrow::Cow;

use serde::Serialize;

use super::metrics::{ArmStats, Contribution, Quality};
use super::replay::Cells;

/// A scope: all traffic, or one value of one segment column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scope {
    pub column: Option<String>,
    pub value: Option<String>,
}

impl Scope {
    pub fn label(&self) -> String {
        match (&self.column, &self.value) {
            (Some(c), Some(v)) => format!("{c}={v}"),
            _ => "overall".into(),
        }
    }
}

/// The scopes, and which scopes each cell belongs to. Scope 0 is all traffic.
#[derive(Debug, Clone)]
pub struct Scopes {
    pub scopes: Vec<Scope>,
    pub of_cell: Vec<Vec<usize>>,
}

impl Scopes {
    /// All traffic plus each value of each of `columns`.
    pub fn new(cells: &Cells, columns: &[String]) -> Scopes {
        let mut scopes = vec![Scope { column: None, value: None }];
        let mut of_cell = vec![vec![0usize]; cells.len()];
        for column in columns {
            let mut values: Vec<String> = (0..cells.len() as u32).filter_map(|c| cells.value(c, column).map(str::to_string)).collect();
            values.sort();
            values.dedup();
            for value in values {
                let id = scopes.len();
                scopes.push(Scope { column: Some(column.clone()), value: Some(value.clone()) });
                for (c, list) in of_cell.iter_mut().enumerate() {
                    if cells.value(c as u32, column) == Some(value.as_str()) {
                        list.push(id);
                    }
                }
            }
        }
        Scopes { scopes, of_cell }
    }

    /// Scope ids for a gate: all traffic and each value of the gate's columns.
    pub fn for_columns(&self, columns: &[String]) -> Vec<usize> {
        let mut ids = vec![0];
        ids.extend((1..self.scopes.len()).filter(|&s| self.scopes[s].column.as_ref().is_some_and(|c| columns.contains(c))));
        ids
    }

    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }
}

/// Both arms of the cells routed at one weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub weight: f64,
    /// [stable-served, candidate-served].
    pub arms: [ArmStats; 2],
}

impl Group {
    pub fn is_empty(&self) -> bool {
        self.arms[0].s.requests == 0 && self.arms[1].s.requests == 0
    }
}

/// A window's statistics per scope.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub scopes: Vec<Vec<Group>>,
    /// Both arms empty: what [`WindowStats::merged`] lends for a scope without traffic.
    empty: [ArmStats; 2],
    /// Whether the arms keep histograms.
    histograms: bool,
}

impl WindowStats {
    pub fn new(scopes: usize) -> Self {
        Self::with_histograms(scopes, true)
    }

    /// Statistics whose arms keep histograms or not (see [`ArmStats::new`]).
    pub fn with_histograms(scopes: usize, histograms: bool) -> Self {
        Self { scopes: vec![Vec::new(); scopes], empty: [ArmStats::new(histograms), ArmStats::new(histograms)], histograms }
    }

    pub fn histograms(&self) -> bool {
        self.histograms
    }

    /// These statistics without histograms, as a window built without them holds.
    #[cfg(test)]
    pub fn scalars_only(&self) -> Self {
        let scopes = self
            .scopes
            .iter()
            .map(|groups| groups.iter().map(|g| Group { weight: g.weight, arms: g.arms.each_ref().map(ArmStats::scalars_only) }).collect())
            .collect();
        Self { scopes, empty: [ArmStats::new(false), ArmStats::new(false)], histograms: false }
    }

    /// Empties every arm, keeping the allocations for the next window.
    pub fn clear(&mut self) {
        for group in self.scopes.iter_mut().flatten() {
            for arm in &mut group.arms {
                arm.reset();
            }
        }
    }

    /// The arm of `scope` for cells at `weight`, created when first used.
    pub fn arm(&mut self, scope: usize, weight: f64, arm: usize) -> &mut ArmStats {
        let index = self.group(scope, weight);
        &mut self.scopes[scope][index].arms[arm]
    }

    /// The index of the group of `scope` for cells at `weight`, created when first used (indices
    /// stay valid until the next group is created).
    pub fn group(&mut self, scope: usize, weight: f64) -> usize {
        let groups = &mut self.scopes[scope];
        match groups.iter().position(|g| g.weight == weight) {
            Some(i) => i,
            None => {
                groups.push(Group { weight, arms: [ArmStats::new(self.histograms), ArmStats::new(self.histograms)] });
                groups.sort_by(|a, b| a.weight.total_cmp(&b.weight));
                groups.iter().position(|g| g.weight == weight).expect("just inserted")
            }
        }
    }

    /// Adds every arm of `o`, group by group.
    pub fn merge(&mut self, o: &WindowStats) {
        for (scope, groups) in o.scopes.iter().enumerate() {
            for g in groups {
                let index = self.group(scope, g.weight);
                for (arm, stats) in self.scopes[scope][index].arms.iter_mut().zip(&g.arms) {
                    arm.merge(stats);
                }
            }
        }
    }

    /// Adds one request served by `arm` to every scope of its cell.
    pub fn add(&mut self, scopes: &[usize], weight: f64, arm: usize, c: &Contribution) {
        for &s in scopes {
            self.arm(s, weight, arm).add(c);
        }
    }

    pub fn add_quality(&mut self, scopes: &[usize], weight: f64, arm: usize, q: &Quality) {
        for &s in scopes {
            self.arm(s, weight, arm).add_quality(q);
        }
    }

    /// The arms of a scope merged across weights (for point metrics and sample sizes); borrowed
    /// when the scope has a single weight, as it usually does.
    pub fn merged(&self, scope: usize) -> Cow<'_, [ArmStats; 2]> {
        let mut groups = self.scopes[scope].iter().filter(|g| !g.is_empty());
        match (groups.next(), groups.next()) {
            (None, _) => Cow::Borrowed(&self.empty),
            (Some(one), None) => Cow::Borrowed(&one.arms),
            _ => {
                let mut out = [ArmStats::new(self.histograms), ArmStats::new(self.histograms)];
                for g in self.scopes[scope].iter().filter(|g| !g.is_empty()) {
                    out[0].merge(&g.arms[0]);
                    out[1].merge(&g.arms[1]);
                }
                Cow::Owned(out)
            }
        }
    }
}
