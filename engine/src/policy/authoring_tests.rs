//! Tests of the authoring tools: toolgate's builtins on both evaluators, the test runner (mocking,
//! coverage, failures and errors) and `eval --explain`.

use serde_json::json;

use super::*;
use crate::input::json_to_value;

fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).expect("write");
    }
    dir
}

// header {"alg":"HS256","typ":"JWT"}, payload {"sub":"agent-1","roles":["ops"]}, signature bytes 01 02 03.
const JWT: &str =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZ2VudC0xIiwicm9sZXMiOlsib3BzIl19.AQID";

const BUILTINS_POLICY: &str = r#"package toolgate

import rego.v1

# Commands are allowed by the hash of their exact text.
allowed_hashes := {"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}

claims := io.jwt.decode(input.tool.arguments.token)[1]

reason := sprintf("sha1 %s md5 %s hmac %s eq %v sig %s", [
	crypto.sha1(input.tool.target),
	crypto.md5(input.tool.target),
	crypto.hmac.sha256(input.tool.target, "key"),
	crypto.hmac.equal("abc", "abc"),
	io.jwt.decode(input.tool.arguments.token)[2],
])

default decision := {"result": "deny", "policy_id": "t.default", "reason": "no"}

decision := {"result": "allow", "policy_id": concat(".", ["t", claims.sub]), "reason": reason} if {
	crypto.sha256(input.tool.target) in allowed_hashes
}
"#;

fn builtin_input(target: &str, token: &str) -> serde_json::Value {
    json!({
        "agent": {"id": "a", "tenant_id": null, "roles": [], "claims": {}},
        "tool": {"name": "run", "arguments": {"token": token}, "action": "execute", "target": target},
        "dlp": {"findings": []},
    })
}

#[test]
fn toolgate_builtins_give_the_same_values_on_the_vm_and_the_interpreter() {
    let dir = folder(&[("main.rego", BUILTINS_POLICY)]);
    let set = PolicySet::load(dir.path()).expect("a policy using the builtins loads");
    let mut ev = set.evaluator();
    let input = builtin_input("hello", JWT);
    let vm = ev.decide(json_to_value(&input)).expect("vm decides");
    let (interpreted, _) = eval_once(dir.path(), &input).expect("interpreter decides");
    assert_eq!(vm.verdict(), Verdict::Allow);
    assert_eq!(vm.policy_id(), "t.agent-1", "io.jwt.decode payload");
    let expected_reason = format!(
        "sha1 {} md5 {} hmac {} eq true sig 010203",
        "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
        "5d41402abc4b2a76b9719d911017c592",
        "9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b",
    );
    assert_eq!(vm.reason(), expected_reason);
    assert_eq!(
        interpreted,
        json!({"result": "allow", "policy_id": "t.agent-1", "reason": expected_reason})
    );
    // A different command hashes differently: the default, on both.
    let other = builtin_input("rm -rf /", JWT);
    assert_eq!(
        ev.decide(json_to_value(&other)).expect("vm").policy_id(),
        "t.default"
    );
    assert_eq!(
        eval_once(dir.path(), &other).expect("interp").0["policy_id"],
        "t.default"
    );
}

#[test]
fn a_failing_builtin_fails_the_evaluation_on_both_paths_and_the_evaluator_recovers() {
    let dir = folder(&[("main.rego", BUILTINS_POLICY)]);
    let set = PolicySet::load(dir.path()).expect("load");
    let mut ev = set.evaluator();
    let bad = builtin_input("hello", "not-a-jwt");
    let err = ev.decide(json_to_value(&bad)).expect_err("vm fails closed");
    assert!(err.to_string().contains("io.jwt.decode"), "{err}");
    assert_eq!(Decision::from_error(&err).verdict(), Verdict::Deny);
    let err = eval_once(dir.path(), &bad).expect_err("interpreter fails too");
    assert!(err.to_string().contains("io.jwt.decode"), "{err}");
    // The same VM, suspended mid-way by the failure, judges the next call normally.
    let good = ev
        .decide(json_to_value(&builtin_input("hello", JWT)))
        .expect("recovers");
    assert_eq!(good.verdict(), Verdict::Allow);
}

#[test]
fn builtins_reject_wrong_types_with_a_precise_message() {
    let args = regorus::Value::from(vec![regorus::Value::from(5u64)]);
    let err = extensions::call(&regorus::Value::from("crypto.sha256"), &args).expect_err("number");
    assert_eq!(
        err.to_string(),
        "policy evaluation failed: crypto.sha256: argument 1 must be a string, got number"
    );
    assert!(extensions::names().contains(&"io.jwt.decode"));
}

const SUITE_POLICY: &str = r#"package toolgate

import rego.v1

default decision := {"result": "deny", "policy_id": "t.default", "reason": "no"}

decision := {"result": "allow", "policy_id": "t.listed", "reason": "listed"} if {
	input.tool.name in data.cfg.tools
}

unused_helper if {
	input.never == "set"
}
"#;

const SUITE_TESTS: &str = r#"package toolgate

import rego.v1

test_listed_tool_is_allowed if {
	d := decision with input as {"tool": {"name": "echo"}}
	d.policy_id == "t.listed"
}

test_data_can_be_mocked if {
	d := decision with input as {"tool": {"name": "frob"}} with data.cfg.tools as ["frob"]
	d.result == "allow"
}

test_unlisted_tool_is_denied if {
	decision.result == "deny" with input as {"tool": {"name": "frob"}}
}
"#;

#[test]
fn the_test_runner_mocks_input_and_data_and_reports_coverage() {
    let dir = folder(&[
        ("main.rego", SUITE_POLICY),
        ("main_test.rego", SUITE_TESTS),
        ("data.json", r#"{"cfg": {"tools": ["echo"]}}"#),
    ]);
    let report = run_tests_with(
        dir.path(),
        &TestOptions {
            filter: None,
            coverage: true,
        },
    )
    .expect("runs");
    let names: Vec<(&str, bool)> = report
        .outcomes
        .iter()
        .map(|o| (o.name.as_str(), o.passed))
        .collect();
    assert_eq!(
        names,
        [
            ("test_listed_tool_is_allowed", true),
            ("test_data_can_be_mocked", true),
            ("test_unlisted_tool_is_denied", true)
        ]
    );
    let coverage = report.coverage.expect("coverage asked for");
    assert_eq!(coverage.len(), 1, "only the policy module, not the tests");
    let main = &coverage[0];
    assert!(main.file.ends_with("main.rego"), "{}", main.file);
    assert!(
        main.covered.contains(&8),
        "the decision body ran: {:?}",
        main.covered
    );
    assert!(
        main.not_covered.contains(&12),
        "unused_helper never ran: {:?}",
        main.not_covered
    );
    assert!(
        main.percent > 0.0 && main.percent < 100.0,
        "{}",
        main.percent
    );

    let only = regex::Regex::new("mocked$").expect("regex");
    let filtered = run_tests_with(
        dir.path(),
        &TestOptions {
            filter: Some(only),
            coverage: false,
        },
    )
    .expect("runs");
    assert_eq!(filtered.outcomes.len(), 1);
    assert!(filtered.coverage.is_none());
}

#[test]
fn failing_and_erroring_tests_are_told_apart() {
    let dir = folder(&[
        ("main.rego", SUITE_POLICY),
        (
            "main_test.rego",
            "package toolgate\n\nimport rego.v1\n\ntest_fails if {\n\tdecision.result == \"allow\" with input as {\"tool\": {\"name\": \"x\"}}\n}\n\ntest_errors if {\n\tupper(5) == \"5\"\n}\n",
        ),
        ("data.json", r#"{"cfg": {"tools": []}}"#),
    ]);
    let outcomes = run_tests(dir.path(), None).expect("runs");
    assert_eq!(outcomes.len(), 2);
    assert!(!outcomes[0].passed && outcomes[0].error.is_none());
    assert!(!outcomes[1].passed);
    assert!(outcomes[1].error.is_some(), "{:?}", outcomes[1]);
}

const EXPLAIN_POLICY: &str = r#"package toolgate

import rego.v1

deny contains {"policy_id": "t.deny.etc", "reason": "etc"} if startswith(input.tool.target, "/etc")

escalate contains {"policy_id": "t.esc.write", "reason": "write"} if input.tool.action == "write"

allow contains {"policy_id": "t.allow.any", "reason": "any"} if input.tool.target

default decision := {"result": "deny", "policy_id": "t.none", "reason": "none"}

decision := pick("deny", deny) if {
	count(deny) > 0
} else := pick("escalate", escalate) if {
	count(escalate) > 0
} else := pick("allow", allow) if {
	count(allow) > 0
}

pick(result, set) := {"result": result, "policy_id": c.policy_id, "reason": c.reason} if {
	c := [x | some x in set][0]
}
"#;

#[test]
fn explain_names_the_sets_and_the_body_that_produced_the_decision() {
    let dir = folder(&[("main.rego", EXPLAIN_POLICY)]);
    let e = explain_once(
        dir.path(),
        &json!({"tool": {"action": "write", "target": "/tmp/a"}}),
    )
    .expect("explains");
    assert_eq!(e.decision["policy_id"], "t.esc.write");
    let rules: Vec<&str> = e.contributions.iter().map(|c| c.rule.as_str()).collect();
    assert_eq!(rules, ["data.toolgate.escalate", "data.toolgate.allow"]);
    assert_eq!(
        e.contributions[0].values,
        [json!({"policy_id": "t.esc.write", "reason": "write"})]
    );
    let kinds: Vec<(&str, Option<bool>, bool)> = e
        .rules
        .iter()
        .map(|r| (r.kind, r.held, r.produced))
        .collect();
    assert_eq!(
        kinds,
        [
            ("default", None, false),
            ("rule", Some(false), false),
            ("else", Some(true), true),
            ("else", Some(true), false),
        ]
    );
    assert!(
        e.rules[2].location.ends_with("main.rego:15"),
        "{}",
        e.rules[2].location
    );

    let none = explain_once(dir.path(), &json!({"tool": {"action": "read"}})).expect("explains");
    assert_eq!(none.decision["policy_id"], "t.none");
    assert!(none.contributions.is_empty());
    assert!(
        none.rules[0].produced,
        "the default produced it: {:?}",
        none.rules
    );
}
