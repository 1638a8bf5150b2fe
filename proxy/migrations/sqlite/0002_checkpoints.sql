-- Signed checkpoints (docs/audit-format.md, "Checkpoints"), the per-chain head used as a compare-and-set guard
-- by the writer, and the lookup index of the public verify endpoint.
CREATE TABLE audit_checkpoints (
    chain_id   TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    -- The JCS text of the checkpoint object: exactly the bytes the signature covers.
    body       TEXT    NOT NULL,
    public_key TEXT    NOT NULL,
    signature  TEXT    NOT NULL,
    PRIMARY KEY (chain_id, kind, seq)
);

CREATE TABLE audit_chains (
    chain_id  TEXT    NOT NULL PRIMARY KEY,
    head_seq  INTEGER NOT NULL,
    head_hash TEXT    NOT NULL
);

CREATE INDEX audit_events_event_hash ON audit_events (event_hash);
