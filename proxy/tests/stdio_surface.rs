//! The whole MCP surface under policy against a stdio upstream: the bundled demo server (`toolgate
//! demo-server`, its sandbox in the test's folder under /tmp, one of the policy's roots), spoken to over HTTP
//! in both protocol eras: resources (listed, read, denied, redacted), tool and prompt results with the demo's
//! fake credentials, completion, logging and a method toolgate does not know.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{audit_events, eventually, start, token, Agent, Options, Proxy};
use serde_json::{json, Value};

/// The fake credentials the demo's `deploy.env` and `demo://config/credentials` hold (they unlock nothing).
const FAKE_AWS_KEY: &str = "AKIAZ7EXAMPLE4DEMO7Q";
const FAKE_AWS_SECRET: &str = "FAKEdemoSecretKey/0nlyForToolgateDLPTour";
const REDACTED_KEY: &str = "[REDACTED:aws_access_key]";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Era {
    /// 2025-11-25: `initialize`, then `Mcp-Session-Id` on every request.
    Session,
    /// 2026-07-28: no session, the version in each request's `_meta`.
    Stateless,
}

const ERAS: [Era; 2] = [Era::Session, Era::Stateless];

/// One agent speaking MCP to toolgate's `/mcp/demo` in one era.
struct Client {
    agent: Agent,
    era: Era,
}

impl Client {
    async fn open(proxy: &Proxy, era: Era, sub: &str) -> Client {
        let mut agent = Agent::new(proxy, "demo", token(sub, &[]));
        if era == Era::Session {
            agent.initialize().await;
        }
        Client { agent, era }
    }

    /// The JSON-RPC answer of one request.
    async fn rpc(&mut self, method: &str, params: Value) -> Value {
        let mut params = params;
        if self.era == Era::Stateless {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            });
        }
        let answer = self.agent.request(method, params).await;
        assert_eq!(answer.status, hyper::StatusCode::OK, "{method}: {answer:?}");
        answer.message()
    }
}

/// The demo's sandbox (created by the demo server at start) and the `file://` URI of a file in it.
fn sandbox(proxy: &Proxy) -> PathBuf {
    proxy.dir.path().join("sandbox")
}

fn file_uri(proxy: &Proxy, relative: &str) -> String {
    format!("file://{}/{relative}", sandbox(proxy).display())
}

/// The newest audit event of agent `sub` that `matches` (waiting for the audit writer).
async fn event_of(proxy: &Proxy, sub: &str, matches: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(5), || async {
        audit_events(&proxy.app, 500)
            .await
            .into_iter()
            .find(|e| e["agent_id"] == sub && matches(e))
    })
    .await
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

fn assert_denied(answer: &Value, policy_id: &str) {
    assert_eq!(answer["error"]["code"], -31001, "{answer}");
    assert_eq!(answer["error"]["data"]["policy_id"], policy_id, "{answer}");
}

fn assert_redacted(text: &str) {
    assert!(text.contains(REDACTED_KEY), "{text}");
    assert!(!text.contains(FAKE_AWS_KEY), "{text}");
    assert!(!text.contains(FAKE_AWS_SECRET), "{text}");
}

async fn assert_no_secret_in_audit_log(proxy: &Proxy) {
    let log = serde_json::to_string(&audit_events(&proxy.app, 1000).await).unwrap();
    assert!(!log.contains(FAKE_AWS_KEY), "the key reached the audit log");
    assert!(
        !log.contains(FAKE_AWS_SECRET),
        "the secret reached the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_resources_are_filtered_judged_audited_and_redacted_in_both_eras() {
    let proxy = start(Options::default()).await;
    assert!(
        sandbox(&proxy).starts_with("/tmp"),
        "the policy's roots hold the sandbox"
    );
    // A key file in a credentials folder: listed by the demo, hidden and refused by toolgate.
    std::fs::create_dir_all(sandbox(&proxy).join(".ssh")).unwrap();
    std::fs::write(sandbox(&proxy).join(".ssh/id_rsa"), "not a real key\n").unwrap();
    for era in ERAS {
        let sub = format!("demo-resources-{era:?}");
        let mut client = Client::open(&proxy, era, &sub).await;

        let list = client.rpc("resources/list", json!({})).await;
        let uris = names(&list["result"]["resources"], "uri");
        for shown in [
            "demo://status".to_owned(),
            "demo://config/credentials".to_owned(),
            file_uri(&proxy, "notes.txt"),
            file_uri(&proxy, "workspace/deploy.env"),
            file_uri(&proxy, "workspace/readme.txt"),
        ] {
            assert!(uris.contains(&shown), "{era:?}: {shown} not in {uris:?}");
        }
        assert!(
            !uris.iter().any(|u| u.contains(".ssh")),
            "{era:?}: {uris:?}"
        );
        let listed = event_of(&proxy, &sub, |e| {
            e["event_type"] == "list" && e["extra"]["method"] == "resources/list"
        })
        .await;
        assert_eq!(listed["extra"]["hidden"], 1, "{listed}");
        assert_eq!(listed["extra"]["listed"], uris.len() + 1, "{listed}");
        let templates = client.rpc("resources/templates/list", json!({})).await;
        assert_eq!(
            names(&templates["result"]["resourceTemplates"], "uriTemplate"),
            vec![file_uri(&proxy, "{name}")]
        );

        // Allowed: a sandbox file (under /tmp); request and result audited with its path as the target.
        let notes = client
            .rpc(
                "resources/read",
                json!({ "uri": file_uri(&proxy, "notes.txt") }),
            )
            .await;
        let text = notes["result"]["contents"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("Notes\n"), "{era:?}: {notes}");
        let target = sandbox(&proxy).join("notes.txt").display().to_string();
        let request = event_of(&proxy, &sub, |e| {
            e["event_type"] == "request" && e["target"] == target.as_str()
        })
        .await;
        assert_eq!(request["extra"]["method"], "resources/read");
        assert_eq!(request["policy_id"], "toolgate.filesystem.read");
        let result = event_of(&proxy, &sub, |e| {
            e["event_type"] == "result" && e["extra"]["decision_event"] == request["id"]
        })
        .await;
        assert_eq!(result["target"], target.as_str());
        let status = client
            .rpc("resources/read", json!({ "uri": "demo://status" }))
            .await;
        assert!(status["result"]["contents"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("toolgate demo server")));

        // Denied: a system path and the hidden key file; toolgate answers, the demo never does.
        let passwd = client
            .rpc("resources/read", json!({ "uri": "file:///etc/passwd" }))
            .await;
        assert_denied(&passwd, "toolgate.filesystem.system_path");
        let deny = event_of(&proxy, &sub, |e| {
            e["event_type"] == "policy_deny" && e["target"] == "/etc/passwd"
        })
        .await;
        assert_eq!(deny["extra"]["method"], "resources/read");
        let key = client
            .rpc(
                "resources/read",
                json!({ "uri": file_uri(&proxy, ".ssh/id_rsa") }),
            )
            .await;
        assert_eq!(key["error"]["code"], -31001, "{era:?}: {key}");

        // The fake credentials resource is redacted; the rest of it is kept.
        let credentials = client
            .rpc(
                "resources/read",
                json!({ "uri": "demo://config/credentials" }),
            )
            .await;
        let text = credentials["result"]["contents"][0]["text"]
            .as_str()
            .unwrap();
        assert_redacted(text);
        assert!(
            text.contains(&format!("aws_access_key_id = {REDACTED_KEY}")),
            "{text}"
        );
        assert!(text.contains("region = eu-west-1"), "{text}");
        let redacted = event_of(&proxy, &sub, |e| {
            e["event_type"] == "result" && e["dlp_action"] == "redact"
        })
        .await;
        assert_eq!(redacted["extra"]["method"], "resources/read");

        // Only the allowed reads have outcomes: the denied ones were never forwarded.
        let outcomes: Vec<Value> = audit_events(&proxy.app, 1000)
            .await
            .into_iter()
            .filter(|e| e["agent_id"] == sub.as_str() && e["event_type"] == "result")
            .collect();
        assert_eq!(outcomes.len(), 3, "{era:?}: {outcomes:?}");
        assert!(outcomes
            .iter()
            .all(|e| e["target"] != "/etc/passwd" && e["policy_result"] != "deny"));
    }
    assert_no_secret_in_audit_log(&proxy).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tools_prompts_completion_logging_and_unknown_methods_in_both_eras() {
    let proxy = start(Options::default()).await;
    for era in ERAS {
        let sub = format!("demo-methods-{era:?}");
        let mut client = Client::open(&proxy, era, &sub).await;

        // A tool result with the seeded deploy.env: the key redacted, the rest kept.
        let read = client
            .rpc(
                "tools/call",
                json!({ "name": "read_file", "arguments": { "path": "/workspace/deploy.env" } }),
            )
            .await;
        let text = read["result"]["content"][0]["text"].as_str().unwrap();
        assert_redacted(text);
        assert!(
            text.contains(&format!("AWS_ACCESS_KEY_ID={REDACTED_KEY}")),
            "{text}"
        );
        assert!(text.contains("AWS_REGION=eu-west-1"), "{text}");
        let outcome = event_of(&proxy, &sub, |e| {
            e["event_type"] == "tool_result" && e["tool_name"] == "read_file"
        })
        .await;
        assert_eq!(outcome["dlp_action"], "redact");

        // Prompts: listed, and code_review of deploy.env embeds the file, so its result is redacted.
        let prompts = client.rpc("prompts/list", json!({})).await;
        assert_eq!(
            names(&prompts["result"]["prompts"], "name"),
            vec!["summarise", "code_review"]
        );
        let review = client
            .rpc(
                "prompts/get",
                json!({ "name": "code_review", "arguments": { "path": "workspace/deploy.env" } }),
            )
            .await;
        let text = review["result"]["messages"][0]["content"]["text"]
            .as_str()
            .unwrap();
        assert!(
            text.starts_with("Review the file `workspace/deploy.env`"),
            "{text}"
        );
        assert_redacted(text);
        let request = event_of(&proxy, &sub, |e| {
            e["event_type"] == "request" && e["tool_name"] == "code_review"
        })
        .await;
        assert_eq!(request["extra"]["method"], "prompts/get");
        assert_eq!(request["policy_id"], "toolgate.prompts.allowed");
        let result = event_of(&proxy, &sub, |e| {
            e["event_type"] == "result" && e["extra"]["decision_event"] == request["id"]
        })
        .await;
        assert_eq!(result["dlp_action"], "redact");

        // Completion and logging are allowed and audited.
        let completion = client
            .rpc(
                "completion/complete",
                json!({ "ref": { "type": "ref/prompt", "name": "code_review" }, "argument": { "name": "path", "value": "workspace/dep" } }),
            )
            .await;
        assert_eq!(
            completion["result"]["completion"]["values"],
            json!(["workspace/deploy.env"]),
            "{era:?}: {completion}"
        );
        let completed = event_of(&proxy, &sub, |e| {
            e["event_type"] == "request" && e["extra"]["method"] == "completion/complete"
        })
        .await;
        assert_eq!(completed["policy_id"], "toolgate.completion.enabled");
        let level = client
            .rpc("logging/setLevel", json!({ "level": "debug" }))
            .await;
        assert!(level["result"].is_object(), "{era:?}: {level}");
        let logging = event_of(&proxy, &sub, |e| {
            e["event_type"] == "request" && e["extra"]["method"] == "logging/setLevel"
        })
        .await;
        assert_eq!(logging["policy_id"], "toolgate.default.session");
        event_of(&proxy, &sub, |e| {
            e["event_type"] == "result" && e["extra"]["decision_event"] == logging["id"]
        })
        .await;

        // A method toolgate does not know is denied by toolgate (the demo would answer -32601) and has no
        // outcome: it was never forwarded.
        let unknown = client.rpc("frobnicate", json!({ "x": 1 })).await;
        assert_denied(&unknown, "toolgate.default.unknown_method");
        event_of(&proxy, &sub, |e| {
            e["event_type"] == "policy_deny" && e["extra"]["method"] == "frobnicate"
        })
        .await;
        let forwarded = audit_events(&proxy.app, 1000).await.into_iter().any(|e| {
            e["agent_id"] == sub.as_str()
                && e["extra"]["method"] == "frobnicate"
                && e["event_type"] != "policy_deny"
        });
        assert!(!forwarded, "{era:?}: frobnicate has an outcome");
    }
    assert_no_secret_in_audit_log(&proxy).await;
    proxy.stop().await;
}
