//! `toolgate policy eval --explain`: which contributions were in the verdict sets and which definition of
//! `data.toolgate.decision` produced the value, on the interpreter.
//!
//! regorus 0.14 has no evaluation trace on the interpreter, so the explanation is rebuilt from the AST:
//! every body of every `decision` definition is copied into a probe rule of the same package (with the
//! module's imports) and evaluated on the same input. In an `else` chain the first body that holds is the
//! one that produced the value; when none holds, the `default` did.

use std::path::Path;

use regorus::unstable::{Module, Rule, RuleHead};
use regorus::Value;

use super::files::Sources;
use super::testing::eval_decision;
use super::PolicyError;
use crate::input::json_to_value;

/// The rule names whose values are reported as contributions: the partial sets the shipped library (and
/// the layout docs/policies.md recommends) uses to feed `decision`.
const VERDICT_SETS: &[&str] = &["deny", "escalate", "allow"];

/// The decision for one input, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explanation {
    /// The decision object, or JSON `null` when undefined.
    pub decision: serde_json::Value,
    /// What `print()` wrote.
    pub prints: Vec<String>,
    /// Every non-empty `deny`/`escalate`/`allow` set of any package, with its members.
    pub contributions: Vec<Contribution>,
    /// Every definition (and `else` branch) of `data.toolgate.decision`, in source order.
    pub rules: Vec<DecisionRule>,
}

/// One non-empty verdict set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Contribution {
    /// `data.toolgate.filesystem.deny`.
    pub rule: String,
    pub values: Vec<serde_json::Value>,
}

/// One body of `data.toolgate.decision`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DecisionRule {
    /// `file:line` of the definition or of its `else`.
    pub location: String,
    /// `default`, `rule` or `else`.
    pub kind: &'static str,
    /// Its first source line, trimmed.
    pub head: String,
    /// Whether its conditions held for this input (`None` for a default, or when the probe failed).
    pub held: Option<bool>,
    /// Whether this body produced the decision.
    pub produced: bool,
}

struct Body {
    rule: DecisionRule,
    /// `(package, imports, query text)` to probe; `None` for a default.
    probe: Option<(String, Vec<String>, String)>,
    /// Index of the first body of its definition, so `else` chains can be followed.
    chain: usize,
}

/// Evaluates `data.toolgate.decision` for `input` and explains it.
pub fn explain_once(dir: &Path, input: &serde_json::Value) -> Result<Explanation, PolicyError> {
    let sources = Sources::read(dir)?;
    let (decision, prints) = eval_decision(&sources, input)?;

    let (mut engine, packages) = sources.engine(false)?;
    engine.set_input(json_to_value(input));
    let mut contributions = Vec::new();
    let mut seen = Vec::new();
    for package in &packages {
        for name in VERDICT_SETS {
            let rule = format!("{package}.{name}");
            if seen.contains(&rule) {
                continue;
            }
            seen.push(rule.clone());
            // A package without this rule answers "not a valid rule path": nothing to report.
            let Ok(Value::Set(members)) = engine.eval_rule(rule.clone()) else {
                continue;
            };
            if members.is_empty() {
                continue;
            }
            let values = members
                .iter()
                .filter_map(|m| serde_json::to_value(m).ok())
                .collect();
            contributions.push(Contribution { rule, values });
        }
    }

    let mut bodies = Vec::new();
    for module in engine.get_modules().iter() {
        decision_bodies(module, &mut bodies);
    }
    probe(&sources, input, &mut bodies);
    let rules = bodies.into_iter().map(|b| b.rule).collect();
    Ok(Explanation {
        decision,
        prints,
        contributions,
        rules,
    })
}

/// The bodies of every `decision` definition in `module` (package `toolgate` only).
fn decision_bodies(module: &Module, out: &mut Vec<Body>) {
    let package = module.package.refr.span().text().trim().to_string();
    if package != "toolgate" {
        return;
    }
    let imports: Vec<String> = module
        .imports
        .iter()
        .map(|i| {
            let text = i.span.text().trim();
            if text.starts_with("import") {
                text.to_string()
            } else {
                format!("import {text}")
            }
        })
        .collect();
    let file = module.package.span.source.file().clone();
    let location = |line: u32| format!("{file}:{line}");
    for rule in &module.policy {
        match rule.as_ref() {
            Rule::Default { span, refr, .. } if refr.span().text().trim() == "decision" => {
                out.push(Body {
                    rule: DecisionRule {
                        location: location(span.line),
                        kind: "default",
                        head: first_line(span.text()),
                        held: None,
                        produced: false,
                    },
                    probe: None,
                    chain: out.len(),
                });
            }
            Rule::Spec { head, bodies, span } => {
                let RuleHead::Compr { refr, .. } = head else {
                    continue;
                };
                if refr.span().text().trim() != "decision" {
                    continue;
                }
                let chain = out.len();
                if bodies.is_empty() {
                    // `decision := {...}` with no body always holds.
                    out.push(Body {
                        rule: DecisionRule {
                            location: location(span.line),
                            kind: "rule",
                            head: first_line(span.text()),
                            held: Some(true),
                            produced: false,
                        },
                        probe: None,
                        chain,
                    });
                }
                for body in bodies {
                    let (line, kind, text) = if body.is_else {
                        (body.span.line, "else", body.span.text())
                    } else {
                        (span.line, "rule", span.text())
                    };
                    out.push(Body {
                        rule: DecisionRule {
                            location: location(line),
                            kind,
                            head: first_line(text),
                            held: None,
                            produced: false,
                        },
                        probe: Some((
                            package.clone(),
                            imports.clone(),
                            body.query.span.text().to_string(),
                        )),
                        chain,
                    });
                }
            }
            _ => {}
        }
    }
}

/// Evaluates each body's conditions as a probe rule, then marks the body that produced the decision.
fn probe(sources: &Sources, input: &serde_json::Value, bodies: &mut [Body]) {
    let Ok((mut engine, _)) = sources.engine(false) else {
        return;
    };
    let mut probes = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let Some((package, imports, query)) = &body.probe else {
            continue;
        };
        let query = query.trim();
        let query = if query.starts_with('{') {
            query.to_string()
        } else {
            format!("{{\n{query}\n}}")
        };
        let module = format!(
            "package {package}\n\n{}\n\n__toolgate_explain_{i} if {query}\n",
            imports.join("\n")
        );
        if engine
            .add_policy(format!("<explain probe {i}>"), module)
            .is_ok()
        {
            probes.push((i, format!("data.{package}.__toolgate_explain_{i}")));
        }
    }
    engine.set_input(json_to_value(input));
    for (i, rule) in probes {
        bodies[i].rule.held = match engine.eval_rule(rule) {
            Ok(Value::Bool(true)) => Some(true),
            Ok(_) => Some(false),
            // A body the probe cannot evaluate (an error in it) is reported as unknown.
            Err(_) => None,
        };
    }
    // In each chain the first body that held produced the value; the default only when no chain did.
    let mut produced_any = false;
    let mut i = 0;
    while i < bodies.len() {
        let chain = bodies[i].chain;
        let mut j = i;
        let mut done = false;
        while j < bodies.len() && bodies[j].chain == chain {
            if !done && bodies[j].rule.kind != "default" && bodies[j].rule.held == Some(true) {
                bodies[j].rule.produced = true;
                produced_any = true;
                done = true;
            }
            j += 1;
        }
        i = j;
    }
    if !produced_any {
        for body in bodies.iter_mut().filter(|b| b.rule.kind == "default") {
            body.rule.produced = true;
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}
