//! Connecting to each database, and keeping the connections lean while toolgate runs: SQLite's pragmas, its
//! readers' pool and its one writing connection (kept by the write lane), PostgreSQL's pool, the background WAL
//! checkpoint, and the rest after a burst that gives back what the connections kept.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Postgres, Sqlite};

use super::dialect::{POSTGRES, SQLITE};
use super::{AuditStore, Backend, SqlStore, WriteLane};
use crate::audit::{AuditError, Durability};

/// `PRAGMA cache_size` of the SQLite pool's reading connections (negative: KiB).
const READER_CACHE_KIB: &str = "-512";
/// `PRAGMA cache_size` of the SQLite writer's connection: SQLite's default.
const WRITER_CACHE_KIB: &str = "-2048";

impl SqlStore<Sqlite> {
    pub(super) async fn connect_sqlite(
        url: &str,
        durability: Durability,
        acquire_timeout: Duration,
    ) -> Result<Self, AuditError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(AuditError::Connect)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // The CLI may read while a server writes; wait for the lock rather than fail.
            .busy_timeout(Duration::from_secs(5))
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            // Throughput settings that leave durability alone (every commit still syncs the WAL as
            // `synchronous` says). The statement journal of the multi-row insert stays in memory instead of
            // a temporary file written on every batch.
            .pragma("temp_store", "memory")
            // Readers (queries, verify, export, SIEM sinks behind the head) get 512 KiB of page cache: they
            // stream, the operating system caches the file anyway, and a reader's cache is only dropped when
            // another connection writes, so four of SQLite's default 2 MiB filled up over a long SIEM outage and
            // stayed (measured, BENCHMARKS.md). 128 pages still hold every index's upper levels. The writer's
            // own connection keeps 2 MiB (below).
            .pragma("cache_size", READER_CACHE_KIB)
            // The audit writer has a reading connection checkpoint in the background (`checkpoint_wal`).
            // Those never let the log start over while commits keep coming, so SQLite's own checkpoint
            // after a commit stays on as the backstop that does (every ~16 MiB of log, by then mostly
            // copied already: measured, a larger threshold made fewer but longer commit stalls). The WAL
            // file is cut back to 64 MiB after a checkpoint so it does not stay at its peak size.
            .pragma("wal_autocheckpoint", "4000")
            .pragma("journal_size_limit", "67108864");
        // Every connection to an in-memory database is a different database.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // No ping before each acquire (sqlx's default): a round trip to the connection's thread per commit, to
        // test a file that cannot lose its connection; a failing statement fails its batch either way.
        let pool = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(if in_memory { 1 } else { 4 })
            .acquire_timeout(acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(AuditError::Connect)?;
        let mut store = Self::migrated(pool, &SQLITE).await?;
        if !in_memory {
            // Opened after the migrations, so it never sees the schema change under it.
            store.writer = WriteLane::kept(
                SqlitePoolOptions::new()
                    .test_before_acquire(false)
                    .max_connections(1)
                    .acquire_timeout(acquire_timeout)
                    // The writing connection keeps SQLite's default 2 MiB too: a batch touches the rightmost pages
                    // of the table and of the time-ordered indexes, plus one leaf per row of the current epoch's
                    // part of the hash lookup index (migration 0011; at most ≈ 1.3 MB). 8 MiB filled up under
                    // load and stayed (a third of the resident growth), and SQLite walks the whole cache's hash
                    // table on every commit (`pcache1TruncateUnsafe`).
                    .connect_with(options.pragma("cache_size", WRITER_CACHE_KIB))
                    .await
                    .map_err(AuditError::Connect)?,
            );
            store.wal_checkpoints = true;
        }
        Ok(store)
    }
}

impl SqlStore<Postgres> {
    pub(super) async fn connect_postgres(
        url: &str,
        durability: Durability,
        acquire_timeout: Duration,
    ) -> Result<Self, AuditError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(AuditError::Connect)?
            .options([(
                "synchronous_commit",
                match durability {
                    Durability::Full => "on",
                    Durability::Normal => "off",
                },
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            // A database that went away makes writes fail after this long (fail closed) instead of hanging;
            // the pool opens fresh connections by itself once it is back.
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(AuditError::Connect)?;
        let mut store = Self::migrated(pool, &POSTGRES).await?;
        store.partitioned = store.detect_partitioning().await?;
        Ok(store)
    }
}

impl AuditStore {
    /// SQLite (a file): copies the write-ahead log's committed pages back into the database file on a reading
    /// connection, without waiting for the writer (`PRAGMA wal_checkpoint(PASSIVE)`). The audit writer starts
    /// one in the background every 50 ms while it commits, so the copy and its fsync stay off the commit
    /// path; left to SQLite's automatic checkpoint, they would stall the commit that crosses the threshold,
    /// and every call waiting for it. Other databases: nothing to do.
    pub(crate) async fn checkpoint_wal(&self) -> Result<(), sqlx::Error> {
        match &self.backend {
            Backend::Sqlite(s) if s.wal_checkpoints => {
                sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&s.pool)
                    .await
                    .map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Gives back what the connections keep from a burst of commits, once the commits have stopped (the audit
    /// writer calls it after [`crate::audit::writer::REST_AFTER`] without one). The next commit prepares its
    /// statement again (tens of microseconds) and grows its buffers or cache again.
    ///
    /// - SQLite (a file): the writer's connection's prepared statements, among them the padded batch inserts of
    ///   up to 1 024 rows (2.8 MB of the resident size after a saturation run, measured with heaptrack), and its
    ///   page cache (`PRAGMA shrink_memory`, up to 2 MiB; the pages come back from the operating system's cache).
    /// - PostgreSQL: every idle connection of the pool (the writer commits on whichever is free): its prepared
    ///   statements, whose cache keys are the SQL texts of inserts of up to 2 048 rows (hundreds of KB each),
    ///   and its message buffers, which stay at the size of the largest batch sent.
    pub(crate) async fn rest(&self) -> Result<(), sqlx::Error> {
        match &self.backend {
            Backend::Sqlite(s) if s.wal_checkpoints => {
                let mut conn = s.writer.conn().await?;
                sqlx::Connection::clear_cached_statements(&mut *conn).await?;
                sqlx::query("PRAGMA shrink_memory")
                    .persistent(false)
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
            }
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(s) => {
                for mut conn in take_idle(&s.pool) {
                    sqlx::Connection::clear_cached_statements(&mut *conn).await?;
                    sqlx::Connection::shrink_buffers(&mut *conn);
                }
                Ok(())
            }
        }
    }

    /// How many prepared statements the connections [`AuditStore::rest`] cleans keep: SQLite's writer
    /// connection, or every idle connection of PostgreSQL's pool.
    #[cfg(test)]
    pub(crate) async fn kept_statements(&self) -> usize {
        match &self.backend {
            Backend::Sqlite(s) => {
                let conn = s.writer.conn().await.unwrap();
                sqlx::Connection::cached_statements_size(&*conn)
            }
            Backend::Postgres(s) => take_idle(&s.pool)
                .iter()
                .map(|conn| sqlx::Connection::cached_statements_size(&**conn))
                .sum(),
        }
    }

    /// SQLite: `PRAGMA cache_size` as a reading connection and the writer's connection see it.
    #[cfg(test)]
    pub(crate) async fn sqlite_cache_sizes(&self) -> Option<(i64, i64)> {
        let Backend::Sqlite(s) = &self.backend else {
            return None;
        };
        async fn cache_size<'e>(on: impl sqlx::Executor<'e, Database = Sqlite>) -> Option<i64> {
            sqlx::query_scalar("PRAGMA cache_size")
                .fetch_one(on)
                .await
                .ok()
        }
        let reader = cache_size(&s.pool).await?;
        let writer = cache_size(&mut *s.writer.conn().await.ok()?).await?;
        Some((reader, writer))
    }
}

/// Every connection idle in `pool` now, held together (so each is taken once) until they are dropped; a request
/// meanwhile gets another connection.
fn take_idle<DB: sqlx::Database>(pool: &Pool<DB>) -> Vec<sqlx::pool::PoolConnection<DB>> {
    std::iter::from_fn(|| pool.try_acquire())
        .take(pool.num_idle())
        .collect()
}
