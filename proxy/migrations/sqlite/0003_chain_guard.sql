-- The database itself keeps each chain linked: a row is accepted only when it extends its chain's stored head
-- (seq one past it, previous_hash equal to its hash), and the head then moves to that row. The writer inserts
-- a whole batch in one statement, in seq order, without a separate compare-and-set (one round trip per
-- commit); a second writer on the same chain, or rows out of order, abort the statement and nothing of it is
-- stored. Someone with write access to the file can drop these triggers: they guard against mistakes, and
-- `toolgate audit verify` remains the proof against tampering.
CREATE TRIGGER audit_events_extend_chain
BEFORE INSERT ON audit_events
FOR EACH ROW
WHEN NOT EXISTS (
    SELECT 1 FROM audit_chains
    WHERE chain_id = NEW.chain_id AND head_seq = NEW.seq - 1 AND head_hash = NEW.previous_hash
)
BEGIN
    SELECT RAISE(ABORT, 'audit row does not extend the stored head of its chain: another writer appends to this chain');
END;

CREATE TRIGGER audit_events_move_head
AFTER INSERT ON audit_events
FOR EACH ROW
BEGIN
    UPDATE audit_chains SET head_seq = NEW.seq, head_hash = NEW.event_hash WHERE chain_id = NEW.chain_id;
END;
