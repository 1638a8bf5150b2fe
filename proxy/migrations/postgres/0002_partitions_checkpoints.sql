-- Daily range partitions of audit_events by a `ts timestamptz` column (a TimescaleDB hypertable with
-- compression instead when that extension is installed), signed checkpoints, the per-chain head used as a
-- compare-and-set guard by the writer, and the lookup index of the public verify endpoint.
--
-- `"timestamp"` stays TEXT: it is the exact string that was hashed. `ts` is the same instant as timestamptz,
-- written by the writer from the same string, and exists only to partition and prune by.
-- A partitioned table's unique constraints must contain the partition key, so `(chain_id, seq)` is no longer
-- unique by itself; the writer's compare-and-set on audit_chains keeps seqs unique instead.

ALTER TABLE audit_events RENAME TO audit_events_unpartitioned;
ALTER TABLE audit_events_unpartitioned RENAME CONSTRAINT audit_events_pkey TO audit_events_unpartitioned_pkey;
ALTER TABLE audit_events_unpartitioned RENAME CONSTRAINT audit_events_chain_id_seq_key TO audit_events_unpartitioned_chain_seq;
DROP INDEX audit_events_timestamp;
DROP INDEX audit_events_agent_timestamp;
DROP INDEX audit_events_policy_result_timestamp;

DO $migration$
DECLARE
    columns text := $cols$
        id               TEXT        NOT NULL,
        chain_id         TEXT        NOT NULL,
        seq              BIGINT      NOT NULL,
        "timestamp"      TEXT        NOT NULL,
        event_type       TEXT        NOT NULL,
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
        dlp_findings     JSONB       NOT NULL,
        dlp_action       TEXT,
        response_code    BIGINT,
        latency_us       BIGINT,
        error            TEXT,
        trace_id         TEXT,
        extra            JSONB       NOT NULL,
        previous_hash    TEXT        NOT NULL,
        event_hash       TEXT        NOT NULL,
        ts               TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (id, ts),
        UNIQUE (chain_id, seq, ts)
    $cols$;
    day date;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE format('CREATE TABLE audit_events (%s)', columns);
        EXECUTE $ts$SELECT create_hypertable('audit_events', 'ts', chunk_time_interval => INTERVAL '1 day')$ts$;
        EXECUTE $ts$ALTER TABLE audit_events SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'chain_id', timescaledb.compress_orderby = 'seq')$ts$;
        EXECUTE $ts$SELECT add_compression_policy('audit_events', INTERVAL '7 days')$ts$;
    ELSE
        EXECUTE format('CREATE TABLE audit_events (%s) PARTITION BY RANGE (ts)', columns);
        FOR day IN
            SELECT DISTINCT (("timestamp")::timestamptz AT TIME ZONE 'UTC')::date FROM audit_events_unpartitioned
        LOOP
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
                'audit_events_' || to_char(day, 'YYYYMMDD'),
                to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
                to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
        END LOOP;
    END IF;
END
$migration$;

INSERT INTO audit_events SELECT *, ("timestamp")::timestamptz FROM audit_events_unpartitioned;
DROP TABLE audit_events_unpartitioned;

CREATE INDEX audit_events_timestamp ON audit_events ("timestamp");
CREATE INDEX audit_events_agent_timestamp ON audit_events (agent_id, "timestamp");
CREATE INDEX audit_events_policy_result_timestamp ON audit_events (policy_result, "timestamp");
CREATE INDEX audit_events_event_hash ON audit_events (event_hash);
CREATE INDEX audit_events_id ON audit_events (id);

CREATE TABLE audit_checkpoints (
    chain_id   TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    -- The JCS text of the checkpoint object: exactly the bytes the signature covers.
    body       TEXT   NOT NULL,
    public_key TEXT   NOT NULL,
    signature  TEXT   NOT NULL,
    PRIMARY KEY (chain_id, kind, seq)
);

CREATE TABLE audit_chains (
    chain_id  TEXT   NOT NULL PRIMARY KEY,
    head_seq  BIGINT NOT NULL,
    head_hash TEXT   NOT NULL
);
