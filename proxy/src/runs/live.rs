//! The running runs this instance knows, in memory, so that attaching a request to its run costs a map lookup
//! under a read lock and one atomic add, never a database round trip. Each entry holds its owner (the agent's
//! tenant and `sub` as its token names them, never written anywhere), its deadline, and the calls counted here
//! since the last flush.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::auth::{AgentIdentity, AgentKey};

/// Most runs held in memory; a run not held is looked up in the database (and held once there is room).
pub const MAX_LIVE: usize = 10_000;

pub struct LiveRun {
    pub run_id: Arc<str>,
    pub owner: AgentKey,
    /// Unix microseconds: past it the run attaches nothing, even before the keeper marks it `failed`.
    pub deadline_micros: i64,
    /// Calls counted here and not yet added to the table.
    calls: AtomicI64,
}

impl LiveRun {
    pub fn new(run_id: &str, owner: AgentKey, deadline_micros: i64) -> LiveRun {
        LiveRun {
            run_id: Arc::from(run_id),
            owner,
            deadline_micros,
            calls: AtomicI64::new(0),
        }
    }

    /// The calls counted since the last take.
    pub fn take_calls(&self) -> i64 {
        self.calls.swap(0, Ordering::AcqRel)
    }

    /// Gives back calls a failed write could not store.
    pub fn give_back(&self, calls: i64) {
        self.calls.fetch_add(calls, Ordering::AcqRel);
    }
}

/// What the map says about a run id presented by an agent.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Running, this agent's, before its deadline: the call is counted.
    Attached(Arc<str>),
    /// Known here but another agent's, or past its deadline: refused without a database read.
    Refused,
    /// Not held here: the database says.
    Unknown,
}

#[derive(Default)]
pub struct Live {
    /// A std lock: held for a lookup or an insert, never across an await.
    runs: RwLock<HashMap<String, Arc<LiveRun>>>,
}

impl Live {
    /// The request path: counts one call of `agent` on `run_id` when it may (compared in place: no key is
    /// built per request).
    pub fn attach(&self, run_id: &str, agent: &AgentIdentity, now_micros: i64) -> Lookup {
        let runs = self.runs.read().unwrap_or_else(|e| e.into_inner());
        match runs.get(run_id) {
            None => Lookup::Unknown,
            Some(run)
                if run.owner.agent_id != agent.id
                    || run.owner.tenant_id != agent.tenant_id
                    || now_micros >= run.deadline_micros =>
            {
                Lookup::Refused
            }
            Some(run) => {
                run.calls.fetch_add(1, Ordering::AcqRel);
                Lookup::Attached(run.run_id.clone())
            }
        }
    }

    /// Holds a running run (started here, or read from the database) and answers the one held; `None` when the
    /// map is full.
    pub fn hold(&self, run: LiveRun) -> Option<Arc<LiveRun>> {
        let mut runs = self.runs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = runs.get(&*run.run_id) {
            return Some(held.clone());
        }
        if runs.len() >= MAX_LIVE {
            return None;
        }
        let run = Arc::new(run);
        runs.insert(run.run_id.to_string(), run.clone());
        Some(run)
    }

    /// Forgets an ended run and answers it (its last uncounted calls are still in it).
    pub fn release(&self, run_id: &str) -> Option<Arc<LiveRun>> {
        self.runs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(run_id)
    }

    /// Every run held (to flush, or to check which ended elsewhere).
    pub fn all(&self) -> Vec<Arc<LiveRun>> {
        self.runs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sub: &str) -> AgentKey {
        AgentKey {
            tenant_id: Some("t".into()),
            agent_id: sub.into(),
        }
    }

    fn agent(key: &AgentKey) -> AgentIdentity {
        AgentIdentity {
            id: key.agent_id.clone(),
            tenant_id: key.tenant_id.clone(),
            roles: vec![],
            claims: serde_json::Value::Null,
            expires_at: u64::MAX,
        }
    }

    #[test]
    fn only_the_owner_attaches_and_only_before_the_deadline() {
        let live = Live::default();
        live.hold(LiveRun::new("r1", key("alice"), 1_000)).unwrap();
        assert_eq!(
            live.attach("r1", &agent(&key("alice")), 10),
            Lookup::Attached("r1".into())
        );
        assert_eq!(
            live.attach("r1", &agent(&key("alice")), 20),
            Lookup::Attached("r1".into())
        );
        assert_eq!(live.attach("r1", &agent(&key("bob")), 20), Lookup::Refused);
        let other_tenant = AgentKey {
            tenant_id: None,
            agent_id: "alice".into(),
        };
        assert_eq!(
            live.attach("r1", &agent(&other_tenant), 20),
            Lookup::Refused
        );
        assert_eq!(
            live.attach("r1", &agent(&key("alice")), 1_000),
            Lookup::Refused
        );
        assert_eq!(
            live.attach("r2", &agent(&key("alice")), 20),
            Lookup::Unknown
        );
        let run = live.release("r1").unwrap();
        assert_eq!(run.take_calls(), 2, "the refused ones are not counted");
        assert_eq!(
            live.attach("r1", &agent(&key("alice")), 30),
            Lookup::Unknown
        );
    }
}
