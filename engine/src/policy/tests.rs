use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use super::*;
use crate::input::{
    classify, json_to_value, AgentInfo, BehaviorInfo, Direction, PolicyInput, RequestInfo,
    SessionInfo, ToolInput,
};

pub(super) fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn shipped_set() -> PolicySet {
    match PolicySet::load(&shipped()) {
        Ok(set) => set,
        Err(err) => panic!("shipped policies do not load: {err}"),
    }
}

/// A temporary policy folder holding `files` (relative path, content).
pub(super) fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, content).expect("write");
    }
    dir
}

pub(super) const ALLOW_ALL: &str = r#"package toolgate
decision := {"result": "allow", "policy_id": "t.allow", "reason": "ok"}
"#;

#[test]
fn policy_set_and_evaluator_can_cross_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync::<PolicySet>();
    send::<Evaluator>();
}

#[test]
fn the_shipped_library_loads() {
    let set = shipped_set();
    assert_eq!(
        set.modules(),
        [
            "toolgate/behaviour.rego",
            "toolgate/dlp.rego",
            "toolgate/filesystem.rego",
            "toolgate/main.rego",
            "toolgate/network.rego",
            "toolgate/prompts.rego",
            "toolgate/resources.rego",
            "toolgate/results.rego",
            "toolgate/sampling.rego",
            "toolgate/shell.rego",
            "toolgate/tools.rego",
        ]
    );
    assert!(set.revision().starts_with("sha256:"), "{}", set.revision());
    assert_eq!(set.revision().len(), "sha256:".len() + 64);
    assert_eq!(set.revision(), shipped_set().revision());
    assert_eq!(set.evaluator().revision(), set.revision());
}

#[test]
fn the_revision_changes_with_any_loaded_file_but_not_with_tests() {
    let a = folder(&[("p.rego", ALLOW_ALL), ("d.json", r#"{"k": 1}"#)]);
    let b = folder(&[("p.rego", ALLOW_ALL), ("d.json", r#"{"k": 2}"#)]);
    let c = folder(&[
        ("p.rego", ALLOW_ALL),
        ("d.json", r#"{"k": 1}"#),
        ("p_test.rego", "package toolgate\ntest_x if true\n"),
    ]);
    let rev = |d: &tempfile::TempDir| {
        PolicySet::load(d.path())
            .expect("load")
            .revision()
            .to_string()
    };
    assert_ne!(rev(&a), rev(&b));
    assert_eq!(rev(&a), rev(&c));
}

struct Case {
    tool: &'static str,
    arguments: Json,
    roles: &'static [&'static str],
    findings: Json,
    result: &'static str,
    policy_id: &'static str,
}

fn case(
    tool: &'static str,
    arguments: Json,
    result: &'static str,
    policy_id: &'static str,
) -> Case {
    Case {
        tool,
        arguments,
        roles: &["dev"],
        findings: json!([]),
        result,
        policy_id,
    }
}

fn cases() -> Vec<Case> {
    let finding = |kind: &str, severity: &str| json!([{"type": kind, "severity": severity, "path": "/content", "count": 1}]);
    vec![
        case(
            "read_file",
            json!({"path": "/workspace/report.txt"}),
            "allow",
            "toolgate.filesystem.read",
        ),
        case(
            "read_file",
            json!({"path": "notes/../report.txt"}),
            "allow",
            "toolgate.filesystem.read",
        ),
        // Paths upstreams read differently (NUL, other control characters, a backslash; written or decoded).
        case(
            "read_file",
            json!({"path": "/etc%00/../workspace/x"}),
            "deny",
            "toolgate.filesystem.ambiguous_path",
        ),
        case(
            "read_file",
            json!({"path": "/workspace/x\u{0}/../../etc/passwd"}),
            "deny",
            "toolgate.filesystem.ambiguous_path",
        ),
        case(
            "read_file",
            json!({"path": "..\\..\\etc\\passwd"}),
            "deny",
            "toolgate.filesystem.ambiguous_path",
        ),
        // Percent-escapes an upstream may decode: judged as decoded too, on the VM as in the interpreter.
        case(
            "read_file",
            json!({"path": "notes/%2e%2e/%2E%2E/etc/shadow"}),
            "deny",
            "toolgate.filesystem.system_path",
        ),
        case(
            "read_file",
            json!({"path": "/workspace/%2e%2e/root/.ssh/id_rsa"}),
            "deny",
            "toolgate.filesystem.secret_path",
        ),
        case(
            "read_file",
            json!({"path": "/home/projects/../../etc/passwd"}),
            "deny",
            "toolgate.filesystem.system_path",
        ),
        case(
            "list_dir",
            json!({"path": "/proc/self/"}),
            "deny",
            "toolgate.filesystem.system_path",
        ),
        case(
            "read_file",
            json!({"path": "/home/dev/.ssh/id_rsa"}),
            "deny",
            "toolgate.filesystem.secret_path",
        ),
        case(
            "read_file",
            json!({"path": "/workspace2/x"}),
            "deny",
            "toolgate.filesystem.outside_roots",
        ),
        case(
            "read_file",
            json!({}),
            "deny",
            "toolgate.filesystem.no_target",
        ),
        case(
            "write_file",
            json!({"path": "/tmp/out.txt", "content": "x"}),
            "escalate",
            "toolgate.filesystem.write_review",
        ),
        case(
            "delete_file",
            json!({"path": "/workspace/old"}),
            "escalate",
            "toolgate.filesystem.delete_review",
        ),
        case(
            "write_file",
            json!({"path": "/etc/hosts", "content": "x"}),
            "deny",
            "toolgate.filesystem.system_path",
        ),
        case(
            "run_shell",
            json!({"command": "ls"}),
            "deny",
            "toolgate.shell.no_role",
        ),
        Case {
            roles: &["dev", "shell"],
            ..case(
                "run_shell",
                json!({"command": "ls"}),
                "allow",
                "toolgate.shell.role",
            )
        },
        case(
            "fetch_url",
            json!({"url": "https://Docs.rs/regorus"}),
            "allow",
            "toolgate.network.allowed_host",
        ),
        case(
            "fetch_url",
            json!({"url": "https://user:pw@api.example.com:443/x"}),
            "allow",
            "toolgate.network.allowed_host",
        ),
        case(
            "fetch_url",
            json!({"url": "https://example.com.evil.net/"}),
            "deny",
            "toolgate.network.host_not_allowed",
        ),
        case(
            "fetch_url",
            json!({"url": "ftp://example.com/f"}),
            "deny",
            "toolgate.network.scheme",
        ),
        case(
            "fetch_url",
            json!({"url": "not a url"}),
            "deny",
            "toolgate.network.no_target",
        ),
        case(
            "send_email",
            json!({"to": "ops@example.com", "body": "hi"}),
            "escalate",
            "toolgate.network.send_review",
        ),
        case(
            "echo",
            json!({"text": "hello"}),
            "allow",
            "toolgate.default",
        ),
        case(
            "frobnicate",
            json!({}),
            "deny",
            "toolgate.default.unknown_tool",
        ),
        Case {
            findings: finding("aws_access_key", "critical"),
            ..case(
                "read_file",
                json!({"path": "/workspace/a"}),
                "deny",
                "toolgate.dlp.critical",
            )
        },
        Case {
            findings: finding("credit_card", "high"),
            ..case(
                "read_file",
                json!({"path": "/workspace/a"}),
                "escalate",
                "toolgate.dlp.high",
            )
        },
        Case {
            findings: finding("email", "medium"),
            ..case("echo", json!({}), "allow", "toolgate.default")
        },
    ]
}

/// The input document for a case: (as JSON for the interpreter, as a Value for the VM).
fn documents(c: &Case) -> (Json, regorus::Value) {
    let agent = AgentInfo {
        id: "a1".into(),
        tenant_id: Some("t1".into()),
        roles: c.roles.iter().map(|r| r.to_string()).collect(),
        claims: json!({"sub": "a1"}),
        prompt_hash: None,
        run_id: None,
    };
    let session = SessionInfo {
        id: Some("s1".into()),
        calls: 3,
        started_at: None,
    };
    let request = RequestInfo {
        method: "tools/call".into(),
        direction: Direction::ClientToServer,
        upstream: "demo".into(),
        protocol_version: None,
    };
    let class = classify(c.tool, &c.arguments, "/workspace");
    let findings: Vec<crate::dlp::Finding> =
        serde_json::from_value(c.findings.clone()).expect("findings");
    let params = json!({"name": c.tool, "arguments": c.arguments});
    let input = PolicyInput {
        agent: &agent,
        session: &session,
        request: &request,
        tool: Some(ToolInput {
            name: c.tool,
            arguments: Some(&c.arguments),
            class: &class,
            definition: None,
        }),
        resource: None,
        prompt: None,
        params: Some(&params),
        findings: &findings,
        behavior: BehaviorInfo {
            score: 0.1,
            ..BehaviorInfo::default()
        },
        response: None,
        now: "2026-11-22T20:15:00Z",
    };
    let (json, value) = (input.to_json(), input.to_value());
    assert_eq!(json["dlp"]["findings"], c.findings);
    assert_eq!(regorus::Value::from(json.clone()), value);
    (json, value)
}

#[test]
fn the_vm_and_the_interpreter_agree_on_the_shipped_library() {
    let set = shipped_set();
    let mut shared = set.evaluator();
    for c in cases() {
        let (json, value) = documents(&c);
        let label = format!("{} {}", c.tool, c.arguments);

        let (interpreted, _) =
            eval_once(&shipped(), &json).unwrap_or_else(|e| panic!("{label}: {e}"));
        // One long-lived evaluator (state must not leak between calls) and a fresh one must agree.
        let vm = shared
            .decide(value.clone())
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let fresh = set
            .evaluator()
            .decide(value)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(vm, fresh, "{label}");

        assert_eq!(
            json!({"result": vm.verdict().as_str(), "policy_id": vm.policy_id(), "reason": vm.reason()}),
            interpreted,
            "{label}"
        );
        assert_eq!(
            (vm.verdict().as_str(), vm.policy_id()),
            (c.result, c.policy_id),
            "{label}: {}",
            vm.reason()
        );
    }
}

#[test]
fn the_vm_and_the_interpreter_agree_on_visibility() {
    let set = shipped_set();
    let mut evaluator = set.evaluator();
    let sources = files::Sources::read(&shipped()).expect("sources");
    for (tool, roles, expected) in [
        ("run_shell", vec![], false),
        ("run_shell", vec!["shell".to_string()], true),
        ("read_file", vec![], true),
        ("echo", vec![], true),
    ] {
        let agent = AgentInfo {
            id: "a".into(),
            tenant_id: None,
            roles,
            claims: json!({}),
            prompt_hash: None,
            run_id: None,
        };
        let session = SessionInfo {
            id: None,
            calls: 0,
            started_at: None,
        };
        let request = RequestInfo {
            method: "tools/list".into(),
            direction: Direction::ClientToServer,
            upstream: "demo".into(),
            protocol_version: None,
        };
        let class = classify(tool, &Json::Null, "/");
        let input = PolicyInput {
            agent: &agent,
            session: &session,
            request: &request,
            tool: Some(ToolInput {
                name: tool,
                arguments: None,
                class: &class,
                definition: None,
            }),
            resource: None,
            prompt: None,
            params: None,
            findings: &[],
            behavior: BehaviorInfo::default(),
            response: None,
            now: "2026-11-22T20:15:00Z",
        };
        let vm = evaluator.visible(input.to_value()).expect("visible");
        let (mut engine, _) = sources.engine(false).expect("engine");
        engine.set_input(input.to_value());
        let interpreted = engine
            .eval_rule(VISIBLE_RULE.to_string())
            .expect("interpreter");
        assert_eq!(vm, expected, "{tool}");
        assert_eq!(regorus::Value::Bool(vm), interpreted, "{tool}");
    }
}

#[test]
fn a_policy_without_visible_shows_every_tool() {
    let dir = folder(&[("p.rego", ALLOW_ALL)]);
    let set = PolicySet::load(dir.path()).expect("load");
    assert!(set
        .evaluator()
        .visible(regorus::Value::new_object())
        .expect("visible"));
    let decision = set
        .evaluator()
        .decide(regorus::Value::new_object())
        .expect("decide");
    assert_eq!(
        (decision.verdict(), decision.policy_id(), decision.reason()),
        (Verdict::Allow, "t.allow", "ok")
    );
}

#[test]
fn a_syntax_error_names_file_line_and_column() {
    let dir = folder(&[
        ("ok.rego", ALLOW_ALL),
        (
            "sub/bad.rego",
            "package toolgate.bad\n\nx := {\n  \"a\": 1,,\n}\n",
        ),
    ]);
    let err = PolicySet::load(dir.path()).expect_err("must not load");
    match &err {
        PolicyError::Located {
            file, line, col, ..
        } => {
            assert!(file.ends_with("sub/bad.rego"), "{file}");
            assert_eq!(*line, 4, "{err}");
            assert!(*col > 1, "{err}");
        }
        other => panic!("expected a located error, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.contains("bad.rego:4:"), "{shown}");
    assert!(!shown.contains('\n'), "{shown}");
}

#[test]
fn a_call_to_an_unknown_function_fails_at_load() {
    let dir = folder(&[(
        "p.rego",
        "package toolgate\ndecision := {\"result\": \"allow\", \"policy_id\": no_such.fn(1), \"reason\": \"r\"}\n",
    )]);
    let err = PolicySet::load(dir.path()).expect_err("must not load");
    assert!(err.to_string().contains("p.rego"), "{err}");
}

#[test]
fn a_broken_data_file_fails_at_load_with_its_position() {
    let dir = folder(&[
        ("p.rego", ALLOW_ALL),
        ("cfg/d.json", "{\n  \"a\": [1,\n}\n"),
    ]);
    let err = PolicySet::load(dir.path()).expect_err("must not load");
    assert!(
        matches!(&err, PolicyError::Located { file, line: 3, .. } if file.ends_with("cfg/d.json")),
        "{err:?}"
    );
}

#[test]
fn data_files_merge_under_data_and_conflicts_fail() {
    let policy = r#"package toolgate
decision := {"result": "allow", "policy_id": data.cfg.id, "reason": data.other.reason}
"#;
    let dir = folder(&[
        ("p.rego", policy),
        ("a/cfg.yaml", "cfg:\n  id: from-yaml\n"),
        ("b/other.json", r#"{"other": {"reason": "from-json"}}"#),
    ]);
    let decision = PolicySet::load(dir.path())
        .expect("load")
        .evaluator()
        .decide(regorus::Value::new_object())
        .expect("decide");
    assert_eq!(
        (decision.policy_id(), decision.reason()),
        ("from-yaml", "from-json")
    );

    let clash = folder(&[
        ("p.rego", ALLOW_ALL),
        ("a.json", r#"{"k": 1}"#),
        ("b.yml", "k: 2\n"),
    ]);
    let err = PolicySet::load(clash.path()).expect_err("conflicting data");
    assert!(
        matches!(&err, PolicyError::Load { file, .. } if file.ends_with("b.yml")),
        "{err:?}"
    );
}

#[test]
fn an_empty_folder_and_a_missing_decision_are_load_errors() {
    let empty = folder(&[("README.md", "no policies")]);
    assert!(matches!(
        PolicySet::load(empty.path()),
        Err(PolicyError::NoModules(_))
    ));
    let missing = folder(&[("p.rego", "package toolgate\nallow := true\n")]);
    assert!(matches!(
        PolicySet::load(missing.path()),
        Err(PolicyError::NoDecisionRule)
    ));
    assert!(matches!(
        PolicySet::load(Path::new("/nonexistent/toolgate")),
        Err(PolicyError::Io { .. })
    ));
}

#[test]
fn an_undefined_decision_is_an_error_that_denies() {
    let dir = folder(&[(
        "p.rego",
        "package toolgate\ndecision := {\"result\": \"allow\", \"policy_id\": \"x\", \"reason\": \"y\"} if input.go\n",
    )]);
    let set =
        PolicySet::load(dir.path()).expect("an undefined decision on the sample input still loads");
    let mut evaluator = set.evaluator();
    let err = evaluator
        .decide(regorus::Value::new_object())
        .expect_err("undefined");
    assert!(matches!(err, PolicyError::Undefined));
    let denied = Decision::from_error(&err);
    assert_eq!(
        (denied.verdict(), denied.policy_id()),
        (Verdict::Deny, "toolgate.undefined")
    );
    let ok = evaluator
        .decide(json_to_value(&json!({"go": true})))
        .expect("defined");
    assert_eq!(ok.verdict(), Verdict::Allow);
}

#[test]
fn malformed_decisions_are_errors() {
    let policy = r#"package toolgate
decision := {"result": "allow", "policy_id": "ok", "reason": "ok"} if not input.kind
decision := {"result": "maybe", "policy_id": "x", "reason": "y"} if input.kind == "verdict"
decision := {"result": "allow", "reason": "y"} if input.kind == "missing"
decision := {"result": "allow", "policy_id": 7, "reason": "y"} if input.kind == "number"
decision := "allow" if input.kind == "string"
"#;
    let set = PolicySet::load(folder(&[("p.rego", policy)]).path()).expect("load");
    let mut evaluator = set.evaluator();
    for kind in ["verdict", "missing", "number", "string"] {
        let err = evaluator
            .decide(json_to_value(&json!({"kind": kind})))
            .expect_err(kind);
        assert!(matches!(err, PolicyError::Malformed(_)), "{kind}: {err:?}");
        assert_eq!(Decision::from_error(&err).policy_id(), "toolgate.error");
    }
    // A policy that is malformed on the sample input does not load at all.
    let always_bad = r#"package toolgate
decision := {"result": "yes", "policy_id": "x", "reason": "y"}
"#;
    let err = PolicySet::load(folder(&[("p.rego", always_bad)]).path()).expect_err("smoke");
    assert!(matches!(err, PolicyError::Smoke(_)), "{err:?}");
}

#[test]
fn a_runaway_policy_fails_closed() {
    let policy = r#"package toolgate
decision := {"result": "allow", "policy_id": "x", "reason": sprintf("%d", [count(big)])} if input.n
big := [x | some x in numbers.range(1, input.n)]
"#;
    let set = PolicySet::load(folder(&[("p.rego", policy)]).path()).expect("load");
    let mut evaluator = set.evaluator();
    let err = evaluator
        .decide(json_to_value(&json!({"n": 1_000_000})))
        .expect_err("instruction limit");
    assert!(matches!(err, PolicyError::Eval(_)), "{err:?}");
    let denied = Decision::from_error(&err);
    assert_eq!(
        (denied.verdict(), denied.policy_id()),
        (Verdict::Deny, "toolgate.error")
    );
    assert!(
        denied.reason().starts_with("policy evaluation failed"),
        "{}",
        denied.reason()
    );
    assert!(!denied.reason().contains('\n'), "{}", denied.reason());
    // The same evaluator still works afterwards.
    let ok = evaluator
        .decide(json_to_value(&json!({"n": 3})))
        .expect("small");
    assert_eq!(ok.reason(), "3");
}

/// A documented difference: the interpreter raises a builtin error, the VM (like OPA) treats an error
/// inside a rule body as that body failing. Both end in a deny here because the decision is undefined.
#[test]
fn an_error_inside_a_rule_body_fails_that_body_on_the_vm() {
    let policy = r#"package toolgate
decision := {"result": "allow", "policy_id": "x", "reason": upper(input.parts)} if input.parts
"#;
    let dir = folder(&[("p.rego", policy)]);
    let set = PolicySet::load(dir.path()).expect("load");
    let input = json!({"parts": 5});
    let vm = set
        .evaluator()
        .decide(json_to_value(&input))
        .expect_err("no decision");
    assert!(matches!(vm, PolicyError::Undefined), "{vm:?}");
    let interpreted = eval_once(dir.path(), &input).expect_err("interpreter raises");
    assert!(interpreted.to_string().contains("upper"), "{interpreted}");
    assert_eq!(Decision::from_error(&vm).verdict(), Verdict::Deny);
    assert_eq!(Decision::from_error(&interpreted).verdict(), Verdict::Deny);
}

/// `not f(x)` must not succeed because `f` failed on a bad argument: with strict builtin errors the whole
/// body fails instead.
#[test]
fn a_failing_builtin_under_not_does_not_flip_to_true() {
    let policy = r#"package toolgate
default decision := {"result": "deny", "policy_id": "d", "reason": "default"}
decision := {"result": "allow", "policy_id": "a", "reason": "not admin"} if {
    not startswith(input.role, "admin")
}
"#;
    let set = PolicySet::load(folder(&[("p.rego", policy)]).path()).expect("load");
    let mut evaluator = set.evaluator();
    let bad = evaluator
        .decide(json_to_value(&json!({"role": 42})))
        .expect("decision");
    assert_eq!(bad.policy_id(), "d");
    let good = evaluator
        .decide(json_to_value(&json!({"role": "dev"})))
        .expect("decision");
    assert_eq!(good.policy_id(), "a");
}

#[test]
fn the_shipped_tests_pass() {
    let outcomes = run_tests(&shipped(), None).expect("run_tests");
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed).collect();
    assert!(failed.is_empty(), "failing: {failed:#?}");
    assert!(outcomes.len() >= 40, "only {} tests found", outcomes.len());
    for package in [
        "toolgate",
        "toolgate.filesystem_test",
        "toolgate.shell_test",
        "toolgate.network_test",
        "toolgate.dlp_test",
        "toolgate.tools_test",
        "toolgate.resources_test",
        "toolgate.prompts_test",
        "toolgate.sampling_test",
        "toolgate.results_test",
    ] {
        assert!(
            outcomes.iter().any(|o| o.package == package),
            "no tests in {package}"
        );
    }
}

#[test]
fn failing_tests_are_reported() {
    let dir = folder(&[
        ("p.rego", ALLOW_ALL),
        (
            "p_test.rego",
            r#"package toolgate.suite
test_passes if data.toolgate.decision.result == "allow"
test_fails if data.toolgate.decision.result == "deny"
test_false := false
test_errors if concat(",", input.n) == "" with input as {"n": 1}
test_uses_with if data.toolgate.decision.reason == "ok" with input as {}
"#,
        ),
    ]);
    let outcomes = run_tests(dir.path(), None).expect("run_tests");
    let by_name = |n: &str| {
        outcomes
            .iter()
            .find(|o| o.name == n)
            .unwrap_or_else(|| panic!("{n} not run: {outcomes:?}"))
    };
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    assert!(by_name("test_passes").passed);
    assert!(by_name("test_uses_with").passed);
    assert!(!by_name("test_fails").passed);
    assert!(by_name("test_fails").error.is_none());
    assert!(!by_name("test_false").passed);
    assert!(!by_name("test_errors").passed);
    assert!(by_name("test_errors").error.is_some());
    assert_eq!(by_name("test_passes").package, "toolgate.suite");

    let only = regex::Regex::new("suite\\.test_pa").expect("regex");
    let filtered = run_tests(dir.path(), Some(&only)).expect("run_tests");
    assert_eq!(
        filtered.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        ["test_passes"]
    );
}

#[test]
fn eval_once_returns_the_decision_and_prints() {
    let policy = r#"package toolgate
decision := {"result": "deny", "policy_id": "p", "reason": input.why} if {
    print("judging", input.why)
}
"#;
    let dir = folder(&[("p.rego", policy)]);
    let (decision, prints) = eval_once(dir.path(), &json!({"why": "because"})).expect("eval");
    assert_eq!(
        decision,
        json!({"result": "deny", "policy_id": "p", "reason": "because"})
    );
    assert!(
        prints.iter().any(|p| p.contains("judging because")),
        "{prints:?}"
    );
    let (undefined, _) = eval_once(dir.path(), &json!({})).expect("eval");
    assert_eq!(undefined, Json::Null);
}

/// Not a benchmark, a guard against an accidental slow path (a regex compiled per call, an interpreter
/// fallback): `cargo test --release -p toolgate-engine -- --ignored decide_takes --nocapture`.
#[test]
#[ignore]
fn decide_takes_tens_of_microseconds_at_most() {
    let set = shipped_set();
    let mut evaluator = set.evaluator();
    let cases = cases();
    let inputs: Vec<_> = cases.iter().map(|c| documents(c).1).collect();
    let mut times = Vec::new();
    for (c, input) in cases.iter().zip(&inputs) {
        let mut own = Vec::new();
        for _ in 0..200 {
            let started = std::time::Instant::now();
            let decision = evaluator.decide(input.clone());
            own.push(started.elapsed());
            assert!(decision.is_ok());
        }
        own.sort();
        println!("{:>10?} {} {}", own[own.len() / 2], c.tool, c.arguments);
        times.extend(own);
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let p99 = times[times.len() * 99 / 100];
    println!(
        "decide over {} inputs: p50 {p50:?}, p99 {p99:?}",
        inputs.len()
    );
    assert!(p50 < std::time::Duration::from_micros(500), "p50 {p50:?}");
}
