//! The way every write reaches the database: the audit writer's batches and the other tables' changes (agents,
//! runs, escalations, pins, SIEM cursors, checkpoints).
//!
//! A SQLite file has one writing connection, and it is *kept*: taken from its pool once and held in a FIFO
//! mutex, so writers queue for it in the order they came, as they queued at the pool before. What keeping it
//! saves is sqlx's release: a connection going back to its pool is tested with a ping, a round trip to the
//! connection's thread (two hand-offs between threads) in a task of its own, after every single write. At
//! 1 000 calls/s that is a ping per commit, as costly as the commit's own hand-offs (BENCHMARKS.md, round 9).
//!
//! A write that finds the kept connection's thread gone ([`sqlx::Error::WorkerCrashed`]) drops it, so the
//! next write opens a fresh one; SQLite's own errors (a full disk, a constraint) leave it usable. A
//! transaction dropped half way (its future cancelled) is rolled back by sqlx on the same connection before
//! any later statement, so the next writer never sees it.
//!
//! Other databases (PostgreSQL, an in-memory SQLite) have a pool of connections that reads share, and each
//! write takes one from it, as sqlx's executors on a pool do.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Where writes get their connection (module docs).
pub(crate) struct WriteLane<DB: Database> {
    pool: Pool<DB>,
    /// The kept connection (SQLite file); `None` when each write takes one from `pool`.
    kept: Option<Arc<Mutex<Option<PoolConnection<DB>>>>>,
}

impl<DB: Database> Clone for WriteLane<DB> {
    fn clone(&self) -> Self {
        WriteLane {
            pool: self.pool.clone(),
            kept: self.kept.clone(),
        }
    }
}

impl<DB: Database> WriteLane<DB> {
    /// Each write takes a connection from `pool` and gives it back.
    pub(crate) fn pooled(pool: Pool<DB>) -> Self {
        WriteLane { pool, kept: None }
    }

    /// Writes share one connection of `pool` (a pool of one), opened at the first write and kept.
    pub(crate) fn kept(pool: Pool<DB>) -> Self {
        WriteLane {
            pool,
            kept: Some(Arc::default()),
        }
    }

    /// The connection for one write, once the writers queued before have finished theirs.
    pub(crate) async fn conn(&self) -> Result<WriteConn<DB>, sqlx::Error> {
        let Some(kept) = &self.kept else {
            return Ok(WriteConn {
                inner: Held::Pooled(self.pool.acquire().await?),
                broken: false,
            });
        };
        let mut slot = kept.clone().lock_owned().await;
        if slot.is_none() {
            *slot = Some(self.pool.acquire().await?);
        }
        Ok(WriteConn {
            inner: Held::Kept(slot),
            broken: false,
        })
    }
}

/// One write's connection: the kept one while this guard lives, or one of the pool's.
pub(crate) struct WriteConn<DB: Database> {
    inner: Held<DB>,
    /// The connection's thread is gone: a kept one is dropped with the guard.
    broken: bool,
}

enum Held<DB: Database> {
    /// Always `Some` while the guard is handed out.
    Kept(OwnedMutexGuard<Option<PoolConnection<DB>>>),
    Pooled(PoolConnection<DB>),
}

impl<DB: Database> WriteConn<DB> {
    /// Passes `result` through, noting a connection whose thread is gone: a kept one is then dropped with this
    /// guard, so the next write opens a new one instead of failing for good.
    pub(crate) fn checked<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if matches!(result, Err(sqlx::Error::WorkerCrashed)) {
            self.broken = true;
        }
        result
    }
}

impl<DB: Database> Drop for WriteConn<DB> {
    fn drop(&mut self) {
        if let (true, Held::Kept(slot)) = (self.broken, &mut self.inner) {
            if let Some(mut conn) = slot.take() {
                conn.close_on_drop();
            }
        }
    }
}

impl<DB: Database> Deref for WriteConn<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match &self.inner {
            Held::Kept(slot) => slot
                .as_ref()
                .expect("a handed-out kept connection is present"),
            Held::Pooled(conn) => conn,
        }
    }
}

impl<DB: Database> DerefMut for WriteConn<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match &mut self.inner {
            Held::Kept(slot) => slot
                .as_mut()
                .expect("a handed-out kept connection is present"),
            Held::Pooled(conn) => conn,
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;
    use sqlx::Sqlite;

    use super::*;

    /// A kept lane on a new file, its connection marked with the temporary table `mark`.
    async fn lane(dir: &tempfile::TempDir) -> WriteLane<Sqlite> {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("lane.db").display());
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let lane = WriteLane::kept(pool);
        let mut conn = lane.conn().await.unwrap();
        sqlx::query("CREATE TEMP TABLE mark (x)")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        lane
    }

    /// Whether the connection handed out is the one that made `TEMP.mark` (temporary tables are per connection).
    async fn marked(lane: &WriteLane<Sqlite>) -> bool {
        let mut conn = lane.conn().await.unwrap();
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM temp.sqlite_master WHERE name = 'mark'")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            == 1
    }

    #[tokio::test]
    async fn the_connection_is_kept_out_of_its_pool_between_writes() {
        let dir = tempfile::tempdir().unwrap();
        let lane = lane(&dir).await;
        for _ in 0..3 {
            assert!(marked(&lane).await);
            // Never given back, so never tested with a ping on the way.
            assert_eq!(lane.pool.num_idle(), 0);
            assert_eq!(lane.pool.size(), 1);
        }
    }

    #[tokio::test]
    async fn a_crashed_connection_is_replaced_and_other_errors_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let lane = lane(&dir).await;
        let mut conn = lane.conn().await.unwrap();
        // SQLite's own error (here a syntax error) leaves the connection as it is.
        let failed = sqlx::query("NOT SQL").execute(&mut *conn).await.map(|_| ());
        assert!(conn.checked(failed).is_err());
        drop(conn);
        assert!(marked(&lane).await);
        // A connection whose thread is gone is dropped; the next write gets a fresh one that works.
        let mut conn = lane.conn().await.unwrap();
        assert!(conn.checked::<()>(Err(sqlx::Error::WorkerCrashed)).is_err());
        drop(conn);
        assert!(!marked(&lane).await);
        let mut conn = lane.conn().await.unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(&mut *conn)
            .await
            .unwrap();
    }

    /// Writers take turns in the order they asked: the guard is exclusive while it lives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let lane = lane(&dir).await;
        let first = lane.conn().await.unwrap();
        let second = {
            let lane = lane.clone();
            tokio::spawn(async move { lane.conn().await.map(drop) })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !second.is_finished(),
            "a second writer got the connection while the first held it"
        );
        drop(first);
        second.await.unwrap().unwrap();
    }
}
