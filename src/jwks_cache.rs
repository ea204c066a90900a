//! The life cycle of one provider's remote key set: when to fetch, what a fetch result does
//! to the cached keys, and what requests get meanwhile.
//!
//! States of the fetch: `Idle` (nothing in flight; fetch when the keys are missing or due),
//! `InFlight` (a request is out, with a deadline) and `Backoff` (the last attempt failed;
//! wait before the next). The cached keys live beside that state: a failed fetch never
//! replaces or drops good keys. The host performs the fetch and reports the outcome; all
//! times are passed in, in milliseconds since the Unix epoch.

use std::fmt;
use std::rc::Rc;

use crate::authenticator::KeyAvailability;
use crate::jwks::{self, JwksError, KeySet, ParsedKeySet};

/// Largest JWKS response body accepted, in bytes.
pub const MAX_JWKS_BODY_BYTES: usize = 256 * 1024;
/// First retry delay after a failed fetch; it doubles with each further failure.
pub const INITIAL_BACKOFF_MS: u64 = 1_000;
/// Longest retry delay.
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// Extra time past a fetch's timeout before the cache assumes the host lost the callback.
const LOST_CALLBACK_GRACE_MS: u64 = 1_000;

/// Why a fetch did not produce a key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The host could not send the request (for example an unknown cluster).
    Dispatch(String),
    /// No response: connection failure, reset or timeout.
    NoResponse,
    /// The endpoint, or the proxy on its behalf, sent a status other than 200; the text is
    /// the start of the body (Envoy explains connection failures there).
    Status(u32, String),
    /// The body exceeds `MAX_JWKS_BODY_BYTES`.
    BodyTooLarge(usize),
    /// The body is not a usable JWKS.
    Jwks(JwksError),
    /// The host never reported an outcome within the timeout.
    TimedOut,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Dispatch(message) => write!(f, "request could not be sent: {message}"),
            FetchError::NoResponse => f.write_str("no response (connection failed or timed out)"),
            FetchError::Status(status, body) if body.is_empty() => {
                write!(f, "HTTP {status} instead of 200")
            }
            FetchError::Status(status, body) => write!(f, "HTTP {status} instead of 200 (body: {body:?})"),
            FetchError::BodyTooLarge(size) => {
                write!(f, "body is {size} bytes, more than the {MAX_JWKS_BODY_BYTES}-byte limit")
            }
            FetchError::Jwks(error) => error.fmt(f),
            FetchError::TimedOut => f.write_str("no outcome reported before the timeout"),
        }
    }
}

/// Checks an HTTP response from the JWKS endpoint. `status` is `None` when the host got no
/// response at all.
pub fn parse_fetch_response(
    status: Option<u32>,
    body_size: usize,
    body: Option<&[u8]>,
) -> Result<ParsedKeySet, FetchError> {
    match status {
        None => return Err(FetchError::NoResponse),
        Some(200) => {}
        Some(other) => return Err(FetchError::Status(other, body_excerpt(body.unwrap_or_default()))),
    }
    if body_size > MAX_JWKS_BODY_BYTES {
        return Err(FetchError::BodyTooLarge(body_size));
    }
    jwks::parse_jwks(body.unwrap_or_default()).map_err(FetchError::Jwks)
}

/// Returns up to 120 printable ASCII characters from the start of a response body.
fn body_excerpt(body: &[u8]) -> String {
    body.iter()
        .take(120)
        .map(|&byte| if (0x20..0x7f).contains(&byte) { char::from(byte) } else { ' ' })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchState {
    Idle,
    InFlight { deadline_ms: u64 },
    Backoff { retry_at_ms: u64 },
}

/// Cached keys of one remote JWKS plus the state of its fetch.
#[derive(Debug, Clone)]
pub struct RemoteKeyCache {
    keys: Option<Rc<KeySet>>,
    /// When the cached keys are due for a refresh.
    refresh_at_ms: u64,
    state: FetchState,
    consecutive_failures: u32,
}

impl Default for RemoteKeyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl RemoteKeyCache {
    pub fn new() -> Self {
        RemoteKeyCache {
            keys: None,
            refresh_at_ms: 0,
            state: FetchState::Idle,
            consecutive_failures: 0,
        }
    }

    /// Returns whether the host should start a fetch now.
    pub fn fetch_due(&self, now_ms: u64) -> bool {
        match self.state {
            FetchState::Idle => self.keys.is_none() || now_ms >= self.refresh_at_ms,
            FetchState::InFlight { .. } => false,
            FetchState::Backoff { retry_at_ms } => now_ms >= retry_at_ms,
        }
    }

    /// Records that a fetch was sent and must end within `timeout_ms`.
    pub fn fetch_started(&mut self, now_ms: u64, timeout_ms: u64) {
        self.state = FetchState::InFlight {
            deadline_ms: now_ms.saturating_add(timeout_ms).saturating_add(LOST_CALLBACK_GRACE_MS),
        };
    }

    /// Returns whether an in-flight fetch is past its deadline, so the host should call
    /// `fetch_failed` with `FetchError::TimedOut` and stop waiting for it.
    pub fn fetch_overdue(&self, now_ms: u64) -> bool {
        matches!(self.state, FetchState::InFlight { deadline_ms } if now_ms > deadline_ms)
    }

    /// Stores a fetched key set; it is used for `cache_duration_seconds`.
    pub fn fetch_succeeded(&mut self, now_ms: u64, key_set: KeySet, cache_duration_seconds: u64) {
        self.keys = Some(Rc::new(key_set));
        self.refresh_at_ms = now_ms.saturating_add(cache_duration_seconds.saturating_mul(1000));
        self.state = FetchState::Idle;
        self.consecutive_failures = 0;
    }

    /// Records a failed fetch and schedules the retry; cached keys stay in use. Returns the
    /// retry delay in milliseconds.
    pub fn fetch_failed(&mut self, now_ms: u64) -> u64 {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let delay_ms = backoff_delay_ms(self.consecutive_failures);
        self.state = FetchState::Backoff {
            retry_at_ms: now_ms.saturating_add(delay_ms),
        };
        delay_ms
    }

    /// What a request for this provider's keys gets now.
    pub fn availability(&self, now_ms: u64) -> KeyAvailability {
        if let Some(keys) = &self.keys {
            return KeyAvailability::Ready(Rc::clone(keys));
        }
        match self.state {
            FetchState::Idle | FetchState::InFlight { .. } => KeyAvailability::Pending,
            FetchState::Backoff { retry_at_ms } => KeyAvailability::Unavailable {
                retry_after_seconds: retry_at_ms.saturating_sub(now_ms).div_ceil(1000).max(1),
            },
        }
    }

    /// Number of cached keys (0 before the first successful fetch).
    pub fn key_count(&self) -> usize {
        self.keys.as_ref().map_or(0, |keys| keys.keys.len())
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
}

/// Returns the retry delay after `failures` consecutive failures: 1 s, 2 s, 4 s, ... capped.
pub fn backoff_delay_ms(failures: u32) -> u64 {
    let exponent = failures.saturating_sub(1).min(16);
    INITIAL_BACKOFF_MS.saturating_mul(1 << exponent).min(MAX_BACKOFF_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::{Jwk, KeyMaterial};

    fn key_set(count: usize) -> KeySet {
        let keys = (0..count)
            .map(|index| Jwk {
                kid: Some(format!("k{index}")),
                alg: None,
                material: KeyMaterial::Ed25519 { x: vec![0; 32] },
            })
            .collect();
        KeySet { keys }
    }

    #[test]
    fn new_cache_wants_a_fetch_and_holds_requests() {
        let cache = RemoteKeyCache::new();
        assert!(cache.fetch_due(0));
        assert!(matches!(cache.availability(0), KeyAvailability::Pending));
    }

    #[test]
    fn in_flight_fetch_is_not_repeated() {
        let mut cache = RemoteKeyCache::new();
        cache.fetch_started(1_000, 1_500);
        assert!(!cache.fetch_due(1_100));
        assert!(matches!(cache.availability(1_100), KeyAvailability::Pending));
    }

    #[test]
    fn success_serves_keys_until_refresh_is_due() {
        let mut cache = RemoteKeyCache::new();
        cache.fetch_started(0, 1_500);
        cache.fetch_succeeded(100, key_set(2), 600);
        assert_eq!(cache.key_count(), 2);
        assert!(matches!(cache.availability(200), KeyAvailability::Ready(_)));
        assert!(!cache.fetch_due(600_099));
        assert!(cache.fetch_due(600_100));
    }

    #[test]
    fn failure_without_keys_makes_requests_unavailable() {
        let mut cache = RemoteKeyCache::new();
        cache.fetch_started(0, 1_500);
        assert_eq!(cache.fetch_failed(10), 1_000);
        match cache.availability(10) {
            KeyAvailability::Unavailable { retry_after_seconds } => assert_eq!(retry_after_seconds, 1),
            other => panic!("{other:?}"),
        }
        assert!(!cache.fetch_due(500));
        assert!(cache.fetch_due(1_010));
    }

    #[test]
    fn failed_refresh_keeps_good_keys() {
        let mut cache = RemoteKeyCache::new();
        cache.fetch_succeeded(0, key_set(1), 600);
        cache.fetch_started(600_000, 1_500);
        cache.fetch_failed(601_000);
        assert!(matches!(cache.availability(601_000), KeyAvailability::Ready(_)));
        assert_eq!(cache.key_count(), 1);
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let delays: Vec<u64> = (1..=7).map(backoff_delay_ms).collect();
        assert_eq!(delays, vec![1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(backoff_delay_ms(u32::MAX), MAX_BACKOFF_MS);
    }

    #[test]
    fn success_resets_backoff() {
        let mut cache = RemoteKeyCache::new();
        cache.fetch_failed(0);
        cache.fetch_failed(1_000);
        assert_eq!(cache.consecutive_failures(), 2);
        cache.fetch_succeeded(5_000, key_set(1), 600);
        assert_eq!(cache.consecutive_failures(), 0);
    }

    #[test]
    fn lost_callback_is_overdue_after_timeout() {
        let mut cache = RemoteKeyCache::new();
        cache.fetch_started(0, 1_500);
        assert!(!cache.fetch_overdue(2_500));
        assert!(cache.fetch_overdue(2_501));
    }

    #[test]
    fn fetch_response_checks() {
        assert_eq!(parse_fetch_response(None, 0, None).unwrap_err(), FetchError::NoResponse);
        assert_eq!(parse_fetch_response(Some(500), 0, None).unwrap_err(), FetchError::Status(500, String::new()));
        assert_eq!(
            parse_fetch_response(Some(503), 20, Some(b"upstream connect\nerror")).unwrap_err(),
            FetchError::Status(503, "upstream connect error".to_owned())
        );
        assert_eq!(
            parse_fetch_response(Some(200), MAX_JWKS_BODY_BYTES + 1, None).unwrap_err(),
            FetchError::BodyTooLarge(MAX_JWKS_BODY_BYTES + 1)
        );
        assert!(matches!(
            parse_fetch_response(Some(200), 6, Some(b"<html>")),
            Err(FetchError::Jwks(JwksError::NotJson(_)))
        ));
        assert!(matches!(
            parse_fetch_response(Some(200), 0, None),
            Err(FetchError::Jwks(JwksError::NotJson(_)))
        ));
    }
}
