//! `toolgate policy test` and `toolgate policy eval`: the policy author's tools, on the Rego interpreter.

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;
use toolgate_engine::policy::{eval_once, run_tests};

use crate::cli::PolicyCommand;
use crate::config::{Config, ConfigError};

pub fn run(
    cmd: PolicyCommand,
    load: impl Fn() -> Result<Config, ConfigError>,
) -> anyhow::Result<ExitCode> {
    // The folder defaults to the configured policy.dir; a missing config file is fine when a folder is given.
    let dir_or_config = |dir: Option<std::path::PathBuf>| -> anyhow::Result<std::path::PathBuf> {
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
        } => {
            let dir = dir_or_config(dir)?;
            let filter = run
                .as_deref()
                .map(regex::Regex::new)
                .transpose()
                .context("--run is not a valid regular expression")?;
            let outcomes = run_tests(&dir, filter.as_ref())
                .with_context(|| format!("loading {}", dir.display()))?;
            if outcomes.is_empty() {
                anyhow::bail!(
                    "no tests found in {} (tests are rules named test_* in *.rego files)",
                    dir.display()
                );
            }
            let failed = outcomes.iter().filter(|o| !o.passed).count();
            if format == "json" {
                let tests: Vec<_> = outcomes
                    .iter()
                    .map(|o| json!({ "package": o.package, "name": o.name, "passed": o.passed, "error": o.error, "duration_ns": o.duration.as_nanos() as u64 }))
                    .collect();
                println!(
                    "{}",
                    json!({ "tests": tests, "passed": outcomes.len() - failed, "failed": failed })
                );
            } else {
                for o in &outcomes {
                    if !o.passed || verbose {
                        let status = if o.passed {
                            "PASS"
                        } else if o.error.is_some() {
                            "ERROR"
                        } else {
                            "FAIL"
                        };
                        println!("{}.{}: {status} ({:?})", o.package, o.name, o.duration);
                        if let Some(e) = &o.error {
                            println!("  {e}");
                        }
                    }
                }
                println!("{}", "-".repeat(60));
                println!("{} passed, {} failed", outcomes.len() - failed, failed);
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PolicyCommand::Eval { input, dir } => {
            let dir = dir_or_config(dir)?;
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let doc: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", input.display()))?;
            let (decision, prints) =
                eval_once(&dir, &doc).with_context(|| format!("evaluating {}", dir.display()))?;
            for line in prints {
                eprintln!("{line}");
            }
            println!("{}", serde_json::to_string_pretty(&decision)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
