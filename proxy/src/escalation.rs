//! Escalated calls held for a human: stored in the audit database (table `escalations`) under an id, decided
//! through the admin API, expired to deny when nobody decides in time. The database is the one truth, so a
//! pending escalation survives a restart and every instance sharing the database sees it and its answer.
//!
//! A reviewer's answer reaches the agent either at once, when its call is still held (`escalation.hold_seconds`),
//! or on the agent's next identical call (same agent, upstream, method, name and exact arguments, see
//! [`Fingerprint`]) within `escalation.answer_ttl_seconds`: an approval lets that one call through, a denial or
//! an expiry denies it. Taking an answer is one conditional UPDATE, so of the calls racing for one answer, on any
//! instance, exactly one gets it. A retry while the escalation is still pending joins it instead of opening
//! another one for the reviewers. The agent is its tenant and `sub` together ([`AgentKey`]): the same `sub` in
//! another tenant never joins, nor takes the answer of, another tenant's escalation.
//!
//! A held call waits on an in-memory flag that a decision made on this instance raises at once; decisions made
//! by another instance, and expiries, raise it from the [`keeper`] task, which the state-change bus wakes at once
//! (PostgreSQL notifications, a SQLite file's writes: `crate::shared_state`) and which sleeps until the
//! soonest expiry, or, hearing of no changes (a SQLite file that cannot be watched), looks at the database
//! every [`keeper::TICK`]. Stored text is what the audit log stores (redacted of what DLP flags, capped at
//! [`MAX_FIELD_BYTES`]); the call's arguments never are, only the fingerprint's digest.

mod keeper;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use prometheus::IntGauge;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use toolgate_engine::chain::EventDraft;

use crate::audit::store::{EscalationKey, EscalationPage, EscalationRow};
use crate::audit::{AuditError, AuditLog, AuditStore};
use crate::auth::AgentKey;
use crate::config::EscalationSettings;
use crate::redaction::stored_text;
use crate::shared_state::{Bus, Change};

/// The longest text an escalation keeps in any field (bytes): the audit log's own limit, since every field is
/// stored as the audit log stores it (`prefix…[sha256:<hex> len:<n>]` when cut).
pub const MAX_FIELD_BYTES: usize = crate::redaction::FIELD_LIMIT;

/// What a reviewer said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    Approved,
    Denied,
}

/// What an escalated call is answered with once its escalation is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Approved,
    Denied,
    /// Nobody decided within `escalation.timeout_seconds`: a deny.
    Expired,
}

/// Where an escalation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Approved,
            Status::Denied,
            Status::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// The answer a call gets from an escalation settled this way; `None` while pending.
    fn answer(self) -> Option<Answer> {
        match self {
            Status::Pending => None,
            Status::Approved => Some(Answer::Approved),
            Status::Denied => Some(Answer::Denied),
            Status::Expired => Some(Answer::Expired),
        }
    }
}

impl From<Review> for Status {
    fn from(review: Review) -> Status {
        match review {
            Review::Approved => Status::Approved,
            Review::Denied => Status::Denied,
        }
    }
}

/// One escalation as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Escalation {
    pub id: String,
    pub status: Status,
    pub created_at: String,
    /// When it expires to deny if still pending (`escalation.timeout_seconds` after `created_at`).
    pub expires_at: String,
    /// When it was decided or expired.
    pub decided_at: Option<String>,
    /// The admin who decided it (`null` while pending, and for an expiry).
    pub decided_by: Option<String>,
    pub agent_id: String,
    /// The agent's tenant: two tenants' agents may share an `agent_id`.
    pub tenant_id: Option<String>,
    pub tool_name: String,
    pub mcp_server: String,
    pub action: String,
    pub target: Option<String>,
    pub policy_id: String,
    pub reason: String,
    /// Once settled: whether a call has taken the answer (a held call, or a retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<bool>,
}

impl Escalation {
    /// An audit event about this escalation, carrying its agent, tool, server, action, target and policy.
    pub fn event_draft(&self, event_type: &str, extra: serde_json::Value) -> EventDraft {
        EventDraft {
            event_type: event_type.to_owned(),
            agent_id: Some(self.agent_id.clone()),
            tenant_id: self.tenant_id.clone(),
            tool_name: Some(self.tool_name.clone()),
            mcp_server: Some(self.mcp_server.clone()),
            action: Some(self.action.clone()),
            target: self.target.clone(),
            policy_id: Some(self.policy_id.clone()),
            extra,
            ..EventDraft::default()
        }
    }
}

/// The escalation of one call, as the pipeline opens it; [`Escalations::open`] stores each text field as the
/// audit log stores it.
#[derive(Debug, Clone)]
pub struct NewEscalation {
    pub id: String,
    pub agent: AgentKey,
    pub tool_name: String,
    pub mcp_server: String,
    pub action: String,
    pub target: Option<String>,
    pub policy_id: String,
    pub reason: String,
}

/// SHA-256 over length-prefixed parts (an absent one flagged), so no two different lists give the same bytes:
/// `("ab", "c")` and `("a", "bc")` differ, and an absent part differs from an empty one.
fn digest(parts: &[Option<&[u8]>]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        match part {
            None => hasher.update([0u8]),
            Some(bytes) => {
                hasher.update([1u8]);
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(bytes);
            }
        }
    }
    hasher.finalize().into()
}

/// The agent as the store keys it (the per-agent cap, the retry's owner): a digest of its tenant and `sub`, so
/// the key is exact even where the stored `agent_id` is redacted or cut.
fn agent_key(agent: &AgentKey) -> String {
    hex::encode(digest(&[
        agent.tenant_id.as_deref().map(str::as_bytes),
        Some(agent.agent_id.as_bytes()),
    ]))
}

/// Which calls count as the same call: SHA-256 over the agent (tenant and `sub`), the upstream, the method, the
/// tool or prompt name and the exact hash of the arguments (`toolgate_engine::canonical::exact_hash`, which,
/// unlike `input_hash`, does not round large integers). Fixed-size whatever the call's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(
        agent: &AgentKey,
        upstream: &str,
        method: &str,
        name: Option<&str>,
        arguments: &[u8; 32],
    ) -> Fingerprint {
        Fingerprint(digest(&[
            agent.tenant_id.as_deref().map(str::as_bytes),
            Some(agent.agent_id.as_bytes()),
            Some(upstream.as_bytes()),
            Some(method.as_bytes()),
            name.map(str::as_bytes),
            Some(arguments.as_slice()),
        ]))
    }

    fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// What an escalated call finds for its fingerprint.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// An earlier identical call was decided (or expired) and nobody took the answer: it is now this call's.
    Answered { id: String, answer: Answer },
    /// An identical call is pending: join it rather than open another.
    Pending { id: String },
    /// Nothing: open a new escalation.
    None,
}

/// How a held call's wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    /// Its escalation was settled and this call took the answer. A denial or an expiry answers every call
    /// held on it, whoever took it first.
    Answered(Answer),
    /// Nobody decided within the hold time: the answer waits for the agent's retry.
    StillPending,
    /// Approved, but another call held on the same escalation (here or on another instance) took the approval,
    /// which lets one call through.
    ApprovalTaken,
}

#[derive(Debug, thiserror::Error)]
pub enum EscalationError {
    #[error("no escalation {0}")]
    NotFound(String),
    #[error("escalation {0} was already decided")]
    AlreadyDecided(String),
    #[error("escalation {0} expired before it was decided")]
    Expired(String),
    /// The agent already has `escalation.max_pending_per_agent` pending: nothing was opened.
    #[error("{0} escalations of this agent already wait for a reviewer")]
    TooManyPending(usize),
    #[error("bad cursor: not one this server issued")]
    BadCursor,
    #[error(transparent)]
    Store(#[from] AuditError),
}

/// One page of the admin listing.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: Option<Status>,
    /// Only this tenant's escalations (a tenant's admin); `None`: every tenant's.
    pub tenant_id: Option<String>,
    /// Page size, 1 to [`ListQuery::MAX_LIMIT`].
    pub limit: u32,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl ListQuery {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;
}

/// A page of escalations: pending first, then newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub escalations: Vec<Escalation>,
    /// Continues the listing after this page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The escalations, in the audit database. Cheap to share: held in `App`.
pub struct Escalations {
    shared: Arc<Shared>,
}

struct Shared {
    store: AuditStore,
    /// `toolgate_escalations_pending`, set from the database's count after every change (and by the keeper).
    gauge: IntGauge,
    max_pending_per_agent: usize,
    timeout: Duration,
    /// Escalations a call on this instance is held on, each with a flag raised once it is settled (here, by
    /// another instance, or by expiry). A std mutex: held for map operations only, never across an await.
    held: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Where a new escalation is announced, so the keeper times its expiry (set by `start`).
    bus: std::sync::OnceLock<Bus>,
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<bool>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the calls held on `id` (it was settled); none held here is fine.
    fn raise(&self, id: &str) {
        if let Some(flag) = self.held().get(id) {
            flag.send_replace(true);
        }
    }

    /// Sets the gauge to the database's count of pending escalations; a failed count leaves it as it was.
    async fn refresh_gauge(&self) {
        match self.store.pending_escalations().await {
            Ok((count, _)) => self.gauge.set(count),
            Err(e) => tracing::warn!(error = %e, "counting pending escalations failed"),
        }
    }
}

/// A call held on an escalation: registered in [`Shared::held`] for as long as it lives.
struct HeldOn<'a> {
    shared: &'a Shared,
    id: &'a str,
    settled: Option<watch::Receiver<bool>>,
}

impl Drop for HeldOn<'_> {
    fn drop(&mut self) {
        // This call's receiver first, so the last call held on the escalation leaves no entry behind.
        drop(self.settled.take());
        let mut held = self.shared.held();
        if held.get(self.id).is_some_and(|f| f.receiver_count() == 0) {
            held.remove(self.id);
        }
    }
}

/// How many answers an identical call tries to take before it gives up on the ones other calls keep taking
/// first (it then escalates anew, which is safe).
const TAKE_ATTEMPTS: usize = 4;

impl Escalations {
    /// The escalations stored in `store`; sets the gauge from the stored pending count (exact after a restart).
    pub async fn load(
        store: AuditStore,
        gauge: IntGauge,
        settings: &EscalationSettings,
    ) -> Result<Escalations, AuditError> {
        let shared = Arc::new(Shared {
            store,
            gauge,
            max_pending_per_agent: settings.max_pending_per_agent,
            timeout: Duration::from_secs(settings.timeout_seconds),
            held: Mutex::new(HashMap::new()),
            bus: std::sync::OnceLock::new(),
        });
        let (pending, _) = shared.store.pending_escalations().await?;
        shared.gauge.set(pending);
        Ok(Escalations { shared })
    }

    /// Starts the task that expires pending escalations past their timeout (recording `escalation_expired` in
    /// `audit`), wakes calls held on escalations settled elsewhere, and keeps the gauge exact. It ends when
    /// these escalations are dropped.
    ///
    /// With `keep_settled`, it also deletes, once an hour, the escalations settled longer ago than that (their
    /// decisions stay in the audit log); `None` keeps them for ever.
    pub fn start(&self, audit: AuditLog, keep_settled: Option<Duration>) {
        self.start_with(audit, keep_settled, &Bus::new());
    }

    /// [`Escalations::start`] woken by the state-change bus: when it hears of the database's changes
    /// (PostgreSQL's notifications, a SQLite file's writes), a decision or a new escalation on any instance
    /// wakes the keeper (at once; within a [`crate::shared_state::WRITTEN_PERIOD`] on SQLite), an expiry is
    /// timed to the soonest one, and nothing polls in between (a slow safety net aside); otherwise the keeper
    /// looks every [`keeper::TICK`].
    pub fn start_with(&self, audit: AuditLog, keep_settled: Option<Duration>, bus: &Bus) {
        let _ = self.shared.bus.set(bus.clone());
        keeper::spawn(
            Arc::downgrade(&self.shared),
            audit,
            keep_settled,
            bus.subscribe(),
            bus.hears_changes(),
        );
    }

    /// The most pending escalations one agent may have.
    pub fn max_pending_per_agent(&self) -> usize {
        self.shared.max_pending_per_agent
    }

    /// What `agent`'s escalated call with this fingerprint should do; an answer found is taken (it serves one
    /// call). Answers settled longer than `ttl` ago are not given out.
    pub async fn lookup(
        &self,
        agent: &AgentKey,
        fingerprint: &Fingerprint,
        ttl: Duration,
    ) -> Result<Lookup, EscalationError> {
        let store = &self.shared.store;
        let (key, fingerprint) = (agent_key(agent), fingerprint.hex());
        let since = earlier(ttl);
        for _ in 0..TAKE_ATTEMPTS {
            let Some(id) = store.answer_waiting_for(&key, &fingerprint, &since).await? else {
                break;
            };
            // Another call may take it between the two statements: then the next candidate is tried.
            if let Some(status) = store.take_answer(&id).await? {
                let answer = parse_status(&status)?.answer().ok_or_else(|| {
                    bad_row(format!("escalation {id} was taken while {status:?}"))
                })?;
                return Ok(Lookup::Answered { id, answer });
            }
        }
        let now = crate::telemetry::now_rfc3339();
        Ok(
            match store
                .pending_escalation_like(&key, &fingerprint, &now)
                .await?
            {
                Some(id) => Lookup::Pending { id },
                None => Lookup::None,
            },
        )
    }

    /// Whether `agent` may open another escalation (it has fewer than the cap pending). Checked before the
    /// `policy_escalate` event is written; [`Escalations::open`] checks again as it inserts.
    pub async fn has_room(&self, agent: &AgentKey) -> Result<bool, EscalationError> {
        let pending = self
            .shared
            .store
            .pending_escalations_of(&agent_key(agent))
            .await?;
        Ok(usize::try_from(pending).unwrap_or(usize::MAX) < self.shared.max_pending_per_agent)
    }

    /// Stores a pending escalation, its text as the audit log stores it. Refused when its agent already has
    /// `max_pending_per_agent` pending, counted in the same statement as the insert.
    pub async fn open(
        &self,
        new: NewEscalation,
        fingerprint: Fingerprint,
    ) -> Result<Escalation, EscalationError> {
        let shared = &self.shared;
        let row = EscalationRow {
            agent_key: agent_key(&new.agent),
            fingerprint: fingerprint.hex(),
            status: Status::Pending.as_str().to_owned(),
            created_at: crate::telemetry::now_rfc3339(),
            expires_at: later(shared.timeout),
            decided_at: None,
            decided_by: None,
            delivered: false,
            id: new.id,
            agent_id: stored_text(new.agent.agent_id),
            tenant_id: new.agent.tenant_id.map(stored_text),
            tool_name: stored_text(new.tool_name),
            mcp_server: stored_text(new.mcp_server),
            action: stored_text(new.action),
            target: new.target.map(stored_text),
            policy_id: stored_text(new.policy_id),
            reason: stored_text(new.reason),
        };
        let cap = i64::try_from(shared.max_pending_per_agent).unwrap_or(i64::MAX);
        if !shared.store.insert_escalation(&row, cap).await? {
            return Err(EscalationError::TooManyPending(
                shared.max_pending_per_agent,
            ));
        }
        shared.refresh_gauge().await;
        if let Some(bus) = shared.bus.get() {
            bus.publish(Change::Escalation(row.id.clone()));
        }
        from_row(row)
    }

    /// Holds a call on escalation `id` for at most `hold`, and settles what it gets: the answer if it is
    /// settled by then and this call takes it, else still pending. A failed database read counts as still
    /// pending (the agent's retry asks again).
    pub async fn hold(&self, id: &str, hold: Duration) -> Held {
        let shared = &*self.shared;
        let settled = shared
            .held()
            .entry(id.to_owned())
            .or_insert_with(|| watch::channel(false).0)
            .subscribe();
        let mut on = HeldOn {
            shared,
            id,
            settled: Some(settled),
        };
        if let Some(settled) = on.settled.as_mut() {
            // Raised by a decision here, or by the keeper for one made elsewhere or an expiry; the flag is
            // only a wake-up, the database says what happened.
            let _ = tokio::time::timeout(hold, settled.wait_for(|s| *s)).await;
        }
        // One look after the wait, whatever ended it: a decision made just now is either taken here or left
        // for the retry, never lost in between.
        match self.take_held(id).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "reading a held escalation failed");
                Held::StillPending
            }
        }
    }

    async fn take_held(&self, id: &str) -> Result<Held, EscalationError> {
        let store = &self.shared.store;
        if let Some(status) = store.take_answer(id).await? {
            return Ok(parse_status(&status)?
                .answer()
                .map_or(Held::StillPending, Held::Answered));
        }
        let Some(row) = store.escalation(id).await? else {
            return Ok(Held::StillPending);
        };
        Ok(match parse_status(&row.status)? {
            Status::Pending => Held::StillPending,
            Status::Approved => Held::ApprovalTaken,
            // Fail closed: a denial is every held call's answer, whichever took it first.
            Status::Denied => Held::Answered(Answer::Denied),
            Status::Expired => Held::Answered(Answer::Expired),
        })
    }

    /// Records a reviewer's decision by `decided_by` (the admin's name) and wakes the calls held on it here.
    /// Unknown, already decided and expired escalations are refused; of two reviewers deciding at once, on any
    /// instances, one wins and the other is told it was already decided.
    pub async fn decide(
        &self,
        id: &str,
        review: Review,
        decided_by: &str,
    ) -> Result<Escalation, EscalationError> {
        let shared = &self.shared;
        let now = crate::telemetry::now_rfc3339();
        let status = Status::from(review).as_str();
        let by = stored_text(decided_by.to_owned());
        let Some(row) = shared
            .store
            .decide_escalation(id, status, &by, &now)
            .await?
        else {
            return Err(match shared.store.escalation(id).await? {
                None => EscalationError::NotFound(id.to_owned()),
                // Pending past its timeout: the keeper is about to expire it, and no decision beats that.
                Some(row) if row.status == "expired" || row.status == "pending" => {
                    EscalationError::Expired(id.to_owned())
                }
                Some(_) => EscalationError::AlreadyDecided(id.to_owned()),
            });
        };
        shared.raise(id);
        shared.refresh_gauge().await;
        from_row(row)
    }

    /// One escalation by id.
    pub async fn get(&self, id: &str) -> Result<Option<Escalation>, EscalationError> {
        self.shared
            .store
            .escalation(id)
            .await?
            .map(from_row)
            .transpose()
    }

    /// One page of escalations, pending first, then newest first.
    pub async fn list(&self, query: &ListQuery) -> Result<Listing, EscalationError> {
        let after = query.cursor.as_deref().map(parse_cursor).transpose()?;
        let limit = query.limit.clamp(1, ListQuery::MAX_LIMIT);
        let mut rows = self
            .shared
            .store
            .list_escalations(&EscalationPage {
                status: query.status.map(|s| s.as_str().to_owned()),
                tenant_id: query.tenant_id.clone(),
                // One more than the page, to know whether another page follows.
                limit: limit + 1,
                after,
            })
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(|last| {
                let key = EscalationKey {
                    rank: i64::from(last.status != Status::Pending.as_str()),
                    created_at: last.created_at.clone(),
                    id: last.id.clone(),
                };
                let json = serde_json::to_vec(&key).unwrap_or_default();
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
            })
        } else {
            None
        };
        Ok(Listing {
            escalations: rows.into_iter().map(from_row).collect::<Result<_, _>>()?,
            next_cursor,
        })
    }
}

fn parse_cursor(cursor: &str) -> Result<EscalationKey, EscalationError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| EscalationError::BadCursor)?;
    serde_json::from_slice(&bytes).map_err(|_| EscalationError::BadCursor)
}

/// `d` from now, in the stored spelling; beyond what a timestamp can hold, the end of year 9999 (after every
/// stored time).
fn later(d: Duration) -> String {
    let now = time::OffsetDateTime::now_utc();
    let at = time::Duration::try_from(d)
        .ok()
        .and_then(|d| now.checked_add(d))
        .filter(|t| t.year() <= 9999)
        .unwrap_or(time::macros::datetime!(9999-12-31 23:59:59.999999 UTC));
    crate::telemetry::format_rfc3339(at)
}

/// `d` before now, in the stored spelling; before the epoch, the epoch (before every stored time).
fn earlier(d: Duration) -> String {
    let now = time::OffsetDateTime::now_utc();
    let at = time::Duration::try_from(d)
        .ok()
        .and_then(|d| now.checked_sub(d))
        .filter(|t| t.year() >= 1970)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    crate::telemetry::format_rfc3339(at)
}

fn bad_row(message: String) -> EscalationError {
    EscalationError::Store(AuditError::Query(sqlx::Error::Decode(message.into())))
}

fn parse_status(text: &str) -> Result<Status, EscalationError> {
    Status::parse(text).ok_or_else(|| {
        bad_row(format!(
            "escalations.status {text:?} is not pending, approved, denied or expired"
        ))
    })
}

fn from_row(row: EscalationRow) -> Result<Escalation, EscalationError> {
    let status = parse_status(&row.status)?;
    Ok(Escalation {
        delivered: (status != Status::Pending).then_some(row.delivered),
        status,
        id: row.id,
        created_at: row.created_at,
        expires_at: row.expires_at,
        decided_at: row.decided_at,
        decided_by: row.decided_by,
        agent_id: row.agent_id,
        tenant_id: row.tenant_id,
        tool_name: row.tool_name,
        mcp_server: row.mcp_server,
        action: row.action,
        target: row.target,
        policy_id: row.policy_id,
        reason: row.reason,
    })
}
