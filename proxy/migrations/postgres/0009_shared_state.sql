-- Shared state across instances: the MCP session bindings, and the notifications that keep every instance's
-- caches (sessions, disabled agents, escalations, tool pins, prompt pins) in step.
--
-- A session id is a bearer capability: it is never stored, only the SHA-256 (hex) of it (`id_hash`). The agent
-- that opened the session is kept twice: as the audit log stores it (`tenant_id`, `agent_id`: redacted, capped,
-- `''` for no tenant), which the kill switch and the per-agent cap match on, and as `agent_hash`, the SHA-256 of
-- its exact tenant and `sub`, which ownership is checked against (two agents whose ids redact alike never
-- share a session). `last_used_ms` (Unix milliseconds) is written at most every few seconds per session, not
-- per call; `opened_by` is the chain id of the instance that opened it.
CREATE TABLE mcp_sessions (
    upstream         TEXT NOT NULL,
    id_hash          TEXT NOT NULL,
    agent_hash       TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    protocol_version TEXT,
    started_at       TEXT NOT NULL,
    last_used_ms     BIGINT NOT NULL,
    opened_by        TEXT NOT NULL,
    PRIMARY KEY (upstream, id_hash)
);

CREATE INDEX mcp_sessions_owner ON mcp_sessions (agent_hash, last_used_ms);
CREATE INDEX mcp_sessions_agent ON mcp_sessions (tenant_id, agent_id);
CREATE INDEX mcp_sessions_last_used ON mcp_sessions (last_used_ms);

-- One channel, `toolgate_state`, for every change another instance must see. The payload is
-- `<schema> <kind> <key>`: the table's schema (instances of other schemas in the same database ignore it), what
-- changed, and a key that names no secret and no agent (a session's `id_hash`, an escalation's id, or `-`).
-- Sent by triggers, so a notification is delivered exactly when, and only if, its change commits.
CREATE FUNCTION toolgate_state_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('toolgate_state', TG_TABLE_SCHEMA || ' ' || TG_ARGV[0] || ' -');
    RETURN NULL;
END
$$;

CREATE FUNCTION toolgate_escalation_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('toolgate_state', TG_TABLE_SCHEMA || ' escalation ' || NEW.id);
    RETURN NULL;
END
$$;

CREATE FUNCTION toolgate_session_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('toolgate_state', TG_TABLE_SCHEMA || ' session_end ' || OLD.id_hash);
    RETURN NULL;
END
$$;

-- The kill switch: a disable or an enable (not the counts added every second).
CREATE TRIGGER agents_switched AFTER UPDATE OF disabled ON agents
    FOR EACH ROW WHEN (OLD.disabled IS DISTINCT FROM NEW.disabled)
    EXECUTE FUNCTION toolgate_state_changed('agents');

-- A new escalation (its expiry is now the soonest, perhaps) and every change of status (decided, expired).
CREATE TRIGGER escalations_opened AFTER INSERT ON escalations
    FOR EACH ROW EXECUTE FUNCTION toolgate_escalation_changed();
CREATE TRIGGER escalations_settled AFTER UPDATE OF status ON escalations
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION toolgate_escalation_changed();

-- A tool definition first stored, approved, changed or pinned again (not `last_seen` moving).
CREATE TRIGGER tool_definitions_added AFTER INSERT ON tool_definitions
    FOR EACH ROW EXECUTE FUNCTION toolgate_state_changed('tools');
CREATE TRIGGER tool_definitions_changed AFTER UPDATE ON tool_definitions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
        OR OLD.pinned_hash IS DISTINCT FROM NEW.pinned_hash
        OR OLD.current_hash IS DISTINCT FROM NEW.current_hash
        OR OLD.poisoning IS DISTINCT FROM NEW.poisoning)
    EXECUTE FUNCTION toolgate_state_changed('tools');

-- A prompt pinned, or removed for a re-pin.
CREATE TRIGGER prompt_pins_changed AFTER INSERT OR UPDATE OR DELETE ON prompt_pins
    FOR EACH ROW EXECUTE FUNCTION toolgate_state_changed('prompt_pins');

-- A session ended (DELETE, idle sweep, the per-agent cap, the kill switch), wherever it was opened.
CREATE TRIGGER mcp_sessions_ended AFTER DELETE ON mcp_sessions
    FOR EACH ROW EXECUTE FUNCTION toolgate_session_ended();
