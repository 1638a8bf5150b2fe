//! The SQL of the `mcp_sessions` table: MCP session bindings shared by the instances of one database. Rows
//! carry hashes and stored (redacted) ids, never a session id; what a binding means (who may use it, when it is
//! idle) lives in `crate::mcp::session`.
//!
//! Every change two instances could race for is one statement or one transaction the database orders: opening
//! (the per-agent cap counted and enforced under a lock on the agent), ending (`DELETE … RETURNING`: exactly
//! one instance gets the row, and records the end), the idle sweep and the kill switch alike.

use sqlx::{Postgres, Row, Sqlite};

use super::SqlStore;
use crate::audit::AuditError;

/// One row of `mcp_sessions`, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub upstream: String,
    /// SHA-256 hex of the session id.
    pub id_hash: String,
    /// SHA-256 hex of the exact tenant and `sub` of the agent that opened it.
    pub agent_hash: String,
    /// The tenant as the audit log stores it; `''` for no tenant.
    pub tenant_id: String,
    /// The `sub` as the audit log stores it.
    pub agent_id: String,
    pub protocol_version: Option<String>,
    pub started_at: String,
    /// Unix milliseconds.
    pub last_used_ms: i64,
    /// The chain id of the instance that opened it.
    pub opened_by: String,
}

/// What opening a binding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenedRow {
    /// A new binding; the agent's longest-idle ones it replaced to stay within its cap.
    Added { evicted: Vec<SessionRow> },
    /// The same agent re-initialised the same id: the binding was refreshed, no slot taken.
    Rebound,
    /// The id is bound to another agent: nothing changed.
    Taken,
}

/// What ending a binding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndedRow {
    Ended(SessionRow),
    /// Bound to another agent: nothing changed.
    Foreign,
    NotFound,
}

const COLUMNS: &str =
    "upstream, id_hash, agent_hash, tenant_id, agent_id, protocol_version, started_at, \
    last_used_ms, opened_by";

macro_rules! impl_sessions {
    ($module:ident, $db:ty, $lock_agent:expr) => {
        mod $module {
            use super::*;

            type DB = $db;

            fn decode(row: &<DB as sqlx::Database>::Row) -> Result<SessionRow, sqlx::Error> {
                Ok(SessionRow {
                    upstream: row.try_get(0)?,
                    id_hash: row.try_get(1)?,
                    agent_hash: row.try_get(2)?,
                    tenant_id: row.try_get(3)?,
                    agent_id: row.try_get(4)?,
                    protocol_version: row.try_get(5)?,
                    started_at: row.try_get(6)?,
                    last_used_ms: row.try_get(7)?,
                    opened_by: row.try_get(8)?,
                })
            }

            fn decode_all(rows: Vec<<DB as sqlx::Database>::Row>) -> Result<Vec<SessionRow>, AuditError> {
                rows.iter().map(decode).collect::<Result<_, _>>().map_err(AuditError::Query)
            }

            impl SqlStore<DB> {
                pub(super) async fn open_session(
                    &self,
                    new: &SessionRow,
                    cap: i64,
                ) -> Result<OpenedRow, AuditError> {
                    let q = AuditError::Query;
                    let mut conn = self.writer.conn().await.map_err(q)?;
                    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(q)?;
                    // Two instances opening sessions of one agent at once take turns, so the cap holds.
                    if let Some(lock) = $lock_agent {
                        sqlx::query(lock).bind(new.agent_hash.clone()).execute(&mut *tx).await.map_err(q)?;
                    }
                    let owner: Option<String> = sqlx::query_scalar(
                        "SELECT agent_hash FROM mcp_sessions WHERE upstream = $1 AND id_hash = $2",
                    )
                    .bind(new.upstream.clone())
                    .bind(new.id_hash.clone())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(q)?;
                    match owner {
                        Some(owner) if owner != new.agent_hash => return Ok(OpenedRow::Taken),
                        Some(_) => {
                            sqlx::query(
                                "UPDATE mcp_sessions SET protocol_version = $1, started_at = $2, \
                                 last_used_ms = $3, opened_by = $4 WHERE upstream = $5 AND id_hash = $6",
                            )
                            .bind(new.protocol_version.clone())
                            .bind(new.started_at.clone())
                            .bind(new.last_used_ms)
                            .bind(new.opened_by.clone())
                            .bind(new.upstream.clone())
                            .bind(new.id_hash.clone())
                            .execute(&mut *tx)
                            .await
                            .map_err(q)?;
                            tx.commit().await.map_err(q)?;
                            return Ok(OpenedRow::Rebound);
                        }
                        None => {}
                    }
                    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mcp_sessions WHERE agent_hash = $1")
                        .bind(new.agent_hash.clone())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(q)?;
                    let mut evicted = Vec::new();
                    if held >= cap {
                        // The agent's own longest-idle sessions make room; never another agent's.
                        let rows = sqlx::query(&format!(
                            "DELETE FROM mcp_sessions WHERE agent_hash = $1 AND id_hash IN \
                             (SELECT id_hash FROM mcp_sessions WHERE agent_hash = $1 \
                              ORDER BY last_used_ms, id_hash LIMIT $2) RETURNING {COLUMNS}"
                        ))
                        .bind(new.agent_hash.clone())
                        .bind(held - cap + 1)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(q)?;
                        evicted = decode_all(rows)?;
                    }
                    sqlx::query(&format!(
                        "INSERT INTO mcp_sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ))
                    .bind(new.upstream.clone())
                    .bind(new.id_hash.clone())
                    .bind(new.agent_hash.clone())
                    .bind(new.tenant_id.clone())
                    .bind(new.agent_id.clone())
                    .bind(new.protocol_version.clone())
                    .bind(new.started_at.clone())
                    .bind(new.last_used_ms)
                    .bind(new.opened_by.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?;
                    tx.commit().await.map_err(q)?;
                    Ok(OpenedRow::Added { evicted })
                }

                pub(super) async fn session_binding(
                    &self,
                    upstream: &str,
                    id_hash: &str,
                ) -> Result<Option<SessionRow>, AuditError> {
                    sqlx::query(&format!(
                        "SELECT {COLUMNS} FROM mcp_sessions WHERE upstream = $1 AND id_hash = $2"
                    ))
                    .bind(upstream.to_owned())
                    .bind(id_hash.to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(AuditError::Query)?
                    .as_ref()
                    .map(decode)
                    .transpose()
                    .map_err(AuditError::Query)
                }

                pub(super) async fn end_session(
                    &self,
                    upstream: &str,
                    id_hash: &str,
                    agent_hash: &str,
                ) -> Result<EndedRow, AuditError> {
                    let row = sqlx::query(&format!(
                        "DELETE FROM mcp_sessions WHERE upstream = $1 AND id_hash = $2 AND agent_hash = $3 \
                         RETURNING {COLUMNS}"
                    ))
                    .bind(upstream.to_owned())
                    .bind(id_hash.to_owned())
                    .bind(agent_hash.to_owned())
                    .fetch_optional(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?;
                    if let Some(row) = row {
                        return Ok(EndedRow::Ended(decode(&row).map_err(AuditError::Query)?));
                    }
                    Ok(match self.session_binding(upstream, id_hash).await? {
                        Some(_) => EndedRow::Foreign,
                        None => EndedRow::NotFound,
                    })
                }

                pub(super) async fn touch_sessions(
                    &self,
                    touched: &[(String, String, i64)],
                ) -> Result<(), AuditError> {
                    let q = AuditError::Query;
                    let mut conn = self.writer.conn().await.map_err(q)?;
                    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(q)?;
                    for (upstream, id_hash, at) in touched {
                        sqlx::query(
                            "UPDATE mcp_sessions SET last_used_ms = $1 \
                             WHERE upstream = $2 AND id_hash = $3 AND last_used_ms < $1",
                        )
                        .bind(*at)
                        .bind(upstream.clone())
                        .bind(id_hash.clone())
                        .execute(&mut *tx)
                        .await
                        .map_err(q)?;
                    }
                    tx.commit().await.map_err(q)
                }

                pub(super) async fn sweep_sessions(
                    &self,
                    before_ms: i64,
                ) -> Result<Vec<SessionRow>, AuditError> {
                    let rows = sqlx::query(&format!(
                        "DELETE FROM mcp_sessions WHERE last_used_ms < $1 RETURNING {COLUMNS}"
                    ))
                    .bind(before_ms)
                    .fetch_all(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?;
                    decode_all(rows)
                }

                pub(super) async fn end_idle_session(
                    &self,
                    upstream: &str,
                    id_hash: &str,
                    before_ms: i64,
                ) -> Result<bool, AuditError> {
                    let ended = sqlx::query(
                        "DELETE FROM mcp_sessions WHERE upstream = $1 AND id_hash = $2 AND last_used_ms < $3",
                    )
                    .bind(upstream.to_owned())
                    .bind(id_hash.to_owned())
                    .bind(before_ms)
                    .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?
                    .rows_affected();
                    Ok(ended == 1)
                }

                pub(super) async fn end_sessions_of(
                    &self,
                    tenant_id: &str,
                    agent_id: &str,
                ) -> Result<Vec<SessionRow>, AuditError> {
                    let rows = sqlx::query(&format!(
                        "DELETE FROM mcp_sessions WHERE tenant_id = $1 AND agent_id = $2 RETURNING {COLUMNS}"
                    ))
                    .bind(tenant_id.to_owned())
                    .bind(agent_id.to_owned())
                    .fetch_all(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?;
                    decode_all(rows)
                }
            }
        }
    };
}

impl_sessions!(sqlite_sessions, Sqlite, None::<&str>);
impl_sessions!(
    postgres_sessions,
    Postgres,
    Some("SELECT pg_advisory_xact_lock(hashtextextended('toolgate.sessions/' || $1, 0))")
);

impl super::AuditStore {
    /// Binds a new session, within its agent's cap of `cap` sessions (the agent's longest-idle ones end to
    /// make room), or refreshes the same agent's binding of the same id; refused when another agent holds it.
    pub(crate) async fn open_session(
        &self,
        new: &SessionRow,
        cap: i64,
    ) -> Result<OpenedRow, AuditError> {
        dispatch!(self, s => s.open_session(new, cap).await)
    }

    /// The binding of session `id_hash` on `upstream`, if any.
    pub(crate) async fn session_binding(
        &self,
        upstream: &str,
        id_hash: &str,
    ) -> Result<Option<SessionRow>, AuditError> {
        dispatch!(self, s => s.session_binding(upstream, id_hash).await)
    }

    /// Ends the binding if it is `agent_hash`'s.
    pub(crate) async fn end_session(
        &self,
        upstream: &str,
        id_hash: &str,
        agent_hash: &str,
    ) -> Result<EndedRow, AuditError> {
        dispatch!(self, s => s.end_session(upstream, id_hash, agent_hash).await)
    }

    /// Moves `last_used_ms` of each `(upstream, id_hash, at)` forward (never back), in one transaction.
    pub(crate) async fn touch_sessions(
        &self,
        touched: &[(String, String, i64)],
    ) -> Result<(), AuditError> {
        if touched.is_empty() {
            return Ok(());
        }
        dispatch!(self, s => s.touch_sessions(touched).await)
    }

    /// Ends and answers the bindings unused since `before_ms`.
    pub(crate) async fn sweep_sessions(
        &self,
        before_ms: i64,
    ) -> Result<Vec<SessionRow>, AuditError> {
        dispatch!(self, s => s.sweep_sessions(before_ms).await)
    }

    /// Ends the binding if it was unused since `before_ms`; `false` when it was used since, or is gone.
    pub(crate) async fn end_idle_session(
        &self,
        upstream: &str,
        id_hash: &str,
        before_ms: i64,
    ) -> Result<bool, AuditError> {
        dispatch!(self, s => s.end_idle_session(upstream, id_hash, before_ms).await)
    }

    /// Ends and answers every binding of the agent with this stored tenant (`''`: none) and agent id.
    pub(crate) async fn end_sessions_of(
        &self,
        tenant_id: &str,
        agent_id: &str,
    ) -> Result<Vec<SessionRow>, AuditError> {
        dispatch!(self, s => s.end_sessions_of(tenant_id, agent_id).await)
    }
}
