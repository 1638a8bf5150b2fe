//! `toolgate policy test` and `toolgate policy eval`: the interpreter, which supports `with`.

use std::path::Path;
use std::time::{Duration, Instant};

use regorus::Value;

use super::files::Sources;
use super::{one_line, PolicyError, DECISION_RULE};
use crate::input::json_to_value;

/// The result of one `test_*` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// The Rego package, without the `data.` prefix (`toolgate.filesystem`).
    pub package: String,
    pub name: String,
    /// True only when the rule evaluated to `true`; undefined or `false` fails, as with `opa test`.
    pub passed: bool,
    /// The evaluation error, when there was one.
    pub error: Option<String>,
    pub duration: Duration,
}

/// What `policy test` runs and collects.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Matched against `data.<package>.<name>`, like `opa test --run`.
    pub filter: Option<regex::Regex>,
    /// Collect line coverage of the policy modules (not the test modules).
    pub coverage: bool,
}

/// The outcome of a test run.
#[derive(Debug, Clone, PartialEq)]
pub struct TestReport {
    pub outcomes: Vec<TestOutcome>,
    /// Per policy module, when coverage was asked for.
    pub coverage: Option<Vec<FileCoverage>>,
}

/// Line coverage of one policy module by the tests that ran.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileCoverage {
    pub file: String,
    /// Lines with an expression that was evaluated.
    pub covered: Vec<u32>,
    /// Lines with an expression that never was.
    pub not_covered: Vec<u32>,
    /// `covered / (covered + not_covered)` in percent; 100 for a file with no expressions.
    pub percent: f64,
}

/// Runs every `test_*` rule of every package below `dir` (policies, `*_test.rego` and data) on the
/// interpreter. `filter` is matched against `data.<package>.<name>`, like `opa test --run`.
pub fn run_tests(
    dir: &Path,
    filter: Option<&regex::Regex>,
) -> Result<Vec<TestOutcome>, PolicyError> {
    let options = TestOptions {
        filter: filter.cloned(),
        coverage: false,
    };
    Ok(run_tests_with(dir, &options)?.outcomes)
}

/// [`run_tests`] with coverage.
pub fn run_tests_with(dir: &Path, options: &TestOptions) -> Result<TestReport, PolicyError> {
    let filter = options.filter.as_ref();
    let sources = Sources::read(dir)?;
    let (mut engine, packages) = sources.engine(true)?;
    engine.set_enable_coverage(options.coverage);

    let mut tests: Vec<(String, String)> = Vec::new();
    for (file, package) in sources.modules.iter().chain(&sources.tests).zip(&packages) {
        for name in test_rule_names(&file.content) {
            let test = (package.clone(), name);
            if !tests.contains(&test) {
                tests.push(test);
            }
        }
    }

    let mut outcomes = Vec::new();
    for (package, name) in tests {
        let path = format!("{package}.{name}");
        if filter.is_some_and(|f| !f.is_match(&path)) {
            continue;
        }
        let started = Instant::now();
        let result = engine.eval_rule(path);
        let duration = started.elapsed();
        let (passed, error) = match result {
            Ok(value) => (value == Value::Bool(true), None),
            Err(err) => (false, Some(one_line(&err.to_string()))),
        };
        outcomes.push(TestOutcome {
            package: package
                .strip_prefix("data.")
                .unwrap_or(&package)
                .to_string(),
            name,
            passed,
            error,
            duration,
        });
    }
    let coverage = if options.coverage {
        let report = engine
            .get_coverage_report()
            .map_err(|err| PolicyError::Eval(one_line(&err.to_string())))?;
        let tests: Vec<&str> = sources.tests.iter().map(|t| t.display.as_str()).collect();
        let mut files: Vec<FileCoverage> = report
            .files
            .iter()
            .filter(|f| !tests.contains(&f.path.as_str()))
            .map(|f| {
                let (c, n) = (f.covered.len(), f.not_covered.len());
                FileCoverage {
                    file: f.path.clone(),
                    covered: f.covered.iter().copied().collect(),
                    not_covered: f.not_covered.iter().copied().collect(),
                    percent: percent(c, c + n),
                }
            })
            .collect();
        // Modules no test reached at all are absent from regorus' report; they are 0 % covered.
        for module in &sources.modules {
            if !files.iter().any(|f| f.file == module.display) {
                files.push(FileCoverage {
                    file: module.display.clone(),
                    covered: Vec::new(),
                    not_covered: Vec::new(),
                    percent: 0.0,
                });
            }
        }
        files.sort_by(|a, b| a.file.cmp(&b.file));
        Some(files)
    } else {
        None
    };
    Ok(TestReport { outcomes, coverage })
}

/// `part / whole` in percent, rounded to one decimal; 100 when there is nothing to cover.
pub(super) fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        return 100.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

/// Names of the rules declared `test_*` at the start of a line. Rules are declared at the top level of a
/// module, which `opa fmt` (and every test file we ship) writes flush left.
fn test_rule_names(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in source.lines() {
        if !line.starts_with("test_") {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// `data.toolgate.decision` for one input document on the interpreter, and what `print()` wrote.
/// The decision is JSON `null` when it is undefined.
pub fn eval_once(
    dir: &Path,
    input: &serde_json::Value,
) -> Result<(serde_json::Value, Vec<String>), PolicyError> {
    eval_decision(&Sources::read(dir)?, input)
}

/// [`eval_once`] on sources already read.
pub(super) fn eval_decision(
    sources: &Sources,
    input: &serde_json::Value,
) -> Result<(serde_json::Value, Vec<String>), PolicyError> {
    let (mut engine, _) = sources.engine(false)?;
    engine.set_gather_prints(true);
    engine.set_input(json_to_value(input));
    let value =
        engine
            .eval_rule(DECISION_RULE.to_string())
            .map_err(|err| match err.to_string() {
                m if m.contains("not a valid rule path") => PolicyError::NoDecisionRule,
                m => PolicyError::Eval(one_line(&m)),
            })?;
    let prints = engine
        .take_prints()
        .map_err(|err| PolicyError::Eval(one_line(&err.to_string())))?;
    let decision = if value == Value::Undefined {
        serde_json::Value::Null
    } else {
        serde_json::to_value(&value).map_err(|err| PolicyError::Malformed(err.to_string()))?
    };
    Ok((decision, prints))
}

#[cfg(test)]
mod tests {
    use super::test_rule_names;

    #[test]
    fn test_rules_are_found_at_line_starts_only() {
        let source = "package p\n\ntest_a if true\ntest_b if {\n  true\n}\n# test_c if true\n  test_d := 1\ntest_a if false\nnot_test_e if true\n";
        assert_eq!(test_rule_names(source), vec!["test_a", "test_b"]);
    }
}
