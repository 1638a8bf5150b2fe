//! The stages before the route: jwt, the kill switch, session; and the dlp and policy stages of a judged
//! request. Each is a plain function; the pipeline calls them in order and times each once.

use std::sync::Arc;
use std::time::Instant;

use hyper::header::{HeaderMap, AUTHORIZATION};
use serde_json::{json, Map, Value};
use toolgate_engine::chain::EventDraft;
use toolgate_engine::dlp::{Finding, Scanner};
use toolgate_engine::input::{BehaviorInfo, Direction};
use toolgate_engine::policy::{Decision, Verdict};

use super::refusal::Refusal;
use super::subject::Subject;
use super::Caller;
use crate::agents::StoredKey;
use crate::app::App;
use crate::auth::AgentIdentity;
use crate::mcp::jsonrpc::Message;
use crate::mcp::session::Session;
use crate::mcp::upstream::Upstream;
use crate::mcp::PROTOCOL_HEADER;
use crate::telemetry::Stage;

/// jwt: the agent's identity from its bearer token.
pub fn jwt(
    app: &App,
    headers: &HeaderMap,
    base_url: &str,
    upstream_name: &str,
) -> Result<AgentIdentity, Refusal> {
    let verified = crate::telemetry::stage(&app.metrics, Stage::Jwt).in_scope(|| {
        let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        app.auth.verify(header)
    });
    match verified {
        Ok(identity) => {
            // The request span's `agent_id` is on every log line of the request: never what DLP flags.
            let agent = crate::redaction::loggable(&identity.id);
            tracing::Span::current().record("agent_id", &*agent);
            crate::telemetry::traces::annotate(&[("toolgate.agent_id", &agent)]);
            Ok(identity)
        }
        Err(error) => {
            tracing::info!(
                upstream = upstream_name,
                reason = error.description(),
                "agent authentication failed"
            );
            Err(Refusal::Unauthenticated {
                error,
                metadata_url: format!(
                    "{base_url}/.well-known/oauth-protected-resource/mcp/{upstream_name}"
                ),
            })
        }
    }
}

/// The kill switch: a disabled agent (through the admin API, on any instance, or by `agents.disabled`) is
/// refused before anything of its sessions is looked up. Every request that gets here is a sighting of its agent
/// (`last_seen`), refused or not.
pub fn not_disabled(app: &App, identity: &AgentIdentity) -> Result<(), Refusal> {
    if !app.agents.admit(identity) {
        tracing::warn!(agent = %crate::redaction::loggable(&identity.id), "disabled agent refused");
        return Err(Refusal::AgentDisabled {
            agent_id: identity.id.clone(),
        });
    }
    Ok(())
}

pub fn upstream<'a>(app: &'a App, name: &str) -> Result<&'a Upstream, Refusal> {
    app.upstreams
        .get(name)
        .ok_or_else(|| Refusal::UnknownUpstream {
            name: name.to_owned(),
        })
}

/// session: the presented `Mcp-Session-Id` is known and bound to this agent (tenant and `sub`); an `initialize`
/// opens a new one and never uses a presented id. A refused id is recorded (`sessions::record_refused`).
pub async fn session(
    app: &App,
    identity: &AgentIdentity,
    upstream_name: &str,
    headers: &HeaderMap,
    message: &Message,
    trace_id: &str,
) -> Result<Option<Arc<Session>>, Refusal> {
    let presented = crate::mcp::session::presented(headers);
    let lookup = async {
        match presented {
            Ok(Some(sid)) if message.method() != Some("initialize") => app
                .sessions
                .get(upstream_name, sid, &identity.key())
                .await
                .map(Some),
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        }
    };
    // A session this instance knows is a lookup in memory; another instance's is read once (shared store).
    let found = crate::telemetry::stage(&app.metrics, Stage::Session)
        .run(lookup)
        .await;
    let session = match found {
        Ok(session) => session,
        Err(error) => {
            let method = message.method().unwrap_or_default();
            let sid = presented.ok().flatten().unwrap_or_default();
            super::sessions::record_refused(
                app,
                identity,
                upstream_name,
                trace_id,
                method,
                sid,
                &error,
            )
            .await;
            return Err(Refusal::Session {
                id: message.id().cloned(),
                error,
            });
        }
    };
    if let Some(s) = &session {
        if let Some(id) = &s.id {
            crate::telemetry::traces::annotate(&[("mcp.session.id", id)]);
        }
    }
    Ok(session)
}

/// The protocol version: the message's own (stateless era), the session's, or the header's.
pub fn protocol_version(
    message: &Message,
    session: Option<&Session>,
    headers: &HeaderMap,
) -> Option<String> {
    message
        .meta_protocol_version()
        .map(str::to_owned)
        .or_else(|| session.and_then(|s| s.protocol_version.map(|v| v.as_str().to_owned())))
        .or_else(|| {
            headers
                .get(PROTOCOL_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
}

/// dlp: findings over the whole message, counted and logged by type (never by value); a critical one opens
/// `dlp_critical` for the agent, whatever becomes of the message (judged, plumbing or a list refused, or a
/// request the upstream sends the agent). Whatever toolgate forwards has been scanned: see [`scan_message`].
pub(super) fn dlp(app: &App, caller: &Caller<'_>, message: &Value) -> Vec<Finding> {
    let findings = scan_message(&app.scanner, message);
    count_findings(app, &findings);
    if !findings.is_empty() {
        let types: Vec<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
        tracing::info!(
            agent = %crate::redaction::loggable(&caller.identity.id),
            findings = ?types,
            "DLP findings"
        );
        let place = match caller.direction {
            Direction::ClientToServer => format!("a message to {}", caller.upstream_name),
            Direction::ServerToClient => format!("a request from {}", caller.upstream_name),
        };
        app.alerts.raise_dlp_critical(
            || StoredKey::of(caller.identity.tenant_id.as_deref(), &caller.identity.id),
            &place,
            &findings,
        );
    }
    findings
}

/// Findings over every member of a JSON-RPC message, since every member reaches the upstream (the raw bytes
/// are forwarded). The body (`params`; an answer's `result`, or its `error` when it has no result) is
/// reported at JSON pointers into it, as the contract says. Every other member (the `id` when it is a
/// string, the method name, an answer's `error` beside its `result`, members JSON-RPC does not define) is
/// reported at `~` and the pointer into the message (`~/id`, `~/method`): no pointer into the body starts
/// with `~`, so the two cannot be confused, and a member whose name is itself a finding is `~/~redacted`.
///
/// Unknown members are scanned rather than refused: JSON-RPC 2.0 does not forbid them, and once scanned
/// they carry nothing a member of `params` could not; what reaches the upstream unscanned is what matters.
pub fn scan_message(scanner: &Scanner, message: &Value) -> Vec<Finding> {
    let Some(members) = message.as_object() else {
        return scanner.scan(message);
    };
    let body = if members.contains_key("method") || members.contains_key("params") {
        "params"
    } else if members.contains_key("result") {
        "result"
    } else {
        "error"
    };
    let mut findings = members
        .get(body)
        .map(|b| scanner.scan(b))
        .unwrap_or_default();
    for (name, value) in members {
        if name == body {
            continue;
        }
        // Scanned as a one-member object, so the member's name is judged too and never written out.
        let member = Value::Object(Map::from_iter([(name.clone(), value.clone())]));
        findings.extend(scanner.scan(&member).into_iter().map(|mut f| {
            f.path.insert(0, '~');
            f
        }));
    }
    findings
}

/// Counts findings by type and severity (`toolgate_dlp_findings_total`), wherever they were found.
pub(super) fn count_findings(app: &App, findings: &[Finding]) {
    app.metrics.count_dlp_findings(findings);
}

/// policy: `decision` on the input document, and the revision of the policy set that made it (so the audit
/// event names the set that decided even while a reload swaps in another). An error is a deny.
pub(super) fn policy(
    app: &App,
    caller: &Caller<'_>,
    method: &str,
    doc: regorus::Value,
) -> (Decision, String) {
    let started = Instant::now();
    let (decision, revision) = app.with_evaluator(|ev| (ev.decide(doc), ev.revision().to_owned()));
    let decision = decision.unwrap_or_else(|e| {
        app.metrics.policy_errors.inc();
        tracing::error!(
            agent = %crate::redaction::loggable(&caller.identity.id),
            method = crate::telemetry::Metrics::method_label(method),
            error = %crate::redaction::loggable(&e.to_string()),
            "policy evaluation failed"
        );
        Decision::from_error(&e)
    });
    app.metrics
        .policy_decision_duration
        .with_label_values(&[caller.upstream_name])
        .observe(started.elapsed().as_secs_f64());
    (decision, revision)
}

/// The agent's behaviour against its own baseline, for `input.behavior` and `behavioral_score`: scored before the
/// policy (the call joins the baseline, and the rules it trips open their alerts).
pub(super) fn behaviour(
    app: &App,
    caller: &Caller<'_>,
    subject: &Subject<'_>,
    base: &super::InputBase,
) -> BehaviorInfo {
    if caller.direction != Direction::ClientToServer {
        return BehaviorInfo::default();
    }
    app.behaviour.observe(
        caller.identity,
        crate::behaviour::Call {
            tool: subject.name(),
            target: subject.target(),
            prompt_hash: base.agent.prompt_hash.as_deref(),
        },
    )
}

/// The decision's span attributes, log line and counters.
pub(super) fn observe_decision(
    app: &App,
    caller: &Caller<'_>,
    method: &str,
    subject: &Subject<'_>,
    decision: &Decision,
) {
    let result = decision.verdict().as_str();
    let method = &*audited_method(app, method);
    crate::telemetry::traces::annotate(&[
        ("toolgate.policy_result", result),
        ("toolgate.policy_id", decision.policy_id()),
    ]);
    // Every value an agent or a policy shaped is written redacted and capped (`crate::redaction`).
    fn loggable(v: Option<&str>) -> std::borrow::Cow<'_, str> {
        crate::redaction::loggable(v.unwrap_or(""))
    }
    tracing::info!(
        agent = %crate::redaction::loggable(&caller.identity.id),
        method,
        tool = %loggable(subject.name()),
        action = %loggable(subject.action()),
        target = %loggable(subject.target()),
        result,
        policy_id = %crate::redaction::loggable(decision.policy_id()),
        "policy decision"
    );
    app.metrics
        .requests
        .with_label_values(&[crate::telemetry::Metrics::method_label(method), result])
        .inc();
    // The agent's own calls; a server's request judged on its way to the agent is not one.
    if caller.direction == Direction::ClientToServer {
        app.agents.count(caller.identity, decision.verdict());
        // The deny outcome joins the agent's baseline now that it is known (the `deny_spike` rule).
        app.behaviour.judged(caller.identity, decision.verdict());
    }
    if method == "tools/call" {
        app.metrics
            .tool_calls
            .with_label_values(&[
                &app.metrics.agent_label(&caller.identity.id),
                result,
                caller.upstream_name,
            ])
            .inc();
    }
}

/// The method as the audit log records it (`extra.method`): an agent names it, so an unknown one is stored only
/// when it has the shape of a method name and holds nothing DLP flags.
pub(super) fn audited_method(app: &App, method: &str) -> String {
    let known = crate::telemetry::Metrics::method_label(method) != "other";
    let shaped = method.len() <= 128
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b));
    if known
        || (shaped
            && app
                .scanner
                .scan(&Value::String(method.to_owned()))
                .is_empty())
    {
        method.to_owned()
    } else {
        "[REDACTED]".to_owned()
    }
}

/// A request whose params do not say what its method needs is refused before the policy, and recorded as a
/// deny so the audit log shows the attempt.
pub(super) async fn record_invalid(
    app: &App,
    caller: &Caller<'_>,
    method: &str,
    refusal: &Refusal,
) {
    let Refusal::InvalidParams { message, .. } = refusal else {
        return;
    };
    let draft = EventDraft {
        policy_id: Some("toolgate.invalid_params".into()),
        policy_reason: Some(message.clone()),
        error: Some(message.clone()),
        ..refused_draft(app, caller, method)
    };
    record_refused(app, caller, method, draft).await;
}

/// The `policy_deny` event of a message refused before or instead of `decision` (bad params, plumbing);
/// callers fill in the policy id, reason and what else they know.
pub(super) fn refused_draft(app: &App, caller: &Caller<'_>, method: &str) -> EventDraft {
    EventDraft {
        session_id: caller.session.as_ref().and_then(|s| s.id.clone()),
        workflow_id: caller.run_id.as_deref().map(str::to_owned),
        ..refused_before_session(
            app,
            caller.identity,
            caller.upstream_name,
            &caller.trace_id,
            method,
        )
    }
}

/// [`refused_draft`] for a message refused before its session is known (its headers, its session id): what
/// the agent and the request say, without session or run.
pub(super) fn refused_before_session(
    app: &App,
    identity: &AgentIdentity,
    upstream_name: &str,
    trace_id: &str,
    method: &str,
) -> EventDraft {
    EventDraft {
        event_type: "policy_deny".into(),
        agent_id: Some(identity.id.clone()),
        tenant_id: identity.tenant_id.clone(),
        mcp_server: Some(upstream_name.to_owned()),
        policy_result: Some("deny".into()),
        dlp_findings: json!([]),
        trace_id: Some(trace_id.to_owned()),
        extra: json!({ "method": audited_method(app, method) }),
        ..EventDraft::default()
    }
}

/// Counts a refused message as a denied request and records it (awaited; a failed write is logged and counted
/// by the writer, and the refusal stands).
pub(super) async fn record_refused(
    app: &App,
    caller: &Caller<'_>,
    method: &str,
    draft: EventDraft,
) {
    app.metrics
        .requests
        .with_label_values(&[crate::telemetry::Metrics::method_label(method), "deny"])
        .inc();
    if caller.direction == Direction::ClientToServer {
        app.agents.count(caller.identity, Verdict::Deny);
    }
    if let Err(e) = app.audit.append(draft).await {
        tracing::error!(
            agent = %crate::redaction::loggable(&caller.identity.id),
            error = %e,
            "audit write failed"
        );
    }
}
