//! MCP sessions: an `Mcp-Session-Id` is bound to the upstream and the agent that opened it.
//!
//! Any other agent presenting it, or an id never issued, gets 404, exactly as an unknown session does, so a
//! session id reveals nothing about whose it is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// One open session.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub upstream: String,
    pub agent_id: String,
    pub tenant_id: Option<String>,
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
        agent_id: String,
        tenant_id: Option<String>,
        protocol_version: Option<String>,
    ) -> Session {
        Session {
            id,
            upstream,
            agent_id,
            tenant_id,
            started_at: crate::telemetry::now_rfc3339(),
            protocol_version,
            calls: AtomicU64::new(0),
            last_used: Mutex::new(Instant::now()),
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

/// Why a presented session id is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    /// Unknown, expired, or another agent's: all answered 404.
    #[error("unknown session: start a new one with initialize")]
    NotFound,
    #[error("too many open sessions")]
    Full,
    /// The upstream returned a session id that is bound to another agent.
    #[error("the upstream's session id is already bound to another agent")]
    Taken,
}

/// All open sessions of this instance.
pub struct SessionStore {
    /// Keyed by (upstream, session id). A std RwLock: never held across an await.
    sessions: RwLock<HashMap<(String, String), Arc<Session>>>,
    max_sessions: usize,
    idle_timeout: Duration,
}

impl SessionStore {
    pub fn new(max_sessions: usize, idle_timeout: Duration) -> SessionStore {
        SessionStore {
            sessions: RwLock::new(HashMap::new()),
            max_sessions,
            idle_timeout,
        }
    }

    pub fn insert(&self, session: Session) -> Result<Arc<Session>, SessionError> {
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_sessions {
            return Err(SessionError::Full);
        }
        let key = (session.upstream.clone(), session.id.clone());
        // An upstream that hands out an id already bound to another agent must not move that binding: the
        // first agent keeps its session, the newcomer gets none.
        if map
            .get(&key)
            .is_some_and(|s| s.agent_id != session.agent_id)
        {
            return Err(SessionError::Taken);
        }
        let session = Arc::new(session);
        map.insert(key, session.clone());
        Ok(session)
    }

    /// The session `id` on `upstream` if it exists and belongs to `agent_id`.
    pub fn get(
        &self,
        upstream: &str,
        id: &str,
        agent_id: &str,
    ) -> Result<Arc<Session>, SessionError> {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        let session = map
            .get(&(upstream.to_owned(), id.to_owned()))
            .ok_or(SessionError::NotFound)?;
        if session.agent_id != agent_id {
            return Err(SessionError::NotFound);
        }
        if session.idle_for(Instant::now()) > self.idle_timeout {
            return Err(SessionError::NotFound);
        }
        session.touch();
        Ok(session.clone())
    }

    /// Ends a session (DELETE); returns it so its end can be recorded.
    pub fn remove(
        &self,
        upstream: &str,
        id: &str,
        agent_id: &str,
    ) -> Result<Arc<Session>, SessionError> {
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        let key = (upstream.to_owned(), id.to_owned());
        match map.get(&key) {
            Some(s) if s.agent_id == agent_id => Ok(map.remove(&key).expect("present")),
            _ => Err(SessionError::NotFound),
        }
    }

    /// Removes and returns the sessions idle longer than the timeout.
    pub fn sweep_idle(&self) -> Vec<Arc<Session>> {
        let now = Instant::now();
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        let expired: Vec<_> = map
            .iter()
            .filter(|(_, s)| s.idle_for(now) > self.idle_timeout)
            .map(|(k, _)| k.clone())
            .collect();
        expired.into_iter().filter_map(|k| map.remove(&k)).collect()
    }

    pub fn len(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    fn session(id: &str, upstream: &str, agent: &str) -> Session {
        Session::new(id.into(), upstream.into(), agent.into(), None, None)
    }

    fn store() -> SessionStore {
        SessionStore::new(2, Duration::from_secs(60))
    }

    #[test]
    fn a_session_belongs_to_its_agent_and_upstream() {
        let s = store();
        s.insert(session("s1", "fs", "alice")).unwrap();
        assert_eq!(s.get("fs", "s1", "alice").unwrap().agent_id, "alice");
        assert_eq!(
            s.get("fs", "s1", "mallory").unwrap_err(),
            SessionError::NotFound
        );
        assert_eq!(
            s.get("other", "s1", "alice").unwrap_err(),
            SessionError::NotFound
        );
        assert_eq!(
            s.get("fs", "nope", "alice").unwrap_err(),
            SessionError::NotFound
        );
        assert_eq!(
            s.remove("fs", "s1", "mallory").unwrap_err(),
            SessionError::NotFound
        );
        assert!(s.remove("fs", "s1", "alice").is_ok());
        assert_eq!(
            s.get("fs", "s1", "alice").unwrap_err(),
            SessionError::NotFound
        );
    }

    #[test]
    fn a_binding_never_moves_to_another_agent() {
        let s = store();
        s.insert(session("s1", "fs", "alice")).unwrap();
        let err = s.insert(session("s1", "fs", "mallory")).unwrap_err();
        assert_eq!(err, SessionError::Taken);
        assert_eq!(s.get("fs", "s1", "alice").unwrap().agent_id, "alice");
        assert_eq!(
            s.get("fs", "s1", "mallory").unwrap_err(),
            SessionError::NotFound
        );
    }

    #[test]
    fn the_store_is_bounded_and_idle_sessions_expire() {
        let s = store();
        s.insert(session("a", "fs", "x")).unwrap();
        s.insert(session("b", "fs", "x")).unwrap();
        assert_eq!(
            s.insert(session("c", "fs", "x")).unwrap_err(),
            SessionError::Full
        );
        let zero = SessionStore::new(10, Duration::ZERO);
        zero.insert(session("a", "fs", "x")).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            zero.get("fs", "a", "x").unwrap_err(),
            SessionError::NotFound
        );
        assert_eq!(zero.sweep_idle().len(), 1);
        assert!(zero.is_empty());
    }

    #[test]
    fn session_ids_are_unique_and_long() {
        let a = new_session_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_session_id());
    }
}
