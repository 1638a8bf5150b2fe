-- Tool definitions pinned against rug pulls: one row per tool an upstream listed, keyed by the upstream and the
-- tool name as stored (a name that holds a secret, or one longer than 256 bytes, is stored hashed).
-- Hashes are SHA-256 hex of the JCS of the tool object; `poisoning` is a JSON array of marker names.
CREATE TABLE tool_definitions (
    upstream     TEXT NOT NULL,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('new', 'pinned', 'changed')),
    pinned_hash  TEXT,
    current_hash TEXT NOT NULL,
    poisoning    TEXT NOT NULL DEFAULT '[]',
    first_seen   TEXT NOT NULL,
    last_seen    TEXT NOT NULL,
    approved_at  TEXT,
    PRIMARY KEY (upstream, name)
);
