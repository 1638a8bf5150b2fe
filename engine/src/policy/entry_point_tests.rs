//! The optional entry points (`visible`, `result_decision`, `plumbing_decision`) across every kind of MCP
//! message, and the VM and the interpreter agreeing on all of them.

use serde_json::{json, Value as Json};

use super::tests::{folder, shipped, ALLOW_ALL};
use super::*;
use crate::dlp::{Finding, Severity};
use crate::input::{
    classify, json_to_value, resource_target, AgentInfo, BehaviorInfo, DefinitionInfo,
    DefinitionStatus, Direction, PolicyInput, PromptInput, RequestInfo, ResourceInput,
    ResponseInput, SessionInfo, ToolInput,
};

/// One message as the proxy would judge it, with owned parts.
struct Message {
    label: &'static str,
    method: &'static str,
    direction: Direction,
    tool: Option<(&'static str, Option<Json>)>,
    resource: Option<&'static str>,
    prompt: Option<(&'static str, Json)>,
    params: Option<Json>,
    findings: Vec<Finding>,
    /// (is_error, findings over the result, injection markers).
    response: Option<(bool, Vec<Finding>, Vec<&'static str>)>,
}

impl Message {
    fn new(label: &'static str, method: &'static str) -> Message {
        Message {
            label,
            method,
            direction: Direction::ClientToServer,
            tool: None,
            resource: None,
            prompt: None,
            params: Some(json!({})),
            findings: Vec::new(),
            response: None,
        }
    }

    fn tool(mut self, name: &'static str, arguments: Json) -> Message {
        self.params = Some(json!({"name": name, "arguments": arguments}));
        self.tool = Some((name, Some(arguments)));
        self
    }

    fn answered(
        mut self,
        is_error: bool,
        findings: Vec<Finding>,
        injection: &[&'static str],
    ) -> Message {
        self.response = Some((is_error, findings, injection.to_vec()));
        self
    }

    fn has_result_findings(&self) -> bool {
        self.response
            .as_ref()
            .is_some_and(|(_, f, _)| !f.is_empty())
    }

    /// The input document, built as the pipeline builds it (and checked against its JSON twin).
    fn value(&self) -> regorus::Value {
        let agent = AgentInfo {
            id: "a1".into(),
            tenant_id: Some("t1".into()),
            roles: vec!["dev".into()],
            claims: json!({"sub": "a1"}),
            prompt_hash: Some("00".repeat(32)),
            run_id: Some("run-1".into()),
        };
        let session = SessionInfo {
            id: Some("s1".into()),
            calls: 3,
            started_at: Some("2026-11-22T20:00:00Z".into()),
        };
        let request = RequestInfo {
            method: self.method.into(),
            direction: self.direction,
            upstream: "demo".into(),
            protocol_version: Some("2025-11-25".into()),
        };
        let definition = DefinitionInfo {
            hash: Some("ab".repeat(32)),
            status: DefinitionStatus::Pinned,
            poisoning: Vec::new(),
        };
        let class = self.tool.as_ref().map(|(name, arguments)| {
            classify(
                name,
                arguments.as_ref().unwrap_or(&Json::Null),
                "/workspace",
            )
        });
        let target = self.resource.map(|uri| resource_target(uri, "/workspace"));
        let input = PolicyInput {
            agent: &agent,
            session: &session,
            request: &request,
            tool: self
                .tool
                .as_ref()
                .zip(class.as_ref())
                .map(|((name, arguments), class)| ToolInput {
                    name,
                    arguments: arguments.as_ref(),
                    class,
                    definition: arguments.as_ref().map(|_| &definition),
                }),
            resource: self
                .resource
                .zip(target.as_deref())
                .map(|(uri, target)| ResourceInput { uri, target }),
            prompt: self.prompt.as_ref().map(|(name, arguments)| PromptInput {
                name,
                arguments: Some(arguments),
            }),
            params: self.params.as_ref(),
            findings: &self.findings,
            behavior: BehaviorInfo {
                score: 0.25,
                zscore: 1.5,
                new_tool: false,
            },
            response: self
                .response
                .as_ref()
                .map(|(is_error, findings, injection)| ResponseInput {
                    is_error: *is_error,
                    findings,
                    injection,
                }),
            now: "2026-11-22T20:15:00Z",
        };
        let value = input.to_value();
        assert_eq!(
            value,
            regorus::Value::from(input.to_json()),
            "{}",
            self.label
        );
        value
    }
}

fn finding(kind: &str, severity: Severity, path: &str) -> Finding {
    Finding {
        kind: kind.into(),
        severity,
        path: path.into(),
        count: 1,
    }
}

/// A message of every kind the contract names.
fn messages() -> Vec<Message> {
    let text = "/content/0/text";
    vec![
        Message::new("read", "tools/call").tool("read_file", json!({"path": "/workspace/a"})),
        Message::new("move to /etc", "tools/call").tool(
            "move_file",
            json!({"source": "/workspace/a", "destination": "/etc/cron.d/x"}),
        ),
        Message {
            findings: vec![finding(
                "aws_access_key",
                Severity::Critical,
                "/arguments/content",
            )],
            ..Message::new("write a secret", "tools/call").tool(
                "write_file",
                json!({"path": "/workspace/a", "content": "AKIA…"}),
            )
        },
        Message {
            resource: Some("file:///workspace/notes.md"),
            params: Some(json!({"uri": "file:///workspace/notes.md"})),
            ..Message::new("resource in the workspace", "resources/read")
        },
        Message {
            resource: Some("file:///workspace/%2e%2e/etc/passwd"),
            params: Some(json!({"uri": "file:///workspace/%2e%2e/etc/passwd"})),
            ..Message::new("resource traversal", "resources/read")
        },
        Message {
            resource: Some("https://Docs.RS/regorus"),
            params: Some(json!({"uri": "https://Docs.RS/regorus"})),
            ..Message::new("subscribe", "resources/subscribe")
        },
        Message {
            prompt: Some(("summarise", json!({"topic": "q3"}))),
            params: Some(json!({"name": "summarise", "arguments": {"topic": "q3"}})),
            ..Message::new("prompt", "prompts/get")
        },
        Message {
            params: Some(
                json!({"ref": {"type": "ref/prompt", "name": "summarise"}, "argument": {"name": "topic", "value": "q"}}),
            ),
            ..Message::new("completion", "completion/complete")
        },
        Message {
            direction: Direction::ServerToClient,
            params: Some(
                json!({"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 10}),
            ),
            ..Message::new("sampling", "sampling/createMessage")
        },
        Message {
            direction: Direction::ServerToClient,
            ..Message::new("roots", "roots/list")
        },
        Message::new("unknown method", "tasks/get"),
        Message {
            tool: Some(("run_shell", None)),
            params: None,
            ..Message::new("listed tool", "tools/list")
        },
        Message {
            prompt: Some(("secret", json!({}))),
            params: None,
            ..Message::new("listed prompt", "prompts/list")
        },
        Message::new("clean result", "tools/call")
            .tool("read_file", json!({"path": "/workspace/a"}))
            .answered(false, Vec::new(), &[]),
        Message::new("result with a key", "tools/call")
            .tool("read_file", json!({"path": "/workspace/a"}))
            .answered(
                false,
                vec![finding("private_key", Severity::Critical, text)],
                &[],
            ),
        Message::new("result with an e-mail", "tools/call")
            .tool("read_file", json!({"path": "/workspace/a"}))
            .answered(
                false,
                vec![
                    finding("email", Severity::Medium, text),
                    finding("email", Severity::Medium, "/content/1/text"),
                    finding("ipv4", Severity::Low, text),
                ],
                &[],
            ),
        Message::new("injected result", "tools/call")
            .tool("read_file", json!({"path": "/workspace/a"}))
            .answered(false, Vec::new(), &["hidden_instruction"]),
        Message {
            resource: Some("file:///workspace/notes.md"),
            params: Some(json!({"uri": "file:///workspace/notes.md"})),
            ..Message::new("error result", "resources/read").answered(true, Vec::new(), &[])
        },
        Message {
            params: Some(json!({"protocolVersion": "2024-11-05", "capabilities": {}})),
            ..Message::new("old initialize", "initialize")
        },
        Message {
            params: Some(json!({"protocolVersion": "2025-11-25", "capabilities": {}})),
            ..Message::new("initialize", "initialize")
        },
        Message::new("ping", "ping"),
        Message {
            direction: Direction::ServerToClient,
            params: Some(json!({"level": "info", "data": "started"})),
            ..Message::new("log", "notifications/message")
        },
    ]
}

/// A policy that defines every entry point and reads every part of the document.
const EVERY_ENTRY_POINT: &str = r#"package toolgate

import rego.v1

default decision := {"result": "deny", "policy_id": "t.default", "reason": "no rule"}

etc_targets := [t.value | some t in input.tool.targets; startswith(t.value, "/etc/")]

decision := {"result": "deny", "policy_id": "t.targets", "reason": etc_targets[0]} if {
	count(etc_targets) > 0
} else := {"result": "deny", "policy_id": "t.dlp", "reason": input.dlp.findings[0].type} if {
	critical(input.dlp.findings)
} else := {"result": "allow", "policy_id": "t.resource", "reason": input.resource.target} if {
	startswith(input.resource.target, "/workspace/")
} else := {"result": "escalate", "policy_id": "t.sampling", "reason": input.request.method} if {
	input.request.direction == "server_to_client"
} else := {"result": "allow", "policy_id": "t.prompt", "reason": input.prompt.name} if {
	input.prompt.name == "summarise"
} else := {"result": "allow", "policy_id": "t.tool", "reason": input.tool.target} if {
	input.tool.definition.status == "pinned"
	not input.tool.targets_truncated
	is_string(input.tool.target)
}

# A loop straight before an `else` would skip the else branches on the VM (see
# a_loop_that_finds_nothing_skips_the_else_branches_on_the_vm): it lives in a function.
critical(findings) if {
	some f in findings
	f.severity == "critical"
}

visible if input.tool.action != "execute"

visible if input.resource.uri

visible if input.prompt.name != "secret"

result_decision := {"result": "block", "policy_id": "t.injection", "reason": concat(",", input.response.injection)} if {
	count(input.response.injection) > 0
} else := {"result": "redact", "policy_id": "t.result_dlp", "reason": "critical findings"} if {
	critical(input.response.dlp.findings)
} else := {"result": "pass", "policy_id": "t.error", "reason": "errors pass"} if {
	input.response.is_error
}

plumbing_decision := {"result": "deny", "policy_id": "t.init", "reason": "protocol too old"} if {
	input.request.method == "initialize"
	input.params.protocolVersion < "2025-06-18"
} else := {"result": "escalate", "policy_id": "t.log", "reason": "log from upstream"} if {
	input.request.method == "notifications/message"
}
"#;

/// Each entry point the set defines gives the same value on the VM as on the interpreter, for every
/// message, and the public entry points do not fail on it.
fn vm_and_interpreter_agree(dir: &std::path::Path) {
    let set = PolicySet::load(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let sources = files::Sources::read(dir).expect("sources");
    let mut shared = set.evaluator();
    let defined = [
        (DECISION_RULE, true),
        (VISIBLE_RULE, set.inner.has_visible),
        (RESULT_DECISION_RULE, set.inner.has_result),
        (PLUMBING_DECISION_RULE, set.inner.has_plumbing),
    ];
    for message in messages() {
        let value = message.value();
        for (rule, _) in defined.iter().filter(|(_, d)| *d) {
            let label = format!("{} on {}", rule, message.label);
            let vm = shared
                .run(rule, value.clone())
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let fresh = set
                .evaluator()
                .run(rule, value.clone())
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let (mut engine, _) = sources.engine(false).expect("engine");
            engine.set_input(value.clone());
            let interpreted = engine
                .eval_rule(rule.to_string())
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(vm, interpreted, "{label}");
            assert_eq!(vm, fresh, "{label}");
        }
        let label = message.label;
        shared
            .decide(value.clone())
            .unwrap_or_else(|e| panic!("decide on {label}: {e}"));
        shared
            .visible(value.clone())
            .unwrap_or_else(|e| panic!("visible on {label}: {e}"));
        shared
            .result_decision(value.clone(), message.has_result_findings())
            .unwrap_or_else(|e| panic!("result_decision on {label}: {e}"));
        shared
            .plumbing_decision(value)
            .unwrap_or_else(|e| panic!("plumbing_decision on {label}: {e}"));
    }
}

#[test]
fn the_vm_and_the_interpreter_agree_on_every_message_and_entry_point_of_the_shipped_library() {
    vm_and_interpreter_agree(&shipped());
}

#[test]
fn the_vm_and_the_interpreter_agree_on_every_entry_point() {
    let dir = folder(&[("p.rego", EVERY_ENTRY_POINT)]);
    vm_and_interpreter_agree(dir.path());
}

fn by_label(label: &str) -> regorus::Value {
    messages()
        .into_iter()
        .find(|m| m.label == label)
        .unwrap_or_else(|| panic!("no message {label}"))
        .value()
}

#[test]
fn every_entry_point_sees_its_part_of_the_document() {
    let dir = folder(&[("p.rego", EVERY_ENTRY_POINT)]);
    let set = PolicySet::load(dir.path()).expect("load");
    let mut evaluator = set.evaluator();
    let decide = |evaluator: &mut Evaluator, label: &str| {
        let d = evaluator.decide(by_label(label)).expect(label);
        (
            d.verdict(),
            d.policy_id().to_string(),
            d.reason().to_string(),
        )
    };
    let cases = [
        ("read", Verdict::Allow, "t.tool", "/workspace/a"),
        ("move to /etc", Verdict::Deny, "t.targets", "/etc/cron.d/x"),
        ("write a secret", Verdict::Deny, "t.dlp", "aws_access_key"),
        (
            "resource in the workspace",
            Verdict::Allow,
            "t.resource",
            "/workspace/notes.md",
        ),
        ("resource traversal", Verdict::Deny, "t.default", "no rule"),
        (
            "sampling",
            Verdict::Escalate,
            "t.sampling",
            "sampling/createMessage",
        ),
        ("prompt", Verdict::Allow, "t.prompt", "summarise"),
        ("completion", Verdict::Deny, "t.default", "no rule"),
    ];
    for (label, verdict, policy_id, reason) in cases {
        assert_eq!(
            decide(&mut evaluator, label),
            (verdict, policy_id.to_string(), reason.to_string()),
            "{label}"
        );
    }
    assert!(!evaluator.visible(by_label("listed tool")).expect("visible"));
    assert!(!evaluator
        .visible(by_label("listed prompt"))
        .expect("visible"));
    assert!(evaluator
        .visible(by_label("resource in the workspace"))
        .expect("visible"));
}

#[test]
fn result_decisions_come_from_the_policy_or_the_default() {
    let dir = folder(&[("p.rego", EVERY_ENTRY_POINT)]);
    let set = PolicySet::load(dir.path()).expect("load");
    let mut evaluator = set.evaluator();
    let cases = [
        (
            "injected result",
            false,
            ResultVerdict::Block,
            "t.injection",
            "hidden_instruction",
        ),
        (
            "result with a key",
            true,
            ResultVerdict::Redact,
            "t.result_dlp",
            "critical findings",
        ),
        (
            "error result",
            false,
            ResultVerdict::Pass,
            "t.error",
            "errors pass",
        ),
        // Undefined for these: the default.
        (
            "clean result",
            false,
            ResultVerdict::Pass,
            "toolgate.default.result",
            "no DLP finding in the result",
        ),
        (
            "result with an e-mail",
            true,
            ResultVerdict::Redact,
            "toolgate.default.result",
            "the result holds DLP findings: email, ipv4",
        ),
    ];
    for (label, has_findings, verdict, policy_id, reason) in cases {
        let d = evaluator
            .result_decision(by_label(label), has_findings)
            .expect(label);
        assert_eq!(
            (d.verdict(), d.policy_id(), d.reason()),
            (verdict, policy_id, reason),
            "{label}"
        );
    }
    assert_eq!(
        [
            ResultVerdict::Pass,
            ResultVerdict::Redact,
            ResultVerdict::Block
        ]
        .map(ResultVerdict::as_str),
        ["pass", "redact", "block"]
    );
}

#[test]
fn without_result_decision_findings_redact_and_a_clean_result_passes() {
    let set = PolicySet::load(folder(&[("p.rego", ALLOW_ALL)]).path()).expect("load");
    let mut evaluator = set.evaluator();
    let clean = evaluator
        .result_decision(by_label("clean result"), false)
        .expect("clean");
    assert_eq!(
        (clean.verdict(), clean.policy_id()),
        (ResultVerdict::Pass, "toolgate.default.result")
    );
    let flagged = evaluator
        .result_decision(by_label("result with a key"), true)
        .expect("flagged");
    assert_eq!(
        (flagged.verdict(), flagged.policy_id(), flagged.reason()),
        (
            ResultVerdict::Redact,
            "toolgate.default.result",
            "the result holds DLP findings: private_key"
        )
    );
    // The caller's word counts even when the document carries no findings to name.
    let bare = evaluator
        .result_decision(regorus::Value::new_object(), true)
        .expect("bare");
    assert_eq!(
        (bare.verdict(), bare.reason()),
        (ResultVerdict::Redact, "the result holds DLP findings")
    );
}

#[test]
fn plumbing_is_allowed_unless_the_policy_refuses_it_and_never_waits() {
    let dir = folder(&[("p.rego", EVERY_ENTRY_POINT)]);
    let set = PolicySet::load(dir.path()).expect("load");
    let mut evaluator = set.evaluator();
    let decide = |evaluator: &mut Evaluator, label: &str| {
        let d = evaluator.plumbing_decision(by_label(label)).expect(label);
        (
            d.verdict(),
            d.policy_id().to_string(),
            d.reason().to_string(),
        )
    };
    assert_eq!(
        decide(&mut evaluator, "old initialize"),
        (Verdict::Deny, "t.init".into(), "protocol too old".into())
    );
    assert_eq!(
        decide(&mut evaluator, "log"),
        (
            Verdict::Deny,
            "t.log".into(),
            "protocol plumbing cannot wait for a review: log from upstream".into()
        )
    );
    for label in ["initialize", "ping"] {
        assert_eq!(decide(&mut evaluator, label).0, Verdict::Allow, "{label}");
        assert_eq!(decide(&mut evaluator, label).1, "toolgate.plumbing");
    }

    let without = PolicySet::load(folder(&[("p.rego", ALLOW_ALL)]).path()).expect("load");
    let allowed = without
        .evaluator()
        .plumbing_decision(by_label("old initialize"))
        .expect("allowed");
    assert_eq!(
        (allowed.verdict(), allowed.policy_id()),
        (Verdict::Allow, "toolgate.plumbing")
    );
}

#[test]
fn malformed_result_and_plumbing_decisions_are_errors() {
    let policy = r#"package toolgate
decision := {"result": "allow", "policy_id": "ok", "reason": "ok"}
result_decision := {"result": "allow", "policy_id": "x", "reason": "y"} if input.kind == "verdict"
result_decision := {"result": "pass", "reason": "y"} if input.kind == "missing"
result_decision := "pass" if input.kind == "string"
plumbing_decision := {"result": "pass", "policy_id": "x", "reason": "y"} if input.kind == "verdict"
plumbing_decision := {"result": "deny", "policy_id": 1, "reason": "y"} if input.kind == "number"
"#;
    let set = PolicySet::load(folder(&[("p.rego", policy)]).path()).expect("load");
    let mut evaluator = set.evaluator();
    for kind in ["verdict", "missing", "string"] {
        let err = evaluator
            .result_decision(json_to_value(&json!({"kind": kind})), false)
            .expect_err(kind);
        assert!(matches!(err, PolicyError::Malformed(_)), "{kind}: {err:?}");
        let blocked = ResultDecision::from_error(&err);
        assert_eq!(
            (blocked.verdict(), blocked.policy_id()),
            (ResultVerdict::Block, "toolgate.error")
        );
    }
    for kind in ["verdict", "number"] {
        let err = evaluator
            .plumbing_decision(json_to_value(&json!({"kind": kind})))
            .expect_err(kind);
        assert!(matches!(err, PolicyError::Malformed(_)), "{kind}: {err:?}");
    }

    // Malformed on the sample inputs: the set does not load at all.
    for rule in [
        "result_decision := {\"result\": \"maybe\", \"policy_id\": \"x\", \"reason\": \"y\"}",
        "plumbing_decision := {\"result\": \"allow\", \"policy_id\": \"x\"}",
    ] {
        let dir = folder(&[
            ("p.rego", ALLOW_ALL),
            ("q.rego", &format!("package toolgate\n{rule}\n")),
        ]);
        let err = PolicySet::load(dir.path()).expect_err(rule);
        assert!(matches!(err, PolicyError::Smoke(_)), "{rule}: {err:?}");
    }
}

#[test]
fn a_broken_optional_rule_fails_the_load_instead_of_switching_off() {
    for rule in ["result_decision", "plumbing_decision", "visible"] {
        let dir = folder(&[
            ("p.rego", ALLOW_ALL),
            (
                "q.rego",
                &format!("package toolgate\n{rule} := no_such.fn(input)\n"),
            ),
        ]);
        let err = PolicySet::load(dir.path()).expect_err(rule);
        assert!(err.to_string().contains("q.rego"), "{rule}: {err}");
    }
}

#[test]
fn a_failing_result_decision_is_an_error_the_caller_blocks_on() {
    let policy = r#"package toolgate
decision := {"result": "allow", "policy_id": "ok", "reason": "ok"}
result_decision := {"result": "pass", "policy_id": "x", "reason": sprintf("%d", [count(big)])} if input.n
big := [x | some x in numbers.range(1, input.n)]
"#;
    let set = PolicySet::load(folder(&[("p.rego", policy)]).path()).expect("load");
    let err = set
        .evaluator()
        .result_decision(json_to_value(&json!({"n": 1_000_000})), false)
        .expect_err("instruction limit");
    assert!(matches!(err, PolicyError::Eval(_)), "{err:?}");
    assert_eq!(
        ResultDecision::from_error(&err).verdict(),
        ResultVerdict::Block
    );
}

#[test]
fn list_and_refused_plumbing_decisions() {
    let listed = Decision::list_answered("resources/list");
    assert_eq!(
        (listed.verdict(), listed.policy_id()),
        (Verdict::Allow, "toolgate.list")
    );
    assert!(
        listed.reason().contains("resources/list"),
        "{}",
        listed.reason()
    );
    let refused = Decision::plumbing_refused("critical DLP finding: aws_access_key".into());
    assert_eq!(
        (refused.verdict(), refused.policy_id(), refused.reason()),
        (
            Verdict::Deny,
            "toolgate.plumbing.dlp",
            "critical DLP finding: aws_access_key"
        )
    );
    // Neither is an escalation a reviewer could turn into something else.
    assert_eq!(Decision::approved(&refused), None);
    assert_eq!(Decision::reviewer_denied(&listed), None);
    assert_eq!(Decision::review_expired(&listed), None);
}

/// A documented difference (regorus 0.14.1): on the VM, a rule body that iterates (`some x in xs`,
/// `xs[_]`) and finds nothing skips the `else` branches after it, where the interpreter (and OPA) go on to
/// them. Policies put such a loop in a helper rule (or a comprehension) before an `else`; the shipped
/// library's differential test catches a chain that does not. When regorus fixes this, this test fails:
/// then drop it and the warning.
#[test]
fn a_loop_that_finds_nothing_skips_the_else_branches_on_the_vm() {
    let chain = |body: &str| {
        format!(
            r#"package toolgate
import rego.v1
default decision := {{"result": "deny", "policy_id": "default", "reason": ""}}
decision := {{"result": "allow", "policy_id": "one", "reason": ""}} if {{
	{body}
}} else := {{"result": "allow", "policy_id": "two", "reason": ""}} if {{
	input.n == 2
}}
has_one if {{
	some x in input.arr
	x == 1
}}
"#
        )
    };
    for (body, vm_expected) in [
        ("some x in input.arr\n\tx == 1", "default"),
        ("input.arr[_] == 1", "default"),
        ("has_one", "two"),
        ("count([x | some x in input.arr; x == 1]) > 0", "two"),
    ] {
        let dir = folder(&[("p.rego", &chain(body))]);
        let set = PolicySet::load(dir.path()).expect("load");
        for (input, interpreted) in [
            (json!({"arr": [1], "n": 2}), "one"),
            (json!({"arr": [3], "n": 2}), "two"),
        ] {
            let vm = set.evaluator().decide(json_to_value(&input)).expect("vm");
            let (reference, _) = eval_once(dir.path(), &input).expect("interpreter");
            assert_eq!(reference["policy_id"], json!(interpreted), "{body} {input}");
            let vm_wanted = if interpreted == "one" {
                "one"
            } else {
                vm_expected
            };
            assert_eq!(vm.policy_id(), vm_wanted, "{body} {input}");
        }
    }
}

/// A documented difference (regorus 0.14.1), and a fail-open trap for policy authors: on the VM,
/// `x := <undefined>` does not fail the rule body, so `allow if { t := input.missing; not bad(t) }`
/// allows where the interpreter (and OPA) do not. Policies guard the value first (`is_string(...)`, a
/// helper rule with the assignment in its head, as the shipped library's `target := ... if ...` does).
/// When regorus fixes this, this test fails: then drop it and the warning.
#[test]
fn assigning_an_undefined_value_does_not_fail_the_body_on_the_vm() {
    let policy = r#"package toolgate
import rego.v1
default decision := {"result": "deny", "policy_id": "default", "reason": ""}
decision := {"result": "allow", "policy_id": "unguarded", "reason": ""} if {
	t := input.tool.target
	not startswith(t, "/etc/")
} else := {"result": "allow", "policy_id": "guarded", "reason": ""} if {
	is_string(input.tool.target)
	not startswith(input.tool.target, "/etc/")
}
"#;
    let dir = folder(&[("p.rego", policy)]);
    let set = PolicySet::load(dir.path()).expect("load");
    let input = json!({"tool": null});
    let vm = set.evaluator().decide(json_to_value(&input)).expect("vm");
    let (reference, _) = eval_once(dir.path(), &input).expect("interpreter");
    assert_eq!(reference["policy_id"], json!("default"));
    assert_eq!(vm.policy_id(), "unguarded");
    let ok = json!({"tool": {"target": "/workspace/a"}});
    let vm = set.evaluator().decide(json_to_value(&ok)).expect("vm");
    assert_eq!(vm.policy_id(), "unguarded");
}
