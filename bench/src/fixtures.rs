//! The inputs every benchmark shares: a typical tool call, DLP payloads of a given size, a typical audit event.
//!
//! Criterion benchmarks and the per-call latency runs of `toolgate-bench` use the same fixtures, so their
//! figures describe the same work.

use std::path::PathBuf;

use serde_json::{json, Value};
use toolgate_engine::chain::{AuditEvent, ChainHead, EventDraft};
use toolgate_engine::dlp::Finding;
use toolgate_engine::input::{
    classify, AgentInfo, BehaviorInfo, DefinitionInfo, DefinitionStatus, Direction, PolicyInput,
    RequestInfo, SessionInfo, ToolClass, ToolInput,
};

/// The shipped policy library (`policies/` at the repository root).
pub fn policy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("policies")
}

/// The parts of a typical call's policy input: an agent with one role calling `tools/call` to read a file
/// under `/workspace` with a pinned definition, in a session that has made a few calls, no DLP findings.
pub struct TypicalCall {
    pub agent: AgentInfo,
    pub session: SessionInfo,
    pub request: RequestInfo,
    pub tool_name: &'static str,
    pub arguments: Value,
    /// The request's params: `{"name", "arguments"}`.
    pub params: Value,
    pub class: ToolClass,
    pub definition: DefinitionInfo,
    pub findings: Vec<Finding>,
    pub behavior: BehaviorInfo,
    pub now: &'static str,
}

impl TypicalCall {
    pub fn new() -> TypicalCall {
        let arguments = json!({ "path": "/workspace/project/src/main.rs" });
        let params = json!({ "name": "read_file", "arguments": arguments });
        let class = classify("read_file", &arguments, "/workspace");
        TypicalCall {
            agent: AgentInfo {
                id: "agent-bench".into(),
                tenant_id: Some("acme".into()),
                roles: vec!["developer".into()],
                claims: json!({ "sub": "agent-bench", "tenant": "acme", "roles": ["developer"],
                                "iat": 1_790_000_000u64, "exp": 1_790_003_600u64 }),
                prompt_hash: None,
                run_id: None,
            },
            session: SessionInfo {
                id: Some("0f3c2a9e4b7d4c1a8e6f5d3b2a1c0e9f".into()),
                calls: 12,
                started_at: Some("2026-11-22T20:00:00.000000Z".into()),
            },
            request: RequestInfo {
                method: "tools/call".into(),
                direction: Direction::ClientToServer,
                upstream: "fs".into(),
                protocol_version: Some("2026-07-28".into()),
            },
            tool_name: "read_file",
            arguments,
            params,
            class,
            definition: DefinitionInfo {
                hash: Some(
                    "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8".into(),
                ),
                status: DefinitionStatus::Pinned,
                poisoning: Vec::new(),
            },
            findings: Vec::new(),
            behavior: BehaviorInfo {
                score: 0.12,
                zscore: 0.4,
                new_tool: false,
            },
            now: "2026-11-22T20:15:00.123456Z",
        }
    }

    /// The input document as the pipeline builds it (a regorus `Value`, no JSON text in between).
    pub fn input(&self) -> regorus::Value {
        PolicyInput {
            agent: &self.agent,
            session: &self.session,
            request: &self.request,
            tool: Some(ToolInput {
                name: self.tool_name,
                arguments: Some(&self.arguments),
                class: &self.class,
                definition: Some(&self.definition),
            }),
            resource: None,
            prompt: None,
            params: Some(&self.params),
            findings: &self.findings,
            behavior: self.behavior,
            response: None,
            now: self.now,
        }
        .to_value()
    }
}

impl Default for TypicalCall {
    fn default() -> TypicalCall {
        TypicalCall::new()
    }
}

// Prose and code an agent plausibly writes: words, paths, identifiers, numbers that are no card or SSN.
const FILLER: &str = "The build failed on line 42 of src/server.rs because the listener was bound before the \
config was read. fn handle(req: Request) -> Response { let body = req.body(); respond(200, body) } \
Version 1.4.2 fixes the retry loop; see docs/operations.md for the rollout plan and the 3 open questions. ";

/// Tool arguments whose JSON is about `bytes` long: a file write with a prose-and-code `content`. With
/// `findings`, the content also carries an e-mail address, a card number and a GitHub token, so the
/// specific detectors fire and validate.
pub fn dlp_arguments(bytes: usize, findings: bool) -> Value {
    let secrets = " Contact ops-oncall@example.com, card 4111 1111 1111 1111, token \
ghp_R8dJt0q9Xc2LmVb7NwYk4HsPzA1eUfGi3oQ5 for the deploy. ";
    let overhead = r#"{"path":"/workspace/notes.md","content":""}"#.len();
    let target = bytes.saturating_sub(overhead);
    let mut content = String::with_capacity(target + FILLER.len());
    if findings {
        content.push_str(secrets);
    }
    while content.len() < target {
        content.push_str(FILLER);
    }
    content.truncate(target);
    json!({ "path": "/workspace/notes.md", "content": content })
}

/// A sealed-looking `tool_call` draft, as the pipeline writes for an allowed call.
pub fn audit_draft(i: u64) -> EventDraft {
    EventDraft {
        event_type: "tool_call".into(),
        agent_id: Some(format!("agent-{}", i % 8)),
        session_id: Some("0f3c2a9e4b7d4c1a8e6f5d3b2a1c0e9f".into()),
        tenant_id: Some("acme".into()),
        tool_name: Some("read_file".into()),
        mcp_server: Some("fs".into()),
        action: Some("read".into()),
        target: Some("/workspace/project/src/main.rs".into()),
        input_hash: Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
        policy_result: Some("allow".into()),
        policy_id: Some("toolgate.filesystem.read".into()),
        policy_reason: Some("reads inside the workspace are allowed".into()),
        dlp_findings: json!([]),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        extra: json!({}),
        ..EventDraft::default()
    }
}

/// `n` events of one chain, sealed in order, with ids and timestamps filled as the writer fills them.
pub fn sealed_chain(n: u64) -> Vec<AuditEvent> {
    let mut head = ChainHead::genesis("bench");
    (1..=n)
        .map(|i| {
            let mut draft = audit_draft(i);
            draft.id = format!("0193a7c2-0000-7000-8000-{i:012x}");
            draft.timestamp = format!(
                "2026-11-22T20:{:02}:{:02}.{:06}Z",
                (i / 60_000_000) % 60,
                (i / 1_000_000) % 60,
                i % 1_000_000
            );
            head.seal(draft)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolgate_engine::dlp::Scanner;
    use toolgate_engine::policy::{PolicySet, Verdict};

    #[test]
    fn typical_call_is_allowed_by_the_shipped_policy() {
        let set = PolicySet::load(&policy_dir()).unwrap();
        let decision = set.evaluator().decide(TypicalCall::new().input()).unwrap();
        assert_eq!(decision.verdict(), Verdict::Allow, "{decision:?}");
    }

    #[test]
    fn dlp_payloads_have_the_asked_size_and_findings_only_when_asked() {
        let scanner = Scanner::new();
        for size in [1024, 4096, 65536] {
            let clean = dlp_arguments(size, false);
            let dirty = dlp_arguments(size, true);
            for args in [&clean, &dirty] {
                let len = serde_json::to_string(args).unwrap().len();
                assert!(len.abs_diff(size) < 16, "{size}: {len}");
            }
            assert_eq!(scanner.scan(&clean), Vec::new(), "{size} clean");
            let kinds: Vec<String> = scanner.scan(&dirty).into_iter().map(|f| f.kind).collect();
            for kind in ["email", "credit_card"] {
                assert!(kinds.iter().any(|k| k == kind), "{size}: {kinds:?}");
            }
        }
    }

    #[test]
    fn sealed_chain_verifies() {
        let events = sealed_chain(1000);
        let report = toolgate_engine::chain::verify(&events);
        assert!(report.chain_intact, "{report:?}");
        assert_eq!(report.events_verified, 1000);
    }
}
