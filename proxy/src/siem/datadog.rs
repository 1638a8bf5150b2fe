//! `datadog`: the logs intake v2 (`/api/v2/logs`, `DD-API-KEY`), a JSON array of log entries with
//! `ddsource:toolgate`, each entry's `message` the event JSON. A batch is cut into requests that stay within
//! the intake's limits: 1,000 entries and 5 MB per request (an entry itself at most 1 MB).

use std::ops::Range;

use serde_json::json;
use toolgate_engine::chain::AuditEvent;

/// The intake path appended to the sink's URL (unless the URL already ends with it).
pub const PATH: &str = "/api/v2/logs";
/// Most entries per request.
pub const MAX_ENTRIES: usize = crate::config::DATADOG_MAX_ENTRIES;
/// Most bytes per (uncompressed) request.
pub const MAX_BYTES: usize = 5 * 1024 * 1024;

/// One log entry.
fn entry(event: &AuditEvent, service: &str, hostname: &str) -> Vec<u8> {
    let value = json!({
        "ddsource": "toolgate",
        "service": service,
        "hostname": hostname,
        "ddtags": format!("event_type:{},chain_id:{}", event.event_type, event.chain_id),
        "message": serde_json::to_string(event).unwrap_or_default(),
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The requests of one batch: which events each carries (a range of the batch) and its body, each within
/// `max_entries` and `max_bytes` (a single entry larger than `max_bytes` goes alone; the intake answers for it).
pub fn encode(
    events: &[&AuditEvent],
    service: &str,
    hostname: &str,
    max_entries: usize,
    max_bytes: usize,
) -> Vec<(Range<usize>, Vec<u8>)> {
    let mut requests = Vec::new();
    let mut body = vec![b'['];
    let mut start = 0;
    for (i, event) in events.iter().enumerate() {
        let entry = entry(event, service, hostname);
        let count = i - start;
        // The body would be `body` + separator + entry + `]`.
        if count > 0 && (count >= max_entries || body.len() + 1 + entry.len() + 1 > max_bytes) {
            body.push(b']');
            requests.push((start..i, std::mem::replace(&mut body, vec![b'['])));
            start = i;
        }
        if i > start {
            body.push(b',');
        }
        body.extend_from_slice(&entry);
    }
    if start < events.len() {
        body.push(b']');
        requests.push((start..events.len(), body));
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_the_source_and_the_event() {
        let a = super::super::tests::event(1);
        let requests = encode(&[&a], "toolgate", "host-1", MAX_ENTRIES, MAX_BYTES);
        assert_eq!(requests.len(), 1);
        let body: serde_json::Value = serde_json::from_slice(&requests[0].1).unwrap();
        assert_eq!(body[0]["ddsource"], "toolgate");
        assert_eq!(body[0]["hostname"], "host-1");
        let message: serde_json::Value =
            serde_json::from_str(body[0]["message"].as_str().unwrap()).unwrap();
        assert_eq!(message, serde_json::to_value(&a).unwrap());
    }

    #[test]
    fn batches_are_cut_at_the_entry_and_byte_limits() {
        let events: Vec<AuditEvent> = (1..=2500).map(super::super::tests::event).collect();
        let refs: Vec<&AuditEvent> = events.iter().collect();
        let requests = encode(&refs, "s", "h", MAX_ENTRIES, MAX_BYTES);
        let ranges: Vec<Range<usize>> = requests.iter().map(|r| r.0.clone()).collect();
        assert_eq!(ranges, vec![0..1000, 1000..2000, 2000..2500]);
        let one = entry(&events[0], "s", "h").len();
        // Room for three entries and their separators, not four.
        let requests = encode(&refs[..10], "s", "h", MAX_ENTRIES, 3 * one + 4);
        for (range, body) in &requests {
            assert!(body.len() <= 3 * one + 4, "{} bytes", body.len());
            let parsed: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
            assert_eq!(parsed.len(), range.len());
        }
        let covered: usize = requests.iter().map(|r| r.0.len()).sum();
        assert_eq!(covered, 10);
        assert!(requests.len() >= 4);
    }
}
