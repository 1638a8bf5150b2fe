//! The audit event, its SHA-256 hash chain, and verification over any iterator of events.
//!
//! See `docs/audit-format.md` for the exact hashing rules an outside verifier follows.

use serde::{Deserialize, Serialize};

/// The hash that stands before the first event of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit event, exactly the fields of the contract (INTERFACE.md, "Audit event").
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
