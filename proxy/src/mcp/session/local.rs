//! The sessions this instance holds in memory, indexed three ways under one lock: by (upstream, id) for the
//! request path, by agent for the per-agent cap and the kill switch, and by id hash for the ends other
//! instances announce (they know a session only by its hash).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Opened, Session, SessionError};
use crate::auth::AgentKey;

type Key = (String, String);

#[derive(Default)]
pub(super) struct Sessions {
    /// Keyed by (upstream, session id).
    by_key: HashMap<Key, Arc<Session>>,
    by_agent: HashMap<AgentKey, HashSet<Key>>,
    /// Id hash -> the keys with that hash (one per upstream that issued the id).
    by_hash: HashMap<String, Vec<Key>>,
}

impl Sessions {
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(super) fn get(&self, upstream: &str, id: &str) -> Option<&Arc<Session>> {
        self.by_key.get(&(upstream.to_owned(), id.to_owned()))
    }

    pub(super) fn count_of(&self, agent: &AgentKey) -> usize {
        self.by_agent.get(agent).map_or(0, HashSet::len)
    }

    /// Holds `session` (which has an id), replacing one with the same key.
    pub(super) fn put(&mut self, session: Arc<Session>) {
        let Some(id) = session.id.clone() else {
            return;
        };
        let key = (session.upstream.clone(), id);
        if self.by_key.contains_key(&key) {
            self.remove(&key);
        }
        self.by_agent
            .entry(session.agent.clone())
            .or_default()
            .insert(key.clone());
        self.by_hash
            .entry(session.id_hash.clone())
            .or_default()
            .push(key.clone());
        self.by_key.insert(key, session);
    }

    fn remove(&mut self, key: &Key) -> Option<Arc<Session>> {
        let session = self.by_key.remove(key)?;
        if let Some(keys) = self.by_agent.get_mut(&session.agent) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_agent.remove(&session.agent);
            }
        }
        if let Some(keys) = self.by_hash.get_mut(&session.id_hash) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_hash.remove(&session.id_hash);
            }
        }
        Some(session)
    }

    /// The in-memory store's `insert` (one instance): the agent at its cap loses its longest-idle session.
    pub(super) fn insert(
        &mut self,
        session: Session,
        max_sessions: usize,
        max_per_agent: usize,
    ) -> Result<Opened, SessionError> {
        let id = session.id.clone().unwrap_or_default();
        let key = (session.upstream.clone(), id);
        if let Some(existing) = self.by_key.get(&key) {
            // An upstream that hands out an id already bound to another agent must not move that binding: the
            // first agent keeps its session, the newcomer gets none.
            if existing.agent != session.agent {
                return Err(SessionError::Taken);
            }
            // The same agent re-initialising the same id: the new session replaces the old, no new slot.
            let session = Arc::new(session);
            self.put(session.clone());
            return Ok(Opened {
                session,
                evicted: Vec::new(),
            });
        }
        let evict = match self.by_agent.get(&session.agent) {
            Some(keys) if keys.len() >= max_per_agent => {
                let now = Instant::now();
                keys.iter()
                    .filter_map(|k| self.by_key.get(k).map(|s| (k, s.idle_for(now))))
                    .max_by_key(|(_, idle)| *idle)
                    .map(|(k, _)| k.clone())
            }
            _ => None,
        };
        if evict.is_none() && self.by_key.len() >= max_sessions {
            return Err(SessionError::Full);
        }
        let evicted = evict.and_then(|k| self.remove(&k)).into_iter().collect();
        let session = Arc::new(session);
        self.put(session.clone());
        Ok(Opened { session, evicted })
    }

    /// The in-memory store's DELETE: only the agent that opened it may end it.
    pub(super) fn remove_own(
        &mut self,
        upstream: &str,
        id: &str,
        agent: &AgentKey,
    ) -> Result<Arc<Session>, SessionError> {
        let key = (upstream.to_owned(), id.to_owned());
        match self.by_key.get(&key) {
            Some(s) if &s.agent == agent => Ok(self.remove(&key).expect("present")),
            Some(_) => Err(SessionError::Foreign),
            None => Err(SessionError::NotFound),
        }
    }

    /// Removes the session with this id hash on `upstream`, if held.
    pub(super) fn remove_hash(&mut self, upstream: &str, id_hash: &str) -> Option<Arc<Session>> {
        let key = self
            .by_hash
            .get(id_hash)?
            .iter()
            .find(|(u, _)| u == upstream)?
            .clone();
        self.remove(&key)
    }

    /// Removes every session with this id hash (ended elsewhere).
    pub(super) fn forget_hash(&mut self, id_hash: &str) {
        for key in self.by_hash.get(id_hash).cloned().unwrap_or_default() {
            self.remove(&key);
        }
    }

    pub(super) fn remove_idle(&mut self, now: Instant, timeout: Duration) -> Vec<Arc<Session>> {
        let expired: Vec<Key> = self
            .by_key
            .iter()
            .filter(|(_, s)| s.idle_for(now) > timeout)
            .map(|(k, _)| k.clone())
            .collect();
        expired.iter().filter_map(|k| self.remove(k)).collect()
    }

    pub(super) fn remove_agents(
        &mut self,
        is_one: impl Fn(&AgentKey) -> bool,
    ) -> Vec<Arc<Session>> {
        let keys: Vec<Key> = self
            .by_agent
            .iter()
            .filter(|(agent, _)| is_one(agent))
            .flat_map(|(_, keys)| keys.iter().cloned())
            .collect();
        keys.iter().filter_map(|k| self.remove(k)).collect()
    }
}
