//! The reads behind the live feed (`GET /api/v1/audit/stream`): every chain's stored head, and one chain's
//! events after a seq, filtered, in seq order. A feed position is a seq per chain, so a resumed feed reads each
//! chain from where its client stopped, whichever instance wrote it.

use sqlx::{Postgres, QueryBuilder, Row, Sqlite};
use toolgate_engine::chain::AuditEvent;

use super::{decode_event, SqlStore, SELECT_COLUMNS};
use crate::audit::AuditError;

/// The feed's filters: an event passes when each non-empty list holds its value (an event without the field
/// passes no list). The same test runs in SQL for stored events and in [`FeedFilter::matches`] for live ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    pub agent_ids: Vec<String>,
    pub policy_results: Vec<String>,
    pub event_types: Vec<String>,
    /// A tenant admin's feed: only events of these tenants (empty: every event, tenant or none).
    pub tenant_ids: Vec<String>,
}

impl FeedFilter {
    /// Whether `event` passes, exactly as [`super::AuditStore::chain_events`] selects stored events.
    pub fn matches(&self, event: &AuditEvent) -> bool {
        fn passes(allowed: &[String], value: Option<&str>) -> bool {
            allowed.is_empty() || value.is_some_and(|v| allowed.iter().any(|a| a == v))
        }
        passes(&self.agent_ids, event.agent_id.as_deref())
            && passes(&self.policy_results, event.policy_result.as_deref())
            && passes(&self.event_types, Some(&event.event_type))
            && passes(&self.tenant_ids, event.tenant_id.as_deref())
    }

    /// `(column, allowed values)` for the SQL side.
    fn columns(&self) -> [(&'static str, &[String]); 4] {
        [
            ("agent_id", &self.agent_ids),
            ("policy_result", &self.policy_results),
            ("event_type", &self.event_types),
            ("tenant_id", &self.tenant_ids),
        ]
    }
}

macro_rules! impl_feed {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;

            type DB = $db;

            impl SqlStore<DB> {
                pub(super) async fn chain_heads(&self) -> Result<Vec<(String, i64)>, AuditError> {
                    sqlx::query("SELECT chain_id, head_seq FROM audit_chains ORDER BY chain_id")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?
                        .iter()
                        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(AuditError::Query)
                }

                pub(super) async fn chain_events(
                    &self,
                    chain: &str,
                    after: i64,
                    through: i64,
                    filter: &FeedFilter,
                    limit: u32,
                ) -> Result<Vec<AuditEvent>, AuditError> {
                    let mut select = QueryBuilder::<DB>::new(format!(
                        "SELECT {SELECT_COLUMNS} FROM audit_events WHERE chain_id = "
                    ));
                    select
                        .push_bind(chain.to_owned())
                        .push(" AND seq > ")
                        .push_bind(after)
                        .push(" AND seq <= ")
                        .push_bind(through);
                    for (column, allowed) in filter.columns() {
                        if allowed.is_empty() {
                            continue;
                        }
                        select.push(format!(" AND {column} IN ("));
                        let mut values = select.separated(", ");
                        for value in allowed {
                            values.push_bind(value.clone());
                        }
                        select.push(")");
                    }
                    select
                        .push(" ORDER BY seq LIMIT ")
                        .push_bind(i64::from(limit));
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

impl_feed!(sqlite_feed, Sqlite);
impl_feed!(postgres_feed, Postgres);

impl super::AuditStore {
    /// Every chain's stored head seq, by chain id. The head moves in the same transaction as the rows it
    /// covers, so every event of a chain up to its head is readable once the head is.
    pub async fn chain_heads(&self) -> Result<Vec<(String, i64)>, AuditError> {
        dispatch!(self, s => s.chain_heads().await)
    }

    /// The events of `chain` with `after < seq <= through` that pass `filter`, in seq order, at most `limit`.
    pub async fn chain_events(
        &self,
        chain: &str,
        after: i64,
        through: i64,
        filter: &FeedFilter,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        dispatch!(self, s => s.chain_events(chain, after, through, filter, limit).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(agent: Option<&str>, result: Option<&str>, event_type: &str) -> AuditEvent {
        AuditEvent {
            id: "e".into(),
            chain_id: "c".into(),
            seq: 1,
            timestamp: "2026-11-22T20:15:00.000000Z".into(),
            event_type: event_type.into(),
            agent_id: agent.map(str::to_owned),
            session_id: None,
            tenant_id: None,
            workflow_id: None,
            requester_id: None,
            tool_name: None,
            mcp_server: None,
            action: None,
            target: None,
            input_hash: None,
            policy_result: result.map(str::to_owned),
            policy_id: None,
            policy_reason: None,
            behavioral_score: None,
            dlp_findings: serde_json::json!([]),
            dlp_action: None,
            response_code: None,
            latency_us: None,
            error: None,
            trace_id: None,
            extra: serde_json::json!({}),
            previous_hash: "0".repeat(64),
            event_hash: "1".repeat(64),
        }
    }

    #[test]
    fn an_empty_filter_passes_everything_and_a_missing_field_passes_no_list() {
        let filter = FeedFilter::default();
        assert!(filter.matches(&event(None, None, "session_start")));
        let filter = FeedFilter {
            agent_ids: vec!["a1".into(), "a2".into()],
            policy_results: vec!["deny".into()],
            ..Default::default()
        };
        assert!(filter.matches(&event(Some("a2"), Some("deny"), "policy_deny")));
        assert!(!filter.matches(&event(Some("a3"), Some("deny"), "policy_deny")));
        assert!(!filter.matches(&event(Some("a1"), Some("allow"), "tool_call")));
        assert!(!filter.matches(&event(Some("a1"), None, "session_start")));
        let by_type = FeedFilter {
            event_types: vec!["tool_result".into()],
            ..Default::default()
        };
        assert!(by_type.matches(&event(None, None, "tool_result")));
        assert!(!by_type.matches(&event(None, None, "tool_call")));
    }
}
