//! Session bindings shared by every instance of one database (`mcp_sessions`), behind the in-memory cache.
//!
//! The database holds the truth: who owns a session (by the hash of the agent's exact tenant and `sub`), on
//! which upstream, with which protocol version, and when it was last used. A binding's id is never stored,
//! only its SHA-256, so the table hands out no session. `last_used` is written at most every few seconds per
//! session (queued off the request path to one writer task), not per call. Ends made on any instance reach the
//! others' caches through the state-change bus (`crate::shared_state`), wired by the app.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{agent_hash, id_hash, since_epoch, unix_ms, Session, SessionError};
use crate::audit::store::{EndedRow, OpenedRow, SessionRow};
use crate::audit::{AuditLog, AuditStore};
use crate::auth::AgentKey;
use crate::redaction::stored_text;

/// The longest a session's use waits before it reaches the database.
const TOUCH_EVERY: Duration = Duration::from_secs(5);

/// How long past its idle timeout a session no live instance knows (its opener died, or forgot it) waits
/// before any instance ends it: the instances that know its id end it first, and record it by id.
const ORPHAN_GRACE: Duration = Duration::from_secs(60);

/// How long the instances holding a disabled agent's sessions have to end them (and record them by id) before
/// the instance that saw the disable ends what is left.
pub const REMAINDER_AFTER: Duration = Duration::from_secs(2);

/// Most touches written in one transaction.
const TOUCH_BATCH: usize = 256;

/// One session's use to be written: (upstream, id hash, Unix milliseconds).
type Touch = (String, String, i64);

/// The database side of the shared session store.
pub struct Bindings {
    store: AuditStore,
    /// This instance's chain id (`opened_by`).
    instance: String,
    touches: mpsc::UnboundedSender<Touch>,
    touch_every_ms: u64,
    /// Reads of a binding from the database: cache misses.
    lookups: AtomicU64,
}

impl Bindings {
    /// Bindings in `store`, opened by the instance with chain id `instance`. Starts the task that writes
    /// sessions' uses; it ends with the bindings.
    pub fn new(store: AuditStore, instance: String, idle_timeout: Duration) -> Bindings {
        let (touches, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_touches(store.clone(), rx));
        // A use must reach the database well within the idle timeout, or a busy session would look idle.
        let every = TOUCH_EVERY.min(idle_timeout / 4);
        Bindings {
            store,
            instance,
            touches,
            touch_every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
            lookups: AtomicU64::new(0),
        }
    }

    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Stores the binding of a new session within its agent's cap; answers the bindings it evicted.
    pub(super) async fn open(
        &self,
        session: &Session,
        cap: usize,
    ) -> Result<Vec<SessionRow>, SessionError> {
        let row = SessionRow {
            upstream: session.upstream.clone(),
            id_hash: session.id_hash.clone(),
            agent_hash: agent_hash(&session.agent),
            tenant_id: session
                .agent
                .tenant_id
                .clone()
                .map(stored_text)
                .unwrap_or_default(),
            agent_id: stored_text(session.agent.agent_id.clone()),
            protocol_version: session.protocol_version.map(|v| v.as_str().to_owned()),
            started_at: session.started_at.clone(),
            last_used_ms: unix_ms(),
            opened_by: self.instance.clone(),
        };
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        match self
            .store
            .open_session(&row, cap)
            .await
            .map_err(unavailable)?
        {
            OpenedRow::Added { evicted } => Ok(evicted),
            OpenedRow::Rebound => Ok(Vec::new()),
            OpenedRow::Taken => Err(SessionError::Taken),
        }
    }

    /// A session this instance does not hold: read once from the database.
    pub(super) async fn load(
        &self,
        upstream: &str,
        id: &str,
        agent: &AgentKey,
        idle_timeout: Duration,
    ) -> Result<Session, SessionError> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let hash = id_hash(id);
        let row = self
            .store
            .session_binding(upstream, &hash)
            .await
            .map_err(unavailable)?
            .ok_or(SessionError::NotFound)?;
        let idle_ms = i64::try_from(idle_timeout.as_millis()).unwrap_or(i64::MAX);
        if unix_ms().saturating_sub(row.last_used_ms) > idle_ms {
            return Err(SessionError::NotFound);
        }
        if row.agent_hash != agent_hash(agent) {
            return Err(SessionError::Foreign);
        }
        Ok(Session {
            id: Some(id.to_owned()),
            // The hash matched: the caller is exactly the agent that opened it.
            agent: agent.clone(),
            ..from_row(row)
        })
    }

    /// A use of `session` at `now`: queued for the database when the last one written is old enough.
    pub(super) fn touched(&self, session: &Session, now: Instant) {
        let at = since_epoch(now);
        let written = session.written_at.load(Ordering::Relaxed);
        if at.saturating_sub(written) >= self.touch_every_ms
            && session
                .written_at
                .compare_exchange(written, at, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let _ =
                self.touches
                    .send((session.upstream.clone(), session.id_hash.clone(), unix_ms()));
        }
    }

    /// Ends the binding if it is `agent`'s.
    pub(super) async fn end(
        &self,
        upstream: &str,
        id: &str,
        agent: &AgentKey,
    ) -> Result<SessionRow, SessionError> {
        match self
            .store
            .end_session(upstream, &id_hash(id), &agent_hash(agent))
            .await
            .map_err(unavailable)?
        {
            EndedRow::Ended(row) => Ok(row),
            EndedRow::Foreign => Err(SessionError::Foreign),
            EndedRow::NotFound => Err(SessionError::NotFound),
        }
    }

    /// Of the sessions idle here, ends those idle everywhere (unused in the database too); answers them.
    pub(super) async fn sweep(
        &self,
        idle_here: &[Arc<Session>],
        timeout: Duration,
    ) -> Vec<Arc<Session>> {
        let before = unix_ms().saturating_sub(millis(timeout));
        let mut ended = Vec::new();
        for session in idle_here {
            match self
                .store
                .end_idle_session(&session.upstream, &session.id_hash, before)
                .await
            {
                Ok(true) => ended.push(session.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "ending idle sessions failed; the next sweep retries");
                    break;
                }
            }
        }
        ended
    }

    /// Ends the sessions no instance has used for the timeout and a grace period more.
    pub(super) async fn sweep_orphans(&self, timeout: Duration) -> Vec<SessionRow> {
        let before = unix_ms().saturating_sub(millis(timeout + ORPHAN_GRACE));
        self.store.sweep_sessions(before).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ending idle sessions failed; the next sweep retries");
            Vec::new()
        })
    }

    /// Ends the bindings of these sessions this instance held; answers those it ended (not another instance).
    pub(super) async fn end_held(&self, held: &[Arc<Session>]) -> Vec<Arc<Session>> {
        let mut ended = Vec::new();
        for session in held {
            match self
                .store
                .end_idle_session(&session.upstream, &session.id_hash, i64::MAX)
                .await
            {
                Ok(true) => ended.push(session.clone()),
                Ok(false) => {}
                Err(e) => {
                    // Refused everywhere anyway; the remainder pass ends what is left.
                    tracing::warn!(error = %e, "ending a disabled agent's session failed");
                    ended.push(session.clone());
                }
            }
        }
        ended
    }

    /// After [`REMAINDER_AFTER`], ends every binding still left of the agents with these stored (tenant,
    /// `sub`), each recorded in `audit` by its hash (`extra.session_hash`).
    pub(super) fn end_remainder_later(&self, stored: Vec<(String, String)>, audit: AuditLog) {
        let store = self.store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REMAINDER_AFTER).await;
            for (tenant_id, agent_id) in &stored {
                let rows = match store.end_sessions_of(tenant_id, agent_id).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(error = %e, "ending a disabled agent's sessions failed; the idle sweep ends them");
                        continue;
                    }
                };
                for row in rows {
                    let session = from_row(row);
                    let draft = session.audit_event(
                        "session_end",
                        serde_json::json!({ "reason": "agent_disabled", "calls": 0 }),
                    );
                    let _ = audit.append(draft).await;
                }
            }
        });
    }
}

/// A session as the database knows it: no id, and the agent in its stored form.
pub(super) fn from_row(row: SessionRow) -> Session {
    Session {
        id: None,
        id_hash: row.id_hash,
        upstream: row.upstream,
        agent: AgentKey {
            tenant_id: (!row.tenant_id.is_empty()).then_some(row.tenant_id),
            agent_id: row.agent_id,
        },
        started_at: row.started_at,
        // A row written by another instance (or an older toolgate) is read through the same filter.
        protocol_version: row
            .protocol_version
            .as_deref()
            .and_then(crate::mcp::ProtocolVersion::known),
        calls: AtomicU64::new(0),
        last_used: std::sync::Mutex::new(Instant::now()),
        // Just read: its use is written again once due from now.
        written_at: AtomicU64::new(since_epoch(Instant::now())),
    }
}

fn unavailable(e: crate::audit::AuditError) -> SessionError {
    tracing::error!(error = %e, "the session store is unavailable");
    SessionError::Unavailable
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Writes the queued uses, batched: one transaction per burst, none while nothing is used.
async fn write_touches(store: AuditStore, mut rx: mpsc::UnboundedReceiver<Touch>) {
    let mut batch = Vec::with_capacity(TOUCH_BATCH);
    while rx.recv_many(&mut batch, TOUCH_BATCH).await > 0 {
        if let Err(e) = store.touch_sessions(&batch).await {
            // A lost touch only makes a session look idle sooner, never gives it to anyone.
            tracing::warn!(error = %e, "recording sessions' last use failed");
        }
        batch.clear();
    }
}
