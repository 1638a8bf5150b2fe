//! The SQL beside the writer's and the verifier's: checkpoints, single-event lookups, stats and pruning.
//! Like the rest of the store it is written once and stamped out for each concrete database.

use futures_util::TryStreamExt;
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};
use toolgate_engine::chain::AuditEvent;

use super::{
    decode_event, push_time_range, Checkpoint, CheckpointKind, SignedCheckpoint, SqlStore,
    TrustedKeys, SELECT_COLUMNS,
};
use crate::audit::retention::Cutoffs;
use crate::audit::AuditError;

/// The event types that record a decision on a request, one per judged request: what the stats count by result,
/// agent and tool (an allowed call's `tool_result` repeats its decision and is counted in the total only).
const DECISION_TYPES: &str = "'tool_call', 'request', 'policy_deny', 'policy_escalate'";

/// One group of the stats query: events of one bucket with one result, agent and tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRow {
    /// The bucket's prefix of the stored timestamp, e.g. `2026-11-22T20` for an hour.
    pub bucket: String,
    pub policy_result: Option<String>,
    pub agent_id: Option<String>,
    pub tool_name: Option<String>,
    /// The rows are decisions (a judged request's first event), not outcomes or other events.
    pub decision: bool,
    pub count: i64,
}

/// How many checkpoints with a bad or untrusted signature are skipped before giving up on a chain.
const MAX_SKIPPED: i64 = 100;

macro_rules! impl_queries {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;

            type DB = $db;

            impl SqlStore<DB> {
                /// The trusted checkpoint of `chain` and `kind` with the highest seq, or with `min_seq` the
                /// one with the lowest seq at or above it. Checkpoints whose signature fails are skipped.
                pub(in crate::audit) async fn checkpoint(
                    &self,
                    chain: &str,
                    kind: CheckpointKind,
                    min_seq: Option<i64>,
                    trusted: &TrustedKeys,
                ) -> Result<Option<Checkpoint>, AuditError> {
                    let order = if min_seq.is_some() { "ASC" } else { "DESC" };
                    let sql = format!(
                        "SELECT body, public_key, signature FROM audit_checkpoints \
                         WHERE chain_id = $1 AND kind = $2 AND seq >= $3 ORDER BY seq {order} LIMIT $4"
                    );
                    let rows = sqlx::query(&sql)
                        .bind(chain.to_owned())
                        .bind(kind.as_str().to_owned())
                        .bind(min_seq.unwrap_or(i64::MIN))
                        .bind(MAX_SKIPPED)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?;
                    for row in rows {
                        let body: String = row.try_get(0).map_err(AuditError::Query)?;
                        let Ok(checkpoint) = serde_json::from_str::<Checkpoint>(&body) else {
                            tracing::warn!("ignoring an audit checkpoint that is not a checkpoint");
                            continue;
                        };
                        let signed = SignedCheckpoint {
                            checkpoint,
                            public_key: row.try_get(1).map_err(AuditError::Query)?,
                            signature: row.try_get(2).map_err(AuditError::Query)?,
                        };
                        let fits = signed.checkpoint.chain_id == chain && signed.checkpoint.kind == kind;
                        match trusted.verify(&signed) {
                            Ok(()) if fits => return Ok(Some(signed.checkpoint)),
                            Ok(()) => tracing::warn!("ignoring an audit checkpoint stored under another chain"),
                            Err(e) => tracing::warn!(error = %e, "ignoring an audit checkpoint"),
                        }
                    }
                    Ok(None)
                }

                /// The newest stored checkpoint of `chain` and `kind` with its signature, unverified.
                pub(in crate::audit) async fn newest_signed(
                    &self,
                    chain: &str,
                    kind: CheckpointKind,
                ) -> Result<Option<SignedCheckpoint>, AuditError> {
                    let row = sqlx::query(
                        "SELECT body, public_key, signature FROM audit_checkpoints \
                         WHERE chain_id = $1 AND kind = $2 ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(chain.to_owned())
                    .bind(kind.as_str().to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(AuditError::Query)?;
                    let Some(row) = row else { return Ok(None) };
                    let body: String = row.try_get(0).map_err(AuditError::Query)?;
                    Ok(serde_json::from_str(&body).ok().map(|checkpoint| SignedCheckpoint {
                        checkpoint,
                        public_key: row.try_get(1).unwrap_or_default(),
                        signature: row.try_get(2).unwrap_or_default(),
                    }))
                }

                pub(in crate::audit) async fn checkpoint_chains(&self) -> Result<Vec<String>, AuditError> {
                    sqlx::query("SELECT DISTINCT chain_id FROM audit_checkpoints")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?
                        .iter()
                        .map(|row| row.try_get(0))
                        .collect::<Result<_, _>>()
                        .map_err(AuditError::Query)
                }

                pub(in crate::audit) async fn insert_checkpoint(
                    &self,
                    signed: &SignedCheckpoint,
                ) -> Result<(), sqlx::Error> {
                    let cp = &signed.checkpoint;
                    sqlx::query(
                        "INSERT INTO audit_checkpoints (chain_id, kind, seq, body, public_key, signature) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(cp.chain_id.clone())
                    .bind(cp.kind.as_str().to_owned())
                    .bind(cp.seq)
                    .bind(cp.jcs())
                    .bind(signed.public_key.clone())
                    .bind(signed.signature.clone())
                    .execute(&mut *self.writer.conn().await?)
                    .await
                    .map(|_| ())
                }

                pub(in crate::audit) async fn event_by_id(
                    &self,
                    id: &str,
                ) -> Result<Option<AuditEvent>, AuditError> {
                    let sql = format!("SELECT {SELECT_COLUMNS} FROM audit_events WHERE id = $1 LIMIT 1");
                    let row = sqlx::query(&sql)
                        .bind(id.to_owned())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(AuditError::Query)?;
                    row.as_ref()
                        .map(decode_event::<DB>)
                        .transpose()
                        .map_err(AuditError::Query)
                }

                /// `(chain_id, seq, timestamp)` of the event whose `event_hash` is `hash`.
                pub(in crate::audit) async fn find_hash(
                    &self,
                    hash: &str,
                ) -> Result<Option<(String, i64, String)>, AuditError> {
                    let row = sqlx::query(self.dialect.find_hash)
                    .bind(hash.to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(AuditError::Query)?;
                    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                        .transpose()
                        .map_err(AuditError::Query)
                }

                pub(in crate::audit) async fn stats_rows(
                    &self,
                    prefix_len: i64,
                    start: Option<String>,
                    end: Option<String>,
                    tenant: Option<String>,
                    max_rows: i64,
                ) -> Result<Vec<StatsRow>, AuditError> {
                    // A literal, not a bind: PostgreSQL has no substr(text, int, bigint).
                    let mut select = QueryBuilder::<DB>::new(format!(
                        "SELECT SUBSTR(\"timestamp\", 1, {prefix_len}) AS bucket, policy_result, agent_id, \
                         tool_name, CASE WHEN event_type IN ({DECISION_TYPES}) THEN 1 ELSE 0 END AS decision, \
                         COUNT(*) FROM audit_events WHERE 1 = 1"
                    ));
                    if let Some(tenant) = tenant {
                        select.push(" AND tenant_id = ").push_bind(tenant);
                    }
                    push_time_range(&mut select, start, end);
                    select
                        .push(" GROUP BY bucket, policy_result, agent_id, tool_name, decision ORDER BY bucket LIMIT ")
                        .push_bind(max_rows);
                    let mut rows = select.build().fetch(&self.pool);
                    let mut out = Vec::new();
                    while let Some(row) = rows.try_next().await.map_err(AuditError::Query)? {
                        out.push(StatsRow {
                            bucket: row.try_get(0).map_err(AuditError::Query)?,
                            policy_result: row.try_get(1).map_err(AuditError::Query)?,
                            agent_id: row.try_get(2).map_err(AuditError::Query)?,
                            tool_name: row.try_get(3).map_err(AuditError::Query)?,
                            decision: row.try_get::<i32, _>(4).map_err(AuditError::Query)? == 1,
                            count: row.try_get(5).map_err(AuditError::Query)?,
                        });
                    }
                    Ok(out)
                }

                /// The event of `chain` just before the first one retention must still keep (see
                /// [`crate::audit::retention`]), never the chain's last event (the head stays stored, so a
                /// restart continues the chain), nor one after `ceiling`.
                pub(in crate::audit) async fn prune_point(
                    &self,
                    chain: &str,
                    cutoffs: &Cutoffs,
                    ceiling: i64,
                ) -> Result<Option<(i64, String)>, AuditError> {
                    let mut query = QueryBuilder::<DB>::new(
                        "SELECT seq, event_hash FROM audit_events WHERE chain_id = ",
                    );
                    query
                        .push_bind(chain.to_owned())
                        .push(" AND seq <= ")
                        .push_bind(ceiling)
                        .push(" AND seq < (SELECT MAX(seq) FROM audit_events WHERE chain_id = ")
                        .push_bind(chain.to_owned())
                        .push(") AND seq < COALESCE((SELECT MIN(seq) FROM audit_events WHERE chain_id = ")
                        .push_bind(chain.to_owned())
                        .push(" AND ");
                    cutoffs.push_kept(&mut query);
                    query.push("), ").push_bind(i64::MAX).push(") ORDER BY seq DESC LIMIT 1");
                    let row = query
                        .build()
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(AuditError::Query)?;
                    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                        .transpose()
                        .map_err(AuditError::Query)
                }

                pub(in crate::audit) async fn delete_through(
                    &self,
                    chain: &str,
                    seq: i64,
                ) -> Result<u64, AuditError> {
                    sqlx::query("DELETE FROM audit_events WHERE chain_id = $1 AND seq <= $2")
                        .bind(chain.to_owned())
                        .bind(seq)
                        .execute(&self.pool)
                        .await
                        .map(|r| r.rows_affected())
                        .map_err(AuditError::Query)
                }
            }
        }
    };
}

impl_queries!(sqlite_queries, Sqlite);
impl_queries!(postgres_queries, Postgres);

/// Runs `$body` with `$s` bound to the concrete store, whichever backend it is.
/// What the public verify endpoint may say about an event hash: existence and integrity, no content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublicVerdict {
    pub found: bool,
    pub timestamp: Option<String>,
    pub chain_intact: bool,
}

impl super::AuditStore {
    /// One event by id.
    pub async fn event(&self, id: &str) -> Result<Option<AuditEvent>, AuditError> {
        dispatch!(self, s => s.event_by_id(id).await)
    }

    /// Whether an event with `event_hash` = `hash` is stored, and whether its chain is intact from that
    /// event up to the first trusted checkpoint that covers it (or the chain's end), anchored on the event
    /// before it. Bounded work per call: at most one checkpoint interval of events.
    pub async fn public_verify(&self, hash: &str) -> Result<PublicVerdict, AuditError> {
        let Some((chain, seq, timestamp)) = dispatch!(self, s => s.find_hash(hash).await)? else {
            return Ok(PublicVerdict {
                found: false,
                timestamp: None,
                chain_intact: false,
            });
        };
        let trusted = self.trusted.clone();
        let intact = dispatch!(self, s => {
            let pruned = s.checkpoint(&chain, CheckpointKind::Pruned, None, &trusted).await?;
            let target = s.checkpoint(&chain, CheckpointKind::Head, Some(seq), &trusted).await?;
            let mut verifier = toolgate_engine::chain::Verifier::new();
            let mut tally = super::verify::Tally::default();
            s.verify_chain(
                &mut verifier,
                &chain,
                seq,
                target.as_ref().map(|t| t.seq),
                pruned.as_ref(),
                target.as_ref(),
                &mut tally,
            )
            .await?;
            verifier.finish().chain_intact && tally.problems.is_empty()
        });
        Ok(PublicVerdict {
            found: true,
            timestamp: Some(timestamp),
            chain_intact: intact,
        })
    }

    /// Grouped counts for the stats endpoint; see [`crate::audit::stats`].
    pub(crate) async fn stats_rows(
        &self,
        prefix_len: i64,
        start: Option<String>,
        end: Option<String>,
        tenant: Option<String>,
        max_rows: i64,
    ) -> Result<Vec<StatsRow>, AuditError> {
        dispatch!(self, s => s.stats_rows(prefix_len, start, end, tenant, max_rows).await)
    }

    pub(crate) async fn insert_checkpoint(
        &self,
        signed: &SignedCheckpoint,
    ) -> Result<(), sqlx::Error> {
        dispatch!(self, s => s.insert_checkpoint(signed).await)
    }

    /// The newest trusted checkpoint of `chain` and `kind`.
    pub async fn newest_checkpoint(
        &self,
        chain: &str,
        kind: CheckpointKind,
    ) -> Result<Option<Checkpoint>, AuditError> {
        let trusted = self.trusted.clone();
        dispatch!(self, s => s.checkpoint(chain, kind, None, &trusted).await)
    }

    /// The newest stored head checkpoint of `chain` with its signature (for export manifests), if its
    /// signature verifies with a trusted key.
    pub async fn newest_signed_checkpoint(
        &self,
        chain: &str,
    ) -> Result<Option<SignedCheckpoint>, AuditError> {
        let signed = dispatch!(self, s => s.newest_signed(chain, CheckpointKind::Head).await)?;
        Ok(signed.filter(|s| self.trusted.verify(s).is_ok()))
    }

    /// The chains that have events or checkpoints.
    pub async fn chains(&self) -> Result<Vec<String>, AuditError> {
        let mut chains: std::collections::BTreeSet<String> = dispatch!(self, s => {
            sqlx::query("SELECT DISTINCT chain_id FROM audit_events")
                .fetch_all(&s.pool)
                .await
                .map_err(AuditError::Query)?
                .iter()
                .map(|row| row.try_get::<String, _>(0))
                .collect::<Result<_, _>>()
                .map_err(AuditError::Query)?
        });
        chains.extend(dispatch!(self, s => s.checkpoint_chains().await)?);
        Ok(chains.into_iter().collect())
    }

    /// The seq retention would prune `chain` through for `cutoffs` and `ceiling` (see [`Self::prune`]).
    pub async fn prune_point(
        &self,
        chain: &str,
        cutoffs: &Cutoffs,
        ceiling: i64,
    ) -> Result<Option<i64>, AuditError> {
        Ok(dispatch!(self, s => s.prune_point(chain, cutoffs, ceiling).await)?.map(|(seq, _)| seq))
    }

    /// Retention for `chain`: signs and stores a "pruned" checkpoint of the event just before the first one
    /// still kept by `cutoffs` (never the chain's last, nor one after `ceiling`: events still owed to a SIEM
    /// sink), publishes it through `sink`, then deletes the events it covers (PostgreSQL: whole daily partitions
    /// first where possible). Returns the pruned seq, if any.
    pub async fn prune(
        &self,
        chain: &str,
        cutoffs: &Cutoffs,
        ceiling: i64,
        signer: &crate::audit::checkpoint::Signer,
        sink: Option<&crate::audit::checkpoint::Sink>,
    ) -> Result<Option<i64>, AuditError> {
        let Some((seq, hash)) = dispatch!(self, s => s.prune_point(chain, cutoffs, ceiling).await)?
        else {
            return Ok(None);
        };
        let floor = self
            .newest_checkpoint(chain, CheckpointKind::Pruned)
            .await?
            .map_or(0, |p| p.seq);
        if seq > floor {
            // The checkpoint goes first: if the deletion then fails half way, the rest still verifies.
            let signed = signer.sign(Checkpoint {
                chain_id: chain.to_owned(),
                kind: CheckpointKind::Pruned,
                seq,
                head_hash: hash,
                count: seq,
                timestamp: super::timestamp::now(),
            });
            self.insert_checkpoint(&signed)
                .await
                .map_err(AuditError::Query)?;
            if let Some(sink) = sink {
                sink.publish(&signed).await;
            }
        }
        if let super::Backend::Postgres(s) = &self.backend {
            // Only days before every cut-off can be wholly past retention; a partition holding anything after
            // `seq` is kept whatever its day.
            let dropped = match cutoffs.latest() {
                Some(latest) => s.drop_partitions(chain, seq, latest.date()).await?,
                None => 0,
            };
            if dropped > 0 {
                tracing::info!(
                    partitions = dropped,
                    "audit partitions dropped by retention"
                );
            }
        }
        let deleted = dispatch!(self, s => s.delete_through(chain, seq).await)?;
        self.prune_hash_lookup().await.map_err(AuditError::Query)?;
        tracing::info!(
            chain_id = chain,
            through_seq = seq,
            deleted,
            "audit events pruned"
        );
        Ok(Some(seq))
    }
}
