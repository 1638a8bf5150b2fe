//! List methods (`tools/list`, `resources/list`, `resources/templates/list`, `prompts/list`): forwarded, and
//! their answer filtered item by item with `visible` before the agent sees it. Pagination cursors pass through
//! untouched. Each tool listed is pinned (its definition hashed and checked for poisoning markers). Each answer
//! is one `list` audit event naming how many items were hidden.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use toolgate_engine::chain::EventDraft;
use toolgate_engine::input::{
    classify, resource_target, DefinitionInfo, PolicyInput, PromptInput, ResourceInput, ToolInput,
};

use super::forward::{self, Forwarded};
use super::refusal::Refusal;
use super::result::MAX_ANSWER_BYTES;
use super::route::{ListKind, Unjudged};
use super::{Caller, InputBase};
use crate::app::App;
use crate::mcp::jsonrpc::Message;
use crate::mcp::sse;
use crate::response::{full, jsonrpc_reply, Body};

/// Forwards a list request and answers with the filtered list.
pub(super) async fn answer(
    app: &App,
    caller: &Caller<'_>,
    kind: ListKind,
    proof: Unjudged,
    message: &Message,
    headers: &HeaderMap,
    raw: Bytes,
) -> Result<Response<Body>, Refusal> {
    // A list request's params (a cursor, `_meta`) reach the upstream too: scanned, and a critical finding
    // refuses the request like plumbing's.
    super::plumbing::screen_list(app, caller, message).await?;
    let id = message.id().cloned();
    let forwarded = forward::unjudged(app, caller, proof, headers, raw, message)
        .await
        .map_err(|error| Refusal::Upstream {
            id: id.clone(),
            error,
        })?;
    let mut filter = Filter {
        app,
        caller,
        kind,
        request_id: id.clone(),
        hidden: 0,
        listed: 0,
        transitions: Vec::new(),
    };
    let response = match forwarded {
        Forwarded::Json(mut value) => {
            super::count_upstream(app, caller.upstream_name, StatusCode::OK);
            filter.apply(&mut value).await;
            jsonrpc_reply(StatusCode::OK, value)
        }
        Forwarded::Http(resp) => {
            super::count_upstream(app, caller.upstream_name, resp.status());
            let (mut parts, body) = resp.into_parts();
            let is_sse = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            // A list must be complete to be filtered, so it is the one answer read whole (bounded).
            let bytes = http_body_util::Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| Refusal::Upstream {
                    id: id.clone(),
                    error: forward::ForwardError::Unavailable(format!(
                        "reading {}: {e}",
                        kind.method()
                    )),
                })?
                .to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            let filtered = if is_sse {
                let mut out = String::new();
                for mut event in sse::parse(&text) {
                    if let Ok(mut value) = serde_json::from_str::<Value>(&event.data) {
                        filter.apply(&mut value).await;
                        event.data = value.to_string();
                        out.push_str(&sse::frame(&event));
                    }
                }
                out
            } else {
                match serde_json::from_str::<Value>(&text) {
                    Ok(mut value) => {
                        filter.apply(&mut value).await;
                        value.to_string()
                    }
                    // Not JSON: nothing in it can be judged, so none of it is shown.
                    Err(_) => {
                        return Err(Refusal::Upstream {
                            id,
                            error: forward::ForwardError::Unavailable(format!(
                                "{} answered with a body that is not JSON",
                                kind.method()
                            )),
                        })
                    }
                }
            };
            parts.headers.remove(CONTENT_LENGTH);
            parts.headers.remove(TRANSFER_ENCODING);
            let mut resp = Response::from_parts(parts, full(filtered));
            crate::mcp::keep_mcp_headers(resp.headers_mut());
            resp
        }
    };
    filter.record().await;
    Ok(response)
}

struct Filter<'a> {
    app: &'a App,
    caller: &'a Caller<'a>,
    kind: ListKind,
    request_id: Option<Value>,
    hidden: u64,
    listed: u64,
    /// Tool definitions seen new or changed in this answer: (name, status, hash), each one audit event.
    transitions: Vec<(String, &'static str, String)>,
}

impl Filter<'_> {
    /// Filters the list in `value` if it is the answer to the list request (other messages pass untouched).
    async fn apply(&mut self, value: &mut Value) {
        if value.get("id") != self.request_id.as_ref() {
            return;
        }
        let Some(items) = value
            .get_mut("result")
            .and_then(|r| r.get_mut(self.kind.items_key()))
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        let taken = std::mem::take(items);
        let mut seen_names = std::collections::HashSet::new();
        let base = InputBase::new(
            self.caller,
            self.kind.method(),
            self.caller.session.as_ref().map(|s| s.calls()).unwrap_or(0),
        );
        let workdir = self.app.workdir(self.caller.upstream_name);
        let mut kept = Vec::with_capacity(taken.len());
        for item in taken {
            self.listed += 1;
            let visible = match self.kind {
                ListKind::Tools => {
                    let Some(name) = item.get("name").and_then(Value::as_str).map(str::to_owned)
                    else {
                        self.hidden += 1;
                        continue;
                    };
                    // Two tools of one name: the agent could not tell which one it calls, so neither is shown.
                    if !seen_names.insert(name.clone()) {
                        let before = kept.len();
                        kept.retain(|t: &Value| {
                            t.get("name").and_then(Value::as_str) != Some(name.as_str())
                        });
                        self.hidden += 1 + (before - kept.len()) as u64;
                        continue;
                    }
                    let definition = self.pin(&name, &item).await;
                    let class = classify(&name, &Value::Null, workdir);
                    let tool = ToolInput {
                        name: &name,
                        arguments: None,
                        class: &class,
                        definition: Some(&definition),
                    };
                    self.visible(PolicyInput {
                        tool: Some(tool),
                        ..base.input(&[])
                    })
                }
                ListKind::Resources | ListKind::ResourceTemplates => {
                    let key = if self.kind == ListKind::Resources {
                        "uri"
                    } else {
                        "uriTemplate"
                    };
                    let Some(uri) = item.get(key).and_then(Value::as_str) else {
                        self.hidden += 1;
                        continue;
                    };
                    let target = resource_target(uri, workdir);
                    let resource = ResourceInput {
                        uri,
                        target: &target,
                    };
                    self.visible(PolicyInput {
                        resource: Some(resource),
                        ..base.input(&[])
                    })
                }
                ListKind::Prompts => {
                    let Some(name) = item.get("name").and_then(Value::as_str) else {
                        self.hidden += 1;
                        continue;
                    };
                    let prompt = PromptInput {
                        name,
                        arguments: None,
                    };
                    self.visible(PolicyInput {
                        prompt: Some(prompt),
                        ..base.input(&[])
                    })
                }
            };
            if visible {
                kept.push(item);
            } else {
                self.hidden += 1;
            }
        }
        if let Some(items) = value
            .get_mut("result")
            .and_then(|r| r.get_mut(self.kind.items_key()))
            .and_then(Value::as_array_mut)
        {
            *items = kept;
        }
    }

    fn visible(&self, input: PolicyInput<'_>) -> bool {
        match self.app.with_evaluator(|ev| ev.visible(input.to_value())) {
            Ok(visible) => visible,
            Err(e) => {
                self.app.metrics.policy_errors.inc();
                tracing::error!(method = self.kind.method(), error = %e, "policy visible evaluation failed: item hidden");
                false
            }
        }
    }

    /// Pins one listed tool definition and returns its state for the policy.
    async fn pin(&mut self, name: &str, tool: &Value) -> DefinitionInfo {
        let hash = toolgate_engine::canonical::sha256_hex(
            toolgate_engine::canonical::to_jcs(tool).as_bytes(),
        );
        let poisoning: Vec<String> = toolgate_engine::injection::poisoning(tool)
            .into_iter()
            .map(|m| m.as_str().to_owned())
            .collect();
        match self
            .app
            .tools
            .observe(self.caller.upstream_name, name, &hash, &poisoning)
            .await
        {
            Ok((info, transition)) => {
                if let Some(t) = transition {
                    // The name as the pins store it: redacted when it holds something DLP flags.
                    let stored = self.app.tools.stored_name(name);
                    self.transitions.push((stored, t.as_str(), hash));
                }
                info
            }
            Err(e) => {
                // Fail closed: a definition that could not be pinned is judged as changed.
                tracing::error!(upstream = self.caller.upstream_name, error = %e, "pinning a tool definition failed");
                DefinitionInfo {
                    hash: Some(hash),
                    status: toolgate_engine::input::DefinitionStatus::Changed,
                    poisoning,
                }
            }
        }
    }

    /// The `list` event, and one `tool_definition` event per definition seen new or changed.
    async fn record(self) {
        let caller = self.caller;
        let base = |event_type: &str, extra: Value| EventDraft {
            event_type: event_type.to_owned(),
            agent_id: Some(caller.identity.id.clone()),
            session_id: caller.session.as_ref().and_then(|s| s.id.clone()),
            tenant_id: caller.identity.tenant_id.clone(),
            workflow_id: caller.run_id.as_deref().map(str::to_owned),
            mcp_server: Some(caller.upstream_name.to_owned()),
            trace_id: Some(caller.trace_id.clone()),
            dlp_findings: json!([]),
            extra,
            ..EventDraft::default()
        };
        for (name, status, hash) in &self.transitions {
            if *status == crate::tools::Transition::Changed.as_str() {
                // A rug pull: the definition differs from the pinned one. The alert names the agent that listed it.
                let agent = crate::agents::StoredKey::of(
                    caller.identity.tenant_id.as_deref(),
                    &caller.identity.id,
                );
                self.app.alerts.raise_kind(
                    crate::alerts::Kind::ToolDefinitionChanged,
                    Some(&agent),
                    &format!(
                        "tool {name} of upstream {} changed its definition (now sha256 {hash})",
                        caller.upstream_name
                    ),
                );
            }
            let mut draft = base("tool_definition", json!({ "status": status, "hash": hash }));
            draft.tool_name = Some(name.clone());
            super::record::enqueue(self.app, draft).await;
        }
        let mut draft = base(
            "list",
            json!({ "method": self.kind.method(), "hidden": self.hidden, "listed": self.listed }),
        );
        draft.policy_result = Some("allow".into());
        draft.policy_id = Some("toolgate.list".into());
        super::record::enqueue(self.app, draft).await;
    }
}
