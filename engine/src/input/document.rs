//! The input document every policy entry point sees (docs/policies.md, "The input document"), built two ways that must agree:
//! as regorus `Value`s for the hot path and as JSON for `policy eval`, logs and tests.

use std::collections::BTreeMap;

use regorus::Value;
use serde_json::json;

use super::{Target, ToolClass};
use crate::dlp::Finding;

/// The authenticated agent, from its token.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInfo {
    pub id: String,
    pub tenant_id: Option<String>,
    pub roles: Vec<String>,
    /// Every claim of the token, for policies that need more than id, tenant and roles.
    pub claims: serde_json::Value,
    /// The hash of the agent's system prompt, as the agent declared it.
    pub prompt_hash: Option<String>,
    /// The agent run the request belongs to, when the agent named one.
    pub run_id: Option<String>,
}

/// The MCP session the call belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: Option<String>,
    /// Calls made in this session before this one.
    pub calls: u64,
    /// RFC 3339 UTC.
    pub started_at: Option<String>,
}

/// Who sent the request toolgate judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// An agent's request to an upstream.
    ClientToServer,
    /// An upstream's request to the agent (`sampling/createMessage`, `elicitation/create`, `roots/list`).
    ServerToClient,
}

impl Direction {
    /// The name used in the Rego input (`request.direction`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client_to_server",
            Direction::ServerToClient => "server_to_client",
        }
    }
}

/// The JSON-RPC request as the proxy received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub method: String,
    pub direction: Direction,
    /// The configured upstream name (`/mcp/{upstream}`).
    pub upstream: String,
    pub protocol_version: Option<String>,
}

/// How a tool's definition compares with the one toolgate pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefinitionStatus {
    /// Never listed by the upstream.
    New,
    /// As first seen, or approved.
    Pinned,
    /// Differs from the pinned definition.
    Changed,
}

impl DefinitionStatus {
    /// The name used in the Rego input (`tool.definition.status`), the audit log and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionStatus::New => "new",
            DefinitionStatus::Pinned => "pinned",
            DefinitionStatus::Changed => "changed",
        }
    }
}

/// What toolgate knows of a tool's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionInfo {
    /// SHA-256 hex of the JCS of the tool object as the upstream last listed it; `None` for a new tool.
    pub hash: Option<String>,
    pub status: DefinitionStatus,
    /// Poisoning markers found in the name, description and schema (`hidden_instruction`...), never text.
    pub poisoning: Vec<String>,
}

/// The tool of a `tools/call` (or the tool `visible` judges for `tools/list`).
#[derive(Debug, Clone, Copy)]
pub struct ToolInput<'a> {
    pub name: &'a str,
    /// `None` when judging a tool's visibility for `tools/list`.
    pub arguments: Option<&'a serde_json::Value>,
    pub class: &'a ToolClass,
    pub definition: Option<&'a DefinitionInfo>,
}

/// The resource of a `resources/*` request (or the resource or template `visible` judges).
#[derive(Debug, Clone, Copy)]
pub struct ResourceInput<'a> {
    pub uri: &'a str,
    /// See [`super::resource_target`].
    pub target: &'a str,
}

/// The prompt of a `prompts/get` (or the prompt `visible` judges).
#[derive(Debug, Clone, Copy)]
pub struct PromptInput<'a> {
    pub name: &'a str,
    pub arguments: Option<&'a serde_json::Value>,
}

/// The agent's behaviour against its own baseline.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct BehaviorInfo {
    /// 0..1.
    pub score: f64,
    pub zscore: f64,
    /// The agent never called this tool before.
    pub new_tool: bool,
}

/// An upstream's answer, for `result_decision`.
#[derive(Debug, Clone, Copy)]
pub struct ResponseInput<'a> {
    pub is_error: bool,
    /// DLP findings over the result's content, JSON pointers into the result.
    pub findings: &'a [Finding],
    /// Prompt-injection markers found in the result (`hidden_instruction`...), never the text.
    pub injection: &'a [&'a str],
}

/// Everything the policy sees (docs/policies.md, "The input document"). Every top-level member is present in the document;
/// what does not apply to the request is `null`.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    pub agent: &'a AgentInfo,
    pub session: &'a SessionInfo,
    pub request: &'a RequestInfo,
    pub tool: Option<ToolInput<'a>>,
    pub resource: Option<ResourceInput<'a>>,
    pub prompt: Option<PromptInput<'a>>,
    /// The request's params, for every method.
    pub params: Option<&'a serde_json::Value>,
    /// DLP findings over the request's params.
    pub findings: &'a [Finding],
    pub behavior: BehaviorInfo,
    /// Only for `result_decision`.
    pub response: Option<ResponseInput<'a>>,
    /// RFC 3339 UTC.
    pub now: &'a str,
}

impl ResourceInput<'_> {
    /// The URI is one URL parsers read as different hosts (see [`super::differential`]), or a `file:` URI whose
    /// path upstreams read differently (a control character or a backslash, see [`super::targets`]).
    pub fn ambiguous(&self) -> bool {
        super::differential::parsers_disagree(self.uri)
            || super::targets::file_uri_path(self.uri)
                .is_some_and(|p| super::targets::path_is_ambiguous(&p))
    }
}

impl ResponseInput<'_> {
    /// `input.response` alone: the result stage judges each answer against the request's document with this
    /// member set, rather than building the whole document again per answer (an SSE stream has many).
    pub fn to_value(&self) -> Value {
        object([
            ("is_error", Value::from(self.is_error)),
            ("dlp", object([("findings", findings_value(self.findings))])),
            ("injection", strings(self.injection.iter().copied())),
        ])
    }
}

impl PolicyInput<'_> {
    /// The input document as a regorus `Value`, built directly: parsing a JSON string per call would cost
    /// more than evaluating the policy (ARCHITECTURE.md, "Hot path notes").
    pub fn to_value(&self) -> Value {
        let agent = self.agent;
        let session = self.session;
        let request = self.request;
        object([
            (
                "agent",
                object([
                    ("id", Value::from(agent.id.as_str())),
                    ("tenant_id", opt_string(agent.tenant_id.as_deref())),
                    ("roles", strings(agent.roles.iter().map(String::as_str))),
                    ("claims", json_to_value(&agent.claims)),
                    ("prompt_hash", opt_string(agent.prompt_hash.as_deref())),
                    ("run_id", opt_string(agent.run_id.as_deref())),
                ]),
            ),
            (
                "session",
                object([
                    ("id", opt_string(session.id.as_deref())),
                    ("calls", Value::from(session.calls)),
                    ("started_at", opt_string(session.started_at.as_deref())),
                ]),
            ),
            (
                "request",
                object([
                    ("method", Value::from(request.method.as_str())),
                    ("direction", Value::from(request.direction.as_str())),
                    ("upstream", Value::from(request.upstream.as_str())),
                    (
                        "protocol_version",
                        opt_string(request.protocol_version.as_deref()),
                    ),
                ]),
            ),
            ("tool", self.tool.as_ref().map_or(Value::Null, tool_value)),
            (
                "resource",
                self.resource.map_or(Value::Null, |r| {
                    object([
                        ("uri", Value::from(r.uri)),
                        ("target", Value::from(r.target)),
                        ("ambiguous", Value::from(r.ambiguous())),
                    ])
                }),
            ),
            (
                "prompt",
                self.prompt.map_or(Value::Null, |p| {
                    object([
                        ("name", Value::from(p.name)),
                        ("arguments", p.arguments.map_or(Value::Null, json_to_value)),
                    ])
                }),
            ),
            ("params", self.params.map_or(Value::Null, json_to_value)),
            ("dlp", object([("findings", findings_value(self.findings))])),
            (
                "behavior",
                object([
                    ("score", number(self.behavior.score)),
                    ("zscore", number(self.behavior.zscore)),
                    ("new_tool", Value::from(self.behavior.new_tool)),
                ]),
            ),
            (
                "response",
                self.response
                    .as_ref()
                    .map_or(Value::Null, ResponseInput::to_value),
            ),
            ("now", Value::from(self.now)),
        ])
    }

    /// The same document as JSON, for `policy eval`, logs and tests.
    pub fn to_json(&self) -> serde_json::Value {
        let agent = self.agent;
        let session = self.session;
        let request = self.request;
        json!({
            "agent": {
                "id": agent.id,
                "tenant_id": agent.tenant_id,
                "roles": agent.roles,
                "claims": agent.claims,
                "prompt_hash": agent.prompt_hash,
                "run_id": agent.run_id,
            },
            "session": {
                "id": session.id,
                "calls": session.calls,
                "started_at": session.started_at,
            },
            "request": {
                "method": request.method,
                "direction": request.direction.as_str(),
                "upstream": request.upstream,
                "protocol_version": request.protocol_version,
            },
            "tool": self.tool.as_ref().map(tool_json),
            "resource": self.resource.map(|r| json!({"uri": r.uri, "target": r.target, "ambiguous": r.ambiguous()})),
            "prompt": self.prompt.map(|p| json!({"name": p.name, "arguments": p.arguments})),
            "params": self.params,
            "dlp": {"findings": findings_json(self.findings)},
            "behavior": {
                "score": finite(self.behavior.score),
                "zscore": finite(self.behavior.zscore),
                "new_tool": self.behavior.new_tool,
            },
            "response": self.response.map(|r| json!({
                "is_error": r.is_error,
                "dlp": {"findings": findings_json(r.findings)},
                "injection": r.injection,
            })),
            "now": self.now,
        })
    }
}

fn tool_value(tool: &ToolInput<'_>) -> Value {
    let class = tool.class;
    object([
        ("name", Value::from(tool.name)),
        (
            "arguments",
            tool.arguments.map_or(Value::Null, json_to_value),
        ),
        ("action", Value::from(class.action.as_str())),
        ("target", opt_string(class.target.as_deref())),
        (
            "targets",
            Value::from(class.targets.iter().map(target_value).collect::<Vec<_>>()),
        ),
        ("targets_truncated", Value::from(class.truncated)),
        (
            "ambiguous_keys",
            strings(class.ambiguous_keys.iter().map(String::as_str)),
        ),
        (
            "definition",
            tool.definition.map_or(Value::Null, |d| {
                object([
                    ("hash", opt_string(d.hash.as_deref())),
                    ("status", Value::from(d.status.as_str())),
                    ("poisoning", strings(d.poisoning.iter().map(String::as_str))),
                ])
            }),
        ),
    ])
}

fn tool_json(tool: &ToolInput<'_>) -> serde_json::Value {
    let class = tool.class;
    let targets: Vec<serde_json::Value> = class
        .targets
        .iter()
        .map(|t| {
            json!({"kind": t.kind.as_str(), "key": t.key, "value": t.value, "ambiguous": t.ambiguous})
        })
        .collect();
    json!({
        "name": tool.name,
        "arguments": tool.arguments,
        "action": class.action.as_str(),
        "target": class.target,
        "targets": targets,
        "targets_truncated": class.truncated,
        "ambiguous_keys": class.ambiguous_keys,
        "definition": tool.definition.map(|d| json!({
            "hash": d.hash,
            "status": d.status.as_str(),
            "poisoning": d.poisoning,
        })),
    })
}

fn target_value(target: &Target) -> Value {
    object([
        ("kind", Value::from(target.kind.as_str())),
        ("key", Value::from(target.key.as_str())),
        ("value", Value::from(target.value.as_str())),
        ("ambiguous", Value::from(target.ambiguous)),
    ])
}

fn findings_value(findings: &[Finding]) -> Value {
    Value::from(
        findings
            .iter()
            .map(|f| {
                object([
                    ("type", Value::from(f.kind.as_str())),
                    ("severity", Value::from(f.severity.as_str())),
                    ("path", Value::from(f.path.as_str())),
                    ("count", Value::from(f.count)),
                ])
            })
            .collect::<Vec<_>>(),
    )
}

fn findings_json(findings: &[Finding]) -> serde_json::Value {
    serde_json::Value::Array(
        findings
            .iter()
            .map(|f| serde_json::to_value(f).unwrap_or(serde_json::Value::Null))
            .collect(),
    )
}

// JSON has no NaN or infinity (serde_json writes them as null); the Value document says the same.
fn number(x: f64) -> Value {
    if x.is_finite() {
        Value::from(x)
    } else {
        Value::Null
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::from(
        fields
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect::<BTreeMap<Value, Value>>(),
    )
}

fn strings<'s>(items: impl Iterator<Item = &'s str>) -> Value {
    Value::from(items.map(Value::from).collect::<Vec<_>>())
}

fn opt_string(s: Option<&str>) -> Value {
    s.map_or(Value::Null, Value::from)
}

/// A JSON value as a regorus `Value`, without going through text.
pub(crate) fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                n.as_f64().map_or(Value::Null, Value::from)
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(json_to_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_to_value(v)))
                .collect::<BTreeMap<Value, Value>>(),
        ),
    }
}
