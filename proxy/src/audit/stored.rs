//! The one way into the audit log: a [`StoredDraft`] is an event draft whose every field has been redacted of
//! what DLP flags and capped in size ([`crate::redaction`]), and the writer seals nothing else.
//!
//! The conversion names every field of [`EventDraft`] (no `..`), so a field added to the draft does not compile
//! until it is given a rule here. It runs in the caller's task, before the draft reaches the writer, so the work
//! is spread over the callers instead of serialising in the one writer task, and it runs before hashing: the
//! chain covers exactly what is stored.

use serde_json::Value;
use toolgate_engine::chain::EventDraft;

use crate::redaction::{cap, redact_value, stored_text, FIELD_LIMIT};

/// Most bytes of `extra` as compact JSON, after each string in it was capped at [`FIELD_LIMIT`]. A larger
/// `extra` is stored as `{"capped": "<its JSON text, capped at this limit>"}`.
pub const EXTRA_LIMIT: usize = 4096;

/// Most findings `dlp_findings` lists; the rest are folded into one finding per type at the root pointer `""`.
pub const FINDINGS_LIMIT: usize = 64;

/// An event draft fit to be stored. Only [`StoredDraft::new`] makes one.
#[derive(Debug)]
pub struct StoredDraft(EventDraft);

impl StoredDraft {
    /// Redacts and caps every field an agent, an upstream, an identity provider or a policy could have shaped.
    pub fn new(draft: EventDraft) -> StoredDraft {
        let EventDraft {
            // Made by toolgate in a fixed form (the writer stamps them when empty), or hex digests and constants
            // (`event_type`, `policy_result`, `dlp_action`, `behavioral_score`): nothing to find, nothing long.
            id,
            timestamp,
            event_type,
            input_hash,
            policy_result,
            behavioral_score,
            dlp_action,
            response_code,
            latency_us,
            // From the JWT, the session, the request, the upstream's configuration or the policy's output.
            agent_id,
            session_id,
            tenant_id,
            workflow_id,
            requester_id,
            tool_name,
            mcp_server,
            action,
            target,
            policy_id,
            policy_reason,
            error,
            trace_id,
            dlp_findings,
            extra,
        } = draft;
        let text = |v: Option<String>| v.map(stored_text);
        StoredDraft(EventDraft {
            id,
            timestamp,
            event_type,
            input_hash,
            policy_result,
            behavioral_score,
            dlp_action,
            response_code,
            latency_us,
            agent_id: text(agent_id),
            session_id: text(session_id),
            tenant_id: text(tenant_id),
            workflow_id: text(workflow_id),
            requester_id: text(requester_id),
            tool_name: text(tool_name),
            mcp_server: text(mcp_server),
            action: text(action),
            target: text(target),
            policy_id: text(policy_id),
            policy_reason: text(policy_reason),
            error: text(error),
            trace_id: text(trace_id),
            dlp_findings: stored_findings(dlp_findings),
            extra: stored_extra(extra),
        })
    }

    pub(super) fn into_draft(self) -> EventDraft {
        self.0
    }
}

/// `extra` redacted (keys, strings and numbers), each string capped, and the whole capped at [`EXTRA_LIMIT`].
fn stored_extra(mut extra: Value) -> Value {
    if extra.is_null() {
        return extra;
    }
    redact_value(&mut extra);
    cap_strings(&mut extra);
    let text = extra.to_string();
    if text.len() <= EXTRA_LIMIT {
        return extra;
    }
    serde_json::json!({ "capped": cap(text, EXTRA_LIMIT) })
}

/// Caps every string (and object key) inside `value` at [`FIELD_LIMIT`].
fn cap_strings(value: &mut Value) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.len() > FIELD_LIMIT => {
                *s = cap(std::mem::take(s), FIELD_LIMIT);
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(map) => {
                if map.keys().any(|k| k.len() > FIELD_LIMIT) {
                    *map = std::mem::take(map)
                        .into_iter()
                        .map(|(k, v)| (cap(k, FIELD_LIMIT), v))
                        .collect();
                }
                stack.extend(map.values_mut());
            }
            _ => {}
        }
    }
}

/// The findings as stored: each `path` (a JSON pointer built from the agent's own keys) capped, and beyond
/// [`FINDINGS_LIMIT`] findings the rest folded into one finding per type and severity at the root pointer `""`,
/// counting them all, so ten thousand flagged array items cost a few lines instead of a megabyte.
fn stored_findings(findings: Value) -> Value {
    let Value::Array(mut items) = findings else {
        return findings;
    };
    for item in &mut items {
        if let Some(Value::String(path)) = item.get_mut("path") {
            if path.len() > FIELD_LIMIT {
                *path = cap(std::mem::take(path), FIELD_LIMIT);
            }
        }
    }
    if items.len() > FINDINGS_LIMIT {
        let rest = items.split_off(FINDINGS_LIMIT);
        let mut folded: Vec<(Value, Value, u64)> = Vec::new();
        for f in rest {
            let kind = f.get("type").cloned().unwrap_or(Value::Null);
            let severity = f.get("severity").cloned().unwrap_or(Value::Null);
            let count = f.get("count").and_then(Value::as_u64).unwrap_or(1);
            match folded
                .iter_mut()
                .find(|(k, s, _)| *k == kind && *s == severity)
            {
                Some((_, _, n)) => *n = n.saturating_add(count),
                None => folded.push((kind, severity, count)),
            }
        }
        items.extend(folded.into_iter().map(|(kind, severity, count)| {
            serde_json::json!({ "type": kind, "severity": severity, "path": "", "count": count })
        }));
    }
    Value::Array(items)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

    #[test]
    fn every_shaped_field_is_redacted() {
        let secret = |s: &str| Some(format!("{s} {AWS}"));
        let stored = StoredDraft::new(EventDraft {
            agent_id: secret("a"),
            session_id: secret("s"),
            tenant_id: secret("t"),
            workflow_id: secret("w"),
            requester_id: secret("r"),
            tool_name: Some(AWS.into()),
            mcp_server: secret("m"),
            action: secret("x"),
            target: Some(format!("/tmp/{AWS}")),
            policy_id: secret("p"),
            policy_reason: secret("because"),
            error: secret("e"),
            trace_id: secret("tr"),
            dlp_findings: json!([{"type": "aws_access_key", "severity": "critical", "path": "/k", "count": 1}]),
            extra: json!({"protocol_version": AWS, "nested": [{ AWS: 4111111111111111u64 }]}),
            ..EventDraft::default()
        })
        .into_draft();
        let text = format!("{stored:?}");
        assert!(!text.contains("AKIAIOSF"), "{text}");
        assert!(!text.contains("4111111111111111"), "{text}");
        assert_eq!(
            stored.target.as_deref(),
            Some("/tmp/[REDACTED:aws_access_key]")
        );
        assert_eq!(
            stored.tool_name.as_deref(),
            Some("[REDACTED:aws_access_key]")
        );
    }

    #[test]
    fn machine_fields_pass_untouched() {
        let draft = EventDraft {
            id: "0193a5b2-7c1e-7d3f-9a4b-2c6d8e0f1a2b".into(),
            event_type: "tool_call".into(),
            input_hash: Some("a".repeat(64)),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            tool_name: Some("read_file".into()),
            extra: json!({"decision_event": "0193a5b2-7c1e-7d3f-9a4b-2c6d8e0f1a2b", "hash": "f".repeat(64)}),
            ..EventDraft::default()
        };
        assert_eq!(StoredDraft::new(draft.clone()).into_draft(), draft);
    }

    #[test]
    fn big_fields_and_extra_are_capped() {
        let stored = StoredDraft::new(EventDraft {
            tool_name: Some("n".repeat(4 << 20)),
            extra: json!({"protocol_version": "v".repeat(100_000), "method": "tools/call"}),
            ..EventDraft::default()
        })
        .into_draft();
        assert!(stored.tool_name.as_ref().unwrap().len() <= FIELD_LIMIT);
        assert!(stored.tool_name.unwrap().ends_with(" len:4194304]"));
        assert_eq!(stored.extra["method"], "tools/call");
        assert!(stored.extra["protocol_version"].as_str().unwrap().len() <= FIELD_LIMIT);

        let many: serde_json::Map<String, Value> = (0..100)
            .map(|i| (format!("k{i}"), Value::String("v".repeat(900))))
            .collect();
        let stored = StoredDraft::new(EventDraft {
            extra: Value::Object(many),
            ..EventDraft::default()
        })
        .into_draft();
        let capped = stored.extra["capped"].as_str().unwrap();
        assert!(capped.len() <= EXTRA_LIMIT);
        assert!(capped.starts_with("{\""));
    }

    #[test]
    fn findings_beyond_the_limit_are_folded_by_type() {
        let findings: Vec<Value> = (0..1000)
            .map(|i| json!({"type": "email", "severity": "medium", "path": format!("/{i}"), "count": 2}))
            .collect();
        let stored = StoredDraft::new(EventDraft {
            dlp_findings: Value::Array(findings),
            ..EventDraft::default()
        })
        .into_draft();
        let items = stored.dlp_findings.as_array().unwrap();
        assert_eq!(items.len(), FINDINGS_LIMIT + 1);
        assert_eq!(
            items[FINDINGS_LIMIT],
            json!({"type": "email", "severity": "medium", "path": "", "count": 2 * (1000 - FINDINGS_LIMIT)})
        );
        let total: u64 = items.iter().map(|f| f["count"].as_u64().unwrap()).sum();
        assert_eq!(total, 2000, "no finding is lost from the count");
    }
}
