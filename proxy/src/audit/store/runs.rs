//! The SQL of the `agent_runs` table: runs started, counted, finished and timed out. Rows hold what
//! `crate::runs` made of the agent's input (redacted, with its findings); what a run means lives there.

use sqlx::{Postgres, QueryBuilder, Row, Sqlite};

use super::SqlStore;
use crate::audit::AuditError;

/// One row of `agent_runs`, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub run_id: String,
    /// The tenant as stored; `''` for an agent of no tenant.
    pub tenant_id: String,
    pub agent_id: String,
    /// SHA-256 hex of the starting agent's tenant and `sub`: only that agent attaches calls or finishes it.
    pub owner: String,
    pub requester_id: Option<String>,
    pub objective: String,
    /// JSON text.
    pub plan: String,
    /// JSON text.
    pub artifacts: String,
    pub error: Option<String>,
    /// JSON text: an array of findings (type, severity, path, count).
    pub dlp_findings: String,
    pub status: String,
    pub dry_run: bool,
    pub calls: i64,
    pub started_at: String,
    pub deadline_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
}

/// The end of a run: applied only while it is still `running`.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub run_id: String,
    pub status: String,
    /// JSON text; `None` keeps what is stored.
    pub artifacts: Option<String>,
    pub error: Option<String>,
    /// JSON text, the run's findings in full (the start's and the end's).
    pub dlp_findings: String,
    pub finished_at: String,
    pub duration_ms: i64,
    /// Calls counted here and not yet flushed, added as the run ends.
    pub calls: i64,
}

/// One page of the runs listing: newest start first, then by run id.
#[derive(Debug, Clone, Default)]
pub struct RunPage {
    /// Tenant as stored (`''` for no tenant): a tenant's admin sees its own runs only.
    pub tenant_id: Option<String>,
    /// Agent id as stored.
    pub agent_id: Option<String>,
    pub status: Option<String>,
    /// The `(started_at, run_id)` of the last row of the previous page.
    pub after: Option<(String, String)>,
    pub limit: u32,
}

const COLUMNS: &str =
    "run_id, tenant_id, agent_id, owner, requester_id, objective, plan, artifacts, error, \
    dlp_findings, status, dry_run, calls, started_at, deadline_at, finished_at, duration_ms";

macro_rules! impl_runs {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;

            type DB = $db;

            fn decode(row: &<DB as sqlx::Database>::Row) -> Result<RunRow, sqlx::Error> {
                Ok(RunRow {
                    run_id: row.try_get(0)?,
                    tenant_id: row.try_get(1)?,
                    agent_id: row.try_get(2)?,
                    owner: row.try_get(3)?,
                    requester_id: row.try_get(4)?,
                    objective: row.try_get(5)?,
                    plan: row.try_get(6)?,
                    artifacts: row.try_get(7)?,
                    error: row.try_get(8)?,
                    dlp_findings: row.try_get(9)?,
                    status: row.try_get(10)?,
                    dry_run: row.try_get(11)?,
                    calls: row.try_get(12)?,
                    started_at: row.try_get(13)?,
                    deadline_at: row.try_get(14)?,
                    finished_at: row.try_get(15)?,
                    duration_ms: row.try_get(16)?,
                })
            }

            fn decode_all(
                rows: Vec<<DB as sqlx::Database>::Row>,
            ) -> Result<Vec<RunRow>, AuditError> {
                rows.iter()
                    .map(decode)
                    .collect::<Result<_, _>>()
                    .map_err(AuditError::Query)
            }

            impl SqlStore<DB> {
                pub(super) async fn insert_run(&self, r: &RunRow) -> Result<(), AuditError> {
                    sqlx::query(&format!(
                        "INSERT INTO agent_runs ({COLUMNS}) VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
                    ))
                    .bind(r.run_id.clone())
                    .bind(r.tenant_id.clone())
                    .bind(r.agent_id.clone())
                    .bind(r.owner.clone())
                    .bind(r.requester_id.clone())
                    .bind(r.objective.clone())
                    .bind(r.plan.clone())
                    .bind(r.artifacts.clone())
                    .bind(r.error.clone())
                    .bind(r.dlp_findings.clone())
                    .bind(r.status.clone())
                    .bind(r.dry_run)
                    .bind(r.calls)
                    .bind(r.started_at.clone())
                    .bind(r.deadline_at.clone())
                    .bind(r.finished_at.clone())
                    .bind(r.duration_ms)
                    .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?;
                    Ok(())
                }

                pub(super) async fn delete_run(&self, run_id: &str) -> Result<(), AuditError> {
                    sqlx::query("DELETE FROM agent_runs WHERE run_id = $1")
                        .bind(run_id.to_owned())
                        .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                        .await
                        .map_err(AuditError::Query)?;
                    Ok(())
                }

                pub(super) async fn run(&self, run_id: &str) -> Result<Option<RunRow>, AuditError> {
                    let row = sqlx::query(&format!(
                        "SELECT {COLUMNS} FROM agent_runs WHERE run_id = $1"
                    ))
                    .bind(run_id.to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(AuditError::Query)?;
                    row.as_ref()
                        .map(decode)
                        .transpose()
                        .map_err(AuditError::Query)
                }

                pub(super) async fn end_run(&self, end: &RunEnd) -> Result<bool, AuditError> {
                    let changed = sqlx::query(
                        "UPDATE agent_runs SET status = $1, artifacts = COALESCE($2, artifacts), \
                         error = $3, dlp_findings = $4, finished_at = $5, duration_ms = $6, \
                         calls = calls + $7 WHERE run_id = $8 AND status = 'running'",
                    )
                    .bind(end.status.clone())
                    .bind(end.artifacts.clone())
                    .bind(end.error.clone())
                    .bind(end.dlp_findings.clone())
                    .bind(end.finished_at.clone())
                    .bind(end.duration_ms)
                    .bind(end.calls)
                    .bind(end.run_id.clone())
                    .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?
                    .rows_affected();
                    Ok(changed == 1)
                }

                pub(super) async fn add_run_calls(
                    &self,
                    deltas: &[(String, i64)],
                ) -> Result<(), AuditError> {
                    let mut conn = self.writer.conn().await.map_err(AuditError::Query)?;
                    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(AuditError::Query)?;
                    for (run_id, calls) in deltas {
                        sqlx::query("UPDATE agent_runs SET calls = calls + $1 WHERE run_id = $2")
                            .bind(*calls)
                            .bind(run_id.clone())
                            .execute(&mut *tx)
                            .await
                            .map_err(AuditError::Query)?;
                    }
                    tx.commit().await.map_err(AuditError::Query)
                }

                pub(super) async fn running_runs_of(&self, owner: &str) -> Result<i64, AuditError> {
                    sqlx::query("SELECT COUNT(*) FROM agent_runs WHERE owner = $1 AND status = 'running'")
                        .bind(owner.to_owned())
                        .fetch_one(&self.pool)
                        .await
                        .and_then(|row| row.try_get(0))
                        .map_err(AuditError::Query)
                }

                pub(super) async fn ended_among(
                    &self,
                    run_ids: &[String],
                ) -> Result<Vec<String>, AuditError> {
                    let mut q = QueryBuilder::<DB>::new(
                        "SELECT run_id FROM agent_runs WHERE status <> 'running' AND run_id IN (",
                    );
                    let mut list = q.separated(", ");
                    for id in run_ids {
                        list.push_bind(id.clone());
                    }
                    q.push(")");
                    q.build()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?
                        .iter()
                        .map(|r| r.try_get(0))
                        .collect::<Result<_, _>>()
                        .map_err(AuditError::Query)
                }

                pub(super) async fn due_runs(
                    &self,
                    now: &str,
                    limit: u32,
                ) -> Result<Vec<RunRow>, AuditError> {
                    let rows = sqlx::query(&format!(
                        "SELECT {COLUMNS} FROM agent_runs WHERE status = 'running' \
                         AND deadline_at <= $1 ORDER BY deadline_at LIMIT $2"
                    ))
                    .bind(now.to_owned())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(AuditError::Query)?;
                    decode_all(rows)
                }

                pub(super) async fn soonest_run_deadline(&self) -> Result<Option<String>, AuditError> {
                    sqlx::query_scalar(
                        "SELECT MIN(deadline_at) FROM agent_runs WHERE status = 'running'",
                    )
                    .fetch_one(&self.pool)
                    .await
                    .map_err(AuditError::Query)
                }

                pub(super) async fn runs_page(
                    &self,
                    page: &RunPage,
                ) -> Result<Vec<RunRow>, AuditError> {
                    let mut q = QueryBuilder::<DB>::new(format!(
                        "SELECT {COLUMNS} FROM agent_runs WHERE TRUE"
                    ));
                    if let Some(tenant_id) = &page.tenant_id {
                        q.push(" AND tenant_id = ").push_bind(tenant_id.clone());
                    }
                    if let Some(agent_id) = &page.agent_id {
                        q.push(" AND agent_id = ").push_bind(agent_id.clone());
                    }
                    if let Some(status) = &page.status {
                        q.push(" AND status = ").push_bind(status.clone());
                    }
                    if let Some((started_at, run_id)) = &page.after {
                        q.push(" AND (started_at < ")
                            .push_bind(started_at.clone())
                            .push(" OR (started_at = ")
                            .push_bind(started_at.clone())
                            .push(" AND run_id < ")
                            .push_bind(run_id.clone())
                            .push("))");
                    }
                    q.push(" ORDER BY started_at DESC, run_id DESC LIMIT ")
                        .push_bind(i64::from(page.limit));
                    decode_all(q.build().fetch_all(&self.pool).await.map_err(AuditError::Query)?)
                }
            }
        }
    };
}

impl_runs!(sqlite_runs, Sqlite);
impl_runs!(postgres_runs, Postgres);

impl super::AuditStore {
    /// Stores a new run.
    pub(crate) async fn insert_run(&self, row: &RunRow) -> Result<(), AuditError> {
        dispatch!(self, s => s.insert_run(row).await)
    }

    /// Removes a run whose start could not be recorded in the audit log.
    pub(crate) async fn delete_run(&self, run_id: &str) -> Result<(), AuditError> {
        dispatch!(self, s => s.delete_run(run_id).await)
    }

    /// The run `run_id`, if there is one.
    pub(crate) async fn run(&self, run_id: &str) -> Result<Option<RunRow>, AuditError> {
        dispatch!(self, s => s.run(run_id).await)
    }

    /// Ends a run still `running`; `false` when it is not (already ended, here or on another instance).
    pub(crate) async fn end_run(&self, end: &RunEnd) -> Result<bool, AuditError> {
        dispatch!(self, s => s.end_run(end).await)
    }

    /// Adds calls counted in memory to their runs, in one transaction.
    pub(crate) async fn add_run_calls(&self, deltas: &[(String, i64)]) -> Result<(), AuditError> {
        if deltas.is_empty() {
            return Ok(());
        }
        dispatch!(self, s => s.add_run_calls(deltas).await)
    }

    /// How many runs of the agent `owner` are running.
    pub(crate) async fn running_runs_of(&self, owner: &str) -> Result<i64, AuditError> {
        dispatch!(self, s => s.running_runs_of(owner).await)
    }

    /// Which of `run_ids` are no longer running (ended here or on another instance).
    pub(crate) async fn ended_among(&self, run_ids: &[String]) -> Result<Vec<String>, AuditError> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, s => s.ended_among(run_ids).await)
    }

    /// At most `limit` running runs whose deadline is at or before `now`, soonest first.
    pub(crate) async fn due_runs(&self, now: &str, limit: u32) -> Result<Vec<RunRow>, AuditError> {
        dispatch!(self, s => s.due_runs(now, limit).await)
    }

    /// The soonest deadline of a running run (RFC 3339), if any runs.
    pub(crate) async fn soonest_run_deadline(&self) -> Result<Option<String>, AuditError> {
        dispatch!(self, s => s.soonest_run_deadline().await)
    }

    /// One page of the runs listing.
    pub(crate) async fn runs_page(&self, page: &RunPage) -> Result<Vec<RunRow>, AuditError> {
        dispatch!(self, s => s.runs_page(page).await)
    }
}
