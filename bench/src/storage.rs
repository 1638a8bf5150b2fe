//! What a stored audit event costs on disk: bytes per event of an SQLite audit database, per table and index.
//!
//! Read after toolgate has stopped (its writer has drained and closed the database): a
//! `PRAGMA wal_checkpoint(TRUNCATE)` first moves everything into the main file, then SQLite's `dbstat` virtual
//! table (compiled into the bundled SQLite of `libsqlite3-sys`, `SQLITE_ENABLE_DBSTAT_VTAB`) gives the bytes of
//! the pages of every table and index, free pages included in the total.

use std::path::Path;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Row};

/// The size of one audit database and what holds it.
#[derive(Debug, Clone)]
pub struct DbSize {
    /// Rows of `audit_events`.
    pub events: u64,
    /// `page_count * page_size` after the checkpoint: the whole file.
    pub total_bytes: u64,
    /// Bytes of the pages of each table and index (`dbstat`'s `pgsize` summed per `name`), largest first.
    pub objects: Vec<(String, u64)>,
}

impl DbSize {
    pub fn bytes_per_event(&self) -> f64 {
        self.total_bytes as f64 / self.events.max(1) as f64
    }
}

/// The audit database file of an `sqlite://PATH` URL, if it is one.
pub fn sqlite_path(url: &str) -> Option<&Path> {
    url.strip_prefix("sqlite://")
        .map(|p| p.split('?').next().unwrap_or(p))
        .map(Path::new)
}

/// Measures the database at `path`; toolgate must have stopped.
pub async fn measure(path: &Path) -> anyhow::Result<DbSize> {
    let mut conn: SqliteConnection = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .connect()
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(&mut conn)
        .await?;
    let page_count: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut conn)
        .await?;
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut conn)
        .await?;
    let rows = sqlx::query(
        "SELECT name, SUM(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC, name",
    )
    .fetch_all(&mut conn)
    .await
    .context("querying dbstat (is SQLITE_ENABLE_DBSTAT_VTAB compiled in?)")?;
    let objects = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("name")?,
                r.try_get::<i64, _>("bytes")?.max(0) as u64,
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(DbSize {
        events: events.max(0) as u64,
        total_bytes: (page_count * page_size).max(0) as u64,
        objects,
    })
}

/// Bytes of the database file and its WAL right now (while toolgate writes), for the steady run's growth.
pub fn file_bytes(path: &Path) -> u64 {
    let wal = path.with_extension("db-wal");
    [path, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}
