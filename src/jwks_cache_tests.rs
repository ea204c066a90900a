//! Tests of the remote key cache: each state, transition and rule.

use super::*;
use crate::jwks::{Jwk, KeyMaterial};

const SETTINGS: CacheSettings = CacheSettings {
    cache_duration_ms: 600_000,
    timeout_ms: 1_500,
    max_stale_ms: 86_400_000,
    kid_refetch_min_interval_ms: 30_000,
    startup_wait_ms: 3_000,
};

fn key_set(kids: &[&str]) -> KeySet {
    let keys = kids
        .iter()
        .map(|kid| Jwk::new(Some((*kid).to_owned()), None, KeyMaterial::Ed25519 { x: vec![0; 32] }))
        .collect();
    KeySet { keys }
}

fn cache() -> RemoteKeyCache {
    RemoteKeyCache::new(SETTINGS, 0, None)
}

/// Builds a cache that fetched `kids` at time 0, with refresh at 80% of the 600 s TTL.
fn loaded(kids: &[&str]) -> RemoteKeyCache {
    let mut cache = cache();
    cache.fetch_started(0);
    let record = cache.new_record(0, key_set(kids), None, 0);
    cache.fetch_succeeded(0, record);
    cache
}

#[test]
fn new_cache_is_empty_and_wants_initial_fetch() {
    let cache = cache();
    assert_eq!(cache.key_state(0), KeyState::Empty);
    assert_eq!(cache.fetch_due(0), Some(FetchCause::Initial));
}

#[test]
fn empty_cache_holds_requests_during_startup_wait() {
    let cache = cache();
    assert_eq!(cache.availability(2_999), KeyAvailability::Pending { wait_until_ms: 3_000 });
    assert!(matches!(cache.availability(3_000), KeyAvailability::Unavailable { .. }));
}

#[test]
fn bootstrap_keys_serve_until_first_fetch() {
    let mut cache = RemoteKeyCache::new(SETTINGS, 0, Some(Rc::new(key_set(&["local"]))));
    assert!(matches!(cache.availability(0), KeyAvailability::Ready(set) if set.keys[0].kid.as_deref() == Some("local")));
    assert_eq!(cache.fetch_due(0), Some(FetchCause::Initial));
    let record = cache.new_record(10, key_set(&["remote"]), None, 0);
    cache.fetch_succeeded(10, record);
    assert!(matches!(cache.availability(20), KeyAvailability::Ready(set) if set.keys[0].kid.as_deref() == Some("remote")));
}

#[test]
fn in_flight_fetch_is_not_repeated() {
    let mut cache = cache();
    cache.fetch_started(1_000);
    assert_eq!(cache.fetch_due(1_100), None);
    assert!(matches!(cache.availability(1_100), KeyAvailability::Pending { .. }));
}

#[test]
fn fresh_keys_refresh_before_expiry() {
    let cache = loaded(&["k1"]);
    assert_eq!(cache.key_state(479_999), KeyState::Fresh);
    assert_eq!(cache.fetch_due(479_999), None);
    assert_eq!(cache.key_state(480_000), KeyState::Stale);
    assert_eq!(cache.fetch_due(480_000), Some(FetchCause::Refresh));
}

#[test]
fn jitter_places_refresh_between_80_and_90_percent() {
    let cache = cache();
    let early = cache.new_record(0, key_set(&["k"]), None, 0);
    let late = cache.new_record(0, key_set(&["k"]), None, 1000);
    assert_eq!(early.refresh_at_ms, 480_000);
    assert_eq!(late.refresh_at_ms, 540_000);
    assert_eq!(late.expires_at_ms, 600_000);
}

#[test]
fn max_age_is_clamped() {
    let cache = cache();
    assert_eq!(cache.new_record(0, key_set(&["k"]), Some(120), 0).expires_at_ms, 120_000);
    assert_eq!(cache.new_record(0, key_set(&["k"]), Some(5), 0).expires_at_ms, MIN_TTL_MS);
    assert_eq!(cache.new_record(0, key_set(&["k"]), Some(86_400), 0).expires_at_ms, 600_000);
}

#[test]
fn cache_control_max_age_is_parsed() {
    assert_eq!(cache_control_max_age("public, max-age=300"), Some(300));
    assert_eq!(cache_control_max_age("Max-Age=\"60\""), Some(60));
    assert_eq!(cache_control_max_age("no-store"), Some(0));
    assert_eq!(cache_control_max_age("public"), None);
    assert_eq!(cache_control_max_age("max-age=abc"), None);
}

#[test]
fn stale_keys_serve_until_max_stale() {
    let mut cache = loaded(&["k1"]);
    cache.fetch_started(480_000);
    cache.fetch_failed(481_000);
    let last_served = 600_000 + SETTINGS.max_stale_ms - 1;
    assert_eq!(cache.key_state(last_served), KeyState::Stale);
    assert!(matches!(cache.availability(last_served), KeyAvailability::Ready(_)));
    assert_eq!(cache.key_state(last_served + 1), KeyState::Expired);
    assert!(matches!(cache.availability(last_served + 1), KeyAvailability::Unavailable { .. }));
}

#[test]
fn failure_without_keys_makes_requests_unavailable_after_startup() {
    let mut cache = cache();
    cache.fetch_started(0);
    assert_eq!(cache.fetch_failed(3_500), 1_000);
    assert_eq!(cache.availability(3_500), KeyAvailability::Unavailable { retry_after_seconds: 1 });
    assert_eq!(cache.fetch_due(4_000), None);
    assert_eq!(cache.fetch_due(4_500), Some(FetchCause::Retry));
}

#[test]
fn failed_refresh_keeps_good_keys() {
    let mut cache = loaded(&["k1"]);
    cache.fetch_started(600_000);
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
    let mut cache = cache();
    cache.fetch_failed(0);
    cache.fetch_failed(1_000);
    assert_eq!(cache.consecutive_failures(), 2);
    let record = cache.new_record(5_000, key_set(&["k"]), None, 0);
    cache.fetch_succeeded(5_000, record);
    assert_eq!(cache.consecutive_failures(), 0);
}

#[test]
fn adopting_shared_keys_ends_backoff() {
    let mut cache = cache();
    cache.fetch_failed(0);
    let record = cache.new_record(100, key_set(&["k"]), None, 0);
    cache.adopt(100, record);
    assert_eq!(cache.fetch_due(200), None);
    assert!(matches!(cache.availability(200), KeyAvailability::Ready(_)));
}

#[test]
fn lost_callback_is_overdue_after_timeout() {
    let mut cache = cache();
    cache.fetch_started(0);
    assert!(!cache.fetch_overdue(2_500));
    assert!(cache.fetch_overdue(2_501));
}

#[test]
fn unknown_kid_triggers_one_refetch() {
    let mut cache = loaded(&["k1"]);
    assert_eq!(cache.unknown_kid("k2", 1_000), UnknownKidDecision::Refetch);
    cache.request_kid_refetch("k2");
    assert_eq!(cache.fetch_due(1_000), Some(FetchCause::UnknownKid));
    cache.fetch_started(1_000);
    assert_eq!(cache.last_kid_refetch_ms(), Some(1_000));
    let record = cache.new_record(1_100, key_set(&["k1", "k2"]), None, 0);
    assert!(cache.fetch_succeeded(1_100, record).is_empty());
    assert_eq!(cache.fetch_due(1_200), None);
}

#[test]
fn kids_join_a_fetch_in_flight() {
    let mut cache = loaded(&["k1"]);
    cache.request_kid_refetch("k2");
    cache.fetch_started(1_000);
    assert_eq!(cache.unknown_kid("k3", 1_050), UnknownKidDecision::Refetch);
    cache.request_kid_refetch("k3");
    assert_eq!(cache.fetch_due(1_060), None);
}

#[test]
fn missing_kid_rejected_for_interval() {
    let mut cache = loaded(&["k1"]);
    cache.request_kid_refetch("ghost");
    cache.fetch_started(1_000);
    let record = cache.new_record(1_100, key_set(&["k1"]), None, 0);
    assert_eq!(cache.fetch_succeeded(1_100, record), vec!["ghost".to_owned()]);
    assert_eq!(cache.unknown_kid("ghost", 1_200), UnknownKidDecision::Reject);
    assert_eq!(cache.unknown_kid("ghost", 31_100), UnknownKidDecision::Refetch);
}

#[test]
fn kid_refetches_are_rate_limited() {
    let mut cache = loaded(&["k1"]);
    cache.request_kid_refetch("a");
    cache.fetch_started(1_000);
    let record = cache.new_record(1_100, key_set(&["k1"]), None, 0);
    cache.fetch_succeeded(1_100, record);
    assert_eq!(cache.unknown_kid("b", 30_999), UnknownKidDecision::Reject);
    assert_eq!(cache.unknown_kid("b", 31_000), UnknownKidDecision::Refetch);
}

#[test]
fn refused_kid_refetch_rejects_kids_in_question() {
    let mut cache = loaded(&["k1"]);
    cache.request_kid_refetch("x");
    cache.kid_refetch_refused(500);
    assert_eq!(cache.fetch_due(600), None);
    assert_eq!(cache.unknown_kid("x", 600), UnknownKidDecision::Reject);
}

#[test]
fn other_workers_refetch_counts() {
    let mut cache = loaded(&["k1"]);
    cache.note_kid_refetch(10_000);
    let record = cache.new_record(10_300, key_set(&["k1"]), None, 0);
    cache.adopt(10_300, record);
    assert_eq!(cache.unknown_kid("y", 20_000), UnknownKidDecision::Reject);
    assert_eq!(cache.unknown_kid("y", 40_000), UnknownKidDecision::Refetch);
}

#[test]
fn kid_waits_for_another_workers_refetch_in_flight() {
    let mut cache = loaded(&["k1"]);
    cache.note_kid_refetch(10_000);
    assert_eq!(cache.unknown_kid("k2", 10_100), UnknownKidDecision::Refetch);
}

#[test]
fn failed_kid_refetch_rejects_kids_in_question() {
    let mut cache = loaded(&["k1"]);
    cache.request_kid_refetch("z");
    cache.fetch_started(1_000);
    cache.fetch_failed(1_500);
    assert_eq!(cache.unknown_kid("z", 2_000), UnknownKidDecision::Reject);
    assert!(matches!(cache.availability(2_000), KeyAvailability::Ready(_)));
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
    assert!(matches!(parse_fetch_response(Some(200), 0, None), Err(FetchError::Jwks(JwksError::NotJson(_)))));
}

#[test]
fn unknown_kid_rejected_during_backoff() {
    let mut cache = loaded(&["k1"]);
    cache.request_kid_refetch("a");
    cache.fetch_started(1_000);
    let delay_ms = cache.fetch_failed(1_100);
    assert_eq!(cache.unknown_kid("b", 1_200), UnknownKidDecision::Reject);
    assert_eq!(cache.unknown_kid("b", 1_100 + delay_ms), UnknownKidDecision::Refetch);
}

#[test]
fn delegated_kids_wait_for_the_other_worker() {
    let mut cache = loaded(&["k1"]);
    assert!(!cache.waits_for_other_worker());
    cache.request_kid_refetch("a");
    assert!(!cache.waits_for_other_worker(), "this worker still asks for the refetch itself");
    cache.fetch_delegated();
    assert!(cache.waits_for_other_worker());
    cache.kid_refetch_refused(2_000);
    assert!(!cache.waits_for_other_worker());
}
