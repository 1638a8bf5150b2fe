-- The audit log: one row per event, one column per contract field (INTERFACE.md, "Audit event").
-- `timestamp` is the exact RFC 3339 string that was hashed; JSON columns hold JSON text.
CREATE TABLE audit_events (
    id               TEXT    NOT NULL PRIMARY KEY,
    chain_id         TEXT    NOT NULL,
    seq              INTEGER NOT NULL,
    "timestamp"      TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    agent_id         TEXT,
    session_id       TEXT,
    tenant_id        TEXT,
    workflow_id      TEXT,
    requester_id     TEXT,
    tool_name        TEXT,
    mcp_server       TEXT,
    action           TEXT,
    target           TEXT,
    input_hash       TEXT,
    policy_result    TEXT,
    policy_id        TEXT,
    policy_reason    TEXT,
    behavioral_score TEXT,
    dlp_findings     TEXT    NOT NULL,
    dlp_action       TEXT,
    response_code    INTEGER,
    latency_us       INTEGER,
    error            TEXT,
    trace_id         TEXT,
    extra            TEXT    NOT NULL,
    previous_hash    TEXT    NOT NULL,
    event_hash       TEXT    NOT NULL,
    UNIQUE (chain_id, seq)
);

CREATE INDEX audit_events_timestamp ON audit_events ("timestamp");
CREATE INDEX audit_events_agent_timestamp ON audit_events (agent_id, "timestamp");
CREATE INDEX audit_events_policy_result_timestamp ON audit_events (policy_result, "timestamp");
