//! The SQL of the `agents` table: the agents seen (counts and times) and the kill switch. Rows carry the tenant
//! and agent ids as the audit log stores them (`crate::redaction::stored_text`, `''` for no tenant); what they
//! mean, and the counting in memory that feeds them, live in `crate::agents`.

use sqlx::{Postgres, QueryBuilder, Row, Sqlite};

use super::SqlStore;
use crate::audit::AuditError;

/// One row of `agents`, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    /// The tenant as stored; `''` for an agent of no tenant.
    pub tenant_id: String,
    pub agent_id: String,
    pub calls: i64,
    pub denials: i64,
    pub escalations: i64,
    pub first_seen: String,
    pub last_seen: String,
    pub disabled: bool,
    pub disabled_at: Option<String>,
    /// Who disabled it (the admin's name), while it is disabled.
    pub disabled_by: Option<String>,
}

/// What one instance saw of one agent since its last flush, added to the agent's row (or starting it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDelta {
    pub tenant_id: String,
    pub agent_id: String,
    pub calls: i64,
    pub denials: i64,
    pub escalations: i64,
    /// Written only when the row is new.
    pub first_seen: String,
    /// Kept when later than the stored one.
    pub last_seen: String,
}

/// One page of the agents listing: newest `last_seen` first, then by tenant and agent id.
#[derive(Debug, Clone, Default)]
pub struct AgentPage {
    /// `Some(true)`: only the disabled ones; `Some(false)`: only the others.
    pub disabled: Option<bool>,
    /// Agent ids (stored form) the configuration disables in every tenant: they count as disabled.
    pub config_disabled: Vec<String>,
    /// Only this tenant's agents (stored form: `""` for agents without a tenant).
    pub tenant_id: Option<String>,
    /// The `(last_seen, tenant_id, agent_id)` of the last row of the previous page.
    pub after: Option<(String, String, String)>,
    pub limit: u32,
}

const COLUMNS: &str =
    "tenant_id, agent_id, calls, denials, escalations, first_seen, last_seen, disabled, \
    disabled_at, disabled_by";

/// Rows per upsert statement: 7 binds each, far below either database's limit, and one statement's worth of
/// work for the database between other writers.
const UPSERT_CHUNK: usize = 512;

macro_rules! impl_agents {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;

            type DB = $db;

            fn decode(row: &<DB as sqlx::Database>::Row) -> Result<AgentRow, sqlx::Error> {
                Ok(AgentRow {
                    tenant_id: row.try_get(0)?,
                    agent_id: row.try_get(1)?,
                    calls: row.try_get(2)?,
                    denials: row.try_get(3)?,
                    escalations: row.try_get(4)?,
                    first_seen: row.try_get(5)?,
                    last_seen: row.try_get(6)?,
                    disabled: row.try_get(7)?,
                    disabled_at: row.try_get(8)?,
                    disabled_by: row.try_get(9)?,
                })
            }

            fn decode_all(
                rows: Vec<<DB as sqlx::Database>::Row>,
            ) -> Result<Vec<AgentRow>, AuditError> {
                rows.iter()
                    .map(decode)
                    .collect::<Result<_, _>>()
                    .map_err(AuditError::Query)
            }

            impl SqlStore<DB> {
                pub(super) async fn add_agent_counts(
                    &self,
                    deltas: &[AgentDelta],
                ) -> Result<(), AuditError> {
                    let mut conn = self.writer.conn().await.map_err(AuditError::Query)?;
                    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(AuditError::Query)?;
                    for chunk in deltas.chunks(UPSERT_CHUNK) {
                        let mut q = QueryBuilder::<DB>::new(
                            "INSERT INTO agents (tenant_id, agent_id, calls, denials, escalations, \
                             first_seen, last_seen) ",
                        );
                        q.push_values(chunk, |mut row, d| {
                            row.push_bind(d.tenant_id.clone())
                                .push_bind(d.agent_id.clone())
                                .push_bind(d.calls)
                                .push_bind(d.denials)
                                .push_bind(d.escalations)
                                .push_bind(d.first_seen.clone())
                                .push_bind(d.last_seen.clone());
                        });
                        // Deltas are added, never overwritten, so instances sharing the database each add
                        // their own.
                        q.push(
                            " ON CONFLICT (tenant_id, agent_id) DO UPDATE SET \
                             calls = agents.calls + excluded.calls, \
                             denials = agents.denials + excluded.denials, \
                             escalations = agents.escalations + excluded.escalations, \
                             last_seen = CASE WHEN excluded.last_seen > agents.last_seen \
                             THEN excluded.last_seen ELSE agents.last_seen END",
                        );
                        q.build()
                            .execute(&mut *tx)
                            .await
                            .map_err(AuditError::Query)?;
                    }
                    tx.commit().await.map_err(AuditError::Query)
                }

                pub(super) async fn disabled_agents(
                    &self,
                ) -> Result<Vec<(String, String)>, AuditError> {
                    sqlx::query("SELECT tenant_id, agent_id FROM agents WHERE disabled")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?
                        .iter()
                        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(AuditError::Query)
                }

                pub(super) async fn agents_page(
                    &self,
                    page: &AgentPage,
                ) -> Result<Vec<AgentRow>, AuditError> {
                    let mut q = QueryBuilder::<DB>::new(format!("SELECT {COLUMNS} FROM agents WHERE TRUE"));
                    if let Some(tenant) = &page.tenant_id {
                        q.push(" AND tenant_id = ").push_bind(tenant.clone());
                    }
                    if let Some(disabled) = page.disabled {
                        // Disabled in the table, or by the configuration (in every tenant).
                        q.push(if disabled { " AND (disabled" } else { " AND (NOT disabled" });
                        if !page.config_disabled.is_empty() {
                            q.push(if disabled { " OR agent_id IN (" } else { " AND agent_id NOT IN (" });
                            let mut ids = q.separated(", ");
                            for id in &page.config_disabled {
                                ids.push_bind(id.clone());
                            }
                            q.push(")");
                        }
                        q.push(")");
                    }
                    if let Some((last_seen, tenant_id, agent_id)) = &page.after {
                        q.push(" AND (last_seen < ")
                            .push_bind(last_seen.clone())
                            .push(" OR (last_seen = ")
                            .push_bind(last_seen.clone())
                            .push(" AND (tenant_id > ")
                            .push_bind(tenant_id.clone())
                            .push(" OR (tenant_id = ")
                            .push_bind(tenant_id.clone())
                            .push(" AND agent_id > ")
                            .push_bind(agent_id.clone())
                            .push("))))");
                    }
                    q.push(" ORDER BY last_seen DESC, tenant_id, agent_id LIMIT ")
                        .push_bind(i64::from(page.limit));
                    decode_all(q.build().fetch_all(&self.pool).await.map_err(AuditError::Query)?)
                }

                pub(super) async fn agents_named(
                    &self,
                    agent_id: &str,
                    tenant_id: Option<&str>,
                ) -> Result<Vec<AgentRow>, AuditError> {
                    let mut q = QueryBuilder::<DB>::new(format!("SELECT {COLUMNS} FROM agents WHERE agent_id = "));
                    q.push_bind(agent_id.to_owned());
                    if let Some(tenant_id) = tenant_id {
                        q.push(" AND tenant_id = ").push_bind(tenant_id.to_owned());
                    }
                    q.push(" ORDER BY tenant_id");
                    decode_all(q.build().fetch_all(&self.pool).await.map_err(AuditError::Query)?)
                }

                pub(super) async fn set_agent_disabled(
                    &self,
                    tenant_id: &str,
                    agent_id: &str,
                    disabled: bool,
                    at: Option<&str>,
                    by: Option<&str>,
                ) -> Result<bool, AuditError> {
                    let changed = sqlx::query(
                        "UPDATE agents SET disabled = $1, disabled_at = $2, disabled_by = $3 \
                         WHERE tenant_id = $4 AND agent_id = $5 AND disabled = $6",
                    )
                    .bind(disabled)
                    .bind(at.map(str::to_owned))
                    .bind(by.map(str::to_owned))
                    .bind(tenant_id.to_owned())
                    .bind(agent_id.to_owned())
                    .bind(!disabled)
                    .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?
                    .rows_affected();
                    Ok(changed == 1)
                }
            }
        }
    };
}

impl_agents!(sqlite_agents, Sqlite);
impl_agents!(postgres_agents, Postgres);

impl super::AuditStore {
    /// Adds each delta to its agent's row, starting the rows of agents not seen before, in one transaction.
    /// Each `(tenant_id, agent_id)` must appear at most once.
    pub(crate) async fn add_agent_counts(&self, deltas: &[AgentDelta]) -> Result<(), AuditError> {
        if deltas.is_empty() {
            return Ok(());
        }
        dispatch!(self, s => s.add_agent_counts(deltas).await)
    }

    /// The `(tenant_id, agent_id)` of every agent disabled in the table.
    pub(crate) async fn disabled_agents(&self) -> Result<Vec<(String, String)>, AuditError> {
        dispatch!(self, s => s.disabled_agents().await)
    }

    /// One page of the agents listing.
    pub(crate) async fn agents_page(&self, page: &AgentPage) -> Result<Vec<AgentRow>, AuditError> {
        dispatch!(self, s => s.agents_page(page).await)
    }

    /// The rows of `agent_id` (stored form): in every tenant, or in `tenant_id` only.
    pub(crate) async fn agents_named(
        &self,
        agent_id: &str,
        tenant_id: Option<&str>,
    ) -> Result<Vec<AgentRow>, AuditError> {
        dispatch!(self, s => s.agents_named(agent_id, tenant_id).await)
    }

    /// Disables (with when and by whom) or enables an agent; `false` when it has no row or already was in that
    /// state (perhaps changed by another instance a moment ago).
    pub(crate) async fn set_agent_disabled(
        &self,
        tenant_id: &str,
        agent_id: &str,
        disabled: bool,
        at: Option<&str>,
        by: Option<&str>,
    ) -> Result<bool, AuditError> {
        dispatch!(self, s => s.set_agent_disabled(tenant_id, agent_id, disabled, at, by).await)
    }
}
