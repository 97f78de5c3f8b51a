//! canary-replay: an offline replay and simulation testbench for canary deployments of ML models.
//!
//! The pipeline runs one way: [`scenario`] → [`ingest`] → [`score`] → [`oracle`] → [`report`].

// `!(x > 0.0)` is how this crate says "not positive, or NaN": the negation is the point.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod atomic;
pub mod controller;
pub mod error;
pub mod hash;
pub mod ingest;
pub mod inspect;
pub mod memory;
pub mod oracle;
pub mod output;
pub mod policy;
pub mod progress;
pub mod report;
pub mod run;
pub mod runtime;
pub mod scenario;
pub mod score;
pub mod shard;
pub mod simulate;
pub mod stats;
pub mod storage;
pub mod time;
pub mod tune;
