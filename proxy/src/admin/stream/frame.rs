//! The bytes of the feed: one SSE event per audit event (`id:`, `event:`, `data:`), the feed's own notices and
//! the keep-alive comment.

use std::borrow::Cow;

use bytes::Bytes;
use toolgate_engine::chain::AuditEvent;

/// Sent every `telemetry.sse_keepalive_seconds` so that proxies and clients keep an idle stream open.
pub(super) const KEEPALIVE: &[u8] = b":keepalive\n\n";

/// The `event:` name of an audit event type: `escalation` for an escalation's decision or expiry (its creation
/// is the `policy_escalate` event of the call), and every other type by its own name.
pub(super) fn event_name(event_type: &str) -> Cow<'_, str> {
    if event_type.starts_with("escalation_") {
        return Cow::Borrowed("escalation");
    }
    // A name comes from toolgate's own constants, but a replayed row is whatever the database holds: a line
    // break in it would end the SSE field and let the row's text forge fields of its own.
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if !event_type.is_empty() && event_type.chars().all(plain) {
        Cow::Borrowed(event_type)
    } else {
        Cow::Owned(
            event_type
                .chars()
                .map(|c| if plain(c) { c } else { '_' })
                .chain(event_type.is_empty().then_some('_'))
                .collect(),
        )
    }
}

/// One audit event as an SSE event. The data is compact JSON: JSON text escapes line breaks inside strings,
/// so it is always one `data:` line.
pub(super) fn event_frame(id: &str, event: &AuditEvent) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_default();
    let name = event_name(&event.event_type);
    Bytes::from(format!("id: {id}\nevent: {name}\ndata: {data}\n\n"))
}

/// A `system_notification` from the feed itself. It has no `id:`, so a client's last event id (and the
/// `Last-Event-ID` an `EventSource` reconnects with) stays the last audit event it was sent.
pub(super) fn notice_frame(kind: &str, message: &str, resume_with: &str) -> Bytes {
    let data = serde_json::json!({ "kind": kind, "message": message, "resume_with": resume_with });
    Bytes::from(format!("event: system_notification\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_event_type() {
        assert_eq!(event_name("tool_call"), "tool_call");
        assert_eq!(event_name("tool_result"), "tool_result");
        assert_eq!(event_name("policy_deny"), "policy_deny");
        assert_eq!(event_name("policy_escalate"), "policy_escalate");
        assert_eq!(event_name("escalation_decided"), "escalation");
        assert_eq!(event_name("escalation_expired"), "escalation");
        assert_eq!(event_name("alert"), "alert");
        assert_eq!(event_name("admin_action"), "admin_action");
    }

    #[test]
    fn a_stored_type_cannot_forge_sse_fields() {
        assert_eq!(
            event_name("x\ndata: forged\n\nid: 1"),
            "x_data__forged__id__1"
        );
        assert_eq!(event_name(""), "_");
        assert_eq!(event_name("tool\rcall"), "tool_call");
    }
}
