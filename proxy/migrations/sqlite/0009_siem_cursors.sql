-- SIEM delivery: each sink's position in each chain (the highest seq it acknowledged), and the lease that lets
-- exactly one instance deliver to a sink at a time. A cursor only moves after its sink acknowledged, and only
-- while its mover holds the sink's lease.
CREATE TABLE siem_cursors (
    sink          TEXT NOT NULL,
    chain_id      TEXT NOT NULL,
    delivered_seq INTEGER NOT NULL DEFAULT 0 CHECK (delivered_seq >= 0),
    delivered     INTEGER NOT NULL DEFAULT 0 CHECK (delivered >= 0),
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (sink, chain_id)
);

-- One row per sink: who delivers (an instance's chain id) until when (Unix milliseconds).
CREATE TABLE siem_leases (
    sink       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
