//! `cef`: ArcSight Common Event Format over the syslog transport. Header fields escape `\` and `|`; extension
//! values escape `\` and `=` and write line breaks as `\n` / `\r`. The whole event JSON rides in `msg`, so
//! nothing of the event is lost to the mapping.

use toolgate_engine::chain::AuditEvent;

use super::syslog::{self, Header};

/// A header field (vendor, product, signature id, name): `\` and `|` escaped, line breaks made spaces (a
/// header cannot hold them).
pub fn escape_header(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An extension value: `\` and `=` escaped, line breaks as `\n` / `\r`. A `|` needs no escape there.
pub fn escape_extension(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// CEF severity (0-10) of an event.
pub fn severity(event: &AuditEvent) -> u8 {
    match syslog::severity(event) {
        3 => 7,
        4 if event.event_type == "alert" => 8,
        4 => 6,
        _ => 3,
    }
}

/// The CEF record of one event.
pub fn record(event: &AuditEvent) -> String {
    let name = match &event.tool_name {
        Some(tool) => format!("{} {tool}", event.event_type),
        None => event.event_type.clone(),
    };
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", unix_millis(&event.timestamp).to_string()),
        ("externalId", event.event_hash.clone()),
        ("cs1Label", "chain_id".into()),
        ("cs1", event.chain_id.clone()),
        ("cn1Label", "seq".into()),
        ("cn1", event.seq.to_string()),
    ];
    let optional = [
        ("suser", &event.agent_id),
        ("act", &event.policy_result),
        ("reason", &event.policy_reason),
        ("request", &event.target),
        ("cs2Label", &Some("tool_name".into())),
        ("cs2", &event.tool_name),
        ("cs3Label", &Some("mcp_server".into())),
        ("cs3", &event.mcp_server),
        ("cs4Label", &Some("policy_id".into())),
        ("cs4", &event.policy_id),
        ("cs5Label", &Some("tenant_id".into())),
        ("cs5", &event.tenant_id),
        ("cs6Label", &Some("session_id".into())),
        ("cs6", &event.session_id),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            ext.push((key, value.clone()));
        }
    }
    ext.push(("msg", serde_json::to_string(event).unwrap_or_default()));
    let extension: Vec<String> = ext
        .iter()
        .map(|(k, v)| format!("{k}={}", escape_extension(v)))
        .collect();
    format!(
        "CEF:0|toolgate|toolgate|{}|{}|{}|{}|{}",
        escape_header(env!("CARGO_PKG_VERSION")),
        escape_header(&event.event_type),
        escape_header(&name),
        severity(event),
        extension.join(" ")
    )
}

/// The event as `cef` sends it: an RFC 5424 message whose MSG is the CEF record.
pub fn event_message(header: &Header, event: &AuditEvent) -> String {
    syslog::message(header, event, &record(event))
}

fn unix_millis(timestamp: &str) -> i128 {
    time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_extension_escape_differently() {
        assert_eq!(escape_header(r"a|b\c=d"), r"a\|b\\c=d");
        assert_eq!(escape_extension("a|b\\c=d\ne"), r"a|b\\c\=d\ne");
    }

    #[test]
    fn a_hostile_tool_name_cannot_forge_fields() {
        let mut event = super::super::tests::event(1);
        event.tool_name = Some(r"evil|10|x act=allow \".into());
        event.policy_result = Some("deny".into());
        let record = record(&event);
        let header_end = nth_unescaped_pipe(&record, 7).expect("seven header separators");
        let header = &record[..header_end];
        assert!(
            header.contains(r"tool_call evil\|10\|x act=allow \\"),
            "{header}"
        );
        let extension = &record[header_end + 1..];
        assert!(
            extension.contains(r"cs2=evil|10|x act\=allow \\"),
            "{extension}"
        );
        // The only real `act=` is the policy result.
        assert_eq!(
            extension.matches(" act=").count() + usize::from(extension.starts_with("act=")),
            1
        );
        assert!(extension.contains(" act=deny"));
        assert!(extension.contains(&format!("externalId={}", event.event_hash)));
        assert!(record.starts_with("CEF:0|toolgate|toolgate|"));
    }

    /// The byte offset of the `n`th `|` that is not escaped.
    fn nth_unescaped_pipe(s: &str, n: usize) -> Option<usize> {
        let mut seen = 0;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '|' {
                seen += 1;
                if seen == n {
                    return Some(i);
                }
            }
        }
        None
    }
}
