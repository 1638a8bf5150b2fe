//! The verifier's SQL: every chain (or a time range of it) streamed in seq order through the engine's
//! `Verifier`, anchored on retention's "pruned" checkpoint and checked against the newest head checkpoint.
//! Written once and stamped out for each concrete database, like the rest of the store.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::TryStreamExt;
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};
use toolgate_engine::chain::{BadRow, ChainHead, Verifier, VerifyReport};

use super::{
    decode_event, push_time_range, Checkpoint, CheckpointKind, SqlStore, TrustedKeys,
    SELECT_COLUMNS,
};
use crate::audit::AuditError;

macro_rules! impl_verify {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;

            type DB = $db;

            impl SqlStore<DB> {
                pub(in crate::audit) async fn verify(
                    &self,
                    start: Option<String>,
                    end: Option<String>,
                    trusted: &TrustedKeys,
                    external: &[Checkpoint],
                ) -> Result<VerifyReport, AuditError> {
                    let ranged = start.is_some() || end.is_some();
                    let open_end = end.is_none();
                    // Per chain: the seq interval the range covers.
                    let mut spans = QueryBuilder::<DB>::new(
                        "SELECT chain_id, MIN(seq), MAX(seq) FROM audit_events WHERE 1 = 1",
                    );
                    push_time_range(&mut spans, start, end);
                    spans.push(" GROUP BY chain_id");
                    let spans: BTreeMap<String, (i64, i64)> = spans
                        .build()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?
                        .iter()
                        .map(|row| Ok((row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?))))
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(AuditError::Query)?;
                    let mut chains: BTreeSet<String> = spans.keys().cloned().collect();
                    if !ranged {
                        // A chain whose every row is gone still has its checkpoints.
                        chains.extend(self.checkpoint_chains().await?);
                        chains.extend(external.iter().map(|c| c.chain_id.clone()));
                    }

                    let mut verifier = Verifier::new();
                    let mut problems = Vec::new();
                    for chain in chains {
                        let pruned = self
                            .checkpoint(&chain, CheckpointKind::Pruned, None, trusted)
                            .await?;
                        let mut newest =
                            self.checkpoint(&chain, CheckpointKind::Head, None, trusted).await?;
                        for extra in external.iter().filter(|c| c.chain_id == chain) {
                            if newest.as_ref().is_none_or(|n| extra.seq > n.seq) {
                                newest = Some(extra.clone());
                            }
                        }
                        let floor = pruned.as_ref().map_or(0, |p| p.seq);
                        let first = match spans.get(&chain) {
                            Some(&(first, _)) => first.max(floor + 1),
                            None => floor + 1,
                        };
                        // Open at the end: read to the chain's end (rows committed since the span query
                        // included), so a checkpoint read above is never newer than the rows read below.
                        let last = match (open_end, spans.get(&chain)) {
                            (true, _) | (false, None) => None,
                            (false, Some(&(_, last))) => Some(last),
                        };
                        let target = newest.as_ref().filter(|n| open_end && n.seq > floor);
                        self.verify_chain(
                            &mut verifier,
                            &chain,
                            first,
                            last,
                            pruned.as_ref(),
                            target,
                            &mut problems,
                        )
                        .await?;
                    }
                    let mut report = verifier.finish();
                    if report.first_bad_row.is_none() {
                        if let Some(problem) = problems.into_iter().next() {
                            report.chain_intact = false;
                            report.first_bad_row = Some(problem);
                        }
                    }
                    Ok(report)
                }

                /// Verifies `chain` from `first` through `last` (or its end), anchored on the pruned
                /// checkpoint when the span starts right after it, else on the stored event before `first`;
                /// then, if given, checks the span against the `target` checkpoint.
                #[allow(clippy::too_many_arguments)]
                pub(in crate::audit) async fn verify_chain(
                    &self,
                    verifier: &mut Verifier,
                    chain: &str,
                    first: i64,
                    last: Option<i64>,
                    pruned: Option<&Checkpoint>,
                    target: Option<&Checkpoint>,
                    problems: &mut Vec<BadRow>,
                ) -> Result<(), AuditError> {
                    match pruned.filter(|p| p.seq.checked_add(1) == Some(first)) {
                        Some(p) => verifier.anchor(ChainHead {
                            chain_id: chain.to_owned(),
                            seq: p.seq,
                            hash: p.head_hash.clone(),
                        }),
                        // Without an anchor the verifier demands that the span start the chain.
                        None if first > 1 => {
                            let anchor = sqlx::query(
                                "SELECT seq, event_hash FROM audit_events WHERE chain_id = $1 AND seq < $2 \
                                 ORDER BY seq DESC LIMIT 1",
                            )
                            .bind(chain.to_owned())
                            .bind(first)
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(AuditError::Query)?;
                            if let Some(row) = anchor {
                                verifier.anchor(ChainHead {
                                    chain_id: chain.to_owned(),
                                    seq: row.try_get(0).map_err(AuditError::Query)?,
                                    hash: row.try_get(1).map_err(AuditError::Query)?,
                                });
                            }
                        }
                        None => {}
                    }
                    let span_sql = format!(
                        "SELECT {SELECT_COLUMNS} FROM audit_events \
                         WHERE chain_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq"
                    );
                    let mut rows = sqlx::query(&span_sql)
                        .bind(chain.to_owned())
                        .bind(first)
                        .bind(last.unwrap_or(i64::MAX))
                        .fetch(&self.pool);
                    let mut last_seen: Option<(i64, String)> = None;
                    let mut at_target = None;
                    while let Some(row) = rows.try_next().await.map_err(AuditError::Query)? {
                        let event = decode_event::<DB>(&row).map_err(AuditError::Query)?;
                        self.progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        verifier.push(&event);
                        if target.is_some_and(|t| t.seq == event.seq) {
                            at_target = Some(event.event_hash.clone());
                        }
                        last_seen = Some((event.seq, event.id));
                    }
                    if let Some(t) = target {
                        let (end_seq, id) = last_seen.unwrap_or((first - 1, String::new()));
                        if end_seq < t.seq {
                            problems.push(BadRow {
                                id,
                                chain_id: chain.to_owned(),
                                seq: t.seq,
                                reason: format!(
                                    "chain ends at seq {end_seq}, but the checkpoint signed at {} covers seq {} (rows deleted from the tail)",
                                    t.timestamp, t.seq
                                ),
                            });
                        } else if at_target.as_ref().is_some_and(|h| *h != t.head_hash) {
                            problems.push(BadRow {
                                id: String::new(),
                                chain_id: chain.to_owned(),
                                seq: t.seq,
                                reason: format!(
                                    "event_hash at seq {} differs from the head_hash of the checkpoint signed at {} (the chain was rewritten)",
                                    t.seq, t.timestamp
                                ),
                            });
                        }
                    }
                    Ok(())
                }

            }
        }
    };
}

impl_verify!(sqlite_verify, Sqlite);
impl_verify!(postgres_verify, Postgres);
