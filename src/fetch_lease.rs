//! Coordination of JWKS fetches between worker VMs through the proxy's shared data.
//!
//! Envoy runs one VM per worker thread, and each would otherwise fetch every key set on its
//! own. Instead, a worker must hold a provider's fetch lease to fetch: a shared record taken
//! with compare-and-swap, valid until a deadline, so a worker that died while holding it is
//! replaced after that deadline. The lease record also carries the shared retry time after a
//! failure and the time of the last unknown-kid refetch, so the backoff and the kid rate limit
//! hold across workers. The fetching worker publishes the key set in a second record, and the
//! other workers adopt it on their next tick.

use serde::{Deserialize, Serialize};

use crate::jwks_cache::{backoff_delay_ms, CacheSettings, FetchCause, LOST_CALLBACK_GRACE_MS};

/// Key-value storage shared by all worker VMs, with compare-and-swap.
pub trait SharedData {
    /// Returns the value and its CAS token, or `None` when the key is absent.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Stores `value` if `cas` equals the key's current token (`None` stores unconditionally).
    /// Returns whether the value was stored.
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// The shared lease record of one remote key set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Id of the worker that holds the lease; empty when free.
    pub holder: String,
    /// When the lease lapses even if its holder never releases it.
    pub until_ms: u64,
    /// No new fetch starts before this time (shared backoff after a failure).
    pub not_before_ms: u64,
    /// Consecutive failed fetches, across workers.
    pub failures: u32,
    /// When the last fetch caused by an unknown kid started (0: never).
    pub last_kid_refetch_ms: u64,
}

/// The result of trying to take the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// This worker holds the lease and must fetch, then call `release`.
    Acquired,
    /// Another worker is fetching; adopt its result.
    HeldByOther,
    /// The shared backoff after a failure has not passed.
    BackingOff { retry_at_ms: u64 },
    /// An unknown-kid refetch ran too recently (at `last_kid_refetch_ms`).
    KidRefetchThrottled { last_kid_refetch_ms: u64 },
}

/// A key set as one worker publishes it for the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKeys {
    pub fetched_at_ms: u64,
    pub refresh_at_ms: u64,
    pub expires_at_ms: u64,
    /// The JWKS document as fetched; each worker parses it.
    pub jwks: String,
}

/// Names of the two shared records of one remote key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedKeys {
    pub lease: String,
    pub published: String,
}

impl SharedKeys {
    /// Names the records after the cluster, the URI and the cache settings. With discovery,
    /// the name also has the issuer the document must name (`discovery_issuer`).
    ///
    /// Every filter instance in the VM that fetches the same key set with the same settings
    /// shares the records. A published record carries refresh and expiry times computed from
    /// the fetcher's settings, so an instance with other settings must not adopt it. Nor may a
    /// provider adopt keys from a document that was checked against another issuer.
    pub fn for_source(cluster: &str, uri: &str, settings: &CacheSettings, discovery_issuer: Option<&str>) -> SharedKeys {
        let CacheSettings { cache_duration_ms, timeout_ms, max_stale_ms, kid_refetch_min_interval_ms, startup_wait_ms } = settings;
        // Cluster names in Istio and Higress contain `|`, so each text part carries its length
        // and no two sets of parts give the same name.
        let part = |text: &str| format!("{}:{text}", text.len());
        let kind = match discovery_issuer {
            Some(issuer) => format!("discovery={}", part(issuer)),
            None => "jwks".to_owned(),
        };
        let base = format!(
            "idaas_jwt_filter.v3|{kind}|{}|{}|{cache_duration_ms}|{timeout_ms}|{max_stale_ms}|{kid_refetch_min_interval_ms}|{startup_wait_ms}",
            part(cluster),
            part(uri)
        );
        SharedKeys {
            lease: format!("{base}|lease"),
            published: format!("{base}|keys"),
        }
    }
}

/// Tries to take the lease for a fetch caused by `cause`.
pub fn try_acquire(
    store: &mut dyn SharedData,
    key: &str,
    holder: &str,
    now_ms: u64,
    cause: FetchCause,
    settings: &CacheSettings,
) -> Acquire {
    let (lease, cas) = match read_lease(store, key) {
        Some(current) => current,
        None => {
            // First use: create the record, then take it with CAS like any other worker.
            // NOTE: two workers creating it at the same instant both write an empty lease;
            // the CAS below still lets only one of them take it.
            store.set(key, &encode(&Lease::default()), None);
            match read_lease(store, key) {
                Some(current) => current,
                None => return Acquire::HeldByOther,
            }
        }
    };

    if !lease.holder.is_empty() && lease.holder != holder && now_ms < lease.until_ms {
        return Acquire::HeldByOther;
    }
    if cause == FetchCause::UnknownKid
        && lease.last_kid_refetch_ms != 0
        && now_ms < lease.last_kid_refetch_ms.saturating_add(settings.kid_refetch_min_interval_ms)
    {
        return Acquire::KidRefetchThrottled {
            last_kid_refetch_ms: lease.last_kid_refetch_ms,
        };
    }
    if now_ms < lease.not_before_ms {
        return Acquire::BackingOff {
            retry_at_ms: lease.not_before_ms,
        };
    }

    let taken = Lease {
        holder: holder.to_owned(),
        until_ms: now_ms
            .saturating_add(settings.timeout_ms)
            .saturating_add(LOST_CALLBACK_GRACE_MS),
        last_kid_refetch_ms: if cause == FetchCause::UnknownKid {
            now_ms
        } else {
            lease.last_kid_refetch_ms
        },
        ..lease
    };
    if store.set(key, &encode(&taken), Some(cas)) {
        Acquire::Acquired
    } else {
        Acquire::HeldByOther
    }
}

/// Releases the lease after a fetch. On failure, sets the shared backoff from the shared
/// failure count and returns the retry delay in milliseconds.
pub fn release(store: &mut dyn SharedData, key: &str, holder: &str, now_ms: u64, succeeded: bool) -> u64 {
    let Some((lease, cas)) = read_lease(store, key) else {
        return 0;
    };
    let failures = if succeeded { 0 } else { lease.failures.saturating_add(1) };
    let delay_ms = if succeeded { 0 } else { backoff_delay_ms(failures) };
    if lease.holder != holder {
        // The lease lapsed and another worker took it; its outcome will be recorded by it.
        return delay_ms;
    }
    let released = Lease {
        holder: String::new(),
        until_ms: 0,
        not_before_ms: now_ms.saturating_add(delay_ms),
        failures,
        last_kid_refetch_ms: lease.last_kid_refetch_ms,
    };
    store.set(key, &encode(&released), Some(cas));
    delay_ms
}

/// Reads the lease record; an unreadable record counts as a free lease.
pub fn read_lease(store: &dyn SharedData, key: &str) -> Option<(Lease, u32)> {
    let (bytes, cas) = store.get(key)?;
    Some((serde_json::from_slice(&bytes).unwrap_or_default(), cas))
}

/// Publishes a fetched key set for the other workers.
pub fn publish(store: &mut dyn SharedData, key: &str, keys: &PublishedKeys) -> bool {
    store.set(key, &encode(keys), None)
}

/// Returns the published key set and its CAS token when it changed since `seen_cas`.
pub fn read_published(store: &dyn SharedData, key: &str, seen_cas: Option<u32>) -> Option<(PublishedKeys, u32)> {
    let (bytes, cas) = store.get(key)?;
    if Some(cas) == seen_cas {
        return None;
    }
    let keys = serde_json::from_slice(&bytes).ok()?;
    Some((keys, cas))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Shared data with Envoy's CAS rule: every store bumps the key's token.
    #[derive(Default)]
    struct MemoryShared {
        entries: HashMap<String, (Vec<u8>, u32)>,
        next_cas: u32,
    }

    impl SharedData for MemoryShared {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.entries.get(key).cloned()
        }

        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            let current = self.entries.get(key).map(|(_, token)| *token);
            if let Some(expected) = cas {
                if current != Some(expected) {
                    return false;
                }
            }
            self.next_cas += 1;
            self.entries.insert(key.to_owned(), (value.to_vec(), self.next_cas));
            true
        }
    }

    const SETTINGS: CacheSettings = CacheSettings {
        cache_duration_ms: 600_000,
        timeout_ms: 1_500,
        max_stale_ms: 86_400_000,
        kid_refetch_min_interval_ms: 30_000,
        startup_wait_ms: 3_000,
    };
    const KEY: &str = "lease";

    fn acquire(store: &mut MemoryShared, holder: &str, now_ms: u64, cause: FetchCause) -> Acquire {
        try_acquire(store, KEY, holder, now_ms, cause, &SETTINGS)
    }

    #[test]
    fn shared_names_differ_by_cache_settings() {
        let strict = CacheSettings { cache_duration_ms: 1_000, max_stale_ms: 0, ..SETTINGS };
        let default = SharedKeys::for_source("idaas_jwks", "https://idp.example/jwks", &SETTINGS, None);
        assert_eq!(default.published, SharedKeys::for_source("idaas_jwks", "https://idp.example/jwks", &SETTINGS, None).published);
        assert_ne!(default.published, SharedKeys::for_source("idaas_jwks", "https://idp.example/jwks", &strict, None).published);
        assert_ne!(default.lease, SharedKeys::for_source("idaas_jwks", "https://idp.example/jwks", &strict, None).lease);
    }

    #[test]
    fn shared_names_differ_by_discovery_issuer() {
        let uri = "https://idp.example/.well-known/openid-configuration";
        let for_issuer = |issuer| SharedKeys::for_source("idaas_jwks", uri, &SETTINGS, issuer);
        let issuer_a = for_issuer(Some("https://idp.example/a"));
        assert_eq!(issuer_a.published, for_issuer(Some("https://idp.example/a")).published);
        assert_ne!(issuer_a.published, for_issuer(Some("https://idp.example/b")).published);
        assert_ne!(issuer_a.lease, for_issuer(Some("https://idp.example/b")).lease);
        assert_ne!(issuer_a.published, for_issuer(None).published);
    }

    #[test]
    fn shared_names_keep_parts_with_separators_apart() {
        let left = SharedKeys::for_source("outbound|443||a", "b|c", &SETTINGS, None);
        let right = SharedKeys::for_source("outbound|443||a|b", "c", &SETTINGS, None);
        assert_ne!(left.published, right.published);
    }

    #[test]
    fn only_one_worker_takes_the_lease() {
        let mut store = MemoryShared::default();
        assert_eq!(acquire(&mut store, "a", 0, FetchCause::Initial), Acquire::Acquired);
        assert_eq!(acquire(&mut store, "b", 10, FetchCause::Initial), Acquire::HeldByOther);
    }

    #[test]
    fn lapsed_lease_is_taken_over() {
        let mut store = MemoryShared::default();
        acquire(&mut store, "a", 0, FetchCause::Initial);
        assert_eq!(acquire(&mut store, "b", 2_499, FetchCause::Initial), Acquire::HeldByOther);
        assert_eq!(acquire(&mut store, "b", 2_500, FetchCause::Initial), Acquire::Acquired);
    }

    #[test]
    fn released_lease_is_free_again() {
        let mut store = MemoryShared::default();
        acquire(&mut store, "a", 0, FetchCause::Initial);
        assert_eq!(release(&mut store, KEY, "a", 100, true), 0);
        assert_eq!(acquire(&mut store, "b", 200, FetchCause::Refresh), Acquire::Acquired);
    }

    #[test]
    fn failure_sets_shared_backoff() {
        let mut store = MemoryShared::default();
        acquire(&mut store, "a", 0, FetchCause::Initial);
        assert_eq!(release(&mut store, KEY, "a", 100, false), 1_000);
        assert_eq!(acquire(&mut store, "b", 500, FetchCause::Retry), Acquire::BackingOff { retry_at_ms: 1_100 });
        assert_eq!(acquire(&mut store, "b", 1_100, FetchCause::Retry), Acquire::Acquired);
        assert_eq!(release(&mut store, KEY, "b", 1_200, false), 2_000);
    }

    #[test]
    fn kid_refetch_is_limited_across_workers() {
        let mut store = MemoryShared::default();
        assert_eq!(acquire(&mut store, "a", 1_000, FetchCause::UnknownKid), Acquire::Acquired);
        release(&mut store, KEY, "a", 1_100, true);
        assert_eq!(
            acquire(&mut store, "b", 20_000, FetchCause::UnknownKid),
            Acquire::KidRefetchThrottled { last_kid_refetch_ms: 1_000 }
        );
        assert_eq!(acquire(&mut store, "b", 20_000, FetchCause::Refresh), Acquire::Acquired);
        release(&mut store, KEY, "b", 20_100, true);
        assert_eq!(acquire(&mut store, "c", 31_000, FetchCause::UnknownKid), Acquire::Acquired);
    }

    #[test]
    fn release_by_a_former_holder_changes_nothing() {
        let mut store = MemoryShared::default();
        acquire(&mut store, "a", 0, FetchCause::Initial);
        acquire(&mut store, "b", 3_000, FetchCause::Initial);
        release(&mut store, KEY, "a", 3_100, false);
        let (lease, _) = read_lease(&store, KEY).unwrap();
        assert_eq!(lease.holder, "b");
        assert_eq!(lease.failures, 0);
    }

    #[test]
    fn published_keys_are_read_once_per_change() {
        let mut store = MemoryShared::default();
        let keys = PublishedKeys { fetched_at_ms: 1, refresh_at_ms: 2, expires_at_ms: 3, jwks: "{}".to_owned() };
        assert!(publish(&mut store, "keys", &keys));
        let (read, cas) = read_published(&store, "keys", None).unwrap();
        assert_eq!(read, keys);
        assert!(read_published(&store, "keys", Some(cas)).is_none());
    }
}
