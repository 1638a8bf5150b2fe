-- Agent runs: one row per run an agent started with `POST /api/v1/runs`, finished by the same agent, or failed
-- with `timed out` by whichever instance first sees its deadline pass.
--
-- `tenant_id` and `agent_id` are stored as the audit log stores them (redacted of what DLP flags, capped; `''`
-- is no tenant); `owner` is SHA-256 hex of the agent's tenant and `sub` as its token names them, so a run is
-- only ever attached to, or finished by, the very agent that started it (two ids that redact alike stay two
-- owners). `objective`, `plan`, `artifacts` and `error` are stored with every DLP finding replaced by
-- `[REDACTED:<type>]`; `dlp_findings` (JSON array: type, severity, path, count) says what was found, never
-- the value. `plan` and `artifacts` are JSON text. `calls` is added to by every instance (deltas, about once a
-- second). Timestamps are RFC 3339 UTC with six fractional digits, compared as text.
CREATE TABLE agent_runs (
    run_id       TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    owner        TEXT NOT NULL,
    requester_id TEXT,
    objective    TEXT NOT NULL,
    plan         TEXT NOT NULL,
    artifacts    TEXT NOT NULL,
    error        TEXT,
    dlp_findings TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'canceled')),
    dry_run      BOOLEAN NOT NULL,
    calls        INTEGER NOT NULL DEFAULT 0 CHECK (calls >= 0),
    started_at   TEXT NOT NULL,
    deadline_at  TEXT NOT NULL,
    finished_at  TEXT,
    duration_ms  INTEGER
);

CREATE INDEX agent_runs_agent ON agent_runs (tenant_id, agent_id, started_at);
CREATE INDEX agent_runs_status ON agent_runs (status, started_at);
CREATE INDEX agent_runs_started ON agent_runs (started_at, run_id);
-- An agent's running runs are counted at each start (runs.max_running_per_agent).
CREATE INDEX agent_runs_owner ON agent_runs (owner) WHERE status = 'running';
-- The timeout task looks here several times a second: only the running runs, soonest deadline first.
CREATE INDEX agent_runs_deadline ON agent_runs (deadline_at) WHERE status = 'running';
