//! The SQL of the `escalations` table: escalated calls waiting for, or decided by, a reviewer. Rows carry plain
//! strings; what they mean (who may take an answer, when one expires) lives in `crate::escalation`.
//!
//! Every change that more than one instance could race for is one conditional statement, so the database
//! decides who wins: a decision (`WHERE status = 'pending'`), an expiry (the same), and taking an answer
//! (`WHERE delivered = FALSE`), which is how one approval lets exactly one call through.

use sqlx::{Postgres, QueryBuilder, Row, Sqlite};

use super::SqlStore;
use crate::audit::AuditError;

/// One row of `escalations`, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationRow {
    pub id: String,
    /// SHA-256 hex of the agent's tenant and `sub`.
    pub agent_key: String,
    /// SHA-256 hex of the call's identity (agent, upstream, method, name, exact argument hash).
    pub fingerprint: String,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    /// Whether a held call or a retry has taken the decision.
    pub delivered: bool,
    pub agent_id: String,
    pub tenant_id: Option<String>,
    pub tool_name: String,
    pub mcp_server: String,
    pub action: String,
    pub target: Option<String>,
    pub policy_id: String,
    pub reason: String,
}

/// Where a page of the listing starts: after the row with this sort key (see [`EscalationPage`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EscalationKey {
    /// 0 for a pending escalation, 1 for a decided one: pending ones are listed first.
    pub rank: i64,
    pub created_at: String,
    pub id: String,
}

/// What one page of the listing asks for: pending first, then newest first (`created_at`, then `id`).
#[derive(Debug, Clone, Default)]
pub struct EscalationPage {
    pub status: Option<String>,
    /// Only this tenant's escalations (a tenant's admin).
    pub tenant_id: Option<String>,
    pub limit: u32,
    pub after: Option<EscalationKey>,
}

const COLUMNS: &str =
    "id, agent_key, fingerprint, status, created_at, expires_at, decided_at, decided_by, \
    delivered, agent_id, tenant_id, tool_name, mcp_server, action, target, policy_id, reason";

/// The listing's sort rank of a row (see [`EscalationKey::rank`]).
const RANK: &str = "(CASE WHEN status = 'pending' THEN 0 ELSE 1 END)";

/// Decided statuses whose answer a retry can take.
const ANSWERED: &str = "status IN ('approved', 'denied', 'expired')";

macro_rules! impl_escalations {
    ($module:ident, $db:ty, $serialise_agent:expr) => {
        mod $module {
            use super::*;

            type DB = $db;

            fn decode(row: &<DB as sqlx::Database>::Row) -> Result<EscalationRow, sqlx::Error> {
                Ok(EscalationRow {
                    id: row.try_get(0)?,
                    agent_key: row.try_get(1)?,
                    fingerprint: row.try_get(2)?,
                    status: row.try_get(3)?,
                    created_at: row.try_get(4)?,
                    expires_at: row.try_get(5)?,
                    decided_at: row.try_get(6)?,
                    decided_by: row.try_get(7)?,
                    delivered: row.try_get(8)?,
                    agent_id: row.try_get(9)?,
                    tenant_id: row.try_get(10)?,
                    tool_name: row.try_get(11)?,
                    mcp_server: row.try_get(12)?,
                    action: row.try_get(13)?,
                    target: row.try_get(14)?,
                    policy_id: row.try_get(15)?,
                    reason: row.try_get(16)?,
                })
            }

            fn decode_all(
                rows: Vec<<DB as sqlx::Database>::Row>,
            ) -> Result<Vec<EscalationRow>, AuditError> {
                rows.iter()
                    .map(decode)
                    .collect::<Result<_, _>>()
                    .map_err(AuditError::Query)
            }

            impl SqlStore<DB> {
                pub(super) async fn insert_escalation(
                    &self,
                    row: &EscalationRow,
                    max_pending: i64,
                ) -> Result<bool, AuditError> {
                    let mut conn = self.writer.conn().await.map_err(AuditError::Query)?;
                    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(AuditError::Query)?;
                    // PostgreSQL: concurrent transactions do not see each other's new rows, so the count below
                    // is made under a per-agent lock held to the commit. SQLite runs one write at a time.
                    let serialise: Option<&str> = $serialise_agent;
                    if let Some(lock) = serialise {
                        sqlx::query(lock)
                            .bind(row.agent_key.clone())
                            .execute(&mut *tx)
                            .await
                            .map_err(AuditError::Query)?;
                    }
                    let inserted = sqlx::query(&format!(
                        "INSERT INTO escalations ({COLUMNS}) \
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 \
                         WHERE (SELECT COUNT(*) FROM escalations WHERE agent_key = $2 AND status = 'pending') < $18"
                    ))
                    .bind(row.id.clone())
                    .bind(row.agent_key.clone())
                    .bind(row.fingerprint.clone())
                    .bind(row.status.clone())
                    .bind(row.created_at.clone())
                    .bind(row.expires_at.clone())
                    .bind(row.decided_at.clone())
                    .bind(row.decided_by.clone())
                    .bind(row.delivered)
                    .bind(row.agent_id.clone())
                    .bind(row.tenant_id.clone())
                    .bind(row.tool_name.clone())
                    .bind(row.mcp_server.clone())
                    .bind(row.action.clone())
                    .bind(row.target.clone())
                    .bind(row.policy_id.clone())
                    .bind(row.reason.clone())
                    .bind(max_pending)
                    .execute(&mut *tx)
                    .await
                    .map_err(AuditError::Query)?
                    .rows_affected();
                    tx.commit().await.map_err(AuditError::Query)?;
                    Ok(inserted == 1)
                }

                pub(super) async fn escalation(
                    &self,
                    id: &str,
                ) -> Result<Option<EscalationRow>, AuditError> {
                    sqlx::query(&format!("SELECT {COLUMNS} FROM escalations WHERE id = $1"))
                        .bind(id.to_owned())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(AuditError::Query)?
                        .as_ref()
                        .map(decode)
                        .transpose()
                        .map_err(AuditError::Query)
                }

                pub(super) async fn pending_escalations_of(
                    &self,
                    agent_key: &str,
                ) -> Result<i64, AuditError> {
                    sqlx::query(
                        "SELECT COUNT(*) FROM escalations WHERE agent_key = $1 AND status = 'pending'",
                    )
                    .bind(agent_key.to_owned())
                    .fetch_one(&self.pool)
                    .await
                    .and_then(|row| row.try_get(0))
                    .map_err(AuditError::Query)
                }

                pub(super) async fn pending_escalations(
                    &self,
                ) -> Result<(i64, Option<String>), AuditError> {
                    let row = sqlx::query(
                        "SELECT COUNT(*), MIN(expires_at) FROM escalations WHERE status = 'pending'",
                    )
                    .fetch_one(&self.pool)
                    .await
                    .map_err(AuditError::Query)?;
                    Ok((
                        row.try_get(0).map_err(AuditError::Query)?,
                        row.try_get(1).map_err(AuditError::Query)?,
                    ))
                }

                pub(super) async fn pending_escalation_like(
                    &self,
                    agent_key: &str,
                    fingerprint: &str,
                    now: &str,
                ) -> Result<Option<String>, AuditError> {
                    sqlx::query(
                        "SELECT id FROM escalations WHERE fingerprint = $1 AND agent_key = $2 \
                         AND status = 'pending' AND expires_at > $3 ORDER BY created_at, id LIMIT 1",
                    )
                    .bind(fingerprint.to_owned())
                    .bind(agent_key.to_owned())
                    .bind(now.to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .and_then(|row| row.map(|r| r.try_get(0)).transpose())
                    .map_err(AuditError::Query)
                }

                pub(super) async fn answer_waiting_for(
                    &self,
                    agent_key: &str,
                    fingerprint: &str,
                    decided_since: &str,
                ) -> Result<Option<String>, AuditError> {
                    sqlx::query(&format!(
                        "SELECT id FROM escalations WHERE fingerprint = $1 AND agent_key = $2 \
                         AND {ANSWERED} AND delivered = FALSE AND decided_at >= $3 \
                         ORDER BY decided_at, id LIMIT 1"
                    ))
                    .bind(fingerprint.to_owned())
                    .bind(agent_key.to_owned())
                    .bind(decided_since.to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .and_then(|row| row.map(|r| r.try_get(0)).transpose())
                    .map_err(AuditError::Query)
                }

                pub(super) async fn take_answer(&self, id: &str) -> Result<Option<String>, AuditError> {
                    sqlx::query(&format!(
                        "UPDATE escalations SET delivered = TRUE \
                         WHERE id = $1 AND {ANSWERED} AND delivered = FALSE RETURNING status"
                    ))
                    .bind(id.to_owned())
                    .fetch_optional(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .and_then(|row| row.map(|r| r.try_get(0)).transpose())
                    .map_err(AuditError::Query)
                }

                pub(super) async fn decide_escalation(
                    &self,
                    id: &str,
                    status: &str,
                    decided_by: &str,
                    now: &str,
                ) -> Result<Option<EscalationRow>, AuditError> {
                    sqlx::query(&format!(
                        "UPDATE escalations SET status = $1, decided_at = $2, decided_by = $3 \
                         WHERE id = $4 AND status = 'pending' AND expires_at > $2 RETURNING {COLUMNS}"
                    ))
                    .bind(status.to_owned())
                    .bind(now.to_owned())
                    .bind(decided_by.to_owned())
                    .bind(id.to_owned())
                    .fetch_optional(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?
                    .as_ref()
                    .map(decode)
                    .transpose()
                    .map_err(AuditError::Query)
                }

                pub(super) async fn expire_escalations(
                    &self,
                    now: &str,
                ) -> Result<Vec<EscalationRow>, AuditError> {
                    let rows = sqlx::query(&format!(
                        "UPDATE escalations SET status = 'expired', decided_at = $1 \
                         WHERE status = 'pending' AND expires_at <= $1 RETURNING {COLUMNS}"
                    ))
                    .bind(now.to_owned())
                    .fetch_all(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?;
                    decode_all(rows)
                }

                pub(super) async fn prune_settled_escalations(
                    &self,
                    before: &str,
                ) -> Result<u64, AuditError> {
                    sqlx::query(
                        "DELETE FROM escalations WHERE status <> 'pending' AND decided_at IS NOT NULL \
                         AND decided_at < $1",
                    )
                    .bind(before.to_owned())
                    .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map(|done| done.rows_affected())
                    .map_err(AuditError::Query)
                }

                pub(super) async fn decided_among(
                    &self,
                    ids: &[String],
                ) -> Result<Vec<String>, AuditError> {
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut query: QueryBuilder<'_, DB> =
                        QueryBuilder::new("SELECT id FROM escalations WHERE status <> 'pending' AND id IN (");
                    let mut list = query.separated(", ");
                    for id in ids {
                        list.push_bind(id.clone());
                    }
                    query.push(")");
                    query
                        .build()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?
                        .iter()
                        .map(|r| r.try_get(0))
                        .collect::<Result<_, _>>()
                        .map_err(AuditError::Query)
                }

                pub(super) async fn list_escalations(
                    &self,
                    page: &EscalationPage,
                ) -> Result<Vec<EscalationRow>, AuditError> {
                    let mut query: QueryBuilder<'_, DB> =
                        QueryBuilder::new(format!("SELECT {COLUMNS} FROM escalations WHERE 1 = 1"));
                    if let Some(status) = &page.status {
                        query.push(" AND status = ").push_bind(status.clone());
                    }
                    if let Some(tenant) = &page.tenant_id {
                        query.push(" AND tenant_id = ").push_bind(tenant.clone());
                    }
                    if let Some(after) = &page.after {
                        // The rows after `after` in the listing's order (rank up, then time and id down).
                        query
                            .push(format!(" AND ({RANK} > "))
                            .push_bind(after.rank)
                            .push(format!(" OR ({RANK} = "))
                            .push_bind(after.rank)
                            .push(" AND (created_at < ")
                            .push_bind(after.created_at.clone())
                            .push(" OR (created_at = ")
                            .push_bind(after.created_at.clone())
                            .push(" AND id < ")
                            .push_bind(after.id.clone())
                            .push("))))");
                    }
                    query
                        .push(format!(" ORDER BY {RANK}, created_at DESC, id DESC LIMIT "))
                        .push_bind(i64::from(page.limit));
                    let rows = query
                        .build()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?;
                    decode_all(rows)
                }
            }
        }
    };
}

impl_escalations!(sqlite_escalations, Sqlite, None);
// `hashtext` folds the agent key to the advisory lock's integer; two agents sharing a lock only wait for
// each other.
impl_escalations!(
    postgres_escalations,
    Postgres,
    Some("SELECT pg_advisory_xact_lock(hashtext($1))")
);

impl super::AuditStore {
    /// Stores a new escalation unless its agent already has `max_pending` pending (then `false`, nothing
    /// stored). Exact across instances: the count and the insert cannot interleave with another agent's.
    pub(crate) async fn insert_escalation(
        &self,
        row: &EscalationRow,
        max_pending: i64,
    ) -> Result<bool, AuditError> {
        dispatch!(self, s => s.insert_escalation(row, max_pending).await)
    }

    pub(crate) async fn escalation(&self, id: &str) -> Result<Option<EscalationRow>, AuditError> {
        dispatch!(self, s => s.escalation(id).await)
    }

    /// How many escalations of the agent `agent_key` are pending.
    pub(crate) async fn pending_escalations_of(&self, agent_key: &str) -> Result<i64, AuditError> {
        dispatch!(self, s => s.pending_escalations_of(agent_key).await)
    }

    /// How many escalations are pending, and the soonest time one of them expires.
    pub(crate) async fn pending_escalations(&self) -> Result<(i64, Option<String>), AuditError> {
        dispatch!(self, s => s.pending_escalations().await)
    }

    /// The oldest escalation of this agent and fingerprint still pending at `now`.
    pub(crate) async fn pending_escalation_like(
        &self,
        agent_key: &str,
        fingerprint: &str,
        now: &str,
    ) -> Result<Option<String>, AuditError> {
        dispatch!(self, s => s.pending_escalation_like(agent_key, fingerprint, now).await)
    }

    /// The oldest decided escalation of this agent and fingerprint whose answer nobody took yet, decided at or
    /// after `decided_since`. Only a candidate: [`AuditStore::take_answer`] says whether this caller gets it.
    pub(crate) async fn answer_waiting_for(
        &self,
        agent_key: &str,
        fingerprint: &str,
        decided_since: &str,
    ) -> Result<Option<String>, AuditError> {
        dispatch!(self, s => s.answer_waiting_for(agent_key, fingerprint, decided_since).await)
    }

    /// Takes the decision of escalation `id` (its status) if it is decided and nobody took it yet; `None`
    /// otherwise. Of callers racing for one answer, on any instance, exactly one gets it.
    pub(crate) async fn take_answer(&self, id: &str) -> Result<Option<String>, AuditError> {
        dispatch!(self, s => s.take_answer(id).await)
    }

    /// Decides escalation `id` (`approved` or `denied`) if it is pending and not past its expiry at `now`;
    /// `None` otherwise (unknown, decided or expired).
    pub(crate) async fn decide_escalation(
        &self,
        id: &str,
        status: &str,
        decided_by: &str,
        now: &str,
    ) -> Result<Option<EscalationRow>, AuditError> {
        dispatch!(self, s => s.decide_escalation(id, status, decided_by, now).await)
    }

    /// Expires every escalation pending past its expiry at `now` and returns them; each expires once, on
    /// whichever instance gets there first.
    pub(crate) async fn expire_escalations(
        &self,
        now: &str,
    ) -> Result<Vec<EscalationRow>, AuditError> {
        dispatch!(self, s => s.expire_escalations(now).await)
    }

    /// Deletes the escalations settled (approved, denied or expired) before `before`; pending ones are never
    /// touched. Their decisions stay in the audit log (`escalation_decided`, `escalation_expired`).
    pub(crate) async fn prune_settled_escalations(&self, before: &str) -> Result<u64, AuditError> {
        dispatch!(self, s => s.prune_settled_escalations(before).await)
    }

    /// Which of `ids` are no longer pending.
    pub(crate) async fn decided_among(&self, ids: &[String]) -> Result<Vec<String>, AuditError> {
        dispatch!(self, s => s.decided_among(ids).await)
    }

    /// One page of escalations: pending first, then newest first.
    pub(crate) async fn list_escalations(
        &self,
        page: &EscalationPage,
    ) -> Result<Vec<EscalationRow>, AuditError> {
        dispatch!(self, s => s.list_escalations(page).await)
    }
}
