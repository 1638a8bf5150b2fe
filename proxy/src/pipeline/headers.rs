//! The agent's headers that reach an HTTP upstream beside the body ([`crate::mcp::http::is_forwarded`]), checked
//! before anything is forwarded, so that nothing toolgate did not judge leaves in a header.
//!
//! A header with a meaning in MCP must say what the judged body says: `MCP-Protocol-Version` a revision toolgate
//! knows, `Mcp-Method` the body's method, `Mcp-Name` its `params.name` or `params.uri`, each `Mcp-Param-*` the
//! value of one of the call's arguments (SEP-2243, decoded from `=?base64?…?=` first), `traceparent` the W3C
//! syntax. What such a header carries is then already in the body, which DLP and the policy judged. The opaque
//! ones (`Accept`, `Content-Type`, `Last-Event-ID`, `tracestate`) and the names of `Mcp-Param-*` headers are
//! scanned and must hold no DLP finding of any severity: they have no reason to carry data. Each value must be
//! visible ASCII (what the scanner reads is what the upstream gets), and a header with a meaning comes once.
//!
//! A header that fails is refused with 400 and JSON-RPC `-32001` (SEP-2243's header mismatch), named in the
//! message, its value never echoed, and recorded as a `policy_deny` (`toolgate.mcp.bad_header`).

use base64::Engine as _;
use hyper::header::HeaderMap;
use serde_json::Value;
use toolgate_engine::chain::EventDraft;
use toolgate_engine::dlp::Scanner;

use crate::app::App;
use crate::auth::AgentIdentity;
use crate::mcp::{PROTOCOL_HEADER, PROTOCOL_VERSIONS};

/// The policy id a refused header is recorded under.
pub const POLICY_ID: &str = "toolgate.mcp.bad_header";

/// What is wrong with a forwarded header (its value is never part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Sent more than once: the upstream might read another copy than the one checked.
    Repeated,
    /// Not visible ASCII: the scanner and the upstream could read it differently.
    NotVisibleAscii,
    UnknownVersion,
    /// Does not equal what the body says (or the body has nothing it could mirror).
    Mismatch,
    /// `=?base64?…?=` that does not decode to UTF-8 text.
    BadEncoding,
    /// `traceparent` not in the W3C syntax.
    BadSyntax,
    /// DLP found something in a header that has no reason to carry data.
    Finding,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::Repeated => "is sent more than once",
            Fault::NotVisibleAscii => "is not visible ASCII",
            Fault::UnknownVersion => "names no protocol version toolgate knows",
            Fault::Mismatch => "does not match the request body",
            Fault::BadEncoding => "is not valid =?base64?...?= text",
            Fault::BadSyntax => "is not a W3C traceparent",
            Fault::Finding => "holds data DLP flags",
        }
    }
}

/// A refused header: its name as the message and the audit log may show it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHeader {
    pub header: String,
    pub fault: Fault,
}

impl BadHeader {
    /// The refusal's message: the header and the fault, never the value.
    pub fn message(&self) -> String {
        format!("header mismatch: {} {}", self.header, self.fault.describe())
    }
}

/// Checks every forwarded header of a request; `message` is its JSON-RPC body (`None` for `GET` and `DELETE`,
/// which carry none: a header that mirrors the body is then refused).
pub fn check(
    scanner: &Scanner,
    headers: &HeaderMap,
    message: Option<&Value>,
) -> Result<(), BadHeader> {
    for name in headers.keys() {
        let name = name.as_str();
        if !crate::mcp::http::is_forwarded(name) || name == crate::mcp::SESSION_HEADER {
            // The session id is checked against the session store (and dropped from an initialize).
            continue;
        }
        let shown = shown_name(scanner, name);
        let bad = |fault| BadHeader {
            header: shown.clone(),
            fault,
        };
        let mut texts = Vec::new();
        for value in headers.get_all(name) {
            let text = value.to_str().map_err(|_| bad(Fault::NotVisibleAscii))?;
            texts.push(text);
        }
        let repeatable = matches!(name, "accept" | "content-type" | "tracestate");
        if texts.len() > 1 && !repeatable {
            return Err(bad(Fault::Repeated));
        }
        if shown == PARAM_HIDDEN {
            return Err(bad(Fault::Finding));
        }
        for text in texts {
            check_one(scanner, name, text, message).map_err(&bad)?;
        }
    }
    Ok(())
}

/// How an `Mcp-Param-*` header whose name holds a finding is named: its name is agent text like its value.
const PARAM_HIDDEN: &str = "Mcp-Param-*";

fn shown_name(scanner: &Scanner, name: &str) -> String {
    match name {
        "mcp-protocol-version" => "MCP-Protocol-Version".into(),
        "mcp-method" => "Mcp-Method".into(),
        "mcp-name" => "Mcp-Name".into(),
        "last-event-id" => "Last-Event-ID".into(),
        "content-type" => "Content-Type".into(),
        "accept" => "Accept".into(),
        _ => match name.strip_prefix("mcp-param-") {
            // Header names arrive in lower case, and the upstream gets them so: a key whose letters are upper
            // case (an AWS key id) is still the key, so the name is scanned in both cases.
            Some(suffix)
                if [suffix.to_owned(), suffix.to_ascii_uppercase()]
                    .into_iter()
                    .any(|form| !scanner.scan(&Value::String(form)).is_empty()) =>
            {
                PARAM_HIDDEN.into()
            }
            Some(suffix) => format!("Mcp-Param-{suffix}"),
            None => name.into(),
        },
    }
}

fn check_one(
    scanner: &Scanner,
    name: &str,
    text: &str,
    message: Option<&Value>,
) -> Result<(), Fault> {
    let method = message
        .and_then(|m| m.get("method"))
        .and_then(Value::as_str);
    let params = message.and_then(|m| m.get("params"));
    match name {
        PROTOCOL_HEADER => PROTOCOL_VERSIONS
            .contains(&text)
            .then_some(())
            .ok_or(Fault::UnknownVersion),
        "mcp-method" => (method == Some(text)).then_some(()).ok_or(Fault::Mismatch),
        "mcp-name" => {
            let text = decoded(text)?;
            let named = ["name", "uri"]
                .iter()
                .filter_map(|k| params.and_then(|p| p.get(*k)).and_then(Value::as_str))
                .any(|v| v == text);
            named.then_some(()).ok_or(Fault::Mismatch)
        }
        "traceparent" => is_traceparent(text).then_some(()).ok_or(Fault::BadSyntax),
        _ if name.starts_with("mcp-param-") => {
            let text = decoded(text)?;
            // SEP-2243 mirrors tool arguments; clients also mirror a prompt's arguments, which are judged the same
            // way. Any other method has no arguments a header could mirror.
            let arguments = params
                .filter(|_| matches!(method, Some("tools/call" | "prompts/get")))
                .and_then(|p| p.get("arguments"))
                .and_then(Value::as_object);
            let mirrored = arguments
                .into_iter()
                .flat_map(|a| a.values())
                .any(|v| header_form(v).as_deref() == Some(text.as_str()));
            mirrored.then_some(()).ok_or(Fault::Mismatch)
        }
        // Opaque: `accept`, `content-type`, `last-event-id`, `tracestate`.
        _ => scanner
            .scan(&Value::String(text.into()))
            .is_empty()
            .then_some(())
            .ok_or(Fault::Finding),
    }
}

/// A header value as SEP-2243 encodes text that is not plain visible ASCII: `=?base64?<standard base64>?=`.
fn decoded(text: &str) -> Result<String, Fault> {
    let Some(inner) = text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    else {
        return Ok(text.to_owned());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(inner)
        .map_err(|_| Fault::BadEncoding)?;
    String::from_utf8(bytes).map_err(|_| Fault::BadEncoding)
}

/// The string form SEP-2243 mirrors an argument in: a string as it is, a number in decimal, a boolean in lower
/// case; other values are never mirrored.
fn header_form(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `version-traceid-parentid-flags` in lower-case hex (W3C Trace Context level 1), nothing more.
fn is_traceparent(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}

/// Records a refused header as a `policy_deny` (the header's name and the fault; never its value).
pub async fn record(
    app: &App,
    identity: &AgentIdentity,
    upstream_name: &str,
    trace_id: &str,
    method: &str,
    bad: &BadHeader,
) {
    app.metrics
        .requests
        .with_label_values(&[crate::telemetry::Metrics::method_label(method), "deny"])
        .inc();
    app.agents
        .count(identity, toolgate_engine::policy::Verdict::Deny);
    let draft = EventDraft {
        policy_id: Some(POLICY_ID.into()),
        policy_reason: Some(bad.message()),
        ..super::stages::refused_before_session(app, identity, upstream_name, trace_id, method)
    };
    if let Err(e) = app.audit.append(draft).await {
        tracing::error!(agent = %crate::redaction::loggable(&identity.id), error = %e, "audit write failed");
    }
}

#[cfg(test)]
mod tests;
