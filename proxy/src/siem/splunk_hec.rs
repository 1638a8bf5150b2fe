//! `splunk_hec`: Splunk's HTTP Event Collector (`/services/collector/event`, `Authorization: Splunk <token>`),
//! one `{"time","source":"toolgate","sourcetype":"toolgate:audit","event":{…}}` envelope per event, the
//! envelopes of a batch concatenated in one body (HEC's batch form).

use toolgate_engine::chain::AuditEvent;

/// The collector path appended to the sink's URL (unless the URL already ends with it).
pub const PATH: &str = "/services/collector/event";

/// The body: one envelope per event, newline-separated.
pub fn encode(events: &[&AuditEvent]) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.len() * 1024);
    for event in events {
        if !body.is_empty() {
            body.push(b'\n');
        }
        // `time` is written by hand: epoch seconds with the event's microseconds, exactly, where an f64 would
        // round them.
        body.extend_from_slice(b"{\"time\":");
        body.extend_from_slice(epoch_seconds(&event.timestamp).as_bytes());
        body.extend_from_slice(
            b",\"source\":\"toolgate\",\"sourcetype\":\"toolgate:audit\",\"event\":",
        );
        body.extend_from_slice(&serde_json::to_vec(event).unwrap_or_default());
        body.push(b'}');
    }
    body
}

/// `2026-11-22T20:15:00.123456Z` as `1795378500.123456` (seconds since the epoch, microseconds exact).
pub(super) fn epoch_seconds(timestamp: &str) -> String {
    match time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339) {
        Ok(t) => format!("{}.{:06}", t.unix_timestamp(), t.microsecond()),
        // Stored timestamps always parse; a tampered one is sent as "now" rather than not at all.
        Err(_) => {
            let now = time::OffsetDateTime::now_utc();
            format!("{}.{:06}", now.unix_timestamp(), now.microsecond())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_gets_its_envelope() {
        let (a, b) = (super::super::tests::event(1), super::super::tests::event(2));
        let body = String::from_utf8(encode(&[&a, &b])).unwrap();
        let envelopes: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(envelopes.len(), 2);
        for (envelope, event) in envelopes.iter().zip([&a, &b]) {
            assert_eq!(envelope["source"], "toolgate");
            assert_eq!(envelope["sourcetype"], "toolgate:audit");
            assert_eq!(envelope["event"], serde_json::to_value(event).unwrap());
        }
        assert!(body.contains("\"time\":1795378500.123456,"), "{body}");
    }

    #[test]
    fn time_keeps_the_microseconds() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:01.000007Z"), "1.000007");
    }
}
