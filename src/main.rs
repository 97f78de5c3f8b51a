//! The `canary-replay` command: parses arguments, calls the library, maps results to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use canary_replay::error::{exit, Error};
use canary_replay::runtime::RuntimeOptions;
use canary_replay::simulate::Outcome;
use canary_replay::{inspect, report, run, scenario};

#[derive(Parser)]
#[command(name = "canary-replay", version, about = "Offline replay and simulation testbench for canary deployments of ML models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where ONNX Runtime comes from.
#[derive(clap::Args, Clone)]
struct RuntimeArgs {
    /// ONNX Runtime shared library (or a folder holding one); default: search, then fetch once.
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// Never fetch ONNX Runtime from the Python package index (also: CANARY_REPLAY_NO_FETCH=1).
    #[arg(long)]
    no_fetch: bool,
}

impl RuntimeArgs {
    fn options(&self) -> RuntimeOptions {
        let mut options = RuntimeOptions::from_env();
        options.explicit = self.ort_lib.clone();
        options.allow_fetch &= !self.no_fetch;
        options
    }
}

#[derive(Subcommand)]
enum Command {
    /// Replay a scenario: score the traffic with both models and compare them.
    Run {
        scenario: PathBuf,
        /// Output folder (default: reports/<scenario name>/).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// Score cache: a folder, or an s3://, gs:// or az:// URL shared between machines
        /// (default: ~/.cache/canary-replay/scores, or $CANARY_REPLAY_CACHE/scores).
        #[arg(long, value_name = "DIR|URL")]
        cache_dir: Option<PathBuf>,
        /// Score again even when the cache holds scores for these inputs.
        #[arg(long)]
        rescore: bool,
        /// Print summary.json to stdout instead of the text summary.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Simulate with the row-by-row reference simulator (slow; same decisions as the default).
        #[arg(long)]
        reference: bool,
        /// Also emulate this controller file (Argo Rollouts or Flagger YAML, Kayenta JSON); repeatable.
        /// Metric mappings and settings come from the scenario's [controller] section.
        #[arg(long, value_name = "FILE")]
        controller: Vec<PathBuf>,
    },
    /// Validate a scenario, the data's schema and order, and the models' signatures; no scoring.
    Check {
        scenario: PathBuf,
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// Also check this controller file; repeatable.
        #[arg(long, value_name = "FILE")]
        controller: Vec<PathBuf>,
    },
    /// Profile a traffic log: rows, time span, columns, nulls, cardinalities, labels.
    Inspect {
        /// A Parquet file, a folder of them, or a glob.
        traffic: PathBuf,
        /// Request time column (default: the first timestamp column).
        #[arg(long)]
        time: Option<String>,
        /// Label column (default: a column named label, target or y).
        #[arg(long)]
        label: Option<String>,
        /// Label time column (default: a second timestamp column whose name mentions label).
        #[arg(long)]
        label_time: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-render a run folder's review report (report.html, charts/*.png) from its files, without rescoring.
    Report {
        /// The folder `run` wrote (reports/<scenario name>/ or its --out).
        run_dir: PathBuf,
    },
    /// Search policy variants against incident and good-release scenarios (each with `expect`); write tune.html, frontier.png, tune.json, the best policy as tuned-policy.toml and its Argo Rollouts, Flagger and Kayenta exports.
    Tune {
        /// Scenarios with `expect = "rollback"` (incidents) or `expect = "promote"` (good releases, A/A replays).
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// The search space: [search] and [[param]] tables.
        #[arg(long, value_name = "SPACE.toml")]
        space: PathBuf,
        /// Output folder (default: reports/tune/).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// Score cache: a folder, or an s3://, gs:// or az:// URL shared between machines
        /// (default: ~/.cache/canary-replay/scores, or $CANARY_REPLAY_CACHE/scores).
        #[arg(long, value_name = "DIR|URL")]
        cache_dir: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print a commented scenario template.
    Init,
    /// Score a log in shards (separate processes or machines, e.g. Ray workers) into a shared cache;
    /// `run` then merges the parts and simulates.
    #[command(subcommand)]
    Shard(ShardCommand),
}

#[derive(Subcommand)]
enum ShardCommand {
    /// Check the scenario and split its log into shards: writes the plan (JSON).
    Plan {
        scenario: PathBuf,
        /// Number of shards.
        #[arg(long)]
        shards: usize,
        /// Where the plan goes.
        #[arg(long, value_name = "PLAN.json")]
        out: PathBuf,
        /// Score cache every shard writes to: a folder they all see, or an s3://, gs:// or az:// URL.
        #[arg(long, value_name = "DIR|URL")]
        cache_dir: Option<PathBuf>,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Score one shard of a plan into its cache (only the parts not there yet); prints a JSON line.
    Run {
        plan: PathBuf,
        /// Which shard, from 0.
        #[arg(long)]
        index: usize,
        /// Threads to score with in all (default: the scenario's scoring.threads, else one per core);
        /// the Ray driver passes the CPUs it reserved for the task.
        #[arg(long)]
        threads: Option<usize>,
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    canary_replay::memory::map_large_allocations();
    let cli = Cli::parse();
    let code = match execute(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    };
    ExitCode::from(code as u8)
}

fn execute(command: Command) -> Result<i32, Error> {
    match command {
        Command::Run { scenario, out, runtime, cache_dir, rescore, json, quiet, reference, controller } => {
            let command = std::env::args().collect();
            let options =
                run::RunOptions { out, runtime: runtime.options(), cache_dir, rescore, quiet, reference, command, controllers: controller };
            let output = run::run(&scenario, &options)?;
            for warning in &output.warnings {
                eprintln!("warning: {warning}");
            }
            for assumption in &output.summary.assumptions {
                eprintln!("note: {assumption}");
            }
            if json {
                print!("{}", report::to_json(&output.summary));
            } else {
                print!("{}", report::print_run(&output.summary, &output.timings, &output.out_dir));
            }
            Ok(match output.summary.simulation.outcome {
                Outcome::Promoted => exit::PROMOTE,
                Outcome::RolledBack => exit::ROLLBACK,
                Outcome::Held => exit::HELD,
            })
        }
        Command::Check { scenario, runtime, controller } => {
            let prepared = run::prepare_with(&scenario, &runtime.options(), &controller)?;
            for warning in &prepared.scenario.warnings {
                eprintln!("warning: {warning}");
            }
            for assumption in &prepared.assumptions {
                eprintln!("note: {assumption}");
            }
            println!(
                "{}: OK: {} file(s), {} requests in the window, ONNX Runtime {}; stable reads {} features, candidate {}",
                scenario.display(),
                prepared.survey.files.len(),
                prepared.survey.rows_in_window,
                prepared.runtime.version,
                prepared.stable.features.len(),
                prepared.candidate.features.len()
            );
            if let Some(spec) = &prepared.controller {
                for c in &spec.controllers {
                    println!("  controller to emulate: {}", c.title());
                }
                let survey = &prepared.survey;
                let per_hour = run::requests_per_hour(survey.rows_in_window, survey.first, survey.last);
                for note in
                    spec.traffic_notes(per_hour, prepared.scenario.scoring.latency_sample, prepared.scenario.policy.ramp.check_every)
                {
                    if note.sparse {
                        eprintln!("warning: {}", note.text);
                    } else {
                        println!("  {}", note.text);
                    }
                }
            }
            Ok(exit::PROMOTE)
        }
        Command::Inspect { traffic, time, label, label_time, json } => {
            let profile = inspect::inspect(&traffic, &inspect::Options { time, label, label_time })?;
            if json {
                print!("{}", report::to_json(&profile));
            } else {
                print!("{}", profile.to_text());
            }
            Ok(exit::PROMOTE)
        }
        Command::Report { run_dir } => {
            let page = report::write_report(&run_dir)?;
            println!("Wrote {} and {}", page.display(), run_dir.join("charts").display());
            Ok(exit::PROMOTE)
        }
        Command::Tune { scenarios, space, out, runtime, cache_dir, quiet } => {
            let options = canary_replay::tune::TuneOptions { out, runtime: runtime.options(), cache_dir, quiet };
            let output = canary_replay::tune::tune(&scenarios, &space, &options)?;
            print!("{}", canary_replay::tune::to_text(&output));
            Ok(if output.tuned.is_some() { exit::PROMOTE } else { exit::HELD })
        }
        Command::Init => {
            print!("{}", scenario::TEMPLATE);
            Ok(exit::PROMOTE)
        }
        Command::Shard(ShardCommand::Plan { scenario, shards, out, cache_dir, runtime }) => {
            canary_replay::shard::check_plan_output(&out)?;
            let plan = canary_replay::shard::plan(&scenario, shards, cache_dir.as_deref(), &runtime.options())?;
            let json = serde_json::to_string_pretty(&plan).expect("a plan serializes");
            canary_replay::atomic::write(&out, json.as_bytes())?;
            let empty = plan.shards.iter().filter(|s| s.parts.is_empty()).count();
            let parts: usize = plan.shards.iter().map(|s| s.parts.len()).sum();
            println!("Wrote {}: {} requests in {parts} part(s) over {shards} shard(s); cache {}", out.display(), plan.rows, plan.cache_dir);
            if empty > 0 {
                eprintln!("warning: {empty} shard(s) have no part: a part is a whole file (or files merged by time), so split the log into more files for more shards");
            }
            Ok(exit::PROMOTE)
        }
        Command::Shard(ShardCommand::Run { plan, index, threads, runtime, quiet }) => {
            let plan = canary_replay::shard::read_plan(&plan)?;
            let report = canary_replay::shard::run(&plan, index, threads, &runtime.options(), quiet)?;
            println!("{}", serde_json::to_string(&report).expect("a report serializes"));
            Ok(exit::PROMOTE)
        }
    }
}
