-- MCP session bindings (`Mcp-Session-Id` -> agent, upstream, protocol). SQLite is one instance's file: its
-- sessions are served from memory and this table stays empty; it exists so that both databases have one schema
-- and the store's statements run (and are tested) on either. See the PostgreSQL migration for the columns.
CREATE TABLE mcp_sessions (
    upstream         TEXT NOT NULL,
    id_hash          TEXT NOT NULL,
    agent_hash       TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    protocol_version TEXT,
    started_at       TEXT NOT NULL,
    last_used_ms     INTEGER NOT NULL,
    opened_by        TEXT NOT NULL,
    PRIMARY KEY (upstream, id_hash)
);

CREATE INDEX mcp_sessions_owner ON mcp_sessions (agent_hash, last_used_ms);
CREATE INDEX mcp_sessions_agent ON mcp_sessions (tenant_id, agent_id);
CREATE INDEX mcp_sessions_last_used ON mcp_sessions (last_used_ms);
