//! Per-request latency, measured on a deterministic sample of requests.
//!
//! Batch throughput says nothing about what one request costs when served alone, so latency is
//! measured separately: a request is sampled when the salted hash of its id falls below
//! `scoring.latency_sample` (the same requests on every run). Each sampled request is run alone
//! (a batch of one row) through both models, one right after the other; which goes first is
//! decided by a second hash of the id (half the requests each way), so machine noise and cache
//! effects hit both models alike. The clock covers building the input tensor, `Session::run` and
//! reading the score — what a serving process pays per request. Each scoring worker measures the
//! sampled requests of the batch it has just scored, on its own sessions (same thread settings as
//! scoring), so the other workers keep the machine as busy as a serving host; before its first
//! measurement a worker runs each model `scoring.latency_warmup` times untimed. Latencies are
//! wall-clock measurements: re-scoring measures them anew, so they are the one part of the cache
//! that is not reproducible bit for bit.

use std::time::Instant;

use arrow::array::{Array, AsArray};
use ort::session::Session;

use super::model::Model;
use super::model_columns;
use crate::hash;
use crate::ingest::{Layout, TrafficBatch};
use crate::scenario::Scoring;

/// How latency was measured, for summaries.
pub const METHOD: &str =
    "single-row runs of a hashed sample of request ids, stable and candidate back to back in alternating order, after warm-up";

/// The salt of the latency sample, so it is independent of routing.
const SALT: &str = "canary-replay/latency";
const ORDER_SALT: &str = "canary-replay/latency-order";

pub struct Sampler {
    rate: f64,
    warmup: usize,
    warmed: bool,
}

impl Sampler {
    pub fn new(scoring: &Scoring) -> Self {
        Self { rate: scoring.latency_sample, warmup: scoring.latency_warmup, warmed: false }
    }

    /// Whether the request with this id is in the latency sample.
    pub fn sampled(rate: f64, id: &str) -> bool {
        rate > 0.0 && hash::unit(SALT, id.as_bytes()) < rate
    }

    /// Whether the stable model runs first for this (sampled) request.
    fn stable_first(id: &str) -> bool {
        hash::unit(ORDER_SALT, id.as_bytes()) < 0.5
    }

    /// Measures the sampled requests of `batch`, writing microseconds into `out[model][row]`.
    #[allow(clippy::needless_range_loop)] // `row` indexes the batch's columns and both outputs alike
    pub fn measure(
        &mut self,
        sessions: &mut [Session; 2],
        models: [&Model; 2],
        layout: &Layout,
        batch: &TrafficBatch,
        out: [&mut Vec<Option<f64>>; 2],
    ) {
        if self.rate <= 0.0 {
            return;
        }
        let ids = batch.id.as_string::<i32>();
        let columns = [model_columns(models[0], layout, batch), model_columns(models[1], layout, batch)];
        let outs = out;
        for row in 0..batch.len() {
            if ids.is_null(row) || !Self::sampled(self.rate, ids.value(row)) {
                continue;
            }
            if !self.warmed {
                for _ in 0..self.warmup {
                    for m in 0..2 {
                        let _ = models[m].predict(&mut sessions[m], &columns[m], row..row + 1);
                    }
                }
                self.warmed = true;
            }
            let order = if Self::stable_first(ids.value(row)) { [0, 1] } else { [1, 0] };
            for m in order {
                let started = Instant::now();
                let result = models[m].predict(&mut sessions[m], &columns[m], row..row + 1);
                let micros = started.elapsed().as_secs_f64() * crate::time::MICROS_PER_SECOND as f64;
                if result.is_ok() {
                    outs[m][row] = Some(micros);
                }
            }
        }
    }
}
