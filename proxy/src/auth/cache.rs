//! The verified-token cache: SHA-256 of a token -> the identity it proved, until the token's `exp`.
//!
//! Bounded: when full, expired entries go first, then the oldest tenth, so the sweep is paid once per many
//! inserts rather than on every one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::AgentIdentity;

pub(super) struct TokenCache {
    capacity: usize,
    /// A `std::sync::Mutex`: nothing is awaited while it is held, and each hold is one map operation.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<[u8; 32], Entry>,
    /// Insertion order, for evicting the oldest entries.
    order: BTreeMap<u64, [u8; 32]>,
    next_seq: u64,
}

struct Entry {
    identity: AgentIdentity,
    /// The key-set generation the token was verified under; any other generation means "verify again".
    generation: u64,
    seq: u64,
}

impl TokenCache {
    pub(super) fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The cached identity, if the token is cached, not expired at `now`, and was verified under `generation`.
    pub(super) fn get(
        &self,
        digest: &[u8; 32],
        now: u64,
        generation: u64,
    ) -> Option<AgentIdentity> {
        let mut inner = self.lock();
        let entry = inner.entries.get(digest)?;
        if entry.identity.expires_at > now && entry.generation == generation {
            return Some(entry.identity.clone());
        }
        inner.remove(digest);
        None
    }

    /// Caches a freshly verified identity; one already past its `exp` is not cached (leeway is the verifier's
    /// business, and a token inside its leeway is simply verified each time).
    pub(super) fn insert(
        &self,
        digest: [u8; 32],
        identity: AgentIdentity,
        now: u64,
        generation: u64,
    ) {
        if identity.expires_at <= now {
            return;
        }
        let mut inner = self.lock();
        inner.remove(&digest);
        if inner.entries.len() >= self.capacity {
            inner
                .entries
                .retain(|_, entry| entry.identity.expires_at > now);
            let live: std::collections::HashSet<u64> =
                inner.entries.values().map(|e| e.seq).collect();
            inner.order.retain(|seq, _| live.contains(seq));
            let target = self.capacity - self.capacity / 10 - 1;
            while inner.entries.len() > target {
                match inner.order.pop_first() {
                    Some((_, oldest)) => {
                        inner.entries.remove(&oldest);
                    }
                    None => break,
                }
            }
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.order.insert(seq, digest);
        inner.entries.insert(
            digest,
            Entry {
                identity,
                generation,
                seq,
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The maps stay consistent even if a holder panicked: every mutation is a single insert or remove.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn remove(&mut self, digest: &[u8; 32]) {
        if let Some(entry) = self.entries.remove(digest) {
            self.order.remove(&entry.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: &str, expires_at: u64) -> AgentIdentity {
        AgentIdentity {
            id: id.into(),
            tenant_id: None,
            roles: Vec::new(),
            claims: serde_json::json!({ "sub": id }),
            expires_at,
        }
    }

    fn digest(n: u32) -> [u8; 32] {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&n.to_be_bytes());
        d
    }

    #[test]
    fn cache_hit_until_exp_then_miss() {
        let cache = TokenCache::new(10);
        cache.insert(digest(1), identity("a", 100), 50, 1);
        assert_eq!(cache.get(&digest(1), 99, 1).map(|i| i.id), Some("a".into()));
        assert_eq!(cache.get(&digest(1), 100, 1), None);
        assert_eq!(cache.len(), 0, "an expired entry is dropped on lookup");
    }

    #[test]
    fn cache_ignores_entries_of_another_key_generation() {
        let cache = TokenCache::new(10);
        cache.insert(digest(1), identity("a", 100), 50, 1);
        assert_eq!(cache.get(&digest(1), 60, 2), None);
    }

    #[test]
    fn cache_does_not_store_expired_identities() {
        let cache = TokenCache::new(10);
        cache.insert(digest(1), identity("a", 50), 50, 1);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn cache_stays_bounded_and_evicts_expired_then_oldest() {
        let cache = TokenCache::new(20);
        // Entries 0..5 expire at 60, the rest much later.
        for n in 0..20u32 {
            let exp = if n < 5 { 60 } else { 1_000 };
            cache.insert(digest(n), identity(&n.to_string(), exp), 50, 1);
        }
        assert_eq!(cache.len(), 20);
        // At now = 70 the first five are expired: a full cache drops them and keeps every live entry.
        cache.insert(digest(100), identity("new", 1_000), 70, 1);
        assert_eq!(cache.len(), 16);
        assert!(
            cache.get(&digest(5), 70, 1).is_some(),
            "live entries survive the expiry sweep"
        );
        assert!(cache.get(&digest(0), 70, 1).is_none());
        // Full of live entries: the oldest go.
        for n in 101..105u32 {
            cache.insert(digest(n), identity("more", 1_000), 70, 1);
        }
        assert_eq!(cache.len(), 20);
        cache.insert(digest(105), identity("newest", 1_000), 70, 1);
        assert!(cache.len() < 20);
        assert!(
            cache.get(&digest(5), 70, 1).is_none(),
            "the oldest live entry was evicted"
        );
        assert!(cache.get(&digest(105), 70, 1).is_some());
        assert!(
            cache.get(&digest(104), 70, 1).is_some(),
            "the newest entries survive"
        );
        for n in 200..500u32 {
            cache.insert(digest(n), identity("x", 1_000), 70, 1);
            assert!(cache.len() <= 20);
        }
    }
}
