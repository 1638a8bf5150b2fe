//! MCP sessions: an `Mcp-Session-Id` is bound to the upstream and the agent (tenant and `sub`) that opened it.
//!
//! Any other agent presenting it, or an id never issued, gets 404, exactly as an unknown session does, so a
//! session id reveals nothing about whose it is. Each agent holds at most `session.max_sessions_per_agent`
//! sessions: opening one more ends its own longest-idle session, so one agent cannot fill the store and lock
//! every other agent out.
//!
//! With SQLite (one instance) the sessions live in memory ([`local`]). With PostgreSQL, where several instances
//! share the database, each binding is also a row of `mcp_sessions` ([`shared`]): a session opened on one
//! instance is served by any other, ended everywhere by a `DELETE` on any, and the cap, the idle sweep and the
//! kill switch count every instance's sessions. Memory stays in front as a cache, so a session this instance
//! already knows costs no I/O; a session it does not know costs one read, once.

mod local;
pub mod shared;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::auth::AgentKey;
use local::Sessions;

/// One open session.
#[derive(Debug)]
pub struct Session {
    /// The id as presented, or `None` for a session ended by an instance that never saw it (the database
    /// keeps only its hash): its end is then recorded under `extra.session_hash`.
    pub id: Option<String>,
    /// SHA-256 hex of the id: how the database and the other instances name it.
    pub id_hash: String,
    pub upstream: String,
    /// The agent that opened it; only that same agent (tenant and `sub`) may use or end it.
    pub agent: AgentKey,
    /// RFC 3339, for the policy input's `session.started_at`.
    pub started_at: String,
    /// The protocol version negotiated by `initialize`, if it is one toolgate knows.
    pub protocol_version: Option<crate::mcp::ProtocolVersion>,
    calls: AtomicU64,
    /// A std mutex: held only to read or store an `Instant`.
    last_used: Mutex<Instant>,
    /// Shared sessions: when the last use was written to the database (or queued to be), in milliseconds
    /// since [`EPOCH`]: the request path compares it with the `Instant` it already took, at no extra clock read.
    written_at: AtomicU64,
}

impl Session {
    pub fn new(
        id: String,
        upstream: String,
        agent: AgentKey,
        protocol_version: Option<crate::mcp::ProtocolVersion>,
    ) -> Session {
        Session {
            id_hash: id_hash(&id),
            id: Some(id),
            upstream,
            agent,
            started_at: crate::telemetry::now_rfc3339(),
            protocol_version,
            calls: AtomicU64::new(0),
            last_used: Mutex::new(Instant::now()),
            written_at: AtomicU64::new(since_epoch(Instant::now())),
        }
    }

    /// The audit event of this session's start or end (`event_type`), `extra` saying why; no trace id (the
    /// caller adds the request's, when there is one).
    pub fn audit_event(
        &self,
        event_type: &str,
        extra: serde_json::Value,
    ) -> toolgate_engine::chain::EventDraft {
        let mut extra = extra;
        if self.id.is_none() {
            if let Some(map) = extra.as_object_mut() {
                map.insert("session_hash".into(), self.id_hash.clone().into());
            }
        }
        toolgate_engine::chain::EventDraft {
            event_type: event_type.to_owned(),
            agent_id: Some(self.agent.agent_id.clone()),
            session_id: self.id.clone(),
            tenant_id: self.agent.tenant_id.clone(),
            mcp_server: Some(self.upstream.clone()),
            dlp_findings: serde_json::json!([]),
            extra,
            ..Default::default()
        }
    }

    /// Tool calls made in this session so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Counts one tool call and returns the count before it.
    pub fn count_call(&self) -> u64 {
        self.calls.fetch_add(1, Ordering::Relaxed)
    }

    fn touch(&self, now: Instant) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(*self.last_used.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The message of every unusable presented session id: an unknown id and another agent's read the same.
const UNKNOWN_SESSION: &str = "unknown session: start a new one with initialize";

/// Why a presented session id is not usable.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    /// Unknown or expired: answered 404.
    #[error("{UNKNOWN_SESSION}")]
    NotFound,
    /// Bound to another agent (perhaps the same `sub` in another tenant): answered exactly as `NotFound`, told
    /// apart only in the audit log.
    #[error("{UNKNOWN_SESSION}")]
    Foreign,
    /// The shared session store (the database) did not answer: fail closed (503), nothing is served.
    #[error("the session store is unavailable")]
    Unavailable,
    #[error("too many open sessions")]
    Full,
    /// The upstream returned a session id that is bound to another agent.
    #[error("the upstream's session id is already bound to another agent")]
    Taken,
    /// Several `Mcp-Session-Id` headers, or one that is not visible ASCII: toolgate would check one and the
    /// upstream might act on another, so neither is used (400).
    #[error("send at most one Mcp-Session-Id header, in visible ASCII")]
    BadHeader,
}

/// The session id a request presents: `None` without the header, an error when it is not exactly one readable
/// value (every copy of the header is forwarded over HTTP, so the one checked must be the only one).
pub fn presented(headers: &hyper::HeaderMap) -> Result<Option<&str>, SessionError> {
    let mut values = headers.get_all(crate::mcp::SESSION_HEADER).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SessionError::BadHeader);
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| SessionError::BadHeader)
}

/// A session opened, and the agent's own sessions it ended to stay within its cap, if any.
#[derive(Debug)]
pub struct Opened {
    pub session: Arc<Session>,
    pub evicted: Vec<Arc<Session>>,
}

/// All open sessions this instance knows: every one (SQLite), or a cache in front of the database's.
pub struct SessionStore {
    /// A std RwLock: never held across an await.
    sessions: RwLock<Sessions>,
    max_sessions: usize,
    max_per_agent: usize,
    idle_timeout: Duration,
    /// PostgreSQL: the bindings every instance shares.
    shared: Option<shared::Bindings>,
}

impl SessionStore {
    /// Sessions in memory only (one instance).
    pub fn new(max_sessions: usize, max_per_agent: usize, idle_timeout: Duration) -> SessionStore {
        SessionStore {
            sessions: RwLock::new(Sessions::default()),
            max_sessions,
            // A cap of 0 would refuse every session; the config refuses it, this keeps the store sane anyway.
            max_per_agent: max_per_agent.max(1),
            idle_timeout,
            shared: None,
        }
    }

    /// Sessions shared through the database with every instance using it.
    pub fn shared(
        max_sessions: usize,
        max_per_agent: usize,
        idle_timeout: Duration,
        bindings: shared::Bindings,
    ) -> SessionStore {
        SessionStore {
            shared: Some(bindings),
            ..SessionStore::new(max_sessions, max_per_agent, idle_timeout)
        }
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, Sessions> {
        self.sessions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn map_mut(&self) -> std::sync::RwLockWriteGuard<'_, Sessions> {
        self.sessions.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds a new session. An agent at its cap loses its longest-idle session (returned, so its end can be
    /// recorded); beyond `max_sessions` sessions in memory, refused.
    pub async fn open(&self, session: Session) -> Result<Opened, SessionError> {
        let Some(shared) = &self.shared else {
            return self
                .map_mut()
                .insert(session, self.max_sessions, self.max_per_agent);
        };
        if self.map().len() >= self.max_sessions {
            return Err(SessionError::Full);
        }
        let session = Arc::new(session);
        let evicted = shared.open(&session, self.max_per_agent).await?;
        let mut map = self.map_mut();
        let evicted = evicted
            .into_iter()
            .map(|row| {
                map.remove_hash(&row.upstream, &row.id_hash)
                    .unwrap_or_else(|| Arc::new(shared::from_row(row)))
            })
            .collect();
        map.put(session.clone());
        Ok(Opened { session, evicted })
    }

    /// The session `id` on `upstream` if it exists, is not idle past the timeout, and belongs to `agent`. From
    /// memory when this instance knows it; else (shared) from the database, once, and then cached.
    pub async fn get(
        &self,
        upstream: &str,
        id: &str,
        agent: &AgentKey,
    ) -> Result<Arc<Session>, SessionError> {
        match self.cached(upstream, id, agent) {
            Err(SessionError::NotFound) => {}
            found => return found,
        }
        let Some(shared) = &self.shared else {
            return Err(SessionError::NotFound);
        };
        let session = Arc::new(shared.load(upstream, id, agent, self.idle_timeout).await?);
        let mut map = self.map_mut();
        if map.len() < self.max_sessions {
            map.put(session.clone());
        }
        Ok(session)
    }

    /// The lookup in memory: the whole cost of a session this instance knows.
    fn cached(
        &self,
        upstream: &str,
        id: &str,
        agent: &AgentKey,
    ) -> Result<Arc<Session>, SessionError> {
        let map = self.map();
        let session = map.get(upstream, id).ok_or(SessionError::NotFound)?;
        // One clock read serves the idle check, the use and whether the use is due in the database.
        let now = Instant::now();
        // Idle here; perhaps used on another instance since (shared: the database says).
        if session.idle_for(now) > self.idle_timeout {
            return Err(SessionError::NotFound);
        }
        if &session.agent != agent {
            return Err(SessionError::Foreign);
        }
        session.touch(now);
        if let Some(shared) = &self.shared {
            shared.touched(session, now);
        }
        Ok(session.clone())
    }

    /// Ends a session (DELETE); returns it so its end can be recorded (shared: by this instance only if it
    /// is the one that ended it).
    pub async fn remove(
        &self,
        upstream: &str,
        id: &str,
        agent: &AgentKey,
    ) -> Result<Arc<Session>, SessionError> {
        let Some(shared) = &self.shared else {
            return self.map_mut().remove_own(upstream, id, agent);
        };
        let ended = shared.end(upstream, id, agent).await;
        // Ended here, or already gone: this instance forgets it too (another agent's attempt changes nothing).
        let local = match &ended {
            Ok(_) | Err(SessionError::NotFound) => {
                self.map_mut().remove_hash(upstream, &id_hash(id))
            }
            Err(_) => None,
        };
        let row = ended?;
        Ok(local.unwrap_or_else(|| {
            let mut session = shared::from_row(row);
            session.id = Some(id.to_owned());
            session.agent = agent.clone();
            Arc::new(session)
        }))
    }

    /// Ends the sessions idle longer than the timeout and returns those this instance is to record.
    pub async fn sweep_idle(&self) -> Vec<Arc<Session>> {
        let now = Instant::now();
        let idle: Vec<Arc<Session>> = self.map_mut().remove_idle(now, self.idle_timeout);
        let Some(shared) = &self.shared else {
            return idle;
        };
        // Idle here is not idle everywhere: the database, which every instance's use reaches, decides.
        let mut ended = shared.sweep(&idle, self.idle_timeout).await;
        // Sessions this instance never served (or forgot), long past their timeout.
        ended.extend(
            shared
                .sweep_orphans(self.idle_timeout)
                .await
                .into_iter()
                .map(|row| Arc::new(shared::from_row(row))),
        );
        ended
    }

    /// Ends every session of the agents whose stored form (tenant, `sub`) is in `stored` (the kill switch),
    /// here and on every instance; returns those this instance is to record. `is_one` tells which of this
    /// instance's sessions belong to them.
    ///
    /// Shared: each instance ends the sessions it holds (it knows their ids, which its records carry); the
    /// others' are ended by them as the disable reaches them, and what is left by [`Self::end_remainder`].
    pub async fn end_agents(&self, is_one: impl Fn(&AgentKey) -> bool) -> Vec<Arc<Session>> {
        let local = self.map_mut().remove_agents(is_one);
        let Some(shared) = &self.shared else {
            return local;
        };
        shared.end_held(&local).await
    }

    /// Shared: after [`shared::REMAINDER_AFTER`], ends the sessions of these agents (stored tenant and `sub`)
    /// that no live instance ended (their holder died, or forgot them), each recorded in `audit` by its hash.
    /// The agent is refused before any session is looked up meanwhile. In memory only: nothing to do.
    pub fn end_remainder(&self, stored: Vec<(String, String)>, audit: &crate::audit::AuditLog) {
        if let Some(shared) = &self.shared {
            shared.end_remainder_later(stored, audit.clone());
        }
    }

    /// Forgets the cached sessions another instance ended (by id hash), or every cached one (`None`: changes may
    /// have been missed). Nothing is recorded: whoever ended them did.
    pub fn forget(&self, id_hash: Option<&str>) {
        let mut map = self.map_mut();
        match id_hash {
            Some(hash) => map.forget_hash(hash),
            None => *map = Sessions::default(),
        }
    }

    /// Sessions in memory.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many sessions of `agent` this instance holds in memory.
    pub fn count_of(&self, agent: &AgentKey) -> usize {
        self.map().count_of(agent)
    }

    /// Shared sessions: how many times the database was asked for a binding (a cache miss each).
    pub fn store_lookups(&self) -> u64 {
        self.shared.as_ref().map_or(0, shared::Bindings::lookups)
    }
}

/// SHA-256 hex of a session id: the only form the database and the notifications carry.
pub fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// SHA-256 hex of an agent's exact tenant and `sub` (length-prefixed, an absent tenant flagged): the owner of
/// a shared session, exact even where the stored ids are redacted or cut.
pub fn agent_hash(agent: &AgentKey) -> String {
    let mut hasher = Sha256::new();
    match &agent.tenant_id {
        None => hasher.update([0u8]),
        Some(t) => {
            hasher.update([1u8]);
            hasher.update((t.len() as u64).to_be_bytes());
            hasher.update(t.as_bytes());
        }
    }
    hasher.update([1u8]);
    hasher.update((agent.agent_id.len() as u64).to_be_bytes());
    hasher.update(agent.agent_id.as_bytes());
    hex::encode(hasher.finalize())
}

/// The process's reference instant for [`Session::written_at`].
static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(*EPOCH).as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// A fresh, unguessable session id (128 random bits, hex).
pub fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests;
