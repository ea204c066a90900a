//! The verified-token cache: a bounded, least-recently-used map from a token to the result of
//! its signature check, per worker.
//!
//! A hit skips parsing and the signature; the policy checks (time, audience, scope, route
//! rules) still run on every request. An entry never outlives the token's `exp`, and it is
//! dropped when the key that verified it leaves the key set. Only tokens that were admitted
//! are stored.

use std::collections::HashMap;
use std::collections::HashSet;
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
    last_used: u64,
}

/// Verified tokens of one worker.
pub struct JwtCache {
    capacity: usize,
    entries: HashMap<CacheKey, Entry>,
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
        if !self.is_enabled() {
            return None;
        }
        self.use_counter += 1;
        let use_counter = self.use_counter;
        match self.entries.get_mut(key) {
            Some(entry) if now_seconds < entry.exp_seconds => {
                entry.last_used = use_counter;
                self.hits += 1;
                Some(Rc::clone(&entry.verified))
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
            self.evict(now_seconds);
        }
        self.use_counter += 1;
        self.entries.insert(
            key,
            Entry {
                verified,
                exp_seconds,
                last_used: self.use_counter,
            },
        );
    }

    /// Drops entries whose key is no longer in any current key set.
    pub fn retain_keys(&mut self, current: &HashSet<[u8; 32]>) {
        self.entries.retain(|_, entry| current.contains(&entry.verified.key_fingerprint));
    }

    /// Removes expired entries, or else the least recently used one. A scan over at most
    /// `capacity` entries, done only when the cache is full.
    fn evict(&mut self, now_seconds: i64) {
        let before = self.entries.len();
        self.entries.retain(|_, entry| now_seconds < entry.exp_seconds);
        if self.entries.len() < before {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(key, _)| *key);
        if let Some(key) = oldest {
            self.entries.remove(&key);
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
