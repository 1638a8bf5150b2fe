//! Query strings and path segments of admin requests, percent-decoded.

use std::collections::HashMap;

pub(super) fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// A query-string key or value: `+` is a space.
fn percent_decode(s: &str) -> Option<String> {
    decode(s, true)
}

/// A path segment: `+` is itself (a tool name may hold one).
pub(super) fn percent_decode_segment(s: &str) -> Option<String> {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        let q = parse_query("start=2026-11-22T20%3A00%3A00Z&agent_id=a+b&flag");
        assert_eq!(q["start"], "2026-11-22T20:00:00Z");
        assert_eq!(q["agent_id"], "a b");
        assert_eq!(q["flag"], "");
        assert!(parse_query("x=%zz").is_empty());
        assert_eq!(percent_decode_segment("a+b%2Fc").as_deref(), Some("a+b/c"));
    }
}
