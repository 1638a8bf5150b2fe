//! `elasticsearch`: the `_bulk` API with one `create` action per event, `_id` = the event's `event_hash`, the
//! document the event JSON itself. A re-delivered event is refused with 409 (the document exists): that counts
//! as delivered, so re-sending a batch after a crash is a no-op. Items that failed for a passing reason (429,
//! 5xx) are retried alone, not the whole batch.

use serde_json::Value;
use toolgate_engine::chain::AuditEvent;

use super::attempt::{Attempt, Why};

pub const PATH: &str = "/_bulk";

/// The NDJSON body of `_bulk`.
pub fn encode(events: &[&AuditEvent], index: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.len() * 1200);
    for event in events {
        let action = serde_json::json!({ "create": { "_index": index, "_id": event.event_hash } });
        body.extend_from_slice(action.to_string().as_bytes());
        body.push(b'\n');
        body.extend_from_slice(&serde_json::to_vec(event).unwrap_or_default());
        body.push(b'\n');
    }
    body
}

/// What a 2xx `_bulk` answer says about a batch of `sent` events: every item created (or already there), or
/// which items failed and whether retrying them can help.
pub fn judge(answer: &[u8], sent: usize) -> Attempt {
    let Ok(answer) = serde_json::from_slice::<Value>(answer) else {
        return Attempt::Retry(Why::new("bad_response", "the _bulk answer is not JSON"));
    };
    let Some(items) = answer.get("items").and_then(Value::as_array) else {
        return Attempt::Retry(Why::new("bad_response", "the _bulk answer has no items"));
    };
    if items.len() != sent {
        return Attempt::Retry(Why::new(
            "bad_response",
            format!(
                "the _bulk answer has {} items for {sent} actions",
                items.len()
            ),
        ));
    }
    let mut failed = Vec::new();
    let mut retry = true;
    let mut first = None;
    for (i, item) in items.iter().enumerate() {
        let result = item.get("create").unwrap_or(item);
        let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
        // 409: a document with this event_hash exists, i.e. this event was delivered before.
        if (200..300).contains(&status) || status == 409 {
            continue;
        }
        failed.push(i);
        retry &= status == 429 || status >= 500;
        if first.is_none() {
            let kind = result
                .pointer("/error/type")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            first = Some(format!("status {status} ({kind})"));
        }
    }
    if failed.is_empty() {
        return Attempt::Ok;
    }
    let why = Why::new(
        "items",
        format!(
            "{} of {sent} bulk items failed, first: {}",
            failed.len(),
            first.unwrap_or_default()
        ),
    );
    Attempt::Partial { failed, why, retry }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_a_create_with_its_hash_as_id() {
        let (a, b) = (super::super::tests::event(1), super::super::tests::event(2));
        let body = String::from_utf8(encode(&[&a, &b], "audit")).unwrap();
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["create"]["_id"], a.event_hash.as_str());
        assert_eq!(lines[0]["create"]["_index"], "audit");
        assert_eq!(lines[1], serde_json::to_value(&a).unwrap());
        assert_eq!(lines[2]["create"]["_id"], b.event_hash.as_str());
        assert!(body.ends_with('\n'));
    }

    #[test]
    fn conflicts_count_as_delivered_and_failed_items_are_named() {
        let ok = br#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception"}}}]}"#;
        assert!(matches!(judge(ok, 2), Attempt::Ok));
        let partial = br#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":429,"error":{"type":"es_rejected_execution_exception"}}},{"create":{"status":503}}]}"#;
        match judge(partial, 3) {
            Attempt::Partial { failed, retry, why } => {
                assert_eq!(failed, vec![1, 2]);
                assert!(retry);
                assert!(
                    why.detail.contains("es_rejected_execution_exception"),
                    "{}",
                    why.detail
                );
            }
            other => panic!("{other:?}"),
        }
        let mapping = br#"{"errors":true,"items":[{"create":{"status":400,"error":{"type":"mapper_parsing_exception"}}},{"create":{"status":503}}]}"#;
        assert!(matches!(
            judge(mapping, 2),
            Attempt::Partial { retry: false, .. }
        ));
        assert!(matches!(judge(b"{}", 1), Attempt::Retry(_)));
        assert!(matches!(judge(br#"{"items":[]}"#, 1), Attempt::Retry(_)));
    }
}
