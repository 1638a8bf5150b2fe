//! The SQL of SIEM delivery: each sink's persisted cursor per chain (`siem_cursors`) and the lease on a sink
//! (`siem_leases`) that lets one instance at a time deliver to it. What the cursors mean, and the delivery
//! loops that move them, live in `crate::siem`.

use sqlx::{Postgres, Row, Sqlite};

use super::SqlStore;
use crate::audit::AuditError;

/// One sink's position in one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiemCursor {
    pub chain_id: String,
    /// The highest seq of the chain the sink acknowledged (or skipped by its `event_types` filter).
    pub delivered_seq: i64,
    /// Events of the chain sent to the sink and acknowledged.
    pub delivered: i64,
}

/// A cursor move: `sink`'s cursor in `chain` from `from` to `to`, `sent` events acknowledged on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorMove<'a> {
    pub sink: &'a str,
    pub chain: &'a str,
    pub from: i64,
    pub to: i64,
    pub sent: i64,
}

/// Who delivers to a sink, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiemLease {
    pub holder: String,
    pub expires_ms: i64,
}

macro_rules! impl_siem_cursors {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;

            type DB = $db;

            impl SqlStore<DB> {
                pub(super) async fn siem_cursors(
                    &self,
                    sink: &str,
                ) -> Result<Vec<SiemCursor>, AuditError> {
                    sqlx::query(
                        "SELECT chain_id, delivered_seq, delivered FROM siem_cursors WHERE sink = $1 \
                         ORDER BY chain_id",
                    )
                    .bind(sink.to_owned())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(AuditError::Query)?
                    .iter()
                    .map(|row| {
                        Ok(SiemCursor {
                            chain_id: row.try_get(0)?,
                            delivered_seq: row.try_get(1)?,
                            delivered: row.try_get(2)?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(AuditError::Query)
                }

                /// Every move in one commit (one `fsync` for all of them); each one's outcome in order. The
                /// moves of existing cursors (`from > 0`, the steady state) are one statement; a sink's first
                /// move in a chain creates its row, in a transaction with the others.
                pub(super) async fn siem_advance_all(
                    &self,
                    moves: &[CursorMove<'_>],
                    holder: &str,
                    now: &str,
                ) -> Result<Vec<bool>, AuditError> {
                    let (first, existing): (Vec<&CursorMove<'_>>, Vec<&CursorMove<'_>>) =
                        moves.iter().partition(|m| m.from == 0);
                    if first.is_empty() {
                        let mut conn = self.writer.conn().await.map_err(AuditError::Query)?;
                        return Self::move_existing(&mut *conn, &existing, holder, now).await;
                    }
                    let mut conn = self.writer.conn().await.map_err(AuditError::Query)?;
                    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(AuditError::Query)?;
                    let mut created = Vec::with_capacity(first.len());
                    for m in &first {
                        // The row is created at the first advance, only while the mover holds the lease; a row
                        // that exists is moved only from 0, where the mover read it.
                        let done = sqlx::query(
                            "INSERT INTO siem_cursors (sink, chain_id, delivered_seq, delivered, updated_at) \
                             SELECT $1, $2, $3, $4, $6 WHERE EXISTS \
                             (SELECT 1 FROM siem_leases WHERE sink = $1 AND holder = $5) \
                             ON CONFLICT (sink, chain_id) DO UPDATE SET delivered_seq = $3, \
                             delivered = siem_cursors.delivered + $4, updated_at = $6 \
                             WHERE siem_cursors.delivered_seq = 0",
                        )
                        .bind(m.sink.to_owned())
                        .bind(m.chain.to_owned())
                        .bind(m.to)
                        .bind(m.sent)
                        .bind(holder.to_owned())
                        .bind(now.to_owned())
                        .execute(&mut *tx)
                        .await
                        .map_err(AuditError::Query)?;
                        created.push(done.rows_affected() == 1);
                    }
                    let moved = if existing.is_empty() {
                        Vec::new()
                    } else {
                        Self::move_existing(&mut *tx, &existing, holder, now).await?
                    };
                    tx.commit().await.map_err(AuditError::Query)?;
                    let (mut created, mut moved) = (created.into_iter(), moved.into_iter());
                    Ok(moves
                        .iter()
                        .map(|m| {
                            let outcome = if m.from == 0 { created.next() } else { moved.next() };
                            outcome.unwrap_or(false)
                        })
                        .collect())
                }

                /// Moves of cursors that exist as one `UPDATE … FROM (VALUES …)`: one request to the writer's
                /// connection, so it is held for one statement, not for a transaction's round trips from a task
                /// that may wait for a busy worker between them. Each moves only from where its cursor stands,
                /// and only while `holder` holds its sink's lease.
                async fn move_existing<'c, E>(
                    executor: E,
                    moves: &[&CursorMove<'_>],
                    holder: &str,
                    now: &str,
                ) -> Result<Vec<bool>, AuditError>
                where
                    E: sqlx::Executor<'c, Database = DB>,
                {
                    let tuples: Vec<String> = (0..moves.len())
                        .map(|i| {
                            let p = 3 + i * 5;
                            format!(
                                "(CAST(${} AS TEXT), CAST(${} AS TEXT), CAST(${} AS BIGINT), CAST(${} AS BIGINT), \
                                 CAST(${} AS BIGINT))",
                                p, p + 1, p + 2, p + 3, p + 4
                            )
                        })
                        .collect();
                    let sql = format!(
                        "WITH moves (sink, chain_id, from_seq, to_seq, sent) AS (VALUES {}) \
                         UPDATE siem_cursors SET delivered_seq = m.to_seq, \
                         delivered = siem_cursors.delivered + m.sent, updated_at = $2 FROM moves m \
                         WHERE siem_cursors.sink = m.sink AND siem_cursors.chain_id = m.chain_id \
                         AND siem_cursors.delivered_seq = m.from_seq AND EXISTS \
                         (SELECT 1 FROM siem_leases l WHERE l.sink = m.sink AND l.holder = $1) \
                         RETURNING siem_cursors.sink, siem_cursors.chain_id, siem_cursors.delivered_seq",
                        tuples.join(", ")
                    );
                    let mut query = sqlx::query(&sql).bind(holder.to_owned()).bind(now.to_owned());
                    for m in moves {
                        query = query
                            .bind(m.sink.to_owned())
                            .bind(m.chain.to_owned())
                            .bind(m.from)
                            .bind(m.to)
                            .bind(m.sent);
                    }
                    let rows = query.fetch_all(executor).await.map_err(AuditError::Query)?;
                    // A cursor moves once per statement: each row returned is the one move of `moves` that
                    // took it to where it now stands (RETURNING sees only the updated table, so the move is
                    // found by sink, chain and the seq it moved to).
                    let mut outcome = vec![false; moves.len()];
                    for row in &rows {
                        let sink: String = row.try_get(0).map_err(AuditError::Query)?;
                        let chain: String = row.try_get(1).map_err(AuditError::Query)?;
                        let at: i64 = row.try_get(2).map_err(AuditError::Query)?;
                        if let Some(i) = (0..moves.len()).find(|&i| {
                            !outcome[i] && moves[i].sink == sink && moves[i].chain == chain && moves[i].to == at
                        }) {
                            outcome[i] = true;
                        }
                    }
                    Ok(outcome)
                }

                pub(super) async fn siem_take_lease(
                    &self,
                    sink: &str,
                    holder: &str,
                    now_ms: i64,
                    ttl_ms: i64,
                ) -> Result<bool, AuditError> {
                    sqlx::query(
                        "INSERT INTO siem_leases (sink, holder, expires_ms) VALUES ($1, $2, $3) \
                         ON CONFLICT (sink) DO UPDATE SET holder = $2, expires_ms = $3 \
                         WHERE siem_leases.holder = $2 OR siem_leases.expires_ms < $4",
                    )
                    .bind(sink.to_owned())
                    .bind(holder.to_owned())
                    .bind(now_ms.saturating_add(ttl_ms))
                    .bind(now_ms)
                    .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map(|r| r.rows_affected() == 1)
                    .map_err(AuditError::Query)
                }

                pub(super) async fn siem_release_lease(
                    &self,
                    sink: &str,
                    holder: &str,
                ) -> Result<(), AuditError> {
                    sqlx::query("DELETE FROM siem_leases WHERE sink = $1 AND holder = $2")
                        .bind(sink.to_owned())
                        .bind(holder.to_owned())
                        .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                        .await
                        .map(|_| ())
                        .map_err(AuditError::Query)
                }

                pub(super) async fn siem_lease(
                    &self,
                    sink: &str,
                ) -> Result<Option<SiemLease>, AuditError> {
                    let row = sqlx::query("SELECT holder, expires_ms FROM siem_leases WHERE sink = $1")
                        .bind(sink.to_owned())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(AuditError::Query)?;
                    row.map(|r| {
                        Ok(SiemLease {
                            holder: r.try_get(0)?,
                            expires_ms: r.try_get(1)?,
                        })
                    })
                    .transpose()
                    .map_err(AuditError::Query)
                }
            }
        }
    };
}

impl_siem_cursors!(sqlite_siem, Sqlite);
impl_siem_cursors!(postgres_siem, Postgres);

impl super::AuditStore {
    /// `sink`'s cursors, one per chain it has delivered from (a chain without a row: nothing delivered yet).
    pub async fn siem_cursors(&self, sink: &str) -> Result<Vec<SiemCursor>, AuditError> {
        dispatch!(self, s => s.siem_cursors(sink).await)
    }

    /// Makes the cursor move `m` if the cursor still stands at `m.from` and `holder` holds the sink's lease.
    /// `false`: it moved nothing (another instance took the sink over, or moved the cursor first).
    pub async fn siem_advance(&self, m: &CursorMove<'_>, holder: &str) -> Result<bool, AuditError> {
        let moved = self
            .siem_advance_all(std::slice::from_ref(m), holder)
            .await?;
        Ok(moved.first().copied().unwrap_or(false))
    }

    /// Makes every move of `moves` (each as [`Self::siem_advance`] would) in one commit: several sinks'
    /// acknowledgements cost one commit on the writer's connection, which the audit writer also needs. Each
    /// move's outcome, in order; an error moved nothing.
    pub async fn siem_advance_all(
        &self,
        moves: &[CursorMove<'_>],
        holder: &str,
    ) -> Result<Vec<bool>, AuditError> {
        if moves.is_empty() {
            return Ok(Vec::new());
        }
        let now = super::timestamp::now();
        dispatch!(self, s => s.siem_advance_all(moves, holder, &now).await)
    }

    /// Takes or renews the lease on `sink` for `ttl_ms` from `now_ms`: granted when nobody holds it, `holder`
    /// already does, or the holder's lease expired. `false`: another live instance delivers to the sink.
    pub async fn siem_take_lease(
        &self,
        sink: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, AuditError> {
        dispatch!(self, s => s.siem_take_lease(sink, holder, now_ms, ttl_ms).await)
    }

    /// Gives the lease on `sink` up (at shutdown), so another instance takes over without waiting for it to
    /// expire.
    pub async fn siem_release_lease(&self, sink: &str, holder: &str) -> Result<(), AuditError> {
        dispatch!(self, s => s.siem_release_lease(sink, holder).await)
    }

    /// The lease on `sink`, if anybody took it.
    pub async fn siem_lease(&self, sink: &str) -> Result<Option<SiemLease>, AuditError> {
        dispatch!(self, s => s.siem_lease(sink).await)
    }

    /// The highest seq of `chain` that every one of `sinks` has delivered (0 when one has not started it):
    /// retention prunes nothing after it.
    pub async fn siem_floor(&self, chain: &str, sinks: &[String]) -> Result<i64, AuditError> {
        let mut floor = i64::MAX;
        for sink in sinks {
            let delivered = self
                .siem_cursors(sink)
                .await?
                .into_iter()
                .find(|c| c.chain_id == chain)
                .map_or(0, |c| c.delivered_seq);
            floor = floor.min(delivered);
        }
        Ok(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::CursorMove;
    use crate::audit::test_db::{on_both, run, Kind, TestDb};

    async fn cursors_move_only_under_the_lease_and_from_where_they_stand(db: TestDb) {
        let (a, b) = (db.store().await, db.store().await);
        assert!(a
            .siem_take_lease("s", "inst-a", 1_000, 10_000)
            .await
            .unwrap());
        // Another live holder: refused; the holder renews.
        assert!(!b
            .siem_take_lease("s", "inst-b", 2_000, 10_000)
            .await
            .unwrap());
        assert!(a
            .siem_take_lease("s", "inst-a", 3_000, 10_000)
            .await
            .unwrap());
        // Not the holder: the cursor does not move.
        assert!(!b
            .siem_advance(
                &CursorMove {
                    sink: "s",
                    chain: "c1",
                    from: 0,
                    to: 5,
                    sent: 5
                },
                "inst-b"
            )
            .await
            .unwrap());
        assert!(a.siem_cursors("s").await.unwrap().is_empty());
        assert!(a
            .siem_advance(
                &CursorMove {
                    sink: "s",
                    chain: "c1",
                    from: 0,
                    to: 5,
                    sent: 4
                },
                "inst-a"
            )
            .await
            .unwrap());
        // A stale `from` (somebody moved it) does not move it either.
        assert!(!a
            .siem_advance(
                &CursorMove {
                    sink: "s",
                    chain: "c1",
                    from: 0,
                    to: 9,
                    sent: 4
                },
                "inst-a"
            )
            .await
            .unwrap());
        assert!(a
            .siem_advance(
                &CursorMove {
                    sink: "s",
                    chain: "c1",
                    from: 5,
                    to: 9,
                    sent: 3
                },
                "inst-a"
            )
            .await
            .unwrap());
        let cursors = b.siem_cursors("s").await.unwrap();
        assert_eq!(cursors.len(), 1);
        assert_eq!((cursors[0].delivered_seq, cursors[0].delivered), (9, 7));
        // The holder's lease expires: the other instance takes over, and the old holder can no longer move
        // the cursor.
        assert!(b
            .siem_take_lease("s", "inst-b", 13_001, 10_000)
            .await
            .unwrap());
        assert!(!a
            .siem_advance(
                &CursorMove {
                    sink: "s",
                    chain: "c1",
                    from: 9,
                    to: 12,
                    sent: 3
                },
                "inst-a"
            )
            .await
            .unwrap());
        assert!(!a
            .siem_take_lease("s", "inst-a", 14_000, 10_000)
            .await
            .unwrap());
        assert_eq!(a.siem_lease("s").await.unwrap().unwrap().holder, "inst-b");
        // Released: taken at once.
        b.siem_release_lease("s", "inst-b").await.unwrap();
        assert!(a
            .siem_take_lease("s", "inst-a", 14_001, 10_000)
            .await
            .unwrap());
        // The floor of retention: the slowest sink, 0 for a sink that never delivered from the chain.
        assert_eq!(a.siem_floor("c1", &["s".into()]).await.unwrap(), 9);
        assert_eq!(
            a.siem_floor("c1", &["s".into(), "other".into()])
                .await
                .unwrap(),
            0
        );
        assert_eq!(a.siem_floor("c1", &[]).await.unwrap(), i64::MAX);
    }
    on_both!(cursors_move_only_under_the_lease_and_from_where_they_stand);

    /// First moves (which create rows) and moves of existing cursors in one commit: each gets its own outcome,
    /// in the order given.
    async fn first_and_later_moves_commit_together(db: TestDb) {
        let store = db.store().await;
        for sink in ["a", "b"] {
            assert!(store
                .siem_take_lease(sink, "me", 0, i64::MAX / 2)
                .await
                .unwrap());
        }
        let m = |sink, from, to| CursorMove {
            sink,
            chain: "c",
            from,
            to,
            sent: to - from,
        };
        assert!(store.siem_advance(&m("a", 0, 5), "me").await.unwrap());
        let moved = store
            .siem_advance_all(
                &[m("a", 5, 9), m("b", 0, 3), m("a", 1, 2), m("b", 0, 4)],
                "me",
            )
            .await
            .unwrap();
        // `a` moves from 5; `b` is created; a stale `from` for `a` and a second first move for `b` do nothing.
        assert_eq!(moved, [true, true, false, false]);
        let at = |cursors: Vec<super::SiemCursor>| (cursors[0].delivered_seq, cursors[0].delivered);
        assert_eq!(at(store.siem_cursors("a").await.unwrap()), (9, 9));
        assert_eq!(at(store.siem_cursors("b").await.unwrap()), (3, 3));
    }

    on_both!(first_and_later_moves_commit_together);
}
