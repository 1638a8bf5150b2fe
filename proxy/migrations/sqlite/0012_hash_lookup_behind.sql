-- The public verify endpoint finds an event by its hash. Migration 0011 indexed `(seq / 65536, first 8 hex digits
-- of the hash)`: bounded, but still a random place in the current epoch's 330 or so leaf pages for every row, so
-- each commit of N events dirtied about N pages of that index alone (at saturation 44 % of the bytes written per
-- commit, measured: 280 KB against 156 KB without it).
--
-- The same key now lives in a table of its own that the audit writer fills behind the log, a few thousand events
-- at a time and in key order (each leaf of the epoch is then written once per batch, not once per event), and
-- when the log goes quiet. `audit_hash_cursor` says, per chain, through which seq the table is filled; a lookup
-- probes the table epoch by epoch and reads the events past the cursor directly (`Dialect::find_hash`).
CREATE TABLE audit_hash_lookup (
    epoch  INTEGER NOT NULL, -- seq / 65536
    prefix TEXT    NOT NULL, -- substr(event_hash, 1, 8)
    seq    INTEGER NOT NULL,
    PRIMARY KEY (epoch, prefix, seq)
) WITHOUT ROWID;

CREATE TABLE audit_hash_cursor (
    chain_id TEXT    NOT NULL PRIMARY KEY,
    covered  INTEGER NOT NULL -- every event of the chain up to this seq has its entry
);

-- Every chain with stored events has its head row (the lookup reaches events through it); a log written
-- before heads were stored may lack one. SQLite takes `event_hash` from the row of the greatest seq.
INSERT OR IGNORE INTO audit_chains (chain_id, head_seq, head_hash)
SELECT chain_id, MAX(seq), event_hash FROM audit_events GROUP BY chain_id;

INSERT OR IGNORE INTO audit_hash_lookup (epoch, prefix, seq)
SELECT seq / 65536, substr(event_hash, 1, 8), seq FROM audit_events ORDER BY 1, 2, 3;

INSERT INTO audit_hash_cursor (chain_id, covered) SELECT chain_id, head_seq FROM audit_chains;

DROP INDEX audit_events_hash_lookup;
