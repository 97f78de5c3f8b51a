//! The search space of `tune`: which policy keys vary over which values, and how variants are
//! drawn (a full grid, or seeded random samples). A variant is a list of (key, value) overrides
//! applied to each scenario's effective policy before it is validated like any scenario policy.
//!
//! ```toml
//! [search]
//! method = "random"          # or "grid"
//! samples = 200              # random: variants drawn (the scenarios' own policies always run too)
//! seed = 1
//! salts = 10                 # routing salts per "promote" scenario (false-rollback rate)
//! windows = 2                # start times per "promote" scenario: the replay from its first
//!                            # request, and from each later k/windows of its span
//! false_rollback_budget = 0.05
//! promote_within = "7d"      # a good replay counts as promoted only when it promotes this soon
//! min_promoted = 0.9         # share of good replays that must (0: a policy that never promotes
//!                            # is feasible)
//! cut_dominated = true       # stop a variant once a finished feasible one is sure to dominate it
//!                            # (the frontier and the winner are the same; false: every variant
//!                            # replayed to the end of its cuts at incidents and false rollbacks)
//!
//! [[param]]
//! key = "decision.alpha"
//! values = [0.01, 0.05, 0.1]
//!
//! [[param]]
//! key = "gates.log_loss.margin"
//! range = [0.005, 0.05]
//! log = true                 # log-uniform (random) / log-spaced (grid)
//! steps = 4                  # grid points of a range
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Problem, Result};
use crate::time::Micros;

/// `search.promote_within` when unset: a release that takes over a week to promote is not one a
/// team would call promoted.
pub const DEFAULT_PROMOTE_WITHIN: &str = "7d";
/// `search.min_promoted` when unset.
pub const DEFAULT_MIN_PROMOTED: f64 = 0.9;

/// Keys a parameter may set, besides `gates.<metric>.<field>`.
pub const KEYS: [&str; 10] = [
    "ramp.stages",
    "ramp.bake",
    "ramp.check_every",
    "ramp.max_stage_time",
    "ramp.window",
    "decision.alpha",
    "decision.consecutive_failures",
    "decision.total_failures",
    "decision.min_samples",
    "decision.on_timeout",
];

/// Fields of `gates.<metric>.<field>`.
pub const GATE_FIELDS: [&str; 6] = ["margin", "min", "max", "min_samples", "critical", "from_weight"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpace {
    search: Option<RawSearch>,
    #[serde(default)]
    param: Vec<RawParam>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    method: Option<String>,
    samples: Option<usize>,
    seed: Option<u64>,
    salts: Option<usize>,
    windows: Option<usize>,
    false_rollback_budget: Option<f64>,
    promote_within: Option<String>,
    min_promoted: Option<f64>,
    cut_dominated: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    key: String,
    values: Option<Vec<toml::Value>>,
    range: Option<[f64; 2]>,
    log: Option<bool>,
    steps: Option<usize>,
    integer: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Grid,
    Random,
}

/// A parameter's domain.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    Values(Vec<toml::Value>),
    Range { lo: f64, hi: f64, log: bool, steps: usize, integer: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub key: String,
    pub domain: Domain,
}

/// A validated search space.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub method: Method,
    pub samples: usize,
    pub seed: u64,
    pub salts: usize,
    /// Start times per good scenario (its first request, then each k/windows of its span).
    pub windows: usize,
    pub false_rollback_budget: f64,
    /// A good replay counts as promoted when it promotes within this long of its first request.
    pub promote_within: Micros,
    /// The share of good replays a feasible policy promotes within `promote_within`.
    pub min_promoted: f64,
    /// Whether to stop variants once sure to be dominated on the frontier.
    pub cut_dominated: bool,
    pub params: Vec<Param>,
}

/// One variant: values for the space's parameters, in order.
pub type Variant = Vec<(String, toml::Value)>;

/// Reads and validates a space file, reporting every problem at once.
pub fn load(path: &Path) -> Result<Space> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(Problem::new(file.clone(), format!("cannot be read: {e}")).fix("pass the search-space TOML file with --space"))
    })?;
    parse(&text, &file)
}

pub fn parse(text: &str, file: &str) -> Result<Space> {
    let raw: RawSpace = toml::from_str(text).map_err(|e| {
        Error::invalid(Problem::new(file.to_string(), e.message().to_string()).fix("see `canary-replay tune --help` and docs/tuning.md"))
    })?;
    let mut problems = Vec::new();
    let mut problem = |key: String, message: String, fix: Option<String>| {
        let mut p = Problem::new(format!("{file}: {key}"), message);
        p.fix = fix;
        problems.push(p);
    };
    let search = raw.search.unwrap_or(RawSearch {
        method: None,
        samples: None,
        seed: None,
        salts: None,
        windows: None,
        false_rollback_budget: None,
        promote_within: None,
        min_promoted: None,
        cut_dominated: None,
    });
    let method = match search.method.as_deref().unwrap_or("random") {
        "grid" => Method::Grid,
        "random" => Method::Random,
        other => {
            problem("search.method".into(), format!("\"{other}\" is not a search method"), Some("use \"grid\" or \"random\"".into()));
            Method::Random
        }
    };
    let budget = search.false_rollback_budget.unwrap_or(0.05);
    if !(budget > 0.0 && budget < 1.0) {
        problem("search.false_rollback_budget".into(), format!("{budget} is not a rate in (0, 1)"), Some("e.g. 0.05".into()));
    }
    let promote_within = match crate::time::parse_duration(search.promote_within.as_deref().unwrap_or(DEFAULT_PROMOTE_WITHIN)) {
        Ok(d) if d > 0 => d,
        _ => {
            problem(
                "search.promote_within".into(),
                format!("\"{}\" is not a positive duration", search.promote_within.as_deref().unwrap_or_default()),
                Some("e.g. \"7d\" or \"36h\"".into()),
            );
            0
        }
    };
    let min_promoted = search.min_promoted.unwrap_or(DEFAULT_MIN_PROMOTED);
    if !(0.0..=1.0).contains(&min_promoted) {
        problem(
            "search.min_promoted".into(),
            format!("{min_promoted} is not a share in [0, 1]"),
            Some("e.g. 0.9; 0 lets a policy that never promotes be feasible".into()),
        );
    }
    let salts = search.salts.unwrap_or(10);
    if salts == 0 {
        problem("search.salts".into(), "must be at least 1".into(), None);
    }
    let windows = search.windows.unwrap_or(1);
    if windows == 0 {
        problem(
            "search.windows".into(),
            "must be at least 1".into(),
            Some("1 replays each good scenario from its first request only".into()),
        );
    }
    let mut params = Vec::new();
    if raw.param.is_empty() {
        problem(
            "param".into(),
            "no [[param]] to vary".into(),
            Some("add e.g. [[param]] key = \"decision.alpha\" values = [0.01, 0.05]".into()),
        );
    }
    for (i, p) in raw.param.iter().enumerate() {
        let at = format!("param[{i}]");
        if !valid_key(&p.key) {
            let fix = crate::error::did_you_mean(
                &p.key,
                KEYS.iter().copied().chain(["gates.log_loss.margin", "gates.latency_mean.margin", "gates.error_rate.min_samples"]),
            )
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| format!("one of {}, or gates.<metric>.{{{}}}", KEYS.join(", "), GATE_FIELDS.join(", ")));
            problem(format!("{at}.key"), format!("\"{}\" is not a tunable key", p.key), Some(fix));
        }
        if params.iter().any(|q: &Param| q.key == p.key) {
            problem(format!("{at}.key"), format!("\"{}\" is varied twice", p.key), None);
        }
        let domain = match (&p.values, p.range) {
            (Some(values), None) if !values.is_empty() => Domain::Values(values.clone()),
            (None, Some([lo, hi])) if lo.is_finite() && hi.is_finite() && lo < hi && (!p.log.unwrap_or(false) || lo > 0.0) => {
                let steps = p.steps.unwrap_or(5);
                if steps < 2 {
                    problem(format!("{at}.steps"), "a range needs at least 2 grid points".into(), None);
                }
                Domain::Range { lo, hi, log: p.log.unwrap_or(false), steps: steps.max(2), integer: p.integer.unwrap_or(false) }
            }
            (None, Some([lo, hi])) => {
                problem(
                    format!("{at}.range"),
                    format!("[{lo}, {hi}] is not an increasing range{}", if p.log == Some(true) { " of positive numbers" } else { "" }),
                    None,
                );
                continue;
            }
            _ => {
                problem(at.clone(), "give either `values = [...]` or `range = [lo, hi]`".into(), None);
                continue;
            }
        };
        params.push(Param { key: p.key.clone(), domain });
    }
    let space = Space {
        method,
        samples: search.samples.unwrap_or(100),
        seed: search.seed.unwrap_or(1),
        salts,
        windows,
        false_rollback_budget: budget,
        promote_within,
        min_promoted,
        cut_dominated: search.cut_dominated.unwrap_or(true),
        params,
    };
    crate::error::check(space, problems)
}

fn valid_key(key: &str) -> bool {
    if KEYS.contains(&key) {
        return true;
    }
    let parts: Vec<&str> = key.split('.').collect();
    parts.len() == 3 && parts[0] == "gates" && crate::policy::Metric::parse(parts[1]).is_some() && GATE_FIELDS.contains(&parts[2])
}

impl Domain {
    fn grid(&self) -> Vec<toml::Value> {
        match self {
            Domain::Values(v) => v.clone(),
            Domain::Range { lo, hi, log, steps, integer } => {
                let mut points: Vec<toml::Value> = Vec::new();
                for i in 0..*steps {
                    let t = i as f64 / (*steps - 1) as f64;
                    let x = if *log { (lo.ln() + t * (hi.ln() - lo.ln())).exp() } else { lo + t * (hi - lo) };
                    let value = number(x, *integer);
                    if !points.contains(&value) {
                        points.push(value);
                    }
                }
                points
            }
        }
    }

    fn sample(&self, rng: &mut SplitMix) -> toml::Value {
        match self {
            Domain::Values(v) => v[(rng.next() * v.len() as f64) as usize % v.len()].clone(),
            Domain::Range { lo, hi, log, integer, .. } => {
                let t = rng.next();
                let x = if *log { (lo.ln() + t * (hi.ln() - lo.ln())).exp() } else { lo + t * (hi - lo) };
                number(x, *integer)
            }
        }
    }
}

fn number(x: f64, integer: bool) -> toml::Value {
    if integer {
        toml::Value::Integer(x.round() as i64)
    } else {
        // Four significant digits: readable policies, and equal draws dedupe.
        let digits = 3 - x.abs().log10().floor() as i32;
        let scale = 10f64.powi(digits.clamp(0, 12));
        toml::Value::Float((x * scale).round() / scale)
    }
}

/// A small deterministic generator (SplitMix64): the same seed gives the same variants.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Space {
    /// The variants to evaluate: every grid point, or `samples` distinct random draws.
    pub fn variants(&self) -> Vec<Variant> {
        match self.method {
            Method::Grid => {
                let mut variants: Vec<Variant> = vec![Vec::new()];
                for p in &self.params {
                    variants = variants
                        .into_iter()
                        .flat_map(|v| p.domain.grid().into_iter().map(move |x| [v.clone(), vec![(p.key.clone(), x)]].concat()))
                        .collect();
                }
                variants
            }
            Method::Random => {
                let mut rng = SplitMix(self.seed);
                let mut variants: Vec<Variant> = Vec::new();
                let mut attempts = 0;
                while variants.len() < self.samples && attempts < self.samples * 20 {
                    attempts += 1;
                    let v: Variant = self.params.iter().map(|p| (p.key.clone(), p.domain.sample(&mut rng))).collect();
                    if !variants.contains(&v) {
                        variants.push(v);
                    }
                }
                variants
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACE: &str = r#"
[search]
method = "grid"
[[param]]
key = "decision.alpha"
values = [0.01, 0.05]
[[param]]
key = "gates.log_loss.margin"
range = [0.01, 0.04]
log = true
steps = 3
"#;

    #[test]
    fn a_grid_is_the_product_of_the_domains() {
        let space = parse(SPACE, "space.toml").unwrap();
        let variants = space.variants();
        assert_eq!(variants.len(), 6);
        let margins: Vec<f64> = variants.iter().take(3).map(|v| v[1].1.as_float().unwrap()).collect();
        assert_eq!(margins, vec![0.01, 0.02, 0.04]);
    }

    #[test]
    fn random_draws_are_seeded_and_distinct() {
        let space = parse(&SPACE.replace("\"grid\"", "\"random\"\nsamples = 5\nseed = 7"), "space.toml").unwrap();
        let (a, b) = (space.variants(), space.variants());
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
        for v in &a {
            let m = v[1].1.as_float().unwrap();
            assert!((0.01..=0.04).contains(&m), "{m}");
        }
    }

    #[test]
    fn a_missing_space_file_is_named() {
        let err = load(Path::new("no/such/space.toml")).unwrap_err().to_string();
        assert!(err.contains("no/such/space.toml: cannot be read") && err.contains("--space"), "{err}");
    }

    #[test]
    fn bad_spaces_name_every_problem() {
        let text = "[search]\nmethod = \"anneal\"\nwindows = 0\npromote_within = \"soon\"\nmin_promoted = 1.5\n[[param]]\nkey = \"decision.alpah\"\nvalues = [0.1]\n[[param]]\nkey = \"gates.log_loss.margin\"\nrange = [0.5, 0.1]\n";
        let Err(Error::Invalid(problems)) = parse(text, "space.toml") else { panic!("accepted") };
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let all = text.join("\n");
        assert!(all.contains("search.method") && all.contains("anneal"), "{all}");
        assert!(all.contains("search.windows") && all.contains("must be at least 1"), "{all}");
        assert!(all.contains("param[0].key") && all.contains("decision.alpha"), "{all}");
        assert!(all.contains("param[1].range"), "{all}");
        assert!(all.contains("search.promote_within") && all.contains("\"soon\" is not a positive duration"), "{all}");
        assert!(all.contains("search.min_promoted") && all.contains("1.5 is not a share"), "{all}");
    }

    #[test]
    fn promotion_is_required_by_default() {
        let space = parse(SPACE, "space.toml").unwrap();
        assert_eq!((space.promote_within, space.min_promoted), (7 * crate::time::MICROS_PER_DAY, 0.9));
        let off = parse(&SPACE.replace("method = \"grid\"", "method = \"grid\"\nmin_promoted = 0\npromote_within = \"36h\""), "space.toml")
            .unwrap();
        assert_eq!((off.promote_within, off.min_promoted), (36 * crate::time::MICROS_PER_HOUR, 0.0));
    }
}
