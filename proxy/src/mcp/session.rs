//! MCP sessions: an `Mcp-Session-Id` is bound to the upstream and the agent (tenant and `sub`) that opened it.
//!
//! Any other agent presenting it, or an id never issued, gets 404, exactly as an unknown session does, so a
//! session id reveals nothing about whose it is. Each agent holds at most `session.max_sessions_per_agent`
//! sessions: opening one more ends its own longest-idle session, so one agent cannot fill the store and lock
//! every other agent out.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::auth::AgentKey;

/// One open session.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub upstream: String,
    /// The agent that opened it; only that same agent (tenant and `sub`) may use or end it.
    pub agent: AgentKey,
    /// RFC 3339, for the policy input's `session.started_at`.
    pub started_at: String,
    /// The protocol version negotiated by `initialize`.
    pub protocol_version: Option<String>,
    calls: AtomicU64,
    /// A std mutex: held only to read or store an `Instant`.
    last_used: Mutex<Instant>,
}

impl Session {
    pub fn new(
        id: String,
        upstream: String,
        agent: AgentKey,
        protocol_version: Option<String>,
    ) -> Session {
        Session {
            id,
            upstream,
            agent,
            started_at: crate::telemetry::now_rfc3339(),
            protocol_version,
            calls: AtomicU64::new(0),
            last_used: Mutex::new(Instant::now()),
        }
    }

    /// The audit event of this session's start or end (`event_type`), `extra` saying why; no trace id (the
    /// caller adds the request's, when there is one).
    pub fn audit_event(
        &self,
        event_type: &str,
        extra: serde_json::Value,
    ) -> toolgate_engine::chain::EventDraft {
        toolgate_engine::chain::EventDraft {
            event_type: event_type.to_owned(),
            agent_id: Some(self.agent.agent_id.clone()),
            session_id: Some(self.id.clone()),
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

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
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

/// A session opened, and the agent's own session it ended to stay within its cap, if any.
#[derive(Debug)]
pub struct Opened {
    pub session: Arc<Session>,
    pub evicted: Option<Arc<Session>>,
}

type Key = (String, String);

/// The sessions and, per agent, the keys of its sessions (kept together under one lock).
#[derive(Default)]
struct Sessions {
    /// Keyed by (upstream, session id).
    by_key: HashMap<Key, Arc<Session>>,
    by_agent: HashMap<AgentKey, HashSet<Key>>,
}

impl Sessions {
    fn remove(&mut self, key: &Key) -> Option<Arc<Session>> {
        let session = self.by_key.remove(key)?;
        if let Some(keys) = self.by_agent.get_mut(&session.agent) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_agent.remove(&session.agent);
            }
        }
        Some(session)
    }
}

/// All open sessions of this instance.
pub struct SessionStore {
    /// A std RwLock: never held across an await.
    sessions: RwLock<Sessions>,
    max_sessions: usize,
    max_per_agent: usize,
    idle_timeout: Duration,
}

impl SessionStore {
    pub fn new(max_sessions: usize, max_per_agent: usize, idle_timeout: Duration) -> SessionStore {
        SessionStore {
            sessions: RwLock::new(Sessions::default()),
            max_sessions,
            // A cap of 0 would refuse every session; the config refuses it, this keeps the store sane anyway.
            max_per_agent: max_per_agent.max(1),
            idle_timeout,
        }
    }

    /// Binds a new session. An agent at its cap loses its longest-idle session (returned, so its end can be
    /// recorded); the store as a whole beyond `max_sessions` refuses.
    pub fn insert(&self, session: Session) -> Result<Opened, SessionError> {
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        let key = (session.upstream.clone(), session.id.clone());
        if let Some(existing) = map.by_key.get(&key) {
            // An upstream that hands out an id already bound to another agent must not move that binding: the
            // first agent keeps its session, the newcomer gets none.
            if existing.agent != session.agent {
                return Err(SessionError::Taken);
            }
            // The same agent re-initialising the same id: the new session replaces the old, no new slot.
            let session = Arc::new(session);
            map.by_key.insert(key, session.clone());
            return Ok(Opened {
                session,
                evicted: None,
            });
        }
        let own = map.by_agent.get(&session.agent);
        let evict = match own {
            Some(keys) if keys.len() >= self.max_per_agent => {
                let now = Instant::now();
                keys.iter()
                    .filter_map(|k| map.by_key.get(k).map(|s| (k, s.idle_for(now))))
                    .max_by_key(|(_, idle)| *idle)
                    .map(|(k, _)| k.clone())
            }
            _ => None,
        };
        if evict.is_none() && map.by_key.len() >= self.max_sessions {
            return Err(SessionError::Full);
        }
        let evicted = evict.and_then(|k| map.remove(&k));
        let session = Arc::new(session);
        map.by_agent
            .entry(session.agent.clone())
            .or_default()
            .insert(key.clone());
        map.by_key.insert(key, session.clone());
        Ok(Opened { session, evicted })
    }

    /// The session `id` on `upstream` if it exists and belongs to `agent`.
    pub fn get(
        &self,
        upstream: &str,
        id: &str,
        agent: &AgentKey,
    ) -> Result<Arc<Session>, SessionError> {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        let session = map
            .by_key
            .get(&(upstream.to_owned(), id.to_owned()))
            .ok_or(SessionError::NotFound)?;
        if session.idle_for(Instant::now()) > self.idle_timeout {
            return Err(SessionError::NotFound);
        }
        if &session.agent != agent {
            return Err(SessionError::Foreign);
        }
        session.touch();
        Ok(session.clone())
    }

    /// Ends a session (DELETE); returns it so its end can be recorded.
    pub fn remove(
        &self,
        upstream: &str,
        id: &str,
        agent: &AgentKey,
    ) -> Result<Arc<Session>, SessionError> {
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        let key = (upstream.to_owned(), id.to_owned());
        match map.by_key.get(&key) {
            Some(s) if &s.agent == agent => Ok(map.remove(&key).expect("present")),
            Some(_) => Err(SessionError::Foreign),
            None => Err(SessionError::NotFound),
        }
    }

    /// Removes and returns the sessions idle longer than the timeout.
    pub fn sweep_idle(&self) -> Vec<Arc<Session>> {
        let now = Instant::now();
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        let expired: Vec<_> = map
            .by_key
            .iter()
            .filter(|(_, s)| s.idle_for(now) > self.idle_timeout)
            .map(|(k, _)| k.clone())
            .collect();
        expired.iter().filter_map(|k| map.remove(k)).collect()
    }

    /// The agents holding at least one session.
    pub fn agents(&self) -> Vec<AgentKey> {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_agent
            .keys()
            .cloned()
            .collect()
    }

    /// Ends every session of `agent` (the kill switch); returns them so their end can be recorded.
    pub fn remove_agent(&self, agent: &AgentKey) -> Vec<Arc<Session>> {
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<Key> = map
            .by_agent
            .get(agent)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default();
        keys.iter().filter_map(|k| map.remove(k)).collect()
    }

    pub fn len(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_key
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many sessions `agent` holds.
    pub fn count_of(&self, agent: &AgentKey) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_agent
            .get(agent)
            .map_or(0, HashSet::len)
    }
}

/// A fresh, unguessable session id (128 random bits, hex).
pub fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(tenant: &str, sub: &str) -> AgentKey {
        AgentKey {
            tenant_id: (!tenant.is_empty()).then(|| tenant.to_owned()),
            agent_id: sub.into(),
        }
    }

    fn session(id: &str, upstream: &str, who: &AgentKey) -> Session {
        Session::new(id.into(), upstream.into(), who.clone(), None)
    }

    fn store() -> SessionStore {
        SessionStore::new(2, 64, Duration::from_secs(60))
    }

    #[test]
    fn a_session_belongs_to_its_agent_and_upstream() {
        let s = store();
        let alice = agent("t1", "alice");
        let mallory = agent("t1", "mallory");
        s.insert(session("s1", "fs", &alice)).unwrap();
        assert_eq!(s.get("fs", "s1", &alice).unwrap().agent, alice);
        assert_eq!(
            s.get("fs", "s1", &mallory).unwrap_err(),
            SessionError::Foreign
        );
        assert_eq!(
            s.get("other", "s1", &alice).unwrap_err(),
            SessionError::NotFound
        );
        assert_eq!(
            s.get("fs", "nope", &alice).unwrap_err(),
            SessionError::NotFound
        );
        assert_eq!(
            s.remove("fs", "s1", &mallory).unwrap_err(),
            SessionError::Foreign
        );
        assert!(s.remove("fs", "s1", &alice).is_ok());
        assert_eq!(
            s.get("fs", "s1", &alice).unwrap_err(),
            SessionError::NotFound
        );
        assert_eq!(s.count_of(&alice), 0);
    }

    #[test]
    fn the_same_sub_in_another_tenant_is_another_agent() {
        let s = store();
        let t1 = agent("t1", "alice");
        let t2 = agent("t2", "alice");
        let none = agent("", "alice");
        s.insert(session("s1", "fs", &t1)).unwrap();
        for other in [&t2, &none] {
            assert_eq!(s.get("fs", "s1", other).unwrap_err(), SessionError::Foreign);
            assert_eq!(
                s.remove("fs", "s1", other).unwrap_err(),
                SessionError::Foreign
            );
            assert_eq!(
                s.insert(session("s1", "fs", other)).unwrap_err(),
                SessionError::Taken
            );
        }
        assert!(s.get("fs", "s1", &t1).is_ok());
    }

    #[test]
    fn another_agents_session_reads_as_unknown() {
        assert_eq!(
            SessionError::Foreign.to_string(),
            SessionError::NotFound.to_string()
        );
    }

    #[test]
    fn a_binding_never_moves_to_another_agent() {
        let s = store();
        let alice = agent("t1", "alice");
        let mallory = agent("t1", "mallory");
        s.insert(session("s1", "fs", &alice)).unwrap();
        let err = s.insert(session("s1", "fs", &mallory)).unwrap_err();
        assert_eq!(err, SessionError::Taken);
        assert_eq!(s.get("fs", "s1", &alice).unwrap().agent, alice);
        assert_eq!(
            s.get("fs", "s1", &mallory).unwrap_err(),
            SessionError::Foreign
        );
    }

    #[test]
    fn an_agent_at_its_cap_loses_its_own_longest_idle_session_never_anothers() {
        let s = SessionStore::new(10, 3, Duration::from_secs(60));
        let a = agent("t1", "a");
        let b = agent("t1", "b");
        s.insert(session("b1", "fs", &b)).unwrap();
        for id in ["a1", "a2", "a3"] {
            assert!(s.insert(session(id, "fs", &a)).unwrap().evicted.is_none());
            std::thread::sleep(Duration::from_millis(2));
        }
        // a1 is used again: a2 is now the longest idle.
        s.get("fs", "a1", &a).unwrap();
        let opened = s.insert(session("a4", "fs", &a)).unwrap();
        assert_eq!(opened.evicted.unwrap().id, "a2");
        assert_eq!(s.count_of(&a), 3);
        assert_eq!(s.get("fs", "a2", &a).unwrap_err(), SessionError::NotFound);
        for _ in 0..20 {
            let id = new_session_id();
            s.insert(session(&id, "fs", &a)).unwrap();
        }
        assert_eq!(s.count_of(&a), 3);
        assert!(s.get("fs", "b1", &b).is_ok(), "b's session is untouched");
        assert_eq!(s.len(), 4);
        // Re-binding the same id for the same agent takes no new slot and ends nothing.
        let again = s.insert(session("b1", "fs", &b)).unwrap();
        assert!(again.evicted.is_none());
        assert_eq!(s.count_of(&b), 1);
    }

    #[test]
    fn the_store_is_bounded_and_idle_sessions_expire() {
        let s = store();
        let x = agent("", "x");
        s.insert(session("a", "fs", &x)).unwrap();
        s.insert(session("b", "fs", &x)).unwrap();
        assert_eq!(
            s.insert(session("c", "fs", &agent("", "y"))).unwrap_err(),
            SessionError::Full
        );
        let zero = SessionStore::new(10, 64, Duration::ZERO);
        zero.insert(session("a", "fs", &x)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(zero.get("fs", "a", &x).unwrap_err(), SessionError::NotFound);
        assert_eq!(zero.sweep_idle().len(), 1);
        assert!(zero.is_empty());
        assert_eq!(zero.count_of(&x), 0);
    }

    #[test]
    fn ending_an_agents_sessions_leaves_the_others_and_the_same_sub_elsewhere() {
        let s = SessionStore::new(10, 64, Duration::from_secs(60));
        let alice = agent("t1", "alice");
        let alice_t2 = agent("t2", "alice");
        s.insert(session("a1", "fs", &alice)).unwrap();
        s.insert(session("a2", "web", &alice)).unwrap();
        s.insert(session("b1", "fs", &alice_t2)).unwrap();
        let mut agents = s.agents();
        agents.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        assert_eq!(agents, [alice.clone(), alice_t2.clone()]);
        let mut ended: Vec<String> = s
            .remove_agent(&alice)
            .into_iter()
            .map(|s| s.id.clone())
            .collect();
        ended.sort();
        assert_eq!(ended, ["a1", "a2"]);
        assert_eq!(
            s.get("fs", "a1", &alice).unwrap_err(),
            SessionError::NotFound
        );
        assert_eq!(s.count_of(&alice), 0);
        assert!(s.get("fs", "b1", &alice_t2).is_ok());
        assert!(s.remove_agent(&alice).is_empty());
        assert_eq!(s.agents(), [alice_t2]);
    }

    #[test]
    fn exactly_one_readable_session_header_is_accepted() {
        let mut headers = hyper::HeaderMap::new();
        assert_eq!(presented(&headers), Ok(None));
        headers.insert("mcp-session-id", "s1".parse().unwrap());
        assert_eq!(presented(&headers), Ok(Some("s1")));
        headers.append("mcp-session-id", "s2".parse().unwrap());
        assert_eq!(presented(&headers), Err(SessionError::BadHeader));
        let mut opaque = hyper::HeaderMap::new();
        opaque.insert(
            "mcp-session-id",
            hyper::header::HeaderValue::from_bytes(b"s\xff1").unwrap(),
        );
        assert_eq!(presented(&opaque), Err(SessionError::BadHeader));
    }

    #[test]
    fn session_ids_are_unique_and_long() {
        let a = new_session_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_session_id());
    }
}
