//! The verifier's SQL: every chain (or a time range of it) streamed in seq order through the engine's
//! `Verifier`, anchored on retention's "pruned" checkpoint and checked against the newest head checkpoint.
//! Written once and stamped out for each concrete database, like the rest of the store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures_util::TryStreamExt;
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};
use toolgate_engine::chain::{AuditEvent, BadRow, ChainHead, Verifier, VerifyReport};

use super::{
    decode_event, json_column, push_time_range, AuditStore, Checkpoint, CheckpointKind,
    SignedCheckpoint, SqlStore, TrustedKeys, VerifyResult, SELECT_COLUMNS,
};
use crate::audit::{timestamp, AuditError};

/// SQLite: each row of a span read as one JSON array of its columns (in `decode_event`'s order), which
/// sqlx copies as one value instead of 28 (`sqlite3_value_dup` per column was most of verify's cost). The
/// JSON columns are read as text and stay strings inside the array, so a cell that is not JSON still verifies
/// as tampered; a value of the wrong type fails the decode, as it does for a column read by itself.
const SQLITE_PACKED_COLUMNS: &str = "json_array(id, chain_id, seq, \"timestamp\", event_type, agent_id, \
    session_id, tenant_id, workflow_id, requester_id, tool_name, mcp_server, action, target, input_hash, \
    policy_result, policy_id, policy_reason, behavioral_score, CAST(dlp_findings AS TEXT), dlp_action, \
    response_code, latency_us, error, trace_id, CAST(extra AS TEXT), previous_hash, event_hash)";

/// One row of [`SQLITE_PACKED_COLUMNS`]; serde reads a struct from a JSON array in field order.
#[derive(serde::Deserialize)]
struct PackedRow {
    id: String,
    chain_id: String,
    seq: i64,
    timestamp: String,
    event_type: String,
    agent_id: Option<String>,
    session_id: Option<String>,
    tenant_id: Option<String>,
    workflow_id: Option<String>,
    requester_id: Option<String>,
    tool_name: Option<String>,
    mcp_server: Option<String>,
    action: Option<String>,
    target: Option<String>,
    input_hash: Option<String>,
    policy_result: Option<String>,
    policy_id: Option<String>,
    policy_reason: Option<String>,
    behavioral_score: Option<String>,
    dlp_findings: String,
    dlp_action: Option<String>,
    response_code: Option<i64>,
    latency_us: Option<i64>,
    error: Option<String>,
    trace_id: Option<String>,
    extra: String,
    previous_hash: String,
    event_hash: String,
}

fn decode_packed(row: &<Sqlite as sqlx::Database>::Row) -> Result<AuditEvent, sqlx::Error> {
    let text: &str = row.try_get(0)?;
    let r: PackedRow = serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(AuditEvent {
        id: r.id,
        chain_id: r.chain_id,
        seq: r.seq,
        timestamp: r.timestamp,
        event_type: r.event_type,
        agent_id: r.agent_id,
        session_id: r.session_id,
        tenant_id: r.tenant_id,
        workflow_id: r.workflow_id,
        requester_id: r.requester_id,
        tool_name: r.tool_name,
        mcp_server: r.mcp_server,
        action: r.action,
        target: r.target,
        input_hash: r.input_hash,
        policy_result: r.policy_result,
        policy_id: r.policy_id,
        policy_reason: r.policy_reason,
        behavioral_score: r.behavioral_score,
        dlp_findings: json_column(r.dlp_findings),
        dlp_action: r.dlp_action,
        response_code: r.response_code,
        latency_us: r.latency_us,
        error: r.error,
        trace_id: r.trace_id,
        extra: json_column(r.extra),
        previous_hash: r.previous_hash,
        event_hash: r.event_hash,
    })
}

/// What a verification gathers beside the engine's verifier: the problems found against checkpoints, and how
/// many of the rows read belong to one tenant (a tenant's admin is told its own count, not the log's).
#[derive(Debug, Default)]
pub(in crate::audit) struct Tally {
    pub problems: Vec<BadRow>,
    /// The tenant whose rows are counted; `None` counts nothing.
    pub tenant: Option<String>,
    pub tenant_events: u64,
    /// The first bad row reported is one of `problems` (the chain against its checkpoint: its reason quotes
    /// seqs and the checkpoint's time, no row's content), not a row the verifier refused.
    pub checkpoint_problem: bool,
}

impl Tally {
    /// Counting the rows of `tenant`, as stored.
    pub fn of_tenant(tenant: &str) -> Tally {
        Tally {
            tenant: Some(tenant.to_owned()),
            ..Tally::default()
        }
    }

    fn count(&mut self, event: &AuditEvent) {
        if self.tenant.is_some() && event.tenant_id == self.tenant {
            self.tenant_events += 1;
        }
    }
}

/// The answer a tenant's admin gets for a bad row that is not its own: where the chain breaks, not whose row
/// it is nor what it holds.
const NOT_YOUR_ROW: &str =
    "a row of another tenant, or of no tenant, fails verification (admin.token sees which and why)";

impl AuditStore {
    /// Recomputes every chain, or the part of each chain inside the `[start, end]` timestamp range.
    ///
    /// A range is taken per chain as the seq interval from its first to its last event in the range, anchored
    /// on the stored event before it, so a deleted row at the range's edge still shows up as a gap.
    ///
    /// Each chain is anchored on its newest trusted "pruned" checkpoint (retention), and when the range is open
    /// at the end, checked against its newest trusted head checkpoint: a chain that ends before that
    /// checkpoint's seq, or holds another hash there, has lost or rewritten rows.
    pub async fn verify(
        &self,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<VerifyResult, AuditError> {
        self.verify_against(start, end, &[]).await
    }

    /// [`AuditStore::verify`] with more head checkpoints, e.g. read from files kept outside the database; each
    /// must be signed by a trusted key.
    pub async fn verify_against(
        &self,
        start: Option<&str>,
        end: Option<&str>,
        external: &[SignedCheckpoint],
    ) -> Result<VerifyResult, AuditError> {
        self.verify_tallied(start, end, external, &mut Tally::default())
            .await
    }

    /// [`AuditStore::verify`] as a tenant's admin sees it. Every chain is recomputed all the same (integrity is
    /// a property of the whole log, and a tampered row of another tenant breaks the linkage of this tenant's
    /// rows too), but `events_verified` counts only `tenant`'s rows, and a first bad row that is not
    /// `tenant`'s keeps its chain and seq and loses its id and reason (the reason quotes the row's hashes). A
    /// chain that falls short of its checkpoint keeps its reason (seqs and a time) and loses the id of its last
    /// row unless that row is `tenant`'s. `tenant` is compared as stored.
    pub async fn verify_for_tenant(
        &self,
        start: Option<&str>,
        end: Option<&str>,
        tenant: &str,
    ) -> Result<VerifyResult, AuditError> {
        let mut tally = Tally::of_tenant(tenant);
        let mut result = self.verify_tallied(start, end, &[], &mut tally).await?;
        result.events_verified = tally.tenant_events;
        let Some(bad) = result.first_bad_row.as_mut() else {
            return Ok(result);
        };
        let stored = match bad.id.as_str() {
            "" => None,
            id => self.event(id).await?,
        };
        let tenants = stored.is_some_and(|row| {
            row.chain_id == bad.chain_id
                && (tally.checkpoint_problem || row.seq == bad.seq)
                && row.tenant_id.as_deref() == Some(tenant)
        });
        if !tenants {
            bad.id = String::new();
            if !tally.checkpoint_problem {
                NOT_YOUR_ROW.clone_into(&mut bad.reason);
            }
        }
        Ok(result)
    }

    async fn verify_tallied(
        &self,
        start: Option<&str>,
        end: Option<&str>,
        external: &[SignedCheckpoint],
        tally: &mut Tally,
    ) -> Result<VerifyResult, AuditError> {
        let started = Instant::now();
        let (start, end) = timestamp::range(start, end)?;
        let mut extra = Vec::new();
        for signed in external {
            self.trusted.verify(signed)?;
            extra.push(signed.checkpoint.clone());
        }
        let trusted = self.trusted.clone();
        let report = dispatch!(self, s => s.verify(start, end, &trusted, &extra, tally).await)?;
        Ok(VerifyResult {
            events_verified: report.events_verified,
            chain_intact: report.chain_intact,
            first_bad_row: report.first_bad_row,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

macro_rules! impl_verify {
    ($module:ident, $db:ty, $columns:expr, $decode:path) => {
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
                    tally: &mut Tally,
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
                            tally,
                        )
                        .await?;
                    }
                    let mut report = verifier.finish();
                    if report.first_bad_row.is_none() {
                        if let Some(problem) = std::mem::take(&mut tally.problems).into_iter().next() {
                            tally.checkpoint_problem = true;
                            report.chain_intact = false;
                            report.first_bad_row = Some(problem);
                        }
                    }
                    Ok(report)
                }

                /// Verifies `chain` from `first` through `last` (or its end), anchored on the pruned
                /// checkpoint when the span starts right after it, else on the stored event before `first`;
                /// then, if given, checks the span against the `target` checkpoint. Checkpoint problems and the
                /// rows of `tally`'s tenant go to `tally`.
                #[allow(clippy::too_many_arguments)]
                pub(in crate::audit) async fn verify_chain(
                    &self,
                    verifier: &mut Verifier,
                    chain: &str,
                    first: i64,
                    last: Option<i64>,
                    pruned: Option<&Checkpoint>,
                    target: Option<&Checkpoint>,
                    tally: &mut Tally,
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
                        "SELECT {} FROM audit_events \
                         WHERE chain_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq",
                        $columns
                    );
                    let mut rows = sqlx::query(&span_sql)
                        .bind(chain.to_owned())
                        .bind(first)
                        .bind(last.unwrap_or(i64::MAX))
                        .fetch(&self.pool);
                    let mut last_seen: Option<(i64, String)> = None;
                    let mut at_target = None;
                    while let Some(row) = rows.try_next().await.map_err(AuditError::Query)? {
                        let event = $decode(&row).map_err(AuditError::Query)?;
                        self.progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        verifier.push(&event);
                        tally.count(&event);
                        if target.is_some_and(|t| t.seq == event.seq) {
                            at_target = Some(event.event_hash.clone());
                        }
                        last_seen = Some((event.seq, event.id));
                    }
                    if let Some(t) = target {
                        let (end_seq, id) = last_seen.unwrap_or((first - 1, String::new()));
                        if end_seq < t.seq {
                            tally.problems.push(BadRow {
                                id,
                                chain_id: chain.to_owned(),
                                seq: t.seq,
                                reason: format!(
                                    "chain ends at seq {end_seq}, but the checkpoint signed at {} covers seq {} (rows deleted from the tail)",
                                    t.timestamp, t.seq
                                ),
                            });
                        } else if at_target.as_ref().is_some_and(|h| *h != t.head_hash) {
                            tally.problems.push(BadRow {
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

impl_verify!(
    sqlite_verify,
    Sqlite,
    SQLITE_PACKED_COLUMNS,
    super::decode_packed
);
impl_verify!(
    postgres_verify,
    Postgres,
    SELECT_COLUMNS,
    decode_event::<Postgres>
);
