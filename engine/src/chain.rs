//! The audit event, its SHA-256 hash chain, and verification over any iterator of events.
//!
//! See `docs/audit-format.md` for the exact hashing rules an outside verifier follows.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical::{hex_lower, write_i64, write_jcs, write_string};

/// The hash that stands before the first event of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit event, exactly the fields of the contract (docs/audit-format.md).
///
/// Every field but the two hashes is hashed; an absent value is hashed as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    pub chain_id: String,
    pub seq: i64,
    /// RFC 3339 UTC with microseconds, e.g. `2026-11-22T20:15:00.123456Z`.
    pub timestamp: String,
    pub event_type: String,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub tenant_id: Option<String>,
    pub workflow_id: Option<String>,
    pub requester_id: Option<String>,
    pub tool_name: Option<String>,
    pub mcp_server: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub input_hash: Option<String>,
    pub policy_result: Option<String>,
    pub policy_id: Option<String>,
    pub policy_reason: Option<String>,
    /// A decimal string (hashed values hold no floating-point numbers).
    pub behavioral_score: Option<String>,
    /// A JSON array of findings (`[]` when none).
    pub dlp_findings: serde_json::Value,
    pub dlp_action: Option<String>,
    pub response_code: Option<i64>,
    pub latency_us: Option<i64>,
    pub error: Option<String>,
    pub trace_id: Option<String>,
    /// A JSON object with whatever else the event carries (`{}` when nothing).
    pub extra: serde_json::Value,
    pub previous_hash: String,
    pub event_hash: String,
}

impl AuditEvent {
    /// The contract's fields, in the contract's order: the columns of `audit_events` and of every export.
    pub const FIELDS: [&'static str; 28] = [
        "id",
        "chain_id",
        "seq",
        "timestamp",
        "event_type",
        "agent_id",
        "session_id",
        "tenant_id",
        "workflow_id",
        "requester_id",
        "tool_name",
        "mcp_server",
        "action",
        "target",
        "input_hash",
        "policy_result",
        "policy_id",
        "policy_reason",
        "behavioral_score",
        "dlp_findings",
        "dlp_action",
        "response_code",
        "latency_us",
        "error",
        "trace_id",
        "extra",
        "previous_hash",
        "event_hash",
    ];

    /// The object that is hashed: every field but `previous_hash` and `event_hash`, an absent value as `null`.
    pub fn hashed_object(&self) -> Value {
        fn text(value: &str) -> Value {
            Value::String(value.to_owned())
        }
        fn opt_text(value: &Option<String>) -> Value {
            value.as_deref().map_or(Value::Null, text)
        }
        fn opt_int(value: Option<i64>) -> Value {
            value.map_or(Value::Null, Value::from)
        }
        let mut object = Map::with_capacity(26);
        object.insert("id".into(), text(&self.id));
        object.insert("chain_id".into(), text(&self.chain_id));
        object.insert("seq".into(), Value::from(self.seq));
        object.insert("timestamp".into(), text(&self.timestamp));
        object.insert("event_type".into(), text(&self.event_type));
        object.insert("agent_id".into(), opt_text(&self.agent_id));
        object.insert("session_id".into(), opt_text(&self.session_id));
        object.insert("tenant_id".into(), opt_text(&self.tenant_id));
        object.insert("workflow_id".into(), opt_text(&self.workflow_id));
        object.insert("requester_id".into(), opt_text(&self.requester_id));
        object.insert("tool_name".into(), opt_text(&self.tool_name));
        object.insert("mcp_server".into(), opt_text(&self.mcp_server));
        object.insert("action".into(), opt_text(&self.action));
        object.insert("target".into(), opt_text(&self.target));
        object.insert("input_hash".into(), opt_text(&self.input_hash));
        object.insert("policy_result".into(), opt_text(&self.policy_result));
        object.insert("policy_id".into(), opt_text(&self.policy_id));
        object.insert("policy_reason".into(), opt_text(&self.policy_reason));
        object.insert("behavioral_score".into(), opt_text(&self.behavioral_score));
        object.insert("dlp_findings".into(), self.dlp_findings.clone());
        object.insert("dlp_action".into(), opt_text(&self.dlp_action));
        object.insert("response_code".into(), opt_int(self.response_code));
        object.insert("latency_us".into(), opt_int(self.latency_us));
        object.insert("error".into(), opt_text(&self.error));
        object.insert("trace_id".into(), opt_text(&self.trace_id));
        object.insert("extra".into(), self.extra.clone());
        Value::Object(object)
    }

    /// Lowercase hex SHA-256 of `JCS(hashed_object())` followed by the ASCII bytes of `self.previous_hash`.
    pub fn compute_hash(&self) -> String {
        thread_local! {
            // One buffer per thread, reused: sealing and verifying hash every event of a chain.
            static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
        }
        let hex = BUFFER.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => self.hash_hex(&mut buffer),
            Err(_) => self.hash_hex(&mut Vec::new()),
        });
        hex.iter().copied().map(char::from).collect()
    }

    /// [`AuditEvent::compute_hash`] as ASCII hex bytes, with the JCS written into `buffer` (cleared first).
    fn hash_hex(&self, buffer: &mut Vec<u8>) -> [u8; 64] {
        buffer.clear();
        self.write_hashed_jcs(buffer);
        let mut hasher = Sha256::new();
        hasher.update(&buffer[..]);
        hasher.update(self.previous_hash.as_bytes());
        hex_lower(&hasher.finalize())
    }

    /// Appends `JCS(hashed_object())` straight from the fields. The key set is fixed and ASCII, so its RFC 8785
    /// order (UTF-16 code units) is byte order, written out once below; `hashed_object` stays the definition
    /// and a differential test holds the two equal.
    fn write_hashed_jcs(&self, out: &mut Vec<u8>) {
        fn text(key: &[u8], value: &str, out: &mut Vec<u8>) {
            out.extend_from_slice(key);
            write_string(value, out);
        }
        fn opt_text(key: &[u8], value: &Option<String>, out: &mut Vec<u8>) {
            out.extend_from_slice(key);
            match value {
                Some(value) => write_string(value, out),
                None => out.extend_from_slice(b"null"),
            }
        }
        fn opt_int(key: &[u8], value: Option<i64>, out: &mut Vec<u8>) {
            out.extend_from_slice(key);
            match value {
                Some(value) => write_i64(value, out),
                None => out.extend_from_slice(b"null"),
            }
        }
        opt_text(b"{\"action\":", &self.action, out);
        opt_text(b",\"agent_id\":", &self.agent_id, out);
        opt_text(b",\"behavioral_score\":", &self.behavioral_score, out);
        text(b",\"chain_id\":", &self.chain_id, out);
        opt_text(b",\"dlp_action\":", &self.dlp_action, out);
        out.extend_from_slice(b",\"dlp_findings\":");
        write_jcs(&self.dlp_findings, out);
        opt_text(b",\"error\":", &self.error, out);
        text(b",\"event_type\":", &self.event_type, out);
        out.extend_from_slice(b",\"extra\":");
        write_jcs(&self.extra, out);
        text(b",\"id\":", &self.id, out);
        opt_text(b",\"input_hash\":", &self.input_hash, out);
        opt_int(b",\"latency_us\":", self.latency_us, out);
        opt_text(b",\"mcp_server\":", &self.mcp_server, out);
        opt_text(b",\"policy_id\":", &self.policy_id, out);
        opt_text(b",\"policy_reason\":", &self.policy_reason, out);
        opt_text(b",\"policy_result\":", &self.policy_result, out);
        opt_text(b",\"requester_id\":", &self.requester_id, out);
        opt_int(b",\"response_code\":", self.response_code, out);
        out.extend_from_slice(b",\"seq\":");
        write_i64(self.seq, out);
        opt_text(b",\"session_id\":", &self.session_id, out);
        opt_text(b",\"target\":", &self.target, out);
        opt_text(b",\"tenant_id\":", &self.tenant_id, out);
        text(b",\"timestamp\":", &self.timestamp, out);
        opt_text(b",\"tool_name\":", &self.tool_name, out);
        opt_text(b",\"trace_id\":", &self.trace_id, out);
        opt_text(b",\"workflow_id\":", &self.workflow_id, out);
        out.push(b'}');
    }
}

/// Everything an event carries before the writer assigns its place in the chain.
///
/// `dlp_findings` and `extra` left as `null` (the `Default`) are sealed as `[]` and `{}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventDraft {
    pub id: String,
    /// RFC 3339 UTC with microseconds, e.g. `2026-11-22T20:15:00.123456Z`.
    pub timestamp: String,
    pub event_type: String,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub tenant_id: Option<String>,
    pub workflow_id: Option<String>,
    pub requester_id: Option<String>,
    pub tool_name: Option<String>,
    pub mcp_server: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub input_hash: Option<String>,
    pub policy_result: Option<String>,
    pub policy_id: Option<String>,
    pub policy_reason: Option<String>,
    /// A decimal string, never a float: hashed values hold no floating-point numbers.
    pub behavioral_score: Option<String>,
    /// A JSON array of findings; must hold no floating-point numbers.
    pub dlp_findings: Value,
    pub dlp_action: Option<String>,
    pub response_code: Option<i64>,
    pub latency_us: Option<i64>,
    pub error: Option<String>,
    pub trace_id: Option<String>,
    /// A JSON object; must hold no floating-point numbers.
    pub extra: Value,
}

/// The head of one chain; owned by the single audit writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub chain_id: String,
    /// The last `seq` of the chain; 0 when the chain is empty.
    pub seq: i64,
    /// The last `event_hash` of the chain; [`GENESIS_HASH`] when the chain is empty.
    pub hash: String,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn genesis(chain_id: impl Into<String>) -> ChainHead {
        ChainHead {
            chain_id: chain_id.into(),
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }

    /// The head of a chain whose last event is `event` (as stored: its hash is taken, not recomputed).
    pub fn after(event: &AuditEvent) -> ChainHead {
        ChainHead {
            chain_id: event.chain_id.clone(),
            seq: event.seq,
            hash: event.event_hash.clone(),
        }
    }

    /// Places `draft` after the head: `seq` = head seq + 1, `previous_hash` = head hash; computes
    /// `event_hash` and advances the head to the new event.
    pub fn seal(&mut self, draft: EventDraft) -> AuditEvent {
        let EventDraft {
            id,
            timestamp,
            event_type,
            agent_id,
            session_id,
            tenant_id,
            workflow_id,
            requester_id,
            tool_name,
            mcp_server,
            action,
            target,
            input_hash,
            policy_result,
            policy_id,
            policy_reason,
            behavioral_score,
            dlp_findings,
            dlp_action,
            response_code,
            latency_us,
            error,
            trace_id,
            extra,
        } = draft;
        let mut event = AuditEvent {
            id,
            chain_id: self.chain_id.clone(),
            // A head at i64::MAX can only come from a tampered store: saturate (verification then flags the
            // repeated seq) rather than panic in the writer.
            seq: self.seq.saturating_add(1),
            timestamp,
            event_type,
            agent_id,
            session_id,
            tenant_id,
            workflow_id,
            requester_id,
            tool_name,
            mcp_server,
            action,
            target,
            input_hash,
            policy_result,
            policy_id,
            policy_reason,
            behavioral_score,
            dlp_findings: if dlp_findings.is_null() {
                Value::Array(Vec::new())
            } else {
                dlp_findings
            },
            dlp_action,
            response_code,
            latency_us,
            error,
            trace_id,
            extra: if extra.is_null() {
                Value::Object(Map::new())
            } else {
                extra
            },
            previous_hash: self.hash.clone(),
            event_hash: String::new(),
        };
        event.event_hash = event.compute_hash();
        self.seq = event.seq;
        self.hash.clone_from(&event.event_hash);
        event
    }
}

/// The first event that failed verification, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BadRow {
    pub id: String,
    pub chain_id: String,
    pub seq: i64,
    pub reason: String,
}

/// The outcome of a verification; the proxy adds `duration_ms`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VerifyReport {
    /// Every event examined, including those after the first bad row.
    pub events_verified: u64,
    pub chain_intact: bool,
    pub first_bad_row: Option<BadRow>,
}

/// Incremental verifier over events ordered by (chain_id, seq) OR interleaved chains ordered by seq within each
/// chain; keeps one expected head per chain_id.
///
/// After a bad row it resynchronises on that row as stored, so one tampered row is reported once and the rest
/// of the chain is still checked (and counted).
#[derive(Debug, Default)]
pub struct Verifier {
    heads: HashMap<String, ChainHead>,
    events_verified: u64,
    first_bad_row: Option<BadRow>,
    /// The JCS of the event being checked, reused so that verifying allocates nothing per intact event.
    buffer: Vec<u8>,
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// For a range that starts mid-chain: the head the next event of `chain_id` must follow.
    pub fn anchor(&mut self, head: ChainHead) {
        self.heads.insert(head.chain_id.clone(), head);
    }

    /// Checks one event against its own hash and its chain's expected head; records the first bad row.
    pub fn push(&mut self, event: &AuditEvent) {
        self.events_verified += 1;
        let recomputed = event.hash_hex(&mut self.buffer);
        let head = self.heads.get_mut(&event.chain_id);
        let problems = problems(event, &recomputed, head.as_deref());
        match head {
            Some(head) => {
                head.seq = event.seq;
                head.hash.clone_from(&event.event_hash);
            }
            None => {
                self.heads
                    .insert(event.chain_id.clone(), ChainHead::after(event));
            }
        }
        if !problems.is_empty() && self.first_bad_row.is_none() {
            self.first_bad_row = Some(BadRow {
                id: event.id.clone(),
                chain_id: event.chain_id.clone(),
                seq: event.seq,
                reason: problems.join("; "),
            });
        }
    }

    pub fn finish(self) -> VerifyReport {
        VerifyReport {
            events_verified: self.events_verified,
            chain_intact: self.first_bad_row.is_none(),
            first_bad_row: self.first_bad_row,
        }
    }
}

/// Verifies a whole set of events that starts every chain at its genesis.
pub fn verify<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> VerifyReport {
    let mut verifier = Verifier::new();
    for event in events {
        verifier.push(event);
    }
    verifier.finish()
}

/// Every reason `event` breaks the chain whose expected head is `head` (`None`: the chain starts here). The
/// texts are part of the verifier's output and match `tools/verify-audit.py` word for word.
fn problems(event: &AuditEvent, recomputed: &[u8; 64], head: Option<&ChainHead>) -> Vec<String> {
    let mut problems = Vec::new();
    if recomputed[..] != *event.event_hash.as_bytes() {
        problems.push(format!(
            "event_hash mismatch: stored {}, recomputed {} (a hashed field was changed)",
            event.event_hash,
            String::from_utf8_lossy(recomputed)
        ));
    }
    match head {
        None => {
            if event.seq != 1 {
                problems.push(format!(
                    "first event of the chain has seq {}, expected 1 (earlier rows missing, or a range that needs an anchor)",
                    event.seq
                ));
            }
            if event.previous_hash != GENESIS_HASH {
                problems.push(format!(
                    "previous_hash mismatch: expected the genesis hash, found {}",
                    event.previous_hash
                ));
            }
        }
        Some(head) => {
            // i128: a tampered seq may sit at i64::MAX.
            let expected = i128::from(head.seq) + 1;
            let found = i128::from(event.seq);
            if found > expected {
                problems.push(format!(
                    "seq gap: expected {expected}, found {found} ({} row(s) missing)",
                    found - expected
                ));
            } else if found < expected {
                problems.push(format!(
                    "seq out of order: expected {expected}, found {found} (duplicate, inserted or reordered row)"
                ));
            }
            if event.previous_hash != head.hash {
                if head.hash == GENESIS_HASH {
                    problems.push(format!(
                        "previous_hash mismatch: expected the genesis hash, found {}",
                        event.previous_hash
                    ));
                } else {
                    problems.push(format!(
                        "previous_hash mismatch: expected {} (event_hash of seq {}), found {}",
                        head.hash, head.seq, event.previous_hash
                    ));
                }
            }
        }
    }
    for (prefix, value) in [
        ("/dlp_findings", &event.dlp_findings),
        ("/extra", &event.extra),
    ] {
        if let Some(pointer) = first_float(value, prefix) {
            problems.push(format!(
                "floating-point number in hashed value at {pointer}"
            ));
        }
    }
    problems
}

/// The JSON pointer of the first non-integer number in `value` (members in code point order), if any.
fn first_float(value: &Value, prefix: &str) -> Option<String> {
    // Tokens are collected leaf first, so the walk allocates nothing unless it finds a float.
    fn walk(value: &Value) -> Option<Vec<String>> {
        match value {
            Value::Number(number) if !(number.is_i64() || number.is_u64()) => Some(Vec::new()),
            Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
                walk(item).map(|mut tokens| {
                    tokens.push(index.to_string());
                    tokens
                })
            }),
            Value::Object(members) => members.iter().find_map(|(key, item)| {
                walk(item).map(|mut tokens| {
                    tokens.push(key.replace('~', "~0").replace('/', "~1"));
                    tokens
                })
            }),
            _ => None,
        }
    }
    walk(value).map(|tokens| {
        let mut pointer = prefix.to_owned();
        for token in tokens.iter().rev() {
            pointer.push('/');
            pointer.push_str(token);
        }
        pointer
    })
}

#[cfg(test)]
mod tests;
