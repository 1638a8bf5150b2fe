//! `toolgate policy test` and `toolgate policy eval`: the policy author's tools, on the Rego interpreter.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::json;
use toolgate_engine::policy::{
    eval_once, explain_once, run_tests_with, Explanation, FileCoverage, TestOptions, TestReport,
};

use crate::config::{Config, ConfigError};

/// `toolgate policy …`.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Run the `test_*` rules of a policy folder, like `opa test`.
    Test {
        /// The folder (default: policy.dir of the config).
        dir: Option<PathBuf>,
        /// Only tests whose `package.name` matches this regular expression.
        #[arg(long)]
        run: Option<String>,
        /// Print every test with its time.
        #[arg(long, short)]
        verbose: bool,
        /// Output format.
        #[arg(long, default_value = "pretty", value_parser = ["pretty", "json"])]
        format: String,
        /// Report which lines of the policy modules the tests evaluated.
        #[arg(long)]
        coverage: bool,
    },
    /// Print the decision for one input document.
    Eval {
        /// The input document (JSON).
        #[arg(long)]
        input: PathBuf,
        /// The folder (default: policy.dir of the config).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also show the verdict sets and which definition of `decision` produced it.
        #[arg(long)]
        explain: bool,
    },
}

pub fn run(
    cmd: PolicyCommand,
    load: impl Fn() -> Result<Config, ConfigError>,
) -> anyhow::Result<ExitCode> {
    // The folder defaults to the configured policy.dir; a missing config file is fine when a folder is given.
    let dir_or_config = |dir: Option<PathBuf>| -> anyhow::Result<PathBuf> {
        match dir {
            Some(d) => Ok(d),
            None => Ok(load()?.policy.dir),
        }
    };
    match cmd {
        PolicyCommand::Test {
            dir,
            run,
            verbose,
            format,
            coverage,
        } => {
            let dir = dir_or_config(dir)?;
            let filter = run
                .as_deref()
                .map(regex::Regex::new)
                .transpose()
                .context("--run is not a valid regular expression")?;
            let report = run_tests_with(&dir, &TestOptions { filter, coverage })
                .with_context(|| format!("loading {}", dir.display()))?;
            if report.outcomes.is_empty() {
                anyhow::bail!(
                    "no tests found in {} (tests are rules named test_* in *.rego files{})",
                    dir.display(),
                    if run.is_some() {
                        ", matching --run"
                    } else {
                        ""
                    }
                );
            }
            let failed = report.outcomes.iter().filter(|o| !o.passed).count();
            if format == "json" {
                println!("{}", test_json(&report, failed));
            } else {
                print!("{}", test_pretty(&report, verbose, failed));
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PolicyCommand::Eval {
            input,
            dir,
            explain,
        } => {
            let dir = dir_or_config(dir)?;
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let doc: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", input.display()))?;
            let evaluating = || format!("evaluating {}", dir.display());
            if explain {
                let explanation = explain_once(&dir, &doc).with_context(evaluating)?;
                for line in &explanation.prints {
                    eprintln!("{line}");
                }
                print!("{}", explain_pretty(&explanation)?);
                return Ok(ExitCode::SUCCESS);
            }
            let (decision, prints) = eval_once(&dir, &doc).with_context(evaluating)?;
            for line in prints {
                eprintln!("{line}");
            }
            println!("{}", serde_json::to_string_pretty(&decision)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn test_json(report: &TestReport, failed: usize) -> serde_json::Value {
    let tests: Vec<_> = report
        .outcomes
        .iter()
        .map(|o| json!({ "package": o.package, "name": o.name, "passed": o.passed, "error": o.error, "duration_ns": o.duration.as_nanos() as u64 }))
        .collect();
    let mut out =
        json!({ "tests": tests, "passed": report.outcomes.len() - failed, "failed": failed });
    if let Some(files) = &report.coverage {
        out["coverage"] = json!({ "files": files, "percent": total_percent(files) });
    }
    out
}

fn test_pretty(report: &TestReport, verbose: bool, failed: usize) -> String {
    let mut out = String::new();
    for o in &report.outcomes {
        if o.passed && !verbose {
            continue;
        }
        let status = if o.passed {
            "PASS"
        } else if o.error.is_some() {
            "ERROR"
        } else {
            "FAIL"
        };
        out.push_str(&format!(
            "data.{}.{}: {status} ({:?})\n",
            o.package, o.name, o.duration
        ));
        if let Some(e) = &o.error {
            out.push_str(&format!("  {e}\n"));
        }
    }
    if let Some(files) = &report.coverage {
        out.push_str("coverage:\n");
        for f in files {
            out.push_str(&format!("  {}: {:.1}%", f.file, f.percent));
            if !f.not_covered.is_empty() {
                let lines: Vec<String> = f.not_covered.iter().map(u32::to_string).collect();
                out.push_str(&format!(" (not covered: lines {})", lines.join(", ")));
            }
            out.push('\n');
        }
        out.push_str(&format!("  total: {:.1}%\n", total_percent(files)));
    }
    out.push_str(&format!("{}\n", "-".repeat(60)));
    out.push_str(&format!(
        "{} passed, {} failed\n",
        report.outcomes.len() - failed,
        failed
    ));
    out
}

/// Covered lines over all lines with an expression, in percent with one decimal.
fn total_percent(files: &[FileCoverage]) -> f64 {
    let covered: usize = files.iter().map(|f| f.covered.len()).sum();
    let all: usize = files
        .iter()
        .map(|f| f.covered.len() + f.not_covered.len())
        .sum();
    if all == 0 {
        return 100.0;
    }
    (covered as f64 * 1000.0 / all as f64).round() / 10.0
}

fn explain_pretty(e: &Explanation) -> anyhow::Result<String> {
    let mut out = format!("decision: {}\n", serde_json::to_string_pretty(&e.decision)?);
    out.push_str("\nverdict sets:\n");
    if e.contributions.is_empty() {
        out.push_str("  (all deny/escalate/allow sets are empty)\n");
    }
    for c in &e.contributions {
        out.push_str(&format!("  {} ({}):\n", c.rule, c.values.len()));
        for v in &c.values {
            out.push_str(&format!("    {v}\n"));
        }
    }
    out.push_str("\ndefinitions of data.toolgate.decision:\n");
    for r in &e.rules {
        let held = match (r.kind, r.held) {
            ("default", _) => "default",
            (_, Some(true)) => "held",
            (_, Some(false)) => "did not hold",
            (_, None) => "unknown",
        };
        let marker = if r.produced { "=> " } else { "   " };
        out.push_str(&format!(
            "{marker}{} [{}] {held}: {}\n",
            r.location, r.kind, r.head
        ));
    }
    Ok(out)
}
