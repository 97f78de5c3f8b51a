//! Statistics, one file per method. Each file opens with the method, its assumptions and its
//! source, and is tested against published reference values (see STATS.md).

pub mod drift;
pub mod quality;
pub mod quantile;
pub mod sketch;
