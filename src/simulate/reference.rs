//! The reference simulator's statistics: every window recomputed from the rows, one request at a
//! time. Slow by design (each check reads every request of its window again) and simple enough to
//! trust; the fast path must reach the very same decisions.

use super::metrics::Scale;
use super::replay::Row;
use super::router::to_candidate;
use super::window::{Scopes, WindowStats};
use super::Source;
use crate::time::Micros;

pub struct Reference<'a> {
    rows: &'a [Row],
    scopes: &'a Scopes,
    scale: Scale,
    stats: WindowStats,
}

impl<'a> Reference<'a> {
    pub fn new(rows: &'a [Row], scopes: &'a Scopes, scale: Scale) -> Self {
        Self { rows, scopes, scale, stats: WindowStats::new(scopes.len()) }
    }

    fn span(&self, start: Micros, end: Micros) -> &'a [Row] {
        let a = self.rows.partition_point(|r| r.time < start);
        let b = self.rows.partition_point(|r| r.time < end);
        &self.rows[a..b]
    }
}

impl Source for Reference<'_> {
    fn window(&mut self, start: Micros, end: Micros, weights: &[f64]) -> &WindowStats {
        self.stats.clear();
        for row in self.span(start, end) {
            let w = weights[row.cell as usize];
            if !(w > 0.0 && w < 1.0) {
                continue;
            }
            let arm = usize::from(to_candidate(row.u, w));
            let scopes = &self.scopes.of_cell[row.cell as usize];
            let out = &row.output(arm);
            self.stats.add(scopes, w, arm, &self.scale.contribution(out));
            if let (Some(y), Some(lt)) = (row.label(), row.label_time()) {
                if lt < end {
                    if let Some(q) = self.scale.quality(out, y) {
                        self.stats.add_quality(scopes, w, arm, &q);
                    }
                }
            }
        }
        &self.stats
    }

    fn served(&mut self, start: Micros, end: Micros, weights: &[f64]) -> Vec<[u64; 2]> {
        let mut out = vec![[0u64; 2]; self.scopes.len()];
        for row in self.span(start, end) {
            let arm = usize::from(to_candidate(row.u, weights[row.cell as usize]));
            for &s in &self.scopes.of_cell[row.cell as usize] {
                out[s][arm] += 1;
            }
        }
        out
    }

    fn oracle(&mut self, start: Micros, end: Micros) -> WindowStats {
        let mut stats = WindowStats::new(self.scopes.len());
        for row in self.span(start, end) {
            let scopes = &self.scopes.of_cell[row.cell as usize];
            for (arm, out) in row.outputs().iter().enumerate() {
                stats.add(scopes, 1.0, arm, &self.scale.contribution(out));
                if let Some(q) = row.label().and_then(|y| self.scale.quality(out, y)) {
                    stats.add_quality(scopes, 1.0, arm, &q);
                }
            }
        }
        stats
    }
}
