//! The SQL of behaviour: the `alerts` table, baseline snapshots (`behaviour_baselines`) and pinned prompt
//! hashes (`prompt_pins`). Rows carry ids and texts already redacted by their callers (`crate::alerts`,
//! `crate::behaviour`); what they mean lives there.

use sqlx::{Postgres, QueryBuilder, Row, Sqlite};

use super::SqlStore;
use crate::audit::AuditError;

/// One row of `alerts`, as stored (`''` for no tenant or no agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub id: String,
    pub kind: String,
    pub severity: String,
    pub tenant_id: String,
    pub agent_id: String,
    pub status: String,
    pub opened_at: String,
    pub detail: String,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
}

/// One page of the alerts listing, newest first.
#[derive(Debug, Clone, Default)]
pub struct AlertPage {
    pub status: Option<String>,
    pub kind: Option<String>,
    pub agent_id: Option<String>,
    pub tenant_id: Option<String>,
    /// `(opened_at, id)` of the last row of the previous page.
    pub after: Option<(String, String)>,
    pub limit: u32,
}

/// One agent's baseline snapshot (JSON text) or prompt pin, keyed by stored tenant and agent ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentText {
    pub tenant_id: String,
    pub agent_id: String,
    pub text: String,
}

const COLUMNS: &str = "id, kind, severity, tenant_id, agent_id, status, opened_at, detail, \
    acknowledged_at, acknowledged_by, resolved_at, resolved_by";

/// Rows per upsert statement: 4 binds each.
const UPSERT_CHUNK: usize = 512;

macro_rules! impl_behaviour {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;

            type DB = $db;

            fn decode(row: &<DB as sqlx::Database>::Row) -> Result<AlertRow, sqlx::Error> {
                Ok(AlertRow {
                    id: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    severity: row.try_get(2)?,
                    tenant_id: row.try_get(3)?,
                    agent_id: row.try_get(4)?,
                    status: row.try_get(5)?,
                    opened_at: row.try_get(6)?,
                    detail: row.try_get(7)?,
                    acknowledged_at: row.try_get(8)?,
                    acknowledged_by: row.try_get(9)?,
                    resolved_at: row.try_get(10)?,
                    resolved_by: row.try_get(11)?,
                })
            }

            impl SqlStore<DB> {
                pub(super) async fn insert_alert(&self, a: &AlertRow) -> Result<bool, AuditError> {
                    // The partial unique index refuses a second open alert of the same kind and agent,
                    // whichever instance raises it.
                    let inserted = sqlx::query(
                        "INSERT INTO alerts (id, kind, severity, tenant_id, agent_id, status, opened_at, detail) \
                         VALUES ($1, $2, $3, $4, $5, 'open', $6, $7) ON CONFLICT DO NOTHING",
                    )
                    .bind(a.id.clone())
                    .bind(a.kind.clone())
                    .bind(a.severity.clone())
                    .bind(a.tenant_id.clone())
                    .bind(a.agent_id.clone())
                    .bind(a.opened_at.clone())
                    .bind(a.detail.clone())
                    .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?
                    .rows_affected();
                    Ok(inserted == 1)
                }

                pub(super) async fn alert(&self, id: &str) -> Result<Option<AlertRow>, AuditError> {
                    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM alerts WHERE id = $1"))
                        .bind(id.to_owned())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(AuditError::Query)?;
                    row.as_ref().map(decode).transpose().map_err(AuditError::Query)
                }

                pub(super) async fn set_alert_status(
                    &self,
                    id: &str,
                    from: &[&str],
                    to: &str,
                    at: &str,
                    by: &str,
                ) -> Result<bool, AuditError> {
                    let (at_col, by_col) = if to == "resolved" {
                        ("resolved_at", "resolved_by")
                    } else {
                        ("acknowledged_at", "acknowledged_by")
                    };
                    let mut q = QueryBuilder::<DB>::new(format!("UPDATE alerts SET status = "));
                    q.push_bind(to.to_owned())
                        .push(format!(", {at_col} = "))
                        .push_bind(at.to_owned())
                        .push(format!(", {by_col} = "))
                        .push_bind(by.to_owned())
                        .push(" WHERE id = ")
                        .push_bind(id.to_owned())
                        .push(" AND status IN (");
                    let mut states = q.separated(", ");
                    for s in from {
                        states.push_bind((*s).to_owned());
                    }
                    q.push(")");
                    let changed = q
                        .build()
                        .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                        .await
                        .map_err(AuditError::Query)?
                        .rows_affected();
                    Ok(changed == 1)
                }

                pub(super) async fn alerts_page(&self, page: &AlertPage) -> Result<Vec<AlertRow>, AuditError> {
                    let mut q = QueryBuilder::<DB>::new(format!("SELECT {COLUMNS} FROM alerts WHERE TRUE"));
                    for (column, value) in [
                        ("status", &page.status),
                        ("kind", &page.kind),
                        ("agent_id", &page.agent_id),
                        ("tenant_id", &page.tenant_id),
                    ] {
                        if let Some(v) = value {
                            q.push(format!(" AND {column} = ")).push_bind(v.clone());
                        }
                    }
                    if let Some((opened_at, id)) = &page.after {
                        q.push(" AND (opened_at < ")
                            .push_bind(opened_at.clone())
                            .push(" OR (opened_at = ")
                            .push_bind(opened_at.clone())
                            .push(" AND id < ")
                            .push_bind(id.clone())
                            .push("))");
                    }
                    q.push(" ORDER BY opened_at DESC, id DESC LIMIT ")
                        .push_bind(i64::from(page.limit));
                    let rows = q.build().fetch_all(&self.pool).await.map_err(AuditError::Query)?;
                    rows.iter().map(decode).collect::<Result<_, _>>().map_err(AuditError::Query)
                }

                pub(super) async fn open_alerts(&self) -> Result<Vec<(String, String, String, String)>, AuditError> {
                    sqlx::query("SELECT kind, tenant_id, agent_id, severity FROM alerts WHERE status = 'open'")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?
                        .iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(AuditError::Query)
                }

                pub(super) async fn put_baselines(&self, rows: &[AgentText], at: &str) -> Result<(), AuditError> {
                    self.insert_texts(
                        "INSERT INTO behaviour_baselines (tenant_id, agent_id, snapshot, updated_at) ",
                        " ON CONFLICT (tenant_id, agent_id) DO UPDATE SET \
                         snapshot = excluded.snapshot, updated_at = excluded.updated_at",
                        rows,
                        at,
                    )
                    .await
                }

                /// `rows` (tenant, agent, text) and `at` inserted by `head` in chunks, each ending with
                /// `on_conflict`, in one transaction.
                async fn insert_texts(
                    &self,
                    head: &'static str,
                    on_conflict: &'static str,
                    rows: &[AgentText],
                    at: &str,
                ) -> Result<(), AuditError> {
                    let mut conn = self.writer.conn().await.map_err(AuditError::Query)?;
                    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(AuditError::Query)?;
                    for chunk in rows.chunks(UPSERT_CHUNK) {
                        let mut q = QueryBuilder::<DB>::new(head);
                        q.push_values(chunk, |mut row, r| {
                            row.push_bind(r.tenant_id.clone())
                                .push_bind(r.agent_id.clone())
                                .push_bind(r.text.clone())
                                .push_bind(at.to_owned());
                        });
                        q.push(on_conflict);
                        q.build().execute(&mut *tx).await.map_err(AuditError::Query)?;
                    }
                    tx.commit().await.map_err(AuditError::Query)
                }

                pub(super) async fn texts(&self, sql: &str) -> Result<Vec<AgentText>, AuditError> {
                    sqlx::query(sql)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?
                        .iter()
                        .map(|r| {
                            Ok(AgentText {
                                tenant_id: r.try_get(0)?,
                                agent_id: r.try_get(1)?,
                                text: r.try_get(2)?,
                            })
                        })
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(AuditError::Query)
                }

                pub(super) async fn pin_prompts(&self, pins: &[AgentText], at: &str) -> Result<(), AuditError> {
                    self.insert_texts(
                        "INSERT INTO prompt_pins (tenant_id, agent_id, prompt_hash, pinned_at) ",
                        // The first pin stands: another instance's earlier one is not overwritten.
                        " ON CONFLICT (tenant_id, agent_id) DO NOTHING",
                        pins,
                        at,
                    )
                    .await
                }

                pub(super) async fn unpin_prompt(
                    &self,
                    agent_id: &str,
                    tenant_id: Option<&str>,
                ) -> Result<Vec<AgentText>, AuditError> {
                    // One statement: a read then a write in one SQLite transaction could not upgrade its lock
                    // while the audit writer writes.
                    let mut q = QueryBuilder::<DB>::new("DELETE FROM prompt_pins WHERE agent_id = ");
                    q.push_bind(agent_id.to_owned());
                    if let Some(t) = tenant_id {
                        q.push(" AND tenant_id = ").push_bind(t.to_owned());
                    }
                    q.push(" RETURNING tenant_id, agent_id, prompt_hash");
                    let rows = q.build().fetch_all(&self.pool).await.map_err(AuditError::Query)?;
                    rows.iter()
                        .map(|r| {
                            Ok(AgentText {
                                tenant_id: r.try_get(0)?,
                                agent_id: r.try_get(1)?,
                                text: r.try_get(2)?,
                            })
                        })
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(AuditError::Query)
                }
            }
        }
    };
}

impl_behaviour!(sqlite_behaviour, Sqlite);
impl_behaviour!(postgres_behaviour, Postgres);

impl super::AuditStore {
    /// Opens an alert; `false` when one of the same kind and agent is open already (on any instance).
    pub(crate) async fn insert_alert(&self, alert: &AlertRow) -> Result<bool, AuditError> {
        dispatch!(self, s => s.insert_alert(alert).await)
    }

    pub(crate) async fn alert(&self, id: &str) -> Result<Option<AlertRow>, AuditError> {
        dispatch!(self, s => s.alert(id).await)
    }

    /// Moves an alert in one of the states `from` to `to` (`acknowledged` or `resolved`), noting when and by
    /// whom; `false` when it is in none of them (or unknown).
    pub(crate) async fn set_alert_status(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        at: &str,
        by: &str,
    ) -> Result<bool, AuditError> {
        dispatch!(self, s => s.set_alert_status(id, from, to, at, by).await)
    }

    pub(crate) async fn alerts_page(&self, page: &AlertPage) -> Result<Vec<AlertRow>, AuditError> {
        dispatch!(self, s => s.alerts_page(page).await)
    }

    /// `(kind, tenant_id, agent_id, severity)` of every open alert.
    pub(crate) async fn open_alerts(
        &self,
    ) -> Result<Vec<(String, String, String, String)>, AuditError> {
        dispatch!(self, s => s.open_alerts().await)
    }

    /// Writes (or replaces) baseline snapshots.
    pub(crate) async fn put_baselines(
        &self,
        rows: &[AgentText],
        at: &str,
    ) -> Result<(), AuditError> {
        if rows.is_empty() {
            return Ok(());
        }
        dispatch!(self, s => s.put_baselines(rows, at).await)
    }

    pub async fn baselines(&self) -> Result<Vec<AgentText>, AuditError> {
        dispatch!(self, s => s.texts("SELECT tenant_id, agent_id, snapshot FROM behaviour_baselines").await)
    }

    /// Pins prompt hashes of agents that have none (an existing pin stands).
    pub(crate) async fn pin_prompts(&self, pins: &[AgentText], at: &str) -> Result<(), AuditError> {
        if pins.is_empty() {
            return Ok(());
        }
        dispatch!(self, s => s.pin_prompts(pins, at).await)
    }

    pub async fn prompt_pins(&self) -> Result<Vec<AgentText>, AuditError> {
        dispatch!(self, s => s.texts("SELECT tenant_id, agent_id, prompt_hash FROM prompt_pins").await)
    }

    /// Deletes the pins of `agent_id` (in every tenant, or in `tenant_id`), answering the pins deleted.
    pub(crate) async fn unpin_prompt(
        &self,
        agent_id: &str,
        tenant_id: Option<&str>,
    ) -> Result<Vec<AgentText>, AuditError> {
        dispatch!(self, s => s.unpin_prompt(agent_id, tenant_id).await)
    }
}
