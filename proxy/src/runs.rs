//! Agent runs from start to finish: an agent starts a run (`POST /api/v1/runs`), its requests carrying the run
//! id belong to it (`workflow_id` in their audit events, `agent.run_id` in the policy input, counted in
//! `calls`), and it finishes the run (`POST /api/v1/runs/{id}/finish`) or the run times out.
//!
//! Runs are stored in the `agent_runs` table beside the audit log ([`crate::audit::store`]); each start and end
//! is a `run_start`/`run_finish` audit event whose `workflow_id` is the run id. What the agent writes about its
//! run goes through DLP ([`content`]) like a call's arguments: only the redacted text and the findings are
//! stored, the findings are counted in `toolgate_dlp_findings_total` and logged by type, and a critical one
//! opens `dlp_critical` for the run's agent.
//!
//! The request path never waits on the database for a run it already knows: the running runs this instance
//! has seen are held in memory ([`live`]), calls are counted there and added to the table about once a second
//! by the keeper ([`keeper`]), which also ends runs past their deadline (`failed`, error `timed out`) within a
//! second, and forgets runs ended by another instance. A run id this instance does not hold is read from the
//! table once, then held.
//!
//! Ownership: a run belongs to the agent (tenant and `sub`) that started it. Another agent is told it does not
//! exist (404 on finish; refused on a request), so run ids cannot be probed.

pub mod content;
mod keeper;
pub mod live;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use toolgate_engine::chain::EventDraft;
use toolgate_engine::dlp::{Finding, Scanner};

use crate::agents::StoredKey;
use crate::alerts::Alerts;
use crate::audit::store::{RunEnd, RunPage, RunRow};
use crate::audit::{AuditError, AuditLog, AuditStore};
use crate::auth::AgentIdentity;
use crate::config::RunsSettings;
use crate::redaction::stored_text;
use crate::telemetry::Metrics;

pub use content::{BadContent, FinalStatus};
pub use keeper::start;
use live::{Live, LiveRun, Lookup};

/// The error a run ended by its deadline carries.
pub const TIMED_OUT: &str = "timed out";

/// Most runs one page of the listing holds (and its default size).
pub const PAGE_LIMIT: u32 = 1000;

/// A run as the API answers it (the contract's fields, plus its tenant and its findings).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    pub run_id: String,
    pub agent_id: String,
    pub tenant_id: Option<String>,
    pub objective: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub plan: Value,
    pub artifacts: Value,
    pub error: Option<String>,
    pub requester_id: Option<String>,
    pub dry_run: bool,
    pub calls: i64,
    /// What DLP found in the objective, plan, artifacts and error (type, severity, path, count).
    pub dlp_findings: Value,
}

/// Why a run operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    BadContent(#[from] BadContent),
    /// Unknown, or another agent's: the same answer.
    #[error("no run with this id")]
    NotFound,
    #[error("the run has already ended ({0})")]
    AlreadyEnded(String),
    #[error("bad cursor: not one this server issued")]
    BadCursor,
    #[error("too many runs are running on this instance; finish some first")]
    TooMany,
    #[error(
        "this agent already has {0} runs running (runs.max_running_per_agent); finish some first"
    )]
    TooManyOfAgent(u32),
    #[error(transparent)]
    Store(#[from] AuditError),
    /// The start or end could not be recorded in the audit log; `what_stands` says what happened all the same.
    #[error("{what_stands}, but it was not recorded in the audit log: {error}")]
    Unrecorded {
        what_stands: &'static str,
        error: AuditError,
    },
}

/// A listing's filter and page.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this tenant's runs (a tenant's admin); `None`: every tenant's.
    pub tenant_id: Option<String>,
    /// As the audit log stores it.
    pub agent_id: Option<String>,
    pub status: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// What a request's run id comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Attachment {
    /// The request belongs to this run (its call counted).
    Run(Arc<str>),
    /// Unknown, ended, past its deadline, or another agent's: the request is refused.
    Refused,
}

/// The runs of this instance's agents.
pub struct Runs {
    store: AuditStore,
    audit: AuditLog,
    metrics: Arc<Metrics>,
    alerts: Arc<Alerts>,
    scanner: Scanner,
    timeout: Duration,
    max_running_per_agent: u32,
    live: Live,
    /// Held by a flush and by the end of a run, so a flush never adds calls the end already counted, and the
    /// end reads back the calls every flush before it stored.
    counting: tokio::sync::Mutex<()>,
    /// Rung when a call is counted or a run starts here: wakes the keeper (and, as these are dropped, ends it).
    work: crate::shared_state::HostBell,
}

impl Runs {
    pub fn new(
        store: AuditStore,
        audit: AuditLog,
        metrics: Arc<Metrics>,
        alerts: Arc<Alerts>,
        settings: &RunsSettings,
    ) -> Runs {
        Runs {
            store,
            audit,
            metrics,
            alerts,
            scanner: Scanner::new(),
            timeout: settings.timeout(),
            max_running_per_agent: settings.max_running_per_agent,
            live: Live::default(),
            counting: tokio::sync::Mutex::new(()),
            work: Default::default(),
        }
    }

    /// What the keeper waits on besides the clock and the bus.
    pub(crate) fn work(&self) -> Arc<crate::shared_state::Doorbell> {
        self.work.share()
    }

    /// The soonest deadline of a running run, on any instance (RFC 3339).
    pub(crate) async fn soonest_deadline(&self) -> Result<Option<String>, AuditError> {
        self.store.soonest_run_deadline().await
    }

    /// Starts a run of `identity` from the body of `POST /api/v1/runs`; answers its id once its `run_start`
    /// event is durable.
    pub async fn start(&self, identity: &AgentIdentity, body: &[u8]) -> Result<String, RunError> {
        let start = content::start(&self.scanner, body)?;
        self.start_at(identity, start, OffsetDateTime::now_utc())
            .await
    }

    pub(crate) async fn start_at(
        &self,
        identity: &AgentIdentity,
        start: content::Start,
        now: OffsetDateTime,
    ) -> Result<String, RunError> {
        self.scanned(
            || StoredKey::of(identity.tenant_id.as_deref(), &identity.id),
            "a run's objective or plan",
            &start.findings,
        );
        let owner = owner_of(identity);
        // Two starts racing may both pass: the cap bounds an agent's runs, it need not be exact.
        if self.store.running_runs_of(&owner).await? >= i64::from(self.max_running_per_agent) {
            return Err(RunError::TooManyOfAgent(self.max_running_per_agent));
        }
        // A random UUID (122 random bits): it cannot be guessed and says nothing about the agent or the time.
        // Plain hex and dashes, which DLP takes for an identifier: a token-like id (`run_` and random base-36)
        // could be taken for a secret and redacted out of the very events it is meant to tie together.
        let run_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let deadline = now + self.timeout;
        let live = self
            .live
            .hold(LiveRun::new(&run_id, identity.key(), micros(deadline)))
            .ok_or(RunError::TooMany)?;
        let row = RunRow {
            run_id: run_id.clone(),
            tenant_id: identity
                .tenant_id
                .as_deref()
                .map(|t| stored_text(t.to_owned()))
                .unwrap_or_default(),
            agent_id: stored_text(identity.id.clone()),
            owner,
            requester_id: requester(identity),
            objective: start.objective,
            plan: start.plan.to_string(),
            artifacts: "null".into(),
            error: None,
            dlp_findings: findings_json(&start.findings),
            status: "running".into(),
            dry_run: start.dry_run,
            calls: 0,
            started_at: crate::telemetry::format_rfc3339(now),
            deadline_at: crate::telemetry::format_rfc3339(deadline),
            finished_at: None,
            duration_ms: None,
        };
        if let Err(e) = self.store.insert_run(&row).await {
            self.live.release(&live.run_id);
            return Err(e.into());
        }
        let extra = json!({
            "status": "running",
            "dry_run": row.dry_run,
            "timeout_seconds": self.timeout.as_secs(),
            "dlp_findings_count": count(&start.findings),
        });
        let draft = event("run_start", &row, &start.findings, extra);
        if let Err(error) = self.audit.append(draft).await {
            // Fail closed: a run whose start is not in the audit log does not exist.
            self.live.release(&live.run_id);
            let _ = self.store.delete_run(&run_id).await;
            tracing::error!(error = %error, "audit write failed");
            return Err(RunError::Unrecorded {
                what_stands: "the run was not started",
                error,
            });
        }
        // Its deadline may be the soonest now.
        self.work.ring();
        Ok(run_id)
    }

    /// Finishes `run_id` for `identity` from the body of `POST /api/v1/runs/{id}/finish`.
    pub async fn finish(
        &self,
        identity: &AgentIdentity,
        run_id: &str,
        body: &[u8],
    ) -> Result<RunView, RunError> {
        // The owner is checked before the body: another agent learns nothing, not even whether its body is good.
        let row = self.owned(identity, run_id).await?;
        let finish = content::finish(&self.scanner, body)?;
        self.finish_at(row, finish, OffsetDateTime::now_utc()).await
    }

    /// The run if `identity` owns it (else [`RunError::NotFound`]), still running (else `AlreadyEnded`).
    async fn owned(&self, identity: &AgentIdentity, run_id: &str) -> Result<RunRow, RunError> {
        let row = self
            .store
            .run(run_id)
            .await?
            .filter(|r| r.owner == owner_of(identity))
            .ok_or(RunError::NotFound)?;
        if row.status != "running" {
            return Err(RunError::AlreadyEnded(row.status));
        }
        Ok(row)
    }

    pub(crate) async fn finish_at(
        &self,
        row: RunRow,
        finish: content::Finish,
        now: OffsetDateTime,
    ) -> Result<RunView, RunError> {
        self.scanned(
            || StoredKey {
                tenant_id: row.tenant_id.clone(),
                agent_id: row.agent_id.clone(),
            },
            &format!("the artifacts or error of run {}", row.run_id),
            &finish.findings,
        );
        let mut findings: Vec<Finding> =
            serde_json::from_str(&row.dlp_findings).unwrap_or_default();
        findings.extend(finish.findings.iter().cloned());
        let end = RunEnd {
            run_id: row.run_id.clone(),
            status: finish.status.as_str().to_owned(),
            artifacts: finish.artifacts.as_ref().map(Value::to_string),
            error: finish.error.clone(),
            dlp_findings: findings_json(&findings),
            finished_at: crate::telemetry::format_rfc3339(now),
            duration_ms: duration_ms(&row.started_at, now),
            calls: 0,
        };
        let ended = self.end(row, end, &finish.findings).await?;
        Ok(ended)
    }

    /// What the agent wrote about its run, judged like a call's arguments: findings counted and logged by type
    /// (never by value), and a critical one opens `dlp_critical` for the agent (`agent`: its stored form).
    fn scanned(&self, agent: impl FnOnce() -> StoredKey, place: &str, findings: &[Finding]) {
        if findings.is_empty() {
            return;
        }
        self.metrics.count_dlp_findings(findings);
        let agent = agent();
        let types: Vec<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
        tracing::info!(agent = %agent.agent_id, findings = ?types, "DLP findings");
        self.alerts.raise_dlp_critical(|| agent, place, findings);
    }

    /// Ends a running run (by its agent or its deadline): its last calls counted here go in with it, the
    /// `run_finish` event is recorded, and the run is counted in the metrics. Only the instance whose update
    /// ended it records it, so a run ends once however many instances race.
    async fn end(
        &self,
        row: RunRow,
        mut end: RunEnd,
        new_findings: &[Finding],
    ) -> Result<RunView, RunError> {
        let _counting = self.counting.lock().await;
        let held = self.live.release(&row.run_id);
        end.calls = held.as_ref().map_or(0, |r| r.take_calls());
        let ended = match self.store.end_run(&end).await {
            Ok(ended) => ended,
            Err(e) => {
                if let Some(held) = held {
                    held.give_back(end.calls);
                    self.live.hold_again(held);
                }
                return Err(e.into());
            }
        };
        if !ended {
            // Ended a moment ago elsewhere; calls counted here since still belong to it.
            self.add_late_calls(&row.run_id, end.calls).await;
            let status = self
                .store
                .run(&row.run_id)
                .await?
                .map(|r| r.status)
                .unwrap_or_default();
            return Err(RunError::AlreadyEnded(status));
        }
        // A call that found the run just before it was released is counted after the take above.
        let late = held.as_ref().map_or(0, |r| r.take_calls());
        self.add_late_calls(&row.run_id, late).await;
        let stored = self.store.run(&row.run_id).await.ok().flatten();
        let view_row = RunRow {
            status: end.status.clone(),
            artifacts: end.artifacts.clone().unwrap_or(row.artifacts.clone()),
            error: end.error.clone(),
            dlp_findings: end.dlp_findings.clone(),
            finished_at: Some(end.finished_at.clone()),
            duration_ms: Some(end.duration_ms),
            calls: stored.map_or(row.calls + end.calls + late, |r| r.calls),
            ..row
        };
        self.metrics.runs.ended(
            &self.metrics.agent_label(&view_row.agent_id),
            &end.status,
            end.duration_ms,
        );
        let all_findings: Vec<Finding> =
            serde_json::from_str(&view_row.dlp_findings).unwrap_or_default();
        let extra = json!({
            "status": end.status,
            "duration_ms": end.duration_ms,
            "dry_run": view_row.dry_run,
            "calls": view_row.calls,
            "dlp_findings_count": count(&all_findings),
        });
        let mut draft = event("run_finish", &view_row, new_findings, extra);
        draft.error = view_row.error.clone();
        if let Err(error) = self.audit.append(draft).await {
            tracing::error!(error = %error, "audit write failed");
            return Err(RunError::Unrecorded {
                what_stands: "the run has ended",
                error,
            });
        }
        Ok(view(view_row))
    }

    async fn add_late_calls(&self, run_id: &str, calls: i64) {
        if calls > 0 {
            if let Err(e) = self
                .store
                .add_run_calls(&[(run_id.to_owned(), calls)])
                .await
            {
                tracing::warn!(error = %e, calls, "run calls not stored");
            }
        }
    }

    /// The request path: the run a request of `identity` names, its call counted; a run this instance does not
    /// hold is read from the table once (then held).
    pub async fn attach(
        &self,
        identity: &AgentIdentity,
        run_id: &str,
    ) -> Result<Attachment, AuditError> {
        let now = micros(OffsetDateTime::now_utc());
        match self.live.attach(run_id, identity, now) {
            Lookup::Attached(id) => {
                self.work.ring();
                return Ok(Attachment::Run(id));
            }
            Lookup::Refused => return Ok(Attachment::Refused),
            Lookup::Unknown => {}
        }
        // Only ids of our own shape reach the database.
        if !is_run_id(run_id) {
            return Ok(Attachment::Refused);
        }
        let Some(row) = self.store.run(run_id).await? else {
            return Ok(Attachment::Refused);
        };
        if row.owner != owner_of(identity) || row.status != "running" {
            return Ok(Attachment::Refused);
        }
        let deadline = parse_micros(&row.deadline_at).unwrap_or(i64::MIN);
        if self
            .live
            .hold(LiveRun::new(&row.run_id, identity.key(), deadline))
            .is_none()
        {
            // No room to hold it: counted straight into the table (one write, rare).
            if now >= deadline {
                return Ok(Attachment::Refused);
            }
            self.store.add_run_calls(&[(row.run_id.clone(), 1)]).await?;
            return Ok(Attachment::Run(Arc::from(row.run_id)));
        }
        Ok(match self.live.attach(run_id, identity, now) {
            Lookup::Attached(id) => {
                self.work.ring();
                Attachment::Run(id)
            }
            _ => Attachment::Refused,
        })
    }

    /// Adds the calls counted in memory to the table; calls a failed write could not store wait for the next.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let _counting = self.counting.lock().await;
        let held = self.live.all();
        let deltas: Vec<(Arc<LiveRun>, i64)> = held
            .into_iter()
            .map(|r| {
                let calls = r.take_calls();
                (r, calls)
            })
            .filter(|(_, calls)| *calls > 0)
            .collect();
        let rows: Vec<(String, i64)> = deltas
            .iter()
            .map(|(r, calls)| (r.run_id.to_string(), *calls))
            .collect();
        if let Err(e) = self.store.add_run_calls(&rows).await {
            for (run, calls) in deltas {
                run.give_back(calls);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Ends every running run whose deadline is at or before `now` as `failed`, error `timed out`; answers how
    /// many this call ended. The keeper calls it with the clock; tests with the time they choose.
    pub async fn expire_due(&self, now: OffsetDateTime) -> Result<usize, AuditError> {
        let due = self
            .store
            .due_runs(&crate::telemetry::format_rfc3339(now), 100)
            .await?;
        let mut ended = 0;
        for row in due {
            let end = RunEnd {
                run_id: row.run_id.clone(),
                status: "failed".into(),
                artifacts: None,
                error: Some(TIMED_OUT.into()),
                dlp_findings: row.dlp_findings.clone(),
                finished_at: crate::telemetry::format_rfc3339(now),
                duration_ms: duration_ms(&row.started_at, now),
                calls: 0,
            };
            match self.end(row, end, &[]).await {
                Ok(_) => ended += 1,
                // Another instance ended it first; it recorded it.
                Err(RunError::AlreadyEnded(_)) => {}
                Err(RunError::Store(e)) => return Err(e),
                Err(e) => tracing::error!(error = %e, "run timeout not recorded"),
            }
        }
        Ok(ended)
    }

    /// Forgets the runs held here that another instance ended (their uncounted calls stored first).
    pub async fn forget_ended_elsewhere(&self) -> Result<(), AuditError> {
        let held: Vec<String> = self
            .live
            .all()
            .iter()
            .map(|r| r.run_id.to_string())
            .collect();
        for run_id in self.store.ended_among(&held).await? {
            if let Some(run) = self.live.release(&run_id) {
                self.add_late_calls(&run_id, run.take_calls()).await;
            }
        }
        Ok(())
    }

    /// One run, its calls counted here included.
    pub async fn get(&self, run_id: &str) -> Result<Option<RunView>, AuditError> {
        self.flush().await?;
        Ok(self.store.run(run_id).await?.map(view))
    }

    /// One page of runs, newest start first, and the cursor of the next page.
    pub async fn list(
        &self,
        query: &ListQuery,
    ) -> Result<(Vec<RunView>, Option<String>), RunError> {
        let after = query.cursor.as_deref().map(parse_cursor).transpose()?;
        self.flush().await?;
        let limit = query.limit.unwrap_or(PAGE_LIMIT).clamp(1, PAGE_LIMIT);
        let page = RunPage {
            tenant_id: query.tenant_id.clone(),
            agent_id: query.agent_id.clone(),
            status: query.status.clone(),
            after,
            limit: limit + 1,
        };
        let mut rows = self.store.runs_page(&page).await?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| {
                let key = json!([r.started_at, r.run_id]);
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.to_string())
            })
        } else {
            None
        };
        Ok((rows.into_iter().map(view).collect(), next))
    }
}

impl Live {
    /// Holds again a run whose end could not be stored, so its calls keep being counted.
    fn hold_again(&self, run: Arc<LiveRun>) {
        let calls = run.take_calls();
        if let Some(held) = self.hold(LiveRun::new(
            &run.run_id,
            run.owner.clone(),
            run.deadline_micros,
        )) {
            held.give_back(calls);
        }
    }
}

/// A request naming its run unreadably: a header that is not text, a `_meta` id that is not a string, or two
/// different ids (which one would the agent mean?).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the run id must be one string (header and _meta must agree)")]
pub struct BadRunId;

/// The run id a request names: header `Toolgate-Run-Id`, or `_meta["io.toolgate/run_id"]` in its params.
pub fn presented<'a>(
    header: Option<&'a hyper::header::HeaderValue>,
    params: Option<&'a Value>,
) -> Result<Option<&'a str>, BadRunId> {
    let from_header = match header {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| BadRunId)?.trim()),
    };
    let from_meta = match params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_KEY))
    {
        None => None,
        Some(Value::String(s)) => Some(s.trim()),
        Some(_) => return Err(BadRunId),
    };
    match (from_header, from_meta) {
        (Some(h), Some(m)) if h != m => Err(BadRunId),
        (Some(id), _) | (None, Some(id)) => Ok(Some(id)),
        (None, None) => Ok(None),
    }
}

/// The request header naming a request's run.
pub const HEADER: &str = "toolgate-run-id";
/// The `_meta` key naming a request's run.
pub const META_KEY: &str = "io.toolgate/run_id";

/// Whether `id` has the shape of the ids [`Runs::start_at`] makes: a version 4 UUID, lower-case, hyphenated.
pub fn is_run_id(id: &str) -> bool {
    id.len() == 36
        && uuid::Uuid::parse_str(id)
            .is_ok_and(|u| u.get_version_num() == 4 && u.hyphenated().to_string() == id)
}

/// SHA-256 hex of the agent's tenant and `sub` as its token names them.
fn owner_of(identity: &AgentIdentity) -> String {
    let key = serde_json::to_string(&(&identity.tenant_id, &identity.id)).unwrap_or_default();
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The JWT `requester` claim (the human the agent acts for), as the audit log stores it.
fn requester(identity: &AgentIdentity) -> Option<String> {
    identity
        .claims
        .get("requester")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| stored_text(s.to_owned()))
}

fn findings_json(findings: &[Finding]) -> String {
    serde_json::to_string(findings).unwrap_or_else(|_| "[]".into())
}

/// Occurrences over all findings.
fn count(findings: &[Finding]) -> u64 {
    findings.iter().map(|f| u64::from(f.count)).sum()
}

/// The audit event of a run's start or end: `workflow_id` is the run id; nothing of what the agent wrote but
/// its findings.
fn event(event_type: &str, row: &RunRow, findings: &[Finding], extra: Value) -> EventDraft {
    EventDraft {
        event_type: event_type.to_owned(),
        agent_id: Some(row.agent_id.clone()),
        tenant_id: (!row.tenant_id.is_empty()).then(|| row.tenant_id.clone()),
        workflow_id: Some(row.run_id.clone()),
        requester_id: row.requester_id.clone(),
        dlp_findings: serde_json::to_value(findings).unwrap_or(Value::Array(vec![])),
        extra,
        ..EventDraft::default()
    }
}

fn view(row: RunRow) -> RunView {
    RunView {
        tenant_id: (!row.tenant_id.is_empty()).then_some(row.tenant_id),
        objective: row.objective,
        status: row.status,
        started_at: row.started_at,
        finished_at: row.finished_at,
        duration_ms: row.duration_ms,
        plan: serde_json::from_str(&row.plan).unwrap_or(Value::Null),
        artifacts: serde_json::from_str(&row.artifacts).unwrap_or(Value::Null),
        error: row.error,
        requester_id: row.requester_id,
        dry_run: row.dry_run,
        calls: row.calls,
        dlp_findings: serde_json::from_str(&row.dlp_findings).unwrap_or(Value::Array(vec![])),
        agent_id: row.agent_id,
        run_id: row.run_id,
    }
}

fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn parse_micros(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(micros)
}

/// Milliseconds from the stored start to `now` (0 if the start cannot be read or lies ahead).
fn duration_ms(started_at: &str, now: OffsetDateTime) -> i64 {
    parse_micros(started_at).map_or(0, |start| ((micros(now) - start) / 1000).max(0))
}

fn parse_cursor(cursor: &str) -> Result<(String, String), RunError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| RunError::BadCursor)?;
    serde_json::from_slice(&bytes).map_err(|_| RunError::BadCursor)
}

#[cfg(test)]
mod tests;
