//! Redaction: the scan's walk over a mutable value, replacing each byte range a detector claimed with
//! `[REDACTED:<type>]`, renaming keys that hold a finding, and replacing numbers that do.
//!
//! It reuses the claims the detectors leave behind, so what is replaced is exactly what was found, and it
//! returns the same findings as [`Scanner::scan`] on the value before redaction.

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::financial::{card_candidate, scan_number};
use super::kinds::{Kind, Tally};
use super::text::Claims;
use super::{push_escaped, push_index, sort_findings, Finding, Scanner, REDACTED_SEGMENT};

/// Rounds of re-checking a redacted string before it is replaced whole (see [`redact_text`]).
const CHECK_ROUNDS: usize = 2;

const MARKER_PREFIX: &str = "[REDACTED:";

/// Whether a key is one redaction renamed (`[REDACTED:github_token]`, `[REDACTED:private_key]#2`). Such a
/// key names a redaction, not a secret: its value is not judged by the key's name, or a second pass would
/// find a "token" under `[REDACTED:github_token]` that the first did not.
pub(super) fn is_marker_name(name: &[u8]) -> bool {
    name.starts_with(MARKER_PREFIX.as_bytes())
}

/// What a redacted range, key or number becomes: `[REDACTED:<type>]`.
pub(super) fn marker(kind: Kind) -> String {
    let mut m = String::with_capacity(MARKER_PREFIX.len() + kind.name().len() + 1);
    push_marker(&mut m, kind);
    m
}

fn push_marker(out: &mut String, kind: Kind) {
    out.push_str(MARKER_PREFIX);
    out.push_str(kind.name());
    out.push(']');
}

/// A JSON value still to visit, as in the scan, but mutable.
struct Frame<'a> {
    value: &'a mut Value,
    parent_len: usize,
    segment: Segment<'a>,
    key: Option<KeyName<'a>>,
}

enum Segment<'a> {
    Root,
    Index(usize),
    Key(&'a str),
    /// A key that held findings (already renamed in the output); its tally joins the value's findings, as
    /// the scan reports them at the same path.
    RedactedKey(Tally),
}

/// The nearest enclosing object key, which detectors read as context (`"password": "..."`).
#[derive(Clone)]
struct KeyName<'a> {
    /// As the input named it: the context the scan judged the value by.
    scanned: Cow<'a, str>,
    /// As the output names it: the context any later scan of the redacted value will see.
    written: &'a str,
}

pub(super) fn redact(scanner: &Scanner, root: &mut Value) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut path = String::new();
    let mut claims = Claims::default();
    let mut stack = vec![Frame {
        value: root,
        parent_len: 0,
        segment: Segment::Root,
        key: None,
    }];
    while let Some(frame) = stack.pop() {
        path.truncate(frame.parent_len);
        let mut tally = Tally::default();
        match frame.segment {
            Segment::Root => {}
            Segment::Index(i) => push_index(&mut path, i),
            Segment::Key(k) => {
                path.push('/');
                push_escaped(&mut path, k);
            }
            Segment::RedactedKey(key_tally) => {
                path.push('/');
                path.push_str(REDACTED_SEGMENT);
                tally = key_tally;
            }
        }
        let before = tally.total();
        // Card numbers sent as JSON numbers are found by the scan too; a redacted one becomes a string.
        if let Value::Number(n) = &*frame.value {
            if let Some(u) = card_candidate(n) {
                scan_number(u, &mut tally);
                if tally.total() > before {
                    *frame.value = Value::String(marker(Kind::CreditCard));
                }
            }
        } else {
            match frame.value {
                Value::String(s) => {
                    let key = frame.key.as_ref();
                    let scanned = key.map(|k| &*k.scanned);
                    scanner.scan_text(s, scanned, &mut tally, &mut claims);
                    if tally.total() > before {
                        let fallback = tally.worst().unwrap_or(Kind::GenericSecret);
                        let written = key.map(|k| k.written);
                        *s = redact_text(scanner, s, written, &mut claims, fallback);
                    }
                }
                Value::Array(items) => {
                    let len = path.len();
                    for (i, item) in items.iter_mut().enumerate().rev() {
                        stack.push(Frame {
                            value: item,
                            parent_len: len,
                            segment: Segment::Index(i),
                            key: frame.key.clone(),
                        });
                    }
                }
                Value::Object(map) => {
                    push_members(scanner, map, path.len(), &mut claims, &mut stack);
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        if tally.total() > 0 {
            tally.emit(&path, &mut out);
        }
    }
    scanner.seal_pointers(&mut out);
    sort_findings(&mut out);
    out
}

/// Renames the object's keys that hold a finding, then queues its members.
fn push_members<'a>(
    scanner: &Scanner,
    map: &'a mut Map<String, Value>,
    parent_len: usize,
    claims: &mut Claims,
    stack: &mut Vec<Frame<'a>>,
) {
    let mut secret_keys: Vec<(usize, Tally)> = Vec::new();
    for (i, k) in map.keys().enumerate() {
        // The scan looks at keys of six bytes or more; shorter ones cannot hold a finding.
        if k.len() >= 6 {
            let mut t = Tally::default();
            scanner.scan_text(k, None, &mut t, claims);
            if t.total() > 0 {
                secret_keys.push((i, t));
            }
        }
    }
    if secret_keys.is_empty() {
        for (k, v) in map.iter_mut() {
            stack.push(Frame {
                value: v,
                parent_len,
                segment: Segment::Key(k),
                key: Some(KeyName {
                    scanned: Cow::Borrowed(k),
                    written: k,
                }),
            });
        }
        return;
    }
    // New name -> (the original key, its tally).
    let mut renamed: HashMap<String, (String, Tally)> = HashMap::with_capacity(secret_keys.len());
    let mut new_names: Vec<(usize, String)> = Vec::with_capacity(secret_keys.len());
    for (i, t) in secret_keys {
        let base = marker(t.worst().unwrap_or(Kind::GenericSecret));
        let mut name = base.clone();
        let mut n = 2u32;
        // A rename must not overwrite a member: neither one the object has nor one just renamed.
        while map.contains_key(&name) || renamed.contains_key(&name) {
            name = format!("{base}#{n}");
            n += 1;
        }
        renamed.insert(name.clone(), (String::new(), t));
        new_names.push((i, name));
    }
    let old = std::mem::take(map);
    let mut next = new_names.into_iter().peekable();
    for (i, (k, v)) in old.into_iter().enumerate() {
        match next.next_if(|(j, _)| *j == i) {
            Some((_, name)) => {
                if let Some(entry) = renamed.get_mut(&name) {
                    entry.0 = k;
                }
                map.insert(name, v);
            }
            None => {
                map.insert(k, v);
            }
        }
    }
    for (k, v) in map.iter_mut() {
        let (segment, scanned) = match renamed.remove(k.as_str()) {
            Some((original, t)) => (Segment::RedactedKey(t), Cow::Owned(original)),
            None => (Segment::Key(k), Cow::Borrowed(k.as_str())),
        };
        stack.push(Frame {
            value: v,
            parent_len,
            segment,
            key: Some(KeyName {
                scanned,
                written: k,
            }),
        });
    }
}

/// The string with every claimed range replaced by its marker. The result is scanned again as a later
/// scan would see it (under the key as written): text glued to a secret, hidden from the generic detector
/// by the secret's claim, can look like a token once the secret is gone; it is redacted too. A string that
/// still holds findings after [`CHECK_ROUNDS`] more rounds is replaced whole, so redacting twice changes nothing.
fn redact_text(
    scanner: &Scanner,
    s: &str,
    written_key: Option<&str>,
    claims: &mut Claims,
    fallback: Kind,
) -> String {
    let mut text = replace_claims(s, claims);
    for _ in 0..=CHECK_ROUNDS {
        let mut check = Tally::default();
        scanner.scan_text(&text, written_key, &mut check, claims);
        if check.total() == 0 {
            return text;
        }
        text = replace_claims(&text, claims);
    }
    marker(fallback)
}

fn replace_claims(s: &str, claims: &Claims) -> String {
    let mut ranges: Vec<(usize, usize, Kind)> = claims.secrets().collect();
    ranges.sort_unstable_by_key(|&(start, end, _)| (start, std::cmp::Reverse(end)));
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    for (start, end, kind) in ranges {
        // Detectors match ASCII, so ranges fall on character boundaries; widening keeps slicing safe anyway.
        let start = floor_boundary(s, start);
        let end = ceil_boundary(s, end);
        if start < pos {
            // Overlaps the range just replaced (a value found by its key's name covers its tokens).
            pos = pos.max(end);
            continue;
        }
        out.push_str(&s[pos..start]);
        push_marker(&mut out, kind);
        pos = end;
    }
    out.push_str(&s[pos.min(s.len())..]);
    out
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}
