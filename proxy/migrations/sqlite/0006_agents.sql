-- Agents seen, and the kill switch: one row per agent (tenant and `sub`), keyed by the tenant and agent id as the
-- audit log stores them (redacted of what DLP flags, capped at 1024 bytes; `''` is no tenant). Counts are added
-- to by every instance sharing the database (upserts of deltas, about once a second); `disabled` is read back by
-- every instance at least every 500 ms.
CREATE TABLE agents (
    tenant_id   TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    calls       INTEGER NOT NULL DEFAULT 0 CHECK (calls >= 0),
    denials     INTEGER NOT NULL DEFAULT 0 CHECK (denials >= 0),
    escalations INTEGER NOT NULL DEFAULT 0 CHECK (escalations >= 0),
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    disabled    BOOLEAN NOT NULL DEFAULT FALSE,
    disabled_at TEXT,
    disabled_by TEXT,
    PRIMARY KEY (tenant_id, agent_id)
);

-- The disabled set, read several times a second by every instance, stays small.
CREATE INDEX agents_disabled ON agents (tenant_id, agent_id) WHERE disabled;
CREATE INDEX agents_last_seen ON agents (last_seen, tenant_id, agent_id);
