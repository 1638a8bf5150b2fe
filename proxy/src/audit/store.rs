//! The audit database: opening it (the connection settings and their upkeep are in `connections`), migrations,
//! the SQL behind the writer (head, batch insert) and the read side (verify, export, query).
//!
//! One implementation, [`SqlStore`], is generic over the sqlx database, so SQLite and PostgreSQL run the same
//! statements; [`Dialect`] holds the few spellings that differ. A third store is one more `Backend` variant,
//! one more `Dialect` and one more migration set.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Pool, Postgres, QueryBuilder, Row, Sqlite, Type,
};
use toolgate_engine::chain::{AuditEvent, BadRow, ChainHead};

use super::checkpoint::{Checkpoint, CheckpointKind, SignedCheckpoint, TrustedKeys};
use super::export::{EventEncoder, ExportFormat};
use super::{timestamp, AuditError, Durability};

/// Runs `$body` with `$s` bound to the store's backend, whichever dialect it is. Defined before the submodules
/// so that they use it too.
macro_rules! dispatch {
    ($self:expr, $s:ident => $body:expr) => {
        match &$self.backend {
            $crate::audit::store::Backend::Sqlite($s) => $body,
            $crate::audit::store::Backend::Postgres($s) => $body,
        }
    };
}

mod agents;
mod behaviour;
mod chain_lock;
mod connections;
mod dialect;
mod escalations;
mod feed;
mod hash_lookup;
mod notify;
mod partitions;
mod queries;
mod runs;
mod sessions;
mod siem_cursors;
mod tool_pins;
mod verify;
mod write_lane;

use dialect::{Dialect, EmbeddedMigrations};
use write_lane::WriteLane;

pub use agents::{AgentDelta, AgentPage, AgentRow};
pub use behaviour::{AgentText, AlertPage, AlertRow};
pub(crate) use chain_lock::ChainLock;
pub use escalations::{EscalationKey, EscalationPage, EscalationRow};
pub use feed::FeedFilter;
pub(crate) use hash_lookup::INDEX_HASHES_EVERY;
pub use notify::{Heard, Notice, StateListener};
pub use queries::StatsRow;
pub use runs::{RunEnd, RunPage, RunRow};
pub use sessions::{EndedRow, OpenedRow, SessionRow};
pub use siem_cursors::{CursorMove, SiemCursor, SiemLease};
pub use tool_pins::ToolDefinitionRow;

/// The result of `verify`, exactly the JSON of the verify endpoint and `toolgate audit verify`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VerifyResult {
    pub events_verified: u64,
    pub chain_intact: bool,
    pub first_bad_row: Option<BadRow>,
    pub duration_ms: u64,
}

/// Filters of the audit query endpoint; every filter is optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct EventFilter {
    /// Only this tenant's events: set from a tenant's admin token, never from the query string.
    #[serde(skip)]
    pub tenant_id: Option<String>,
    pub agent_id: Option<String>,
    pub tool_name: Option<String>,
    pub policy_result: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    /// Page size: default 100, at most 1000.
    pub limit: Option<u32>,
    /// From [`cursor_after`] of the last event of the previous page.
    pub cursor: Option<String>,
}

impl EventFilter {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;

    /// The page size in effect.
    pub fn effective_limit(&self) -> u32 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }
}

/// The opaque cursor that continues a newest-first query after `event`.
pub fn cursor_after(event: &AuditEvent) -> String {
    let key = serde_json::json!([event.timestamp, event.chain_id, event.seq]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.to_string())
}

fn parse_cursor(cursor: &str) -> Result<(String, String, i64), AuditError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| AuditError::BadCursor)?;
    serde_json::from_slice(&bytes).map_err(|_| AuditError::BadCursor)
}

/// Read side of the audit log (queries, verify, export); the writer uses it too. Cheap to clone.
#[derive(Clone)]
pub struct AuditStore {
    backend: Backend,
    /// Whose checkpoints verification accepts.
    trusted: Arc<TrustedKeys>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlStore<Sqlite>),
    Postgres(SqlStore<Postgres>),
}

/// Runs `$body` with `$s` bound to the concrete store, whichever backend it is.
impl AuditStore {
    /// Connects to `database_url` (creating a missing SQLite file) and runs the migrations.
    pub async fn connect(database_url: &str) -> Result<AuditStore, AuditError> {
        AuditStore::open(database_url, Durability::Full, Duration::from_secs(5)).await
    }

    pub(crate) async fn open(
        database_url: &str,
        durability: Durability,
        acquire_timeout: Duration,
    ) -> Result<AuditStore, AuditError> {
        let backend = if database_url.starts_with("sqlite:") {
            Backend::Sqlite(
                SqlStore::connect_sqlite(database_url, durability, acquire_timeout).await?,
            )
        } else if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Backend::Postgres(
                SqlStore::connect_postgres(database_url, durability, acquire_timeout).await?,
            )
        } else {
            return Err(AuditError::UnsupportedUrl);
        };
        Ok(AuditStore {
            backend,
            trusted: Arc::new(TrustedKeys::default()),
        })
    }

    /// The same store, accepting checkpoints signed by `keys` (and only those).
    pub fn with_trusted_keys(mut self, keys: TrustedKeys) -> AuditStore {
        self.trusted = Arc::new(keys);
        self
    }

    pub fn trusted_keys(&self) -> &TrustedKeys {
        &self.trusted
    }

    /// How many events verify and export have read through this store (and its clones) so far.
    pub fn progress(&self) -> Arc<std::sync::atomic::AtomicU64> {
        dispatch!(self, s => s.progress.clone())
    }

    /// Whether the database answers (for `/ready`).
    pub async fn ping(&self) -> bool {
        dispatch!(self, s => s.ping().await)
    }

    /// Streams the events whose timestamp is in `[start, end]`, ordered by chain and seq, to `out` in
    /// `format`; returns how many events were written. `out` is not flushed.
    pub async fn export<W: tokio::io::AsyncWrite + Unpin + Send>(
        &self,
        format: ExportFormat,
        start: Option<&str>,
        end: Option<&str>,
        out: &mut W,
    ) -> Result<u64, AuditError> {
        self.export_of(format, start, end, None, out).await
    }

    /// [`AuditStore::export`] of one tenant's events only (`None`: every tenant's).
    pub async fn export_of<W: tokio::io::AsyncWrite + Unpin + Send>(
        &self,
        format: ExportFormat,
        start: Option<&str>,
        end: Option<&str>,
        tenant: Option<&str>,
        out: &mut W,
    ) -> Result<u64, AuditError> {
        let (start, end) = timestamp::range(start, end)?;
        let tenant = tenant.map(str::to_owned);
        dispatch!(self, s => s.export(format, start, end, tenant, out).await)
    }

    /// Events matching `filter`, newest first, at most `filter.effective_limit()` of them.
    pub async fn query(&self, filter: &EventFilter) -> Result<Vec<AuditEvent>, AuditError> {
        let (start, end) = timestamp::range(filter.start.as_deref(), filter.end.as_deref())?;
        let cursor = filter.cursor.as_deref().map(parse_cursor).transpose()?;
        dispatch!(self, s => s.query(filter, start, end, cursor).await)
    }

    /// The last stored event of `chain_id` (genesis when the chain is empty) and its timestamp.
    pub(crate) async fn load_head(
        &self,
        chain_id: &str,
    ) -> Result<(ChainHead, Option<String>), sqlx::Error> {
        dispatch!(self, s => s.load_head(chain_id).await)
    }

    /// Inserts sealed events atomically (one statement or one transaction); nothing is stored unless
    /// everything is. The chain's stored head must still be `previous`, so two writers on one chain cannot
    /// fork it: PostgreSQL checks it with a compare-and-set, SQLite's triggers check each row against it.
    pub(crate) async fn insert_batch(
        &self,
        events: &[AuditEvent],
        previous: &ChainHead,
    ) -> Result<(), sqlx::Error> {
        match &self.backend {
            Backend::Sqlite(s) => s.insert_batch(events, previous).await,
            Backend::Postgres(s) => {
                s.ensure_partitions(events.iter().map(|e| e.timestamp.as_str()))
                    .await?;
                s.insert_batch(events, previous).await
            }
        }
    }

    /// Records `head` as the chain's stored head (at start, after loading it from the rows).
    pub(crate) async fn init_chain(&self, head: &ChainHead) -> Result<(), sqlx::Error> {
        dispatch!(self, s => s.init_chain(head).await)
    }

    /// Creates the daily partitions of today and the next days (PostgreSQL with plain partitioning only).
    pub(crate) async fn prepare_partitions(&self) {
        if let Backend::Postgres(s) = &self.backend {
            let today = time::OffsetDateTime::now_utc().date();
            let days = [
                Some(today),
                today.next_day(),
                today.next_day().and_then(|d| d.next_day()),
            ];
            if let Err(e) = s.ensure_days(days.into_iter().flatten()).await {
                tracing::warn!(error = %e, "audit partition creation failed");
            }
        }
    }

    /// Runs one raw statement; tests use it to tamper with rows the way an attacker with SQL access would.
    #[cfg(test)]
    pub(crate) async fn execute_raw(&self, sql: &str) -> Result<(), sqlx::Error> {
        dispatch!(self, s => sqlx::Executor::execute(&s.pool, sql).await.map(|_| ()))
    }
}

/// Every column, in contract order (the order of `decode_event` and `push_event_binds`), as the INSERT lists them:
/// the contract's field names, with `timestamp` quoted because it is a type name in PostgreSQL.
static INSERT_COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    AuditEvent::FIELDS
        .iter()
        .map(|f| {
            if *f == "timestamp" {
                "\"timestamp\""
            } else {
                f
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
});

/// The largest power of two not above `n` (`n` ≥ 1): the row counts of the batch inserts' statements.
fn power_of_two_at_most(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// A padded SQLite batch insert up to its rows (see `insert_batch`).
static PADDED_INSERT_HEAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO audit_events ({}) SELECT * FROM (VALUES ",
        INSERT_COLUMNS.as_str()
    )
});

/// A padding row of a padded SQLite batch insert: placeholders past the last bound argument read as NULL, and
/// `WHERE column1 IS NOT NULL` (the `id`) drops the row.
static UNBOUND_ROW: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!(", ({})", vec!["?"; AuditEvent::FIELDS.len()].join(", ")));

/// The SELECT list: JSON columns read back as text, the one type both databases decode to `String`.
const SELECT_COLUMNS: &str = "id, chain_id, seq, \"timestamp\", event_type, agent_id, session_id, \
    tenant_id, workflow_id, requester_id, tool_name, mcp_server, action, target, input_hash, policy_result, \
    policy_id, policy_reason, behavioral_score, CAST(dlp_findings AS TEXT), dlp_action, response_code, \
    latency_us, error, trace_id, CAST(extra AS TEXT), previous_hash, event_hash";

/// The store over one sqlx database.
pub(crate) struct SqlStore<DB: Database> {
    pool: Pool<DB>,
    /// Every write: the audit writer's batch inserts, and the other tables' changes (agents, runs, escalations,
    /// pins, SIEM cursors and leases, checkpoints). SQLite file: one connection of its own, kept by the lane
    /// between writes (`write_lane`), so every batch runs on the same connection and finds its page cache warm
    /// (SQLite drops a connection's whole cache when another connection wrote since its last transaction), and
    /// other writers queue for that connection instead of meeting the audit writer at SQLite's write lock, where
    /// the loser sleeps in the busy handler (1, 2, 5, 10… ms) while tool calls wait for their commit. Otherwise
    /// the same pool as `pool`. Retention's deletes stay on `pool`: a long delete must not hold the audit
    /// writer's queue.
    writer: WriteLane<DB>,
    dialect: &'static Dialect,
    /// PostgreSQL: `audit_events` is a declaratively partitioned table whose daily partitions toolgate
    /// manages (false for SQLite and for a TimescaleDB hypertable, which manages its own chunks).
    partitioned: bool,
    /// Days whose partition is known to exist.
    days: Arc<Mutex<HashSet<time::Date>>>,
    /// Events read by verify and export so far, for progress bars.
    progress: Arc<std::sync::atomic::AtomicU64>,
    /// SQLite file: `checkpoint_wal` has work to do.
    wal_checkpoints: bool,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            writer: self.writer.clone(),
            dialect: self.dialect,
            partitioned: self.partitioned,
            days: self.days.clone(),
            progress: self.progress.clone(),
            wal_checkpoints: self.wal_checkpoints,
        }
    }
}

/// Stamps out the store for one concrete database. The code is the same for every database, but it is not
/// written as one generic impl: sqlx's `QueryBuilder::build` cannot be executed from code generic over the
/// database (the arguments' lifetime is invariant behind the associated type), while it can for each concrete one.
macro_rules! impl_sql_store {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;

            type DB = $db;

            impl SqlStore<DB> {
                pub(super) async fn migrated(
                    pool: Pool<DB>,
                    dialect: &'static Dialect,
                ) -> Result<Self, AuditError> {
                    let migrator = Migrator::new(EmbeddedMigrations(dialect.migrations))
                        .await
                        .map_err(AuditError::Migrate)?;
                    migrator.run(&pool).await.map_err(AuditError::Migrate)?;
                    Ok(SqlStore {
                        writer: WriteLane::pooled(pool.clone()),
                        pool,
                        dialect,
                        partitioned: false,
                        days: Arc::default(),
                        progress: Arc::default(),
                        wal_checkpoints: false,
                    })
                }

                pub(super) async fn ping(&self) -> bool {
                    sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
                }

                pub(super) async fn load_head(
                    &self,
                    chain_id: &str,
                ) -> Result<(ChainHead, Option<String>), sqlx::Error> {
                    let row = sqlx::query(
                        "SELECT seq, event_hash, \"timestamp\" FROM audit_events WHERE chain_id = $1 \
                         ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(chain_id.to_owned())
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(match row {
                        None => (ChainHead::genesis(chain_id), None),
                        Some(row) => (
                            ChainHead {
                                chain_id: chain_id.to_owned(),
                                seq: row.try_get(0)?,
                                hash: row.try_get(1)?,
                            },
                            Some(row.try_get(2)?),
                        ),
                    })
                }

                pub(super) async fn init_chain(&self, head: &ChainHead) -> Result<(), sqlx::Error> {
                    sqlx::query(
                        "INSERT INTO audit_chains (chain_id, head_seq, head_hash) VALUES ($1, $2, $3) \
                         ON CONFLICT (chain_id) DO UPDATE SET head_seq = excluded.head_seq, \
                         head_hash = excluded.head_hash",
                    )
                    .bind(head.chain_id.clone())
                    .bind(head.seq)
                    .bind(head.hash.clone())
                    .execute(&mut *self.writer.conn().await?)
                    .await
                    .map(|_| ())
                }

                pub(super) async fn insert_batch(
                    &self,
                    events: &[AuditEvent],
                    previous: &ChainHead,
                ) -> Result<(), sqlx::Error> {
                    let Some(last) = events.last() else {
                        return Ok(());
                    };
                    let rows_per_statement = (self.dialect.max_binds / (AuditEvent::FIELDS.len() + 1)).max(1);
                    if self.dialect.chain_guard_triggers {
                        // SQLite: triggers check that each row extends the stored head and move it
                        // (migration 0003), so a batch that fits one statement is one autocommit INSERT: one
                        // request to the driver's thread, where a transaction with a separate compare-and-set
                        // takes four (each a hand-off between threads, slow on busy cores).
                        // Padded to a power of two, a statement holds at most this many rows.
                        let max_rows = power_of_two_at_most(rows_per_statement);
                        let mut conn = self.writer.conn().await?;
                        if events.len() <= max_rows {
                            let inserted = Self::padded_insert(&mut conn, events, self.dialect).await;
                            return conn.checked(inserted);
                        }
                        let committed = async {
                            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                            for chunk in events.chunks(max_rows) {
                                Self::padded_insert(&mut tx, chunk, self.dialect).await?;
                            }
                            tx.commit().await
                        }
                        .await;
                        return conn.checked(committed);
                    }
                    let mut conn = self.writer.conn().await?;
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    // Compare-and-set of the stored head: with partitioned PostgreSQL tables (chain_id, seq) is
                    // not unique by itself, and this also stops a second writer on the same chain.
                    let moved = sqlx::query(
                        "UPDATE audit_chains SET head_seq = $1, head_hash = $2 \
                         WHERE chain_id = $3 AND head_seq = $4 AND head_hash = $5",
                    )
                    .bind(last.seq)
                    .bind(last.event_hash.as_str())
                    .bind(previous.chain_id.as_str())
                    .bind(previous.seq)
                    .bind(previous.hash.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if moved != 1 {
                        return Err(sqlx::Error::Protocol(format!(
                            "the stored head of chain {} is no longer seq {}: another writer appends to this chain",
                            previous.chain_id, previous.seq
                        )));
                    }
                    self.insert_chunks(&mut tx, events, rows_per_statement).await?;
                    tx.commit().await
                }

                /// SQLite: `events` in one `INSERT … SELECT * FROM (VALUES …)`, its row count padded to a power
                /// of two with unbound placeholders (NULL, then filtered out), so each padded size is one SQL
                /// text that stays prepared in the statement cache.
                async fn padded_insert(
                    conn: &mut <DB as Database>::Connection,
                    events: &[AuditEvent],
                    dialect: &Dialect,
                ) -> Result<(), sqlx::Error> {
                    let mut insert = QueryBuilder::<DB>::new(PADDED_INSERT_HEAD.as_str());
                    for (i, e) in events.iter().enumerate() {
                        insert.push(if i == 0 { "(" } else { ", (" });
                        let mut row = insert.separated(", ");
                        Self::push_event_binds(&mut row, e, dialect);
                        insert.push(")");
                    }
                    for _ in events.len()..events.len().next_power_of_two() {
                        insert.push(UNBOUND_ROW.as_str());
                    }
                    insert.push(") WHERE column1 IS NOT NULL");
                    let inserted = insert.build().execute(&mut *conn).await?.rows_affected();
                    if inserted != events.len() as u64 {
                        return Err(sqlx::Error::Protocol(format!(
                            "{inserted} of {} audit rows were inserted",
                            events.len()
                        )));
                    }
                    Ok(())
                }

                /// Multi-row `INSERT`s of power-of-two row counts only: a handful of distinct SQL texts that
                /// the connection's statement cache keeps prepared, instead of parsing and planning a
                /// statement of thousands of parameters for every batch size.
                async fn insert_chunks(
                    &self,
                    tx: &mut sqlx::Transaction<'_, DB>,
                    events: &[AuditEvent],
                    rows_per_statement: usize,
                ) -> Result<(), sqlx::Error> {
                    let ts_cast = self.dialect.ts_cast;
                    let mut rest = events;
                    while !rest.is_empty() {
                        let rows = power_of_two_at_most(rest.len().min(rows_per_statement));
                        let (chunk, after) = rest.split_at(rows);
                        rest = after;
                        let mut insert = QueryBuilder::<DB>::new(format!(
                            "INSERT INTO audit_events ({}{}) ",
                            if ts_cast.is_some() { "ts, " } else { "" },
                            INSERT_COLUMNS.as_str()
                        ));
                        // Bound by reference: the sealed events outlive the statement, so no column is
                        // copied into the arguments (the database copies the text once when binding).
                        insert.push_values(chunk, |mut row, e| {
                            if let Some(cast) = ts_cast {
                                row.push_bind(e.timestamp.as_str()).push_unseparated(cast);
                            }
                            Self::push_event_binds(&mut row, e, self.dialect);
                        });
                        insert.build().execute(&mut **tx).await?;
                    }
                    Ok(())
                }

                /// The columns of [`INSERT_COLUMNS`], bound in order.
                fn push_event_binds<'q>(
                    row: &mut sqlx::query_builder::Separated<'_, 'q, DB, &'static str>,
                    e: &'q AuditEvent,
                    dialect: &Dialect,
                ) {
                    let json_cast = dialect.json_cast;
                    row.push_bind(e.id.as_str())
                        .push_bind(e.chain_id.as_str())
                        .push_bind(e.seq)
                        .push_bind(e.timestamp.as_str())
                        .push_bind(e.event_type.as_str())
                        .push_bind(e.agent_id.as_deref())
                        .push_bind(e.session_id.as_deref())
                        .push_bind(e.tenant_id.as_deref())
                        .push_bind(e.workflow_id.as_deref())
                        .push_bind(e.requester_id.as_deref())
                        .push_bind(e.tool_name.as_deref())
                        .push_bind(e.mcp_server.as_deref())
                        .push_bind(e.action.as_deref())
                        .push_bind(e.target.as_deref())
                        .push_bind(e.input_hash.as_deref())
                        .push_bind(e.policy_result.as_deref())
                        .push_bind(e.policy_id.as_deref())
                        .push_bind(e.policy_reason.as_deref())
                        .push_bind(e.behavioral_score.as_deref())
                        .push_bind(e.dlp_findings.to_string())
                        .push_unseparated(json_cast)
                        .push_bind(e.dlp_action.as_deref())
                        .push_bind(e.response_code)
                        .push_bind(e.latency_us)
                        .push_bind(e.error.as_deref())
                        .push_bind(e.trace_id.as_deref())
                        .push_bind(e.extra.to_string())
                        .push_unseparated(json_cast)
                        .push_bind(e.previous_hash.as_str())
                        .push_bind(e.event_hash.as_str());
                }

                pub(super) async fn export<W: tokio::io::AsyncWrite + Unpin + Send>(
                    &self,
                    format: ExportFormat,
                    start: Option<String>,
                    end: Option<String>,
                    tenant: Option<String>,
                    out: &mut W,
                ) -> Result<u64, AuditError> {
                    use tokio::io::AsyncWriteExt;

                    let mut select = QueryBuilder::<DB>::new(format!(
                        "SELECT {SELECT_COLUMNS} FROM audit_events WHERE 1 = 1"
                    ));
                    if let Some(tenant) = tenant {
                        select.push(" AND tenant_id = ").push_bind(tenant);
                    }
                    push_time_range(&mut select, start, end);
                    select.push(" ORDER BY chain_id, seq");

                    let mut encoder = EventEncoder::new(format);
                    out.write_all(encoder.begin().as_bytes())
                        .await
                        .map_err(AuditError::Export)?;
                    let mut rows = select.build().fetch(&self.pool);
                    while let Some(row) = rows.try_next().await.map_err(AuditError::Query)? {
                        let event = decode_event::<DB>(&row).map_err(AuditError::Query)?;
                        self.progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        out.write_all(encoder.event(&event).as_bytes())
                            .await
                            .map_err(AuditError::Export)?;
                    }
                    out.write_all(encoder.end().as_bytes())
                        .await
                        .map_err(AuditError::Export)?;
                    Ok(encoder.count())
                }

                pub(super) async fn query(
                    &self,
                    filter: &EventFilter,
                    start: Option<String>,
                    end: Option<String>,
                    cursor: Option<(String, String, i64)>,
                ) -> Result<Vec<AuditEvent>, AuditError> {
                    let mut select = QueryBuilder::<DB>::new(format!(
                        "SELECT {SELECT_COLUMNS} FROM audit_events WHERE 1 = 1"
                    ));
                    for (column, value) in [
                        ("tenant_id", &filter.tenant_id),
                        ("agent_id", &filter.agent_id),
                        ("tool_name", &filter.tool_name),
                        ("policy_result", &filter.policy_result),
                    ] {
                        if let Some(value) = value {
                            select
                                .push(format!(" AND {column} = "))
                                .push_bind(value.clone());
                        }
                    }
                    push_time_range(&mut select, start, end);
                    if let Some((ts, chain_id, seq)) = cursor {
                        // Row-value comparison keeps the page boundary exact when timestamps tie.
                        select
                            .push(" AND (\"timestamp\", chain_id, seq) < (")
                            .push_bind(ts)
                            .push(", ")
                            .push_bind(chain_id)
                            .push(", ")
                            .push_bind(seq)
                            .push(")");
                    }
                    select
                        .push(" ORDER BY \"timestamp\" DESC, chain_id DESC, seq DESC LIMIT ")
                        .push_bind(i64::from(filter.effective_limit()));
                    select
                        .build()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?
                        .iter()
                        .map(decode_event::<DB>)
                        .collect::<Result<_, _>>()
                        .map_err(AuditError::Query)
                }
            }
        }
    };
}

impl_sql_store!(sqlite_store, Sqlite);
impl_sql_store!(postgres_store, Postgres);

fn push_time_range<DB>(query: &mut QueryBuilder<'_, DB>, start: Option<String>, end: Option<String>)
where
    DB: Database,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    if let Some(start) = start {
        query.push(" AND \"timestamp\" >= ").push_bind(start);
    }
    if let Some(end) = end {
        query.push(" AND \"timestamp\" <= ").push_bind(end);
    }
}

fn decode_event<DB>(row: &DB::Row) -> Result<AuditEvent, sqlx::Error>
where
    DB: Database,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Option<String>: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'r> Option<i64>: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    Ok(AuditEvent {
        id: row.try_get(0)?,
        chain_id: row.try_get(1)?,
        seq: row.try_get(2)?,
        timestamp: row.try_get(3)?,
        event_type: row.try_get(4)?,
        agent_id: row.try_get(5)?,
        session_id: row.try_get(6)?,
        tenant_id: row.try_get(7)?,
        workflow_id: row.try_get(8)?,
        requester_id: row.try_get(9)?,
        tool_name: row.try_get(10)?,
        mcp_server: row.try_get(11)?,
        action: row.try_get(12)?,
        target: row.try_get(13)?,
        input_hash: row.try_get(14)?,
        policy_result: row.try_get(15)?,
        policy_id: row.try_get(16)?,
        policy_reason: row.try_get(17)?,
        behavioral_score: row.try_get(18)?,
        dlp_findings: json_column(row.try_get(19)?),
        dlp_action: row.try_get(20)?,
        response_code: row.try_get(21)?,
        latency_us: row.try_get(22)?,
        error: row.try_get(23)?,
        trace_id: row.try_get(24)?,
        extra: json_column(row.try_get(25)?),
        previous_hash: row.try_get(26)?,
        event_hash: row.try_get(27)?,
    })
}

/// A JSON column's value. Text that is not JSON (a hand-edited SQLite cell) is kept as a JSON string, so
/// verify reports that row as tampered instead of stopping with an error.
fn json_column(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}
