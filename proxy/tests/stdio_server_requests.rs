//! Requests a stdio child sends its client (sampling, elicitation) while it handles an agent's call: routed to
//! the one agent in flight, judged with `request.direction = server_to_client`, delivered on the agent's answer
//! stream (SSE) and answered back to the child; refused to the child when denied, when two agents are in flight,
//! or when the agent never answers; an agent's answer to a request it was never given is refused. The child is
//! `tests/fixtures/stdio_sampling_server.py` (python3), which logs every message it reads.
//!
//! The child's notifications travel the same way: progress by the token toolgate gave the child (so it reaches
//! the agent that asked for it, with its own token back, however many agents are in flight), a log message only
//! while one agent is in flight; both scanned and redacted. `tools/list_changed` unverifies the child's tools
//! whoever it reaches.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::{audit_events, eventually, start, token, Agent, Options, Proxy};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

const UPSTREAM: &str = "asker";

/// toolgate with the fixture as its only upstream, the shipped policies with its tools harmless and sampling in
/// `sampling_mode` (the shipped default, escalate, when `None`).
/// The child's message log is in the returned folder, which holds the policies too: keep it alive.
async fn proxy(
    sampling_mode: Option<&str>,
    timeout_seconds: u64,
) -> (Proxy, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policies = common::shipped_policies_with(dir.path(), |knobs| {
        let harmless = knobs["harmless_tools"].as_array_mut().unwrap();
        for tool in ["ask_model", "hold", "report", "change_tools", "echo"] {
            harmless.push(json!(tool));
        }
        if let Some(mode) = sampling_mode {
            knobs["sampling"]["mode"] = json!(mode);
        }
    });
    let log = dir.path().join("received.jsonl");
    let fixture = common::repo_root().join("proxy/tests/fixtures/stdio_sampling_server.py");
    let proxy = start(Options {
        extra_toml: format!(
            "[[upstream]]\nname = \"{UPSTREAM}\"\ncommand = [\"python3\", \"-u\", \"{}\"]\ntimeout_seconds = {timeout_seconds}\nworkdir = \"/workspace\"\n[upstream.env]\nTOOLGATE_FIXTURE_LOG = \"{}\"\n",
            fixture.display(),
            log.display()
        ),
        demo: false,
        policy_dir: Some(policies),
        ..Options::default()
    })
    .await;
    (proxy, log, dir)
}

/// Every message the child has read.
fn received(log: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One `tools/call` whose answer is read message by message as it streams.
struct Call {
    content_type: String,
    body: hyper::body::Incoming,
    buffer: String,
}

/// A call about to be sent; awaiting it sends it (in the 2025 era unless `stateless`).
struct Opening<'a> {
    agent: &'a Agent,
    body: Value,
}

impl<'a> Opening<'a> {
    fn stateless(mut self, stateless: bool) -> Opening<'a> {
        if stateless {
            let meta = &mut self.body["params"]["_meta"];
            meta["io.modelcontextprotocol/protocolVersion"] = json!("2026-07-28");
            meta["io.modelcontextprotocol/clientCapabilities"] = json!({});
        }
        self
    }
}

impl<'a> std::future::IntoFuture for Opening<'a> {
    type Output = Call;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Call> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(Call::send(self.agent, self.body))
    }
}

impl Call {
    fn open<'a>(agent: &'a Agent, id: i64, tool: &str, arguments: Value) -> Opening<'a> {
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": tool, "arguments": arguments } });
        Opening { agent, body }
    }

    async fn send(agent: &Agent, body: Value) -> Call {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&agent.url)
            .header("authorization", format!("Bearer {}", agent.token))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(s) = &agent.session {
            req = req.header("mcp-session-id", s);
        }
        let resp = common::client()
            .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Call {
            content_type,
            body: resp.into_body(),
            buffer: String::new(),
        }
    }

    /// The next JSON-RPC message of the answer (an SSE event, or the whole JSON body); `None` at its end.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if self.content_type.starts_with("text/event-stream") {
                if let Some(end) = self.buffer.find("\n\n") {
                    let event: String = self.buffer.drain(..end + 2).collect();
                    let data: Vec<&str> = event
                        .lines()
                        .filter_map(|l| l.strip_prefix("data: "))
                        .collect();
                    return Some(serde_json::from_str(&data.join("\n")).unwrap());
                }
            }
            let frame = tokio::time::timeout(Duration::from_secs(15), self.body.frame())
                .await
                .expect("the answer goes on");
            match frame {
                Some(frame) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buffer.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                None if self.buffer.trim().is_empty() => return None,
                None => {
                    let rest = std::mem::take(&mut self.buffer);
                    return Some(serde_json::from_str(&rest).unwrap());
                }
            }
        }
    }

    /// Reads to the answer of call `id`, collecting the requests shown on the way.
    async fn answer(&mut self, id: i64) -> (Value, Vec<Value>) {
        let mut seen = Vec::new();
        while let Some(message) = self.next().await {
            if message["id"] == id && message.get("method").is_none() {
                return (message, seen);
            }
            seen.push(message);
        }
        panic!("no answer to {id}; saw {seen:?}");
    }
}

fn text_of(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
}

/// The newest audit event of agent `sub` that `matches`.
async fn event_of(proxy: &Proxy, sub: &str, matches: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(5), || async {
        audit_events(&proxy.app, 500)
            .await
            .into_iter()
            .find(|e| e["agent_id"] == sub && matches(e))
    })
    .await
}

fn is_sampling(e: &Value) -> bool {
    e["extra"]["method"] == "sampling/createMessage"
        && e["extra"]["direction"] == "server_to_client"
}

fn sampling_answer(id: &Value, text: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": { "role": "assistant", "content": { "type": "text", "text": text }, "model": "test-model" } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_sampling_reaches_the_agent_in_flight_and_its_answer_the_child_in_both_eras() {
    let (proxy, log, _dir) = proxy(Some("allow"), 5).await;
    for (stateless, sub) in [(false, "sampler-session"), (true, "sampler-stateless")] {
        let era = if stateless { "stateless" } else { "session" };
        let mut agent = Agent::new(&proxy, UPSTREAM, token(sub, &[]));
        if !stateless {
            agent.initialize().await;
        }
        // No request of the child's: the plain JSON answer, as before.
        let plain = if stateless {
            agent.call_stateless("echo", json!({ "text": "hi" })).await
        } else {
            agent.call("echo", json!({ "text": "hi" })).await
        };
        assert_eq!(
            plain.header("content-type").as_deref(),
            Some("application/json"),
            "{era}"
        );
        assert_eq!(text_of(&plain.message()), "hi");

        let mut call = Call::open(
            &agent,
            7,
            "ask_model",
            json!({ "question": "What is two plus two?" }),
        )
        .stateless(stateless)
        .await;
        assert!(call.content_type.starts_with("text/event-stream"), "{era}");
        let request = call.next().await.expect("the child's request");
        assert_eq!(request["method"], "sampling/createMessage", "{request}");
        assert_eq!(
            request["params"]["messages"][0]["content"]["text"],
            "What is two plus two?"
        );
        // The agent sees toolgate's id, not the child's.
        assert!(request["id"].is_u64(), "{request}");
        let said = format!("four ({era})");
        let posted = agent.post(&sampling_answer(&request["id"], &said)).await;
        assert_eq!(posted.status, StatusCode::ACCEPTED, "{posted:?}");
        let (answer, seen) = call.answer(7).await;
        assert!(seen.is_empty(), "{seen:?}");
        assert_eq!(text_of(&answer), format!("answered: {said}"), "{answer}");

        // The child got the answer under its own id.
        let child_saw: Vec<Value> = received(&log)
            .into_iter()
            .filter(|m| {
                m.get("method").is_none() && m["result"]["content"]["text"] == said.as_str()
            })
            .collect();
        assert_eq!(child_saw.len(), 1, "{child_saw:?}");
        assert!(child_saw[0]["id"].as_str().unwrap().starts_with("ask-"));

        let delivered = event_of(&proxy, sub, |e| {
            e["event_type"] == "request" && is_sampling(e)
        })
        .await;
        assert_eq!(delivered["policy_result"], "allow");
        assert_eq!(delivered["mcp_server"], UPSTREAM);
        let outcome = event_of(&proxy, sub, |e| {
            e["event_type"] == "tool_result" && e["tool_name"] == "ask_model"
        })
        .await;
        assert!(outcome["error"].is_null(), "{outcome}");
        assert!(outcome["response_code"] == 200, "{outcome}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_or_escalated_sampling_is_answered_to_the_child_and_never_shown_to_the_agent() {
    for (mode, code, event_type) in [
        (Some("deny"), "-31001", "policy_deny"),
        (None, "-31002", "policy_escalate"),
    ] {
        let (proxy, log, _dir) = proxy(mode, 5).await;
        let sub = format!("refused-{code}");
        let mut agent = Agent::new(&proxy, UPSTREAM, token(&sub, &[]));
        agent.initialize().await;
        let mut call = Call::open(
            &agent,
            3,
            "ask_model",
            json!({ "question": "secret plans?" }),
        )
        .await;
        let (answer, seen) = call.answer(3).await;
        assert!(seen.is_empty(), "{mode:?}: the agent saw {seen:?}");
        assert_eq!(text_of(&answer), format!("refused: {code}"), "{answer}");
        let refusal: Vec<Value> = received(&log)
            .into_iter()
            .filter(|m| m.get("method").is_none() && m["id"] == "ask-1")
            .collect();
        assert_eq!(refusal.len(), 1, "{refusal:?}");
        assert_eq!(refusal[0]["error"]["code"].to_string(), code);
        let event = event_of(&proxy, &sub, |e| {
            e["event_type"] == event_type && is_sampling(e)
        })
        .await;
        assert_eq!(event["policy_id"], "toolgate.sampling.create_message");
        // The call itself went through, and its outcome is recorded.
        event_of(&proxy, &sub, |e| {
            e["event_type"] == "tool_result" && e["tool_name"] == "ask_model"
        })
        .await;
        proxy.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_with_two_agents_in_flight_is_refused_as_ambiguous_and_audited_for_both() {
    let (proxy, log, _dir) = proxy(Some("allow"), 5).await;
    let mut holder = Agent::new(&proxy, UPSTREAM, token("holder", &[]));
    holder.initialize().await;
    let mut asker = Agent::new(&proxy, UPSTREAM, token("asker", &[]));
    asker.initialize().await;
    // The hold's answer (JSON) comes only once the child releases it.
    let held = tokio::spawn(async move { holder.call("hold", json!({})).await.message() });
    eventually(Duration::from_secs(5), || async {
        received(&log)
            .iter()
            .any(|m| m["params"]["name"] == "hold")
            .then_some(())
    })
    .await;
    let mut call = Call::open(&asker, 2, "ask_model", json!({ "question": "whose?" })).await;
    let (answer, seen) = call.answer(2).await;
    assert!(seen.is_empty(), "the asker saw {seen:?}");
    assert_eq!(text_of(&answer), "refused: -31001 ambiguous");
    let released = held.await.unwrap();
    assert_eq!(text_of(&released), "released");
    for sub in ["holder", "asker"] {
        let refused = event_of(&proxy, sub, |e| {
            e["event_type"] == "policy_deny" && is_sampling(e)
        })
        .await;
        assert_eq!(refused["policy_id"], "toolgate.server_request.unroutable");
        assert_eq!(refused["extra"]["reason"], "ambiguous");
        assert_eq!(refused["policy_result"], "deny");
    }
    // Neither agent's answer stream carried it, and nothing was delivered.
    assert!(!audit_events(&proxy.app, 500)
        .await
        .iter()
        .any(|e| e["event_type"] == "request" && is_sampling(e)));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_agent_a_request_was_delivered_to_may_answer_it_and_its_answer_is_scanned() {
    let (proxy, log, _dir) = proxy(Some("allow"), 5).await;
    let mut owner = Agent::new(&proxy, UPSTREAM, token("owner", &[]));
    owner.initialize().await;
    let mut thief = Agent::new(&proxy, UPSTREAM, token("thief", &[]));
    thief.initialize().await;
    let mut call = Call::open(&owner, 5, "ask_model", json!({ "question": "hello?" })).await;
    let request = call.next().await.expect("the child's request");
    assert_eq!(request["method"], "sampling/createMessage");

    // Another agent answering the request it saw nothing of (an id guessed or leaked): refused.
    let stolen = thief
        .post(&sampling_answer(&request["id"], "from the thief"))
        .await;
    assert_eq!(stolen.status, StatusCode::FORBIDDEN, "{stolen:?}");
    assert_eq!(stolen.error_code(), Some(-31001));
    let refused = event_of(&proxy, "thief", |e| e["event_type"] == "policy_deny").await;
    assert_eq!(refused["policy_id"], "toolgate.server_request.not_awaited");
    // The owner answering an id it was never given: refused too.
    let bogus = json!(request["id"].as_u64().unwrap() + 1000);
    let guessed = owner.post(&sampling_answer(&bogus, "guess")).await;
    assert_eq!(guessed.status, StatusCode::FORBIDDEN, "{guessed:?}");
    // An answer with a critical secret in it never reaches the child.
    let leaky = owner
        .post(&sampling_answer(
            &request["id"],
            "the key is AKIAZ7EXAMPLE4DEMO7Q",
        ))
        .await;
    assert_eq!(leaky.status, StatusCode::FORBIDDEN, "{leaky:?}");
    let blocked = event_of(&proxy, "owner", |e| {
        e["event_type"] == "policy_deny" && e["policy_id"] == "toolgate.plumbing.dlp"
    })
    .await;
    assert_eq!(blocked["dlp_action"], "blocked");

    let posted = owner
        .post(&sampling_answer(&request["id"], "from the owner"))
        .await;
    assert_eq!(posted.status, StatusCode::ACCEPTED, "{posted:?}");
    let (answer, _) = call.answer(5).await;
    assert_eq!(text_of(&answer), "answered: from the owner");
    let answers: Vec<Value> = received(&log)
        .into_iter()
        .filter(|m| m.get("method").is_none())
        .collect();
    assert_eq!(answers.len(), 1, "the child got {answers:?}");
    let stored = serde_json::to_string(&audit_events(&proxy.app, 500).await).unwrap();
    assert!(!stored.contains("AKIAZ7EXAMPLE4DEMO7Q"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_agent_never_answers_is_refused_to_the_child_after_the_timeout() {
    let (proxy, log, _dir) = proxy(Some("allow"), 1).await;
    let mut agent = Agent::new(&proxy, UPSTREAM, token("silent", &[]));
    agent.initialize().await;
    let mut call = Call::open(&agent, 4, "ask_model", json!({ "question": "anyone?" })).await;
    let request = call.next().await.expect("the child's request");
    let (answer, _) = call.answer(4).await;
    assert_eq!(text_of(&answer), "refused: -31004");
    // Too late now.
    let late = agent.post(&sampling_answer(&request["id"], "late")).await;
    assert_eq!(late.status, StatusCode::FORBIDDEN, "{late:?}");
    let answers: Vec<Value> = received(&log)
        .into_iter()
        .filter(|m| m.get("method").is_none())
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["error"]["code"], -31004);
    proxy.stop().await;
}

/// True when the Python SDK is installed (`proxy/tests/sdk/setup.sh`); otherwise a skip notice, or a failure
/// under TOOLGATE_REQUIRE_SDK_TESTS=1 (as in sdk_surface.rs).
fn sdk_python() -> Option<PathBuf> {
    use std::io::Write;
    let python = common::repo_root().join("proxy/tests/sdk/.venv/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import mcp"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    if std::env::var("TOOLGATE_REQUIRE_SDK_TESTS").as_deref() == Ok("1") {
        panic!("TOOLGATE_REQUIRE_SDK_TESTS=1 but the Python SDK is not installed; run proxy/tests/sdk/setup.sh");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: MCP SDK test: the Python SDK is not installed; run proxy/tests/sdk/setup.sh to include it"
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_server_over_stdio_samples_and_elicits_through_toolgate() {
    let Some(python) = sdk_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let policies = common::shipped_policies_with(dir.path(), |knobs| {
        let harmless = knobs["harmless_tools"].as_array_mut().unwrap();
        harmless.push(json!("ask_model"));
        harmless.push(json!("ask_user"));
        knobs["sampling"]["mode"] = json!("allow");
    });
    let script = common::repo_root().join("proxy/tests/sdk/python_server.py");
    let proxy = start(Options {
        extra_toml: format!(
            "[[upstream]]\nname = \"{UPSTREAM}\"\ncommand = [\"{}\", \"{}\", \"--stdio\"]\ntimeout_seconds = 10\nworkdir = \"/workspace\"\n",
            python.display(),
            script.display()
        ),
        demo: false,
        policy_dir: Some(policies),
        ..Options::default()
    })
    .await;
    let mut agent = Agent::new(&proxy, UPSTREAM, token("sdk-stdio", &[]));
    agent.initialize().await;

    let mut call = Call::open(
        &agent,
        11,
        "ask_model",
        json!({ "question": "Two plus two?" }),
    )
    .await;
    let request = call.next().await.expect("the server's request");
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"],
        "Two plus two?"
    );
    let posted = agent.post(&sampling_answer(&request["id"], "four")).await;
    assert_eq!(posted.status, StatusCode::ACCEPTED, "{posted:?}");
    let (answer, _) = call.answer(11).await;
    assert_eq!(text_of(&answer), "four", "{answer}");

    let mut call = Call::open(&agent, 12, "ask_user", json!({ "question": "Colour?" })).await;
    let request = call.next().await.expect("the server's request");
    assert_eq!(request["method"], "elicitation/create", "{request}");
    let reply = json!({ "jsonrpc": "2.0", "id": request["id"], "result": { "action": "accept", "content": { "answer": "blue" } } });
    assert_eq!(agent.post(&reply).await.status, StatusCode::ACCEPTED);
    let (answer, _) = call.answer(12).await;
    assert_eq!(text_of(&answer), "blue", "{answer}");
    for method in ["sampling/createMessage", "elicitation/create"] {
        let delivered = event_of(&proxy, "sdk-stdio", |e| {
            e["event_type"] == "request" && e["extra"]["method"] == method
        })
        .await;
        assert_eq!(delivered["extra"]["direction"], "server_to_client");
    }
    proxy.stop().await;
}

/// The fake AWS key the fixture puts in its log message for `{aws_key}`: DLP's `aws_access_key`, critical.
const FAKE_AWS_KEY: &str = "AKIAZ7EXAMPLE4DEMO7Q";

/// A `report` call asking for progress under `token`.
fn report_call<'a>(agent: &'a Agent, id: i64, token: &str, log: &str) -> Opening<'a> {
    let mut opening = Call::open(agent, id, "report", json!({ "log": log, "steps": 2 }));
    opening.body["params"]["_meta"] = json!({ "progressToken": token });
    opening
}

fn progress_of(seen: &[Value]) -> Vec<(Value, Value)> {
    seen.iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            (
                m["params"]["progressToken"].clone(),
                m["params"]["progress"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_log_notifications_reach_the_agent_in_flight_redacted_with_its_own_token() {
    let (proxy, log, _dir) = proxy(None, 5).await;
    for stateless in [false, true] {
        let mut agent = Agent::new(&proxy, UPSTREAM, token("reporter", &[]));
        if !stateless {
            agent.initialize().await;
        }
        let mut call = report_call(&agent, 7, "agent-token-1", "deploying with {aws_key}")
            .stateless(stateless)
            .await;
        assert!(
            call.content_type.starts_with("text/event-stream"),
            "{:?}",
            call.next().await
        );
        let (answer, seen) = call.answer(7).await;
        assert_eq!(text_of(&answer), "reported");
        assert_eq!(
            progress_of(&seen),
            vec![
                (json!("agent-token-1"), json!(1)),
                (json!("agent-token-1"), json!(2))
            ],
            "stateless={stateless}: {seen:?}"
        );
        let logged: Vec<&Value> = seen
            .iter()
            .filter(|m| m["method"] == "notifications/message")
            .collect();
        assert_eq!(logged.len(), 1, "{seen:?}");
        let data = logged[0]["params"]["data"].as_str().unwrap();
        assert!(!data.contains(FAKE_AWS_KEY), "{data}");
        assert!(data.contains("[REDACTED:aws_access_key]"), "{data}");
    }
    // The child saw toolgate's token, never the agent's.
    let reports: Vec<Value> = received(&log)
        .into_iter()
        .filter(|m| m["params"]["name"] == "report")
        .collect();
    assert_eq!(reports.len(), 2);
    for report in &reports {
        let token = &report["params"]["_meta"]["progressToken"];
        assert!(token.is_u64(), "{report}");
        assert_ne!(token, &json!("agent-token-1"));
    }
    // A call that asks for no progress gets none, and no stream unless something else comes.
    let mut agent = Agent::new(&proxy, UPSTREAM, token("quiet", &[]));
    agent.initialize().await;
    let mut call = Call::open(&agent, 3, "echo", json!({ "text": "hi" })).await;
    let (answer, seen) = call.answer(3).await;
    assert_eq!(text_of(&answer), "hi");
    assert!(seen.is_empty(), "{seen:?}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_agents_in_flight_progress_goes_by_token_and_a_log_message_to_nobody() {
    let (proxy, log, _dir) = proxy(None, 5).await;
    let mut holder = Agent::new(&proxy, UPSTREAM, token("holder", &[]));
    holder.initialize().await;
    let mut reporter = Agent::new(&proxy, UPSTREAM, token("reporter", &[]));
    reporter.initialize().await;
    // The holder asks for progress under the very token the reporter uses: tokens are the agents' own, and
    // toolgate's on the child's side keep them apart.
    // The hold's answer headers come only once the child releases it.
    let held = tokio::spawn(async move {
        let mut holding = report_call(&holder, 1, "same-token", "unused");
        holding.body["params"]["name"] = json!("hold");
        holding.await.answer(1).await
    });
    eventually(Duration::from_secs(5), || async {
        received(&log)
            .iter()
            .any(|m| m["params"]["name"] == "hold")
            .then_some(())
    })
    .await;
    let mut call = report_call(&reporter, 2, "same-token", "whose log is this?").await;
    let (answer, seen) = call.answer(2).await;
    assert_eq!(text_of(&answer), "reported");
    assert_eq!(
        progress_of(&seen),
        vec![
            (json!("same-token"), json!(1)),
            (json!("same-token"), json!(2))
        ]
    );
    assert!(
        !seen.iter().any(|m| m["method"] == "notifications/message"),
        "a log message with two agents in flight could be either's: {seen:?}"
    );
    let (released, seen_by_holder) = held.await.unwrap();
    assert_eq!(text_of(&released), "released");
    assert!(
        seen_by_holder.is_empty(),
        "the holder saw {seen_by_holder:?}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_childs_tools_list_changed_unverifies_its_tools_until_listed_again() {
    let (proxy, _log, _dir) = proxy(None, 5).await;
    let mut agent = Agent::new(&proxy, UPSTREAM, token("lister", &[]));
    agent.initialize().await;
    agent.request("tools/list", json!({})).await;
    let echo = agent.call("echo", json!({ "text": "hi" })).await.message();
    assert_eq!(text_of(&echo), "hi");
    let changed = agent.call("change_tools", json!({})).await.message();
    assert_eq!(text_of(&changed), "changed");
    // Judged as changed until the agent lists again.
    let held = agent.call("echo", json!({ "text": "hi" })).await;
    assert_eq!(held.error_code(), Some(-31001), "{:?}", held.message());
    agent.request("tools/list", json!({})).await;
    let echo = agent.call("echo", json!({ "text": "hi" })).await.message();
    assert_eq!(text_of(&echo), "hi");
    proxy.stop().await;
}
