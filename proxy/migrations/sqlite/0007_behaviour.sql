-- Behaviour: alerts, per-agent baseline snapshots and pinned prompt hashes. Tenant and agent ids are stored as
-- the audit log stores them (redacted of what DLP flags, capped; `''` is no tenant or no agent); alert details,
-- tool names in snapshots and prompt hashes are redacted the same way before they are written.
CREATE TABLE alerts (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    tenant_id       TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    opened_at       TEXT NOT NULL,
    detail          TEXT NOT NULL,
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    resolved_at     TEXT,
    resolved_by     TEXT
);

-- One open alert per kind and agent, however many instances raise it at once.
CREATE UNIQUE INDEX alerts_one_open ON alerts (kind, tenant_id, agent_id) WHERE status = 'open';
CREATE INDEX alerts_opened ON alerts (opened_at, id);
CREATE INDEX alerts_status ON alerts (status, opened_at, id);

-- The last snapshot of each agent's baseline (JSON: rate and deny buckets, decayed tool counts by stored name,
-- target hashes), written every `behavior.snapshot_seconds` and read at start.
CREATE TABLE behaviour_baselines (
    tenant_id  TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    snapshot   TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);

-- The first prompt hash each agent declared; a different one opens `prompt_drift`. An admin re-pin deletes it.
CREATE TABLE prompt_pins (
    tenant_id   TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    pinned_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);
