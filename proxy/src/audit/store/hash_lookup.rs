//! SQLite: finding an event by its hash (the public verify endpoint) without an index the write-ahead commit has
//! to keep up to date.
//!
//! Any index keyed by a hash puts each new row at a random place. Migration 0011 bounded the damage (the key
//! starts with the epoch, `seq / 65536`), but a commit of N events still dirtied about N random leaves of the
//! current epoch: at saturation 44 % of the bytes each commit wrote. Migration 0012 moves the same key into a
//! table of its own, `audit_hash_lookup`, that the audit writer fills behind the log
//! ([`AuditStore::index_hashes`]: every [`INDEX_HASHES_EVERY`] events, when the log goes quiet, and when it
//! opens), in key order, so each leaf is written once per batch. `audit_hash_cursor` says through which seq each
//! chain is covered; a lookup ([`FIND_HASH_BEHIND`]) probes the table epoch by epoch and reads the few events
//! past the cursor directly. Every hit is checked against the whole hash on the event's row, so an entry can
//! never make a wrong or deleted event count as found.
//!
//! PostgreSQL keeps its index on `event_hash` (migration 0002): it is built per daily partition, so the B-tree a
//! commit writes into is bounded by a day's events and stays in shared buffers.

use super::{AuditStore, Backend};

/// How many events the writer commits before it copies their keys into `audit_hash_lookup`. Each batch writes
/// every leaf of the current epoch it touches once (an epoch's part of the table is ≈ 330 leaves of 4 KiB), so
/// the table costs ≈ 330 / 4096 of a page per event instead of one; the lookup's direct read past the cursor is
/// at most this many events of the writer's chain plus those committed since.
pub(crate) const INDEX_HASHES_EVERY: usize = 4096;

/// `(chain_id, seq, timestamp)` of the event whose `event_hash` is `$1`: the entries of `audit_hash_lookup`
/// with the hash's first 8 digits, one probe of its primary key per epoch from the oldest to the newest, then
/// every chain's events past its cursor (a range of the `(chain_id, seq)` index). `hash_lookup_uses_its_keys`
/// pins the plan.
pub(super) const FIND_HASH_BEHIND: &str = "WITH RECURSIVE epoch(n) AS (\
     SELECT (SELECT COALESCE(MIN(epoch), 0) FROM audit_hash_lookup) UNION ALL \
     SELECT n + 1 FROM epoch WHERE n < (SELECT COALESCE(MAX(epoch), 0) FROM audit_hash_lookup)), \
     found(chain_id, seq, ts) AS (\
     SELECT a.chain_id, a.seq, a.\"timestamp\" FROM epoch \
     CROSS JOIN audit_hash_lookup l CROSS JOIN audit_chains c CROSS JOIN audit_events a \
     WHERE l.epoch = epoch.n AND l.prefix = substr($1, 1, 8) \
     AND a.chain_id = c.chain_id AND a.seq = l.seq AND a.event_hash = $1 \
     UNION ALL \
     SELECT a.chain_id, a.seq, a.\"timestamp\" FROM audit_chains c \
     LEFT JOIN audit_hash_cursor h ON h.chain_id = c.chain_id CROSS JOIN audit_events a \
     WHERE a.chain_id = c.chain_id AND a.seq > COALESCE(h.covered, 0) AND a.event_hash = $1) \
     SELECT chain_id, seq, ts FROM found ORDER BY chain_id, seq LIMIT 1";

/// Copies the keys of every chain's events past its cursor into `audit_hash_lookup`, in key order.
const COPY_KEYS: &str = "INSERT OR IGNORE INTO audit_hash_lookup (epoch, prefix, seq) \
     SELECT a.seq / 65536, substr(a.event_hash, 1, 8), a.seq FROM audit_chains c \
     LEFT JOIN audit_hash_cursor h ON h.chain_id = c.chain_id CROSS JOIN audit_events a \
     WHERE a.chain_id = c.chain_id AND a.seq > COALESCE(h.covered, 0) AND a.seq <= c.head_seq \
     ORDER BY 1, 2, 3";

/// Moves every chain's cursor to its head: in the same transaction as [`COPY_KEYS`], so a cursor never says
/// more than the table holds.
const MOVE_CURSORS: &str = "INSERT INTO audit_hash_cursor (chain_id, covered) \
     SELECT chain_id, head_seq FROM audit_chains WHERE true \
     ON CONFLICT (chain_id) DO UPDATE SET covered = excluded.covered";

/// After retention: drops the entries of whole epochs before the oldest event any chain still keeps. Entries of
/// the epoch that retention cut through stay until it is gone too (they find nothing: the rows are deleted).
const PRUNE_HASH_LOOKUP: &str = "DELETE FROM audit_hash_lookup WHERE epoch < (\
     SELECT MIN(first) / 65536 FROM (SELECT (SELECT MIN(seq) FROM audit_events a \
     WHERE a.chain_id = c.chain_id) AS first FROM audit_chains c))";

impl AuditStore {
    /// SQLite: brings `audit_hash_lookup` up to every chain's head (see the module docs). PostgreSQL: nothing
    /// to do. Runs on the writer's connection, between commits.
    pub(crate) async fn index_hashes(&self) -> Result<(), sqlx::Error> {
        let Backend::Sqlite(s) = &self.backend else {
            return Ok(());
        };
        let mut conn = s.writer.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query(COPY_KEYS).execute(&mut *tx).await?;
        sqlx::query(MOVE_CURSORS).execute(&mut *tx).await?;
        tx.commit().await
    }

    /// SQLite, after retention deleted events: drops the lookup entries of epochs that hold none any more.
    pub(crate) async fn prune_hash_lookup(&self) -> Result<(), sqlx::Error> {
        let Backend::Sqlite(s) = &self.backend else {
            return Ok(());
        };
        sqlx::query(PRUNE_HASH_LOOKUP)
            .execute(&s.pool)
            .await
            .map(|_| ())
    }

    /// The epochs `audit_hash_lookup` holds entries of, in order (SQLite).
    #[cfg(test)]
    pub(crate) async fn hash_lookup_epochs(&self) -> Vec<i64> {
        let Backend::Sqlite(s) = &self.backend else {
            return Vec::new();
        };
        sqlx::query_scalar("SELECT DISTINCT epoch FROM audit_hash_lookup ORDER BY 1")
            .fetch_all(&s.pool)
            .await
            .unwrap()
    }

    /// Events of `chain` whose keys are not in `audit_hash_lookup` yet (SQLite; 0 for PostgreSQL).
    #[cfg(test)]
    pub(crate) async fn unindexed_hashes(&self, chain: &str) -> i64 {
        let Backend::Sqlite(s) = &self.backend else {
            return 0;
        };
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_events a LEFT JOIN audit_hash_cursor h ON h.chain_id = a.chain_id \
             WHERE a.chain_id = $1 AND a.seq > COALESCE(h.covered, 0)",
        )
        .bind(chain)
        .fetch_one(&s.pool)
        .await
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lookup must probe `audit_hash_lookup` on both key columns and read past the cursor through the
    /// `(chain_id, seq)` index, or each lookup reads a whole epoch or the whole log.
    #[tokio::test]
    async fn hash_lookup_uses_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        AuditStore::connect(&url).await.unwrap();
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {FIND_HASH_BEHIND}"))
            .bind("ab".repeat(32))
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|step| sqlx::Row::get(step, "detail"))
            .collect();
        let has = |step: &str| plan.iter().any(|s| s == step);
        assert!(
            has("SEARCH l USING PRIMARY KEY (epoch=? AND prefix=?)"),
            "{plan:#?}"
        );
        assert!(
            has("SEARCH a USING INDEX sqlite_autoindex_audit_events_2 (chain_id=? AND seq=?)"),
            "{plan:#?}"
        );
        assert!(
            has("SEARCH a USING INDEX sqlite_autoindex_audit_events_2 (chain_id=? AND seq>?)"),
            "{plan:#?}"
        );
    }
}
