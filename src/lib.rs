//! canary-replay: an offline replay and simulation testbench for canary deployments of ML models.
//!
//! The pipeline runs one way: [`scenario`] → [`ingest`] → [`score`] → [`oracle`] → [`report`].

pub mod error;
pub mod ingest;
pub mod runtime;
pub mod scenario;
pub mod simulate;
pub mod time;
pub mod atomic;
pub mod hash;
pub mod inspect;
pub mod oracle;
pub mod policy;
pub mod progress;
pub mod report;
pub mod run;
pub mod score;
pub mod stats;
