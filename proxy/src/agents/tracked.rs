//! What this instance saw of each agent since its last flush, kept in memory so that the request path pays a map
//! lookup under a read lock and a few atomic stores, never a database write.
//!
//! Entries are keyed by the agent as its token names it (tenant and `sub`, never written anywhere) and carry the
//! agent's stored key, so the redaction that makes it (a DLP scan) runs once per agent, not once per request.
//! At most [`MAX_TRACKED`] agents are held: when a new agent finds the map full, the entries already flushed
//! (nothing pending) are dropped to make room; if every entry still has counts pending (more than
//! [`MAX_TRACKED`] distinct agents active between two flushes), the newcomer's sighting is not kept, and the
//! number of such sightings is reported by the next flush.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::RwLock;

use toolgate_engine::policy::Verdict;

use super::StoredKey;
use crate::audit::store::AgentDelta;

/// Most agents counted in memory at once (a few hundred bytes each, plus their ids).
pub const MAX_TRACKED: usize = 10_000;

/// One agent's counts since the last flush.
pub(super) struct Entry {
    pub stored: StoredKey,
    /// Unix microseconds of the first sighting by this instance: the row's `first_seen` if it starts one.
    first_seen: i64,
    last_seen: AtomicI64,
    calls: AtomicU64,
    denials: AtomicU64,
    escalations: AtomicU64,
    /// Something changed since the last flush took this entry's counts. Set after the counts, so a flush that
    /// clears it and then takes the counts misses nothing: a later change sets it again.
    dirty: AtomicBool,
}

impl Entry {
    fn new(stored: StoredKey, now: i64) -> Entry {
        Entry {
            stored,
            first_seen: now,
            last_seen: AtomicI64::new(now),
            calls: AtomicU64::new(0),
            denials: AtomicU64::new(0),
            escalations: AtomicU64::new(0),
            dirty: AtomicBool::new(true),
        }
    }

    fn touch(&self, now: i64) {
        self.last_seen.fetch_max(now, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
    }

    fn count(&self, verdict: Verdict) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match verdict {
            Verdict::Allow => {}
            Verdict::Deny => {
                self.denials.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Escalate => {
                self.escalations.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Takes the counts pending, if anything changed since the last take.
    fn take(&self) -> Option<Pending> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return None;
        }
        Some(Pending {
            calls: self.calls.swap(0, Ordering::Relaxed),
            denials: self.denials.swap(0, Ordering::Relaxed),
            escalations: self.escalations.swap(0, Ordering::Relaxed),
            first_seen: self.first_seen,
            last_seen: self.last_seen.load(Ordering::Relaxed),
        })
    }
}

/// Counts of one stored key waiting for the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    pub calls: u64,
    pub denials: u64,
    pub escalations: u64,
    pub first_seen: i64,
    pub last_seen: i64,
}

impl Pending {
    pub fn merge(&mut self, other: Pending) {
        self.calls += other.calls;
        self.denials += other.denials;
        self.escalations += other.escalations;
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
    }

    pub fn delta(&self, key: &StoredKey) -> AgentDelta {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        AgentDelta {
            tenant_id: key.tenant_id.clone(),
            agent_id: key.agent_id.clone(),
            calls: clamp(self.calls),
            denials: clamp(self.denials),
            escalations: clamp(self.escalations),
            first_seen: super::format_micros(self.first_seen),
            last_seen: super::format_micros(self.last_seen),
        }
    }
}

/// The map, keyed by tenant then `sub` so a lookup borrows the identity's own strings.
#[derive(Default)]
struct Map {
    by_tenant: HashMap<Option<String>, HashMap<String, Entry>>,
    len: usize,
}

impl Map {
    fn get(&self, tenant: &Option<String>, sub: &str) -> Option<&Entry> {
        self.by_tenant.get(tenant)?.get(sub)
    }

    /// Drops every entry with nothing pending.
    fn drop_flushed(&mut self) {
        for agents in self.by_tenant.values_mut() {
            agents.retain(|_, e| e.dirty.load(Ordering::Acquire));
        }
        self.by_tenant.retain(|_, agents| !agents.is_empty());
        self.len = self.by_tenant.values().map(HashMap::len).sum();
    }
}

/// The agents this instance is counting.
pub(super) struct Tracked {
    /// A std RwLock: held for a lookup or an insert, never across an await.
    map: RwLock<Map>,
    cap: usize,
    /// Sightings not kept because the map was full of pending counts.
    untracked: AtomicU64,
}

impl Tracked {
    pub fn new(cap: usize) -> Tracked {
        Tracked {
            map: RwLock::new(Map::default()),
            cap: cap.max(1),
            untracked: AtomicU64::new(0),
        }
    }

    /// Records a sighting of the agent now and answers `f` of its entry (made on the first sighting, with its
    /// stored key from `stored`).
    pub fn see<R>(
        &self,
        tenant: &Option<String>,
        sub: &str,
        now: i64,
        stored: impl FnOnce() -> StoredKey,
        f: impl FnOnce(&Entry) -> R,
    ) -> R {
        {
            let map = self.map.read().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = map.get(tenant, sub) {
                entry.touch(now);
                return f(entry);
            }
        }
        // First sighting (or first since the entry was dropped): the DLP scan runs outside the lock.
        let stored = stored();
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.get(tenant, sub).is_none() {
            if map.len >= self.cap {
                map.drop_flushed();
            }
            if map.len >= self.cap {
                self.untracked.fetch_add(1, Ordering::Relaxed);
                drop(map);
                return f(&Entry::new(stored, now));
            }
            map.by_tenant
                .entry(tenant.clone())
                .or_default()
                .insert(sub.to_owned(), Entry::new(stored, now));
            map.len += 1;
        }
        let entry = map
            .get(tenant, sub)
            .expect("present: found or inserted above");
        entry.touch(now);
        f(entry)
    }

    /// Counts one judged call of an agent already seen by this request; an agent the map could not hold is not
    /// counted (see the module doc).
    pub fn count(&self, tenant: &Option<String>, sub: &str, verdict: Verdict) {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        match map.get(tenant, sub) {
            Some(entry) => entry.count(verdict),
            None => {
                self.untracked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes every entry's pending counts, merged by stored key (two `sub`s may redact alike), and the number
    /// of sightings and calls that could not be kept since the last take.
    pub fn take(&self) -> (HashMap<StoredKey, Pending>, u64) {
        let mut out: HashMap<StoredKey, Pending> = HashMap::new();
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        for entry in map.by_tenant.values().flat_map(HashMap::values) {
            if let Some(pending) = entry.take() {
                match out.get_mut(&entry.stored) {
                    Some(p) => p.merge(pending),
                    None => {
                        out.insert(entry.stored.clone(), pending);
                    }
                }
            }
        }
        (out, self.untracked.swap(0, Ordering::Relaxed))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(agent: &str) -> StoredKey {
        StoredKey {
            tenant_id: "t".into(),
            agent_id: agent.into(),
        }
    }

    fn see(t: &Tracked, sub: &str, now: i64) -> StoredKey {
        let tenant = Some("t".to_owned());
        t.see(&tenant, sub, now, || key(sub), |e| e.stored.clone())
    }

    #[test]
    fn counts_are_taken_once_and_merged_by_stored_key() {
        let t = Tracked::new(10);
        let tenant = Some("t".to_owned());
        see(&t, "a", 5);
        t.count(&tenant, "a", Verdict::Allow);
        t.count(&tenant, "a", Verdict::Deny);
        t.count(&tenant, "a", Verdict::Escalate);
        see(&t, "a", 7);
        // Another sub whose stored form is the same (as two secrets redact alike) adds to the same key.
        t.see(&tenant, "a-secret", 3, || key("a"), |_| ());
        t.count(&tenant, "a-secret", Verdict::Deny);
        let (taken, untracked) = t.take();
        assert_eq!(untracked, 0);
        assert_eq!(
            taken[&key("a")],
            Pending {
                calls: 4,
                denials: 2,
                escalations: 1,
                first_seen: 3,
                last_seen: 7,
            }
        );
        assert!(t.take().0.is_empty(), "nothing new since the last take");
        see(&t, "a", 9);
        let (again, _) = t.take();
        assert_eq!(again[&key("a")].calls, 0);
        assert_eq!(again[&key("a")].last_seen, 9);
    }

    #[test]
    fn the_map_is_bounded_and_makes_room_from_flushed_entries_only() {
        let t = Tracked::new(2);
        let tenant = Some("t".to_owned());
        see(&t, "a", 1);
        see(&t, "b", 1);
        // Full of pending counts: the third agent is still answered (its stored key) but not kept.
        assert_eq!(see(&t, "c", 1), key("c"));
        assert_eq!(t.len(), 2);
        t.count(&tenant, "c", Verdict::Allow);
        let (taken, untracked) = t.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(untracked, 2, "c's sighting and its call");
        // Flushed: the next newcomer finds room.
        see(&t, "c", 2);
        assert_eq!(t.len(), 1);
        see(&t, "d", 2);
        assert_eq!(t.len(), 2);
        assert!(t.take().0.contains_key(&key("c")));
    }

    #[test]
    fn the_stored_key_is_made_once_per_agent() {
        let t = Tracked::new(10);
        let tenant = None;
        let mut made = 0;
        for now in 0..3 {
            t.see(
                &tenant,
                "x",
                now,
                || {
                    made += 1;
                    key("x")
                },
                |_| (),
            );
        }
        assert_eq!(made, 1);
    }
}
