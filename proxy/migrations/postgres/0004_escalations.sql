-- Escalated calls waiting for, or decided by, a reviewer: stored here so that a pending escalation survives a
-- restart and every instance sharing the database sees it and its answer.
--
-- Text fields hold what the audit log stores for the escalating event (redacted of what DLP flags, capped);
-- the call's arguments are never stored, only `fingerprint`: SHA-256 hex over the agent, upstream, method,
-- name and the exact hash of the arguments, which tells an agent's identical retry. `agent_key` is SHA-256 hex
-- of the agent's tenant and `sub`, the key of the per-agent cap (the stored `agent_id` may be redacted).
-- Timestamps are RFC 3339 UTC with six fractional digits, compared as text: the "C" collation orders them
-- byte by byte whatever the database's default collation is (so do the ids, the list's tie-break).
-- `delivered` turns true once, when a held call or a retry takes the decision (a conditional UPDATE).
CREATE TABLE escalations (
    id          TEXT COLLATE "C" PRIMARY KEY,
    agent_key   TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    created_at  TEXT COLLATE "C" NOT NULL,
    expires_at  TEXT COLLATE "C" NOT NULL,
    decided_at  TEXT COLLATE "C",
    decided_by  TEXT,
    delivered   BOOLEAN NOT NULL DEFAULT FALSE,
    agent_id    TEXT NOT NULL,
    tenant_id   TEXT,
    tool_name   TEXT NOT NULL,
    mcp_server  TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    policy_id   TEXT NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX escalations_fingerprint ON escalations (fingerprint, status);
CREATE INDEX escalations_agent_status ON escalations (agent_key, status);
CREATE INDEX escalations_status_expires ON escalations (status, expires_at);
CREATE INDEX escalations_created ON escalations (created_at, id);
