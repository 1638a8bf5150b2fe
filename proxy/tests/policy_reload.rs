//! Policy hot reload under load (admin endpoint, file watching, SIGHUP), refused broken sets, the revision
//! in audit events, and the policy test runner / `eval --explain` through the real binary.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use common::{Agent, Options, Proxy, ADMIN};

const BIN: &str = env!("CARGO_BIN_EXE_toolgate");

const SET_A: &str = r#"package toolgate
decision := {"result": "allow", "policy_id": "race.a", "reason": "set a"}
"#;

const SET_B: &str = r#"package toolgate
decision := {"result": "deny", "policy_id": "race.b", "reason": "set b"}
"#;

const LISTED: &str = r#"package toolgate

import rego.v1

default decision := {"result": "deny", "policy_id": "data.unlisted", "reason": "not listed"}

decision := {"result": "allow", "policy_id": "data.listed", "reason": "listed"} if {
	input.tool.name in data.cfg.tools
}
"#;

/// Writes a file in one step (temp file + rename), as careful editors and deploy tools do.
fn put(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn policy_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

async fn start(dir: &Path) -> Proxy {
    common::start(Options {
        policy_dir: Some(dir.to_owned()),
        ..Default::default()
    })
    .await
}

async fn admin(proxy: &Proxy, method: Method, path: &str) -> (StatusCode, Value) {
    let auth = format!("Bearer {ADMIN}");
    let answer = common::send(method, &proxy.url(path), &[("authorization", &auth)], "").await;
    (answer.status, answer.json())
}

async fn reload(proxy: &Proxy) -> (StatusCode, Value) {
    admin(proxy, Method::POST, "/api/v1/policy/reload").await
}

async fn status(proxy: &Proxy) -> Value {
    admin(proxy, Method::GET, "/api/v1/policy").await.1
}

async fn agent(proxy: &Proxy) -> Agent {
    let mut agent = Agent::new(proxy, "demo", common::token("agent-1", &[]));
    agent.initialize().await;
    agent
}

/// The policy_id that judged an echo call: the allow's is not in the answer, so `race.a` stands for it.
fn judged_by(answer: &common::Answer) -> Result<&'static str, String> {
    if answer.status != StatusCode::OK {
        return Err(format!("HTTP {}", answer.status));
    }
    let message = answer.message();
    if message.get("result").is_some() {
        return Ok("allow");
    }
    let text = message["error"]["message"].as_str().unwrap_or_default();
    match (answer.error_code(), text) {
        (Some(-31001), t) if t.contains("race.b") => Ok("race.b"),
        (Some(-31001), t) if t.contains("data.unlisted") => Ok("data.unlisted"),
        _ => Err(message.to_string()),
    }
}

fn has_location(error: &str) -> bool {
    regex::Regex::new(r"main\.rego:\d+:\d+")
        .unwrap()
        .is_match(error)
}

async fn audit_revisions(proxy: &Proxy) -> Vec<String> {
    let page = proxy
        .app
        .audit
        .store()
        .query(&toolgate::audit::EventFilter {
            tool_name: Some("echo".into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    let page = serde_json::to_value(page).unwrap();
    let events = page.get("events").cloned().unwrap_or(page);
    events
        .as_array()
        .expect("a page of events")
        .iter()
        .filter(|e| e["event_type"] != "tool_result")
        .map(|e| e["extra"]["policy_revision"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_keep_getting_valid_decisions_during_a_burst_of_reloads() {
    let dir = policy_dir(&[("main.rego", SET_A)]);
    let proxy = start(dir.path()).await;
    let rev_a = status(&proxy).await["revision"]
        .as_str()
        .unwrap()
        .to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut agent = agent(&proxy).await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            // Bounded: ends when the reloads are done, or after 5,000 calls at most.
            for _ in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let answer = agent.call("echo", json!({ "text": "x" })).await;
                seen.push(judged_by(&answer));
            }
            seen
        }));
    }

    let mut rev_b = String::new();
    for i in 0..20 {
        let (content, expected) = if i % 2 == 0 {
            (SET_B, "B")
        } else {
            (SET_A, "A")
        };
        put(dir.path(), "main.rego", content);
        let (code, body) = reload(&proxy).await;
        assert_eq!(code, StatusCode::OK, "reload {i}: {body}");
        assert_eq!(body["result"], "ok", "{body}");
        let revision = body["revision"].as_str().unwrap().to_owned();
        if expected == "B" {
            rev_b = revision.clone();
        } else {
            assert_eq!(revision, rev_a);
        }
        assert_eq!(status(&proxy).await["revision"], revision.as_str());
    }
    stop.store(true, Ordering::Relaxed);

    let mut allowed = 0;
    let mut denied = 0;
    for task in tasks {
        for outcome in task.await.unwrap() {
            match outcome {
                Ok("allow") => allowed += 1,
                Ok("race.b") => denied += 1,
                other => panic!("a call did not get a decision of either set: {other:?}"),
            }
        }
    }
    eprintln!("during 20 reloads: {allowed} calls allowed by set A, {denied} denied by set B");
    assert!(
        allowed + denied >= 8,
        "calls ran: {allowed} allowed, {denied} denied"
    );
    assert_ne!(rev_a, rev_b);
    let revisions = audit_revisions(&proxy).await;
    assert!(!revisions.is_empty());
    assert!(
        revisions.iter().all(|r| *r == rev_a || *r == rev_b),
        "every audit event names one of the two revisions"
    );
    assert!(
        proxy
            .app
            .metrics
            .policy_reloads
            .with_label_values(&["ok"])
            .get()
            >= 21
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_is_refused_and_the_last_good_set_keeps_serving() {
    let dir = policy_dir(&[("main.rego", SET_A)]);
    let proxy = start(dir.path()).await;
    let good = status(&proxy).await["revision"]
        .as_str()
        .unwrap()
        .to_owned();
    let errors_before = proxy
        .app
        .metrics
        .policy_reloads
        .with_label_values(&["error"])
        .get();

    put(
        dir.path(),
        "main.rego",
        "package toolgate\n\ndecision := {\n  \"result\": \"allow\",\n",
    );
    let (code, body) = reload(&proxy).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["result"], "error");
    assert_eq!(body["revision"], good.as_str(), "the old revision serves");
    assert!(has_location(body["error"].as_str().unwrap()), "{body}");

    let st = status(&proxy).await;
    assert_eq!(st["revision"], good.as_str());
    assert_eq!(st["last_reload"]["result"], "error", "{st}");
    assert!(
        has_location(st["last_reload"]["error"].as_str().unwrap()),
        "{st}"
    );
    assert!(st["last_reload"]["at"].as_str().unwrap().ends_with('Z'));
    assert!(
        proxy
            .app
            .metrics
            .policy_reloads
            .with_label_values(&["error"])
            .get()
            > errors_before
    );
    let metrics = common::send(Method::GET, &proxy.url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("toolgate_policy_reloads_total{result=\"error\"}"),
        "{text}"
    );

    let mut agent = agent(&proxy).await;
    let answer = agent.call("echo", json!({ "text": "still" })).await;
    assert_eq!(judged_by(&answer), Ok("allow"), "set A still decides");

    // Fixing the file is picked up by the watcher without any request.
    put(dir.path(), "main.rego", SET_B);
    common::eventually(Duration::from_secs(10), || async {
        let st = status(&proxy).await;
        (st["revision"] != good.as_str() && st["last_reload"]["result"] == "ok").then_some(())
    })
    .await;
    let answer = agent.call("echo", json!({ "text": "now" })).await;
    assert_eq!(judged_by(&answer), Ok("race.b"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_data_changes_and_deleted_files_are_picked_up() {
    let dir = policy_dir(&[
        ("main.rego", LISTED),
        ("helpers.rego", "package toolgate.helpers\n\nanswer := 42\n"),
        ("data.json", r#"{"cfg": {"tools": ["echo"]}}"#),
    ]);
    let proxy = start(dir.path()).await;
    let mut agent = agent(&proxy).await;
    let first = status(&proxy).await;
    assert_eq!(first["modules"], json!(["helpers.rego", "main.rego"]));
    assert_eq!(
        judged_by(&agent.call("echo", json!({ "text": "x" })).await),
        Ok("allow")
    );

    // A data file changed: the decision changes once the watcher reloaded.
    put(dir.path(), "data.json", r#"{"cfg": {"tools": []}}"#);
    let revision = |v: &Value| v["revision"].as_str().unwrap().to_owned();
    let before = revision(&first);
    let second = common::eventually(Duration::from_secs(10), || async {
        let st = status(&proxy).await;
        (revision(&st) != before).then_some(st)
    })
    .await;
    assert_eq!(second["last_reload"]["trigger"], "watch", "{second}");
    assert_eq!(
        judged_by(&agent.call("echo", json!({ "text": "x" })).await),
        Ok("data.unlisted")
    );

    // A module deleted: it leaves the set.
    std::fs::remove_file(dir.path().join("helpers.rego")).unwrap();
    let third = common::eventually(Duration::from_secs(10), || async {
        let st = status(&proxy).await;
        (st["modules"] == json!(["main.rego"])).then_some(st)
    })
    .await;
    assert_ne!(revision(&third), revision(&second));

    // The last module deleted: refused, the last good set keeps serving.
    std::fs::remove_file(dir.path().join("main.rego")).unwrap();
    let fourth = common::eventually(Duration::from_secs(10), || async {
        let st = status(&proxy).await;
        (st["last_reload"]["result"] == "error").then_some(st)
    })
    .await;
    assert_eq!(revision(&fourth), revision(&third));
    assert!(
        fourth["last_reload"]["error"]
            .as_str()
            .unwrap()
            .contains("no policy modules"),
        "{fourth}"
    );
    assert_eq!(
        judged_by(&agent.call("echo", json!({ "text": "x" })).await),
        Ok("data.unlisted")
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_carry_the_revision_that_was_serving() {
    let dir = policy_dir(&[("main.rego", SET_A)]);
    let proxy = start(dir.path()).await;
    let mut agent = agent(&proxy).await;
    let rev_a = status(&proxy).await["revision"]
        .as_str()
        .unwrap()
        .to_owned();
    agent.call("echo", json!({ "text": "one" })).await;

    put(dir.path(), "main.rego", SET_B);
    let (_, body) = reload(&proxy).await;
    let rev_b = body["revision"].as_str().unwrap().to_owned();
    assert_ne!(rev_a, rev_b);
    agent.call("echo", json!({ "text": "two" })).await;

    let revisions = common::eventually(Duration::from_secs(5), || async {
        let r = audit_revisions(&proxy).await;
        (r.len() >= 2).then_some(r)
    })
    .await;
    // Newest first: the deny under B, then the allow under A.
    assert_eq!(revisions.first(), Some(&rev_b));
    assert_eq!(revisions.last(), Some(&rev_a));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policies() {
    let dir = policy_dir(&[("main.rego", SET_A)]);
    let proxy = start(dir.path()).await;
    // Safe: App::start registered the SIGHUP handler before it returned, so the signal no longer has its
    // default action (terminate) in this process; other proxies of this test binary merely reload too.
    let sent = Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let st = common::eventually(Duration::from_secs(10), || async {
        let st = status(&proxy).await;
        (st["last_reload"]["trigger"] == "signal").then_some(st)
    })
    .await;
    assert_eq!(st["last_reload"]["result"], "ok");
    // And the handler's body, directly.
    let direct = proxy.app.policies.on_sighup().await;
    assert_eq!(direct.result, "ok");
    assert_eq!(direct.trigger, toolgate::policy_reload::Trigger::Signal);
    proxy.stop().await;
}

// ---- the test runner and eval, through the real binary ----

const RUNNER_POLICY: &str = r#"package toolgate

import rego.v1

default decision := {"result": "deny", "policy_id": "t.default", "reason": "no"}

decision := {"result": "allow", "policy_id": "t.listed", "reason": "listed"} if {
	input.tool.name in data.cfg.tools
}
"#;

const PASSING: &str = r#"package toolgate

import rego.v1

test_listed_is_allowed if {
	decision.result == "allow" with input as {"tool": {"name": "echo"}}
}

test_data_is_mocked if {
	decision.result == "allow" with input as {"tool": {"name": "frob"}} with data.cfg.tools as ["frob"]
}
"#;

fn runner_dir(tests: &str) -> tempfile::TempDir {
    policy_dir(&[
        ("main.rego", RUNNER_POLICY),
        ("main_test.rego", tests),
        ("data.json", r#"{"cfg": {"tools": ["echo"]}}"#),
    ])
}

fn toolgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/toolgate.toml"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn policy_test_passes_fails_and_errors_with_the_right_exit_codes() {
    let passing = runner_dir(PASSING);
    let dir = passing.path().to_str().unwrap();
    let (code, out, err) = toolgate(&["policy", "test", dir, "--verbose", "--coverage"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("data.toolgate.test_data_is_mocked: PASS"),
        "{out}"
    );
    assert!(
        out.contains("coverage:") && out.contains("main.rego: "),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("2 passed, 0 failed"));

    let (code, out, _) = toolgate(&[
        "policy",
        "test",
        dir,
        "--format",
        "json",
        "--coverage",
        "--run",
        "mocked",
    ]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["passed"], 1);
    assert_eq!(report["tests"][0]["name"], "test_data_is_mocked");
    assert!(
        report["coverage"]["percent"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(report["coverage"]["files"][0]["covered"]
        .as_array()
        .unwrap()
        .contains(&json!(8)));

    let failing = runner_dir(&format!(
        "{PASSING}\ntest_wrong if {{\n\tdecision.result == \"allow\" with input as {{\"tool\": {{\"name\": \"nope\"}}}}\n}}\n"
    ));
    let (code, out, _) = toolgate(&["policy", "test", failing.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("data.toolgate.test_wrong: FAIL"), "{out}");
    assert_eq!(out.lines().last(), Some("2 passed, 1 failed"));

    let erroring = runner_dir(
        "package toolgate\n\nimport rego.v1\n\ntest_boom if {\n\tupper(5) == \"5\"\n}\n",
    );
    let (code, out, _) = toolgate(&["policy", "test", erroring.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("data.toolgate.test_boom: ERROR"), "{out}");
    assert_eq!(out.lines().last(), Some("0 passed, 1 failed"));

    let broken = runner_dir("package toolgate\n\ntest_x if {\n");
    let (code, _, err) = toolgate(&["policy", "test", broken.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        regex::Regex::new(r"main_test\.rego:\d+:\d+")
            .unwrap()
            .is_match(&err),
        "{err}"
    );

    let none = runner_dir("package toolgate\n");
    let (code, _, err) = toolgate(&["policy", "test", none.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("no tests found"), "{err}");
}

#[test]
fn policy_eval_explains_the_decision() {
    let dir = runner_dir(PASSING);
    let input = dir.path().join("input.json.in");
    std::fs::write(&input, r#"{"tool": {"name": "echo"}}"#).unwrap();
    let args = [
        "policy",
        "eval",
        "--input",
        input.to_str().unwrap(),
        "--dir",
        dir.path().to_str().unwrap(),
    ];
    let (code, out, err) = toolgate(&args);
    assert_eq!(code, 0, "{err}");
    let decision: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(decision["policy_id"], "t.listed");

    let mut explain = args.to_vec();
    explain.push("--explain");
    let (code, out, err) = toolgate(&explain);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("definitions of data.toolgate.decision:"),
        "{out}"
    );
    let produced: Vec<&str> = out.lines().filter(|l| l.starts_with("=> ")).collect();
    assert_eq!(produced.len(), 1, "{out}");
    assert!(produced[0].contains("main.rego:7 [rule] held"), "{out}");
}
