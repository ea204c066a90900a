//! The verified-token cache: a bounded, least-recently-used map from a token to the result of
//! its signature check, per worker.
//!
//! A hit skips parsing and the signature; the policy checks (time, audience, scope, route
//! rules) still run on every request. An entry never outlives the token's `exp`, and it is
//! dropped when the key that verified it leaves the key set or is no longer usable, as in an
//! expired remote key set. The authenticator checks that on every hit. Only tokens that were
//! admitted are stored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use crate::authenticator::Verified;

/// Default for `jwt_cache_size`.
pub const DEFAULT_CAPACITY: usize = 1000;
/// Largest `jwt_cache_size` accepted.
pub const MAX_CAPACITY: usize = 100_000;

/// Cache key: SHA-256 of the configuration index and the token.
pub type CacheKey = [u8; 32];

struct Entry {
    verified: Rc<Verified>,
    exp_seconds: i64,
    /// Use counter at the last access; matches the entry's newest item in `order`.
    last_used: u64,
}

/// Verified tokens of one worker.
///
/// Recency is kept in `order`, a queue of (key, use counter) items appended on every access.
/// An item is current only if the entry's `last_used` still equals its counter; eviction pops
/// stale items until it finds a current one. So insert, lookup and eviction take amortized
/// constant time, and the queue is compacted when it grows past twice the capacity.
pub struct JwtCache {
    capacity: usize,
    entries: HashMap<CacheKey, Entry>,
    order: VecDeque<(CacheKey, u64)>,
    use_counter: u64,
    /// Lookups that found an entry, since the cache was created.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
}

impl JwtCache {
    /// Creates a cache for `capacity` tokens; 0 disables it.
    pub fn new(capacity: usize) -> JwtCache {
        JwtCache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
            use_counter: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Computes the key of `token` under configuration `config_index`.
    pub fn key(config_index: usize, token: &str) -> CacheKey {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(&(config_index as u64).to_le_bytes());
        context.update(token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(context.finish().as_ref());
        key
    }

    /// Returns the cached verification of a token, unless it has expired at `now_seconds`.
    pub fn get(&mut self, key: &CacheKey, now_seconds: i64) -> Option<Rc<Verified>> {
        self.get_if(key, now_seconds, |_| true)
    }

    /// Returns the cached verification of a token if it has not expired at `now_seconds` and
    /// `still_trusted` accepts it. An entry that fails either is removed and counts as a miss.
    pub fn get_if(
        &mut self,
        key: &CacheKey,
        now_seconds: i64,
        still_trusted: impl Fn(&Verified) -> bool,
    ) -> Option<Rc<Verified>> {
        if !self.is_enabled() {
            return None;
        }
        self.use_counter += 1;
        let use_counter = self.use_counter;
        match self.entries.get_mut(key) {
            Some(entry) if now_seconds < entry.exp_seconds && still_trusted(&entry.verified) => {
                entry.last_used = use_counter;
                let verified = Rc::clone(&entry.verified);
                self.hits += 1;
                self.touch(*key, use_counter);
                Some(verified)
            }
            Some(_) => {
                self.entries.remove(key);
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Stores an admitted token's verification until `exp_seconds`, evicting the least
    /// recently used entry when full.
    pub fn insert(&mut self, key: CacheKey, verified: Rc<Verified>, exp_seconds: i64, now_seconds: i64) {
        if !self.is_enabled() || exp_seconds <= now_seconds {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.evict_least_recently_used();
        }
        self.use_counter += 1;
        let use_counter = self.use_counter;
        self.entries.insert(
            key,
            Entry {
                verified,
                exp_seconds,
                last_used: use_counter,
            },
        );
        self.touch(key, use_counter);
    }

    /// Drops entries whose key is no longer in any current key set.
    pub fn retain_keys(&mut self, current: &HashSet<[u8; 32]>) {
        self.entries.retain(|_, entry| current.contains(&entry.verified.key_fingerprint));
    }

    /// Records an access in the recency queue, compacting the queue when it contains more than
    /// twice as many items as there are entries.
    fn touch(&mut self, key: CacheKey, use_counter: u64) {
        self.order.push_back((key, use_counter));
        if self.order.len() > 2 * self.capacity + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(key, counter)| entries.get(key).is_some_and(|entry| entry.last_used == *counter));
        }
    }

    /// Removes the least recently used entry. Expired entries need no scan: a lookup removes
    /// them, and being old they are evicted early anyway.
    fn evict_least_recently_used(&mut self) {
        while let Some((key, counter)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|entry| entry.last_used == counter) {
                self.entries.remove(&key);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::Algorithm;

    fn verified(fingerprint: u8) -> Rc<Verified> {
        Rc::new(Verified {
            provider_index: 0,
            alg: Algorithm::RS256,
            kid: Some("k".to_owned()),
            claims: serde_json::Map::new(),
            key_fingerprint: [fingerprint; 32],
        })
    }

    #[test]
    fn stored_token_is_a_hit() {
        let mut cache = JwtCache::new(10);
        let key = JwtCache::key(0, "token");
        assert!(cache.get(&key, 100).is_none());
        cache.insert(key, verified(1), 200, 100);
        assert!(cache.get(&key, 150).is_some());
        assert_eq!((cache.hits, cache.misses), (1, 1));
    }

    #[test]
    fn entry_expires_at_exp() {
        let mut cache = JwtCache::new(10);
        let key = JwtCache::key(0, "token");
        cache.insert(key, verified(1), 200, 100);
        assert!(cache.get(&key, 199).is_some());
        assert!(cache.get(&key, 200).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn expired_token_is_not_stored() {
        let mut cache = JwtCache::new(10);
        cache.insert(JwtCache::key(0, "t"), verified(1), 100, 100);
        assert!(cache.is_empty());
    }

    #[test]
    fn least_recently_used_entry_is_evicted() {
        let mut cache = JwtCache::new(2);
        let (a, b, c) = (JwtCache::key(0, "a"), JwtCache::key(0, "b"), JwtCache::key(0, "c"));
        cache.insert(a, verified(1), 1000, 0);
        cache.insert(b, verified(1), 1000, 0);
        assert!(cache.get(&a, 1).is_some());
        cache.insert(c, verified(1), 1000, 1);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&b, 2).is_none(), "b was least recently used");
        assert!(cache.get(&a, 2).is_some());
        assert!(cache.get(&c, 2).is_some());
    }

    #[test]
    fn recency_queue_stays_bounded_under_hits() {
        let mut cache = JwtCache::new(4);
        let keys: Vec<CacheKey> = (0..4).map(|index| JwtCache::key(0, &index.to_string())).collect();
        for key in &keys {
            cache.insert(*key, verified(1), 1000, 0);
        }
        for _ in 0..10_000 {
            assert!(cache.get(&keys[0], 1).is_some());
        }
        assert!(cache.order.len() <= 2 * 4 + 64 + 1);
        // keys[1] is now the least recently used entry.
        cache.insert(JwtCache::key(0, "new"), verified(1), 1000, 1);
        assert!(cache.get(&keys[1], 1).is_none());
        assert!(cache.get(&keys[0], 1).is_some());
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn full_cache_keeps_its_capacity() {
        let mut cache = JwtCache::new(100);
        for index in 0..10_000 {
            cache.insert(JwtCache::key(0, &index.to_string()), verified(1), 1000, 0);
        }
        assert_eq!(cache.len(), 100);
        assert!(cache.get(&JwtCache::key(0, "9999"), 1).is_some());
        assert!(cache.get(&JwtCache::key(0, "0"), 1).is_none());
    }

    #[test]
    fn removed_key_drops_its_entries() {
        let mut cache = JwtCache::new(10);
        let (a, b) = (JwtCache::key(0, "a"), JwtCache::key(0, "b"));
        cache.insert(a, verified(1), 1000, 0);
        cache.insert(b, verified(2), 1000, 0);
        cache.retain_keys(&HashSet::from([[2u8; 32]]));
        assert!(cache.get(&a, 1).is_none());
        assert!(cache.get(&b, 1).is_some());
    }

    #[test]
    fn same_token_differs_per_configuration() {
        assert_ne!(JwtCache::key(0, "t"), JwtCache::key(1, "t"));
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let mut cache = JwtCache::new(0);
        let key = JwtCache::key(0, "t");
        cache.insert(key, verified(1), 1000, 0);
        assert!(cache.get(&key, 1).is_none());
        assert_eq!(cache.misses, 0);
    }
}
