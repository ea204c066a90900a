//! The life cycle of one provider's remote key set: when to fetch, what a fetch result does
//! to the cached keys, and what requests get meanwhile.
//!
//! The cached keys are in one of four states, derived from the clock:
//! - `Empty`: no fetch has succeeded yet (bootstrap keys from `local_jwks` may stand in);
//! - `Fresh`: fetched and before the refresh point (80–90% of the TTL, jittered);
//! - `Stale`: past the refresh point; still served while a refresh is tried, up to
//!   `max_stale` past expiry;
//! - `Expired`: beyond `max_stale` past expiry; requests get `jwks_unavailable`.
//!
//! Beside them, the fetch is `Idle`, `InFlight` (with a deadline) or in `Backoff` after a
//! failure (1 s doubling to 30 s). A failed fetch never replaces or drops good keys. An
//! unknown `kid` may start one refetch per `kid_refetch_min_interval`. Kids still unknown
//! after it are remembered for that interval, so random kids cannot make the gateway hammer
//! the IdP. The host performs the fetches, and every time is passed in, in milliseconds since the
//! Unix epoch.

use std::fmt;
use std::rc::Rc;

use crate::authenticator::KeyAvailability;
use crate::jwks::{self, JwksError, KeySet, ParsedKeySet};

/// Largest JWKS response body accepted, in bytes.
pub const MAX_JWKS_BODY_BYTES: usize = 256 * 1024;
/// First retry delay after a failed fetch; it doubles with each further failure.
pub const INITIAL_BACKOFF_MS: u64 = 1_000;
/// Maximum retry delay.
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// Shortest TTL a `Cache-Control: max-age` can set.
pub const MIN_TTL_MS: u64 = 30_000;
/// Extra time past a fetch's timeout before the cache assumes the host lost the callback.
pub const LOST_CALLBACK_GRACE_MS: u64 = 1_000;
/// Most unknown kids remembered per provider; the oldest is forgotten first.
const MAX_UNKNOWN_KIDS: usize = 256;

/// Timing settings of one remote key set, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// TTL of a fetched key set when the response sets no shorter `max-age`.
    pub cache_duration_ms: u64,
    /// Time limit of one fetch.
    pub timeout_ms: u64,
    /// How long past expiry keys are still served while refreshes fail.
    pub max_stale_ms: u64,
    /// Minimum time between two refetches caused by unknown kids.
    pub kid_refetch_min_interval_ms: u64,
    /// How long requests wait for the first key set before they get 503.
    pub startup_wait_ms: u64,
}

/// Reason a fetch did not produce a key set.
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
    /// The OpenID discovery document is unusable (no `jwks_uri`, or another issuer).
    Discovery(String),
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
            FetchError::Discovery(message) => write!(f, "discovery document: {message}"),
            FetchError::TimedOut => f.write_str("no outcome reported before the timeout"),
        }
    }
}

/// Checks an HTTP response and returns its body. `status` is `None` when the host got no
/// response at all.
pub fn check_fetch_response(status: Option<u32>, body_size: usize, body: Option<&[u8]>) -> Result<&[u8], FetchError> {
    match status {
        None => return Err(FetchError::NoResponse),
        Some(200) => {}
        Some(other) => return Err(FetchError::Status(other, body_excerpt(body.unwrap_or_default()))),
    }
    if body_size > MAX_JWKS_BODY_BYTES {
        return Err(FetchError::BodyTooLarge(body_size));
    }
    Ok(body.unwrap_or_default())
}

/// Checks a JWKS response and parses its key set.
pub fn parse_fetch_response(
    status: Option<u32>,
    body_size: usize,
    body: Option<&[u8]>,
) -> Result<ParsedKeySet, FetchError> {
    let body = check_fetch_response(status, body_size, body)?;
    jwks::parse_jwks(body).map_err(FetchError::Jwks)
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

/// Reads the `max-age` directive of a `Cache-Control` header, in seconds. `no-cache` and
/// `no-store` count as `max-age=0`, which the cache raises to its minimum TTL.
pub fn cache_control_max_age(header: &str) -> Option<u64> {
    let mut max_age = None;
    for directive in header.split(',') {
        let directive = directive.trim();
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(0);
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            max_age = value.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age
}

/// The state of the cached keys at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Empty,
    Fresh,
    Stale,
    Expired,
}

/// Cause of a due fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchCause {
    /// No key set yet.
    Initial,
    /// The key set passed its refresh point.
    Refresh,
    /// A token named a `kid` the set lacks.
    UnknownKid,
    /// The previous attempt failed and its backoff is over.
    Retry,
}

impl fmt::Display for FetchCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FetchCause::Initial => "initial",
            FetchCause::Refresh => "refresh",
            FetchCause::UnknownKid => "unknown kid",
            FetchCause::Retry => "retry",
        })
    }
}

/// A fetched key set with its timing, as stored locally and shared between workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetRecord {
    pub key_set: Rc<KeySet>,
    pub fetched_at_ms: u64,
    /// When a refresh is started (before expiry, so no request waits on it).
    pub refresh_at_ms: u64,
    /// End of the TTL; keys are served `max_stale_ms` beyond it.
    pub expires_at_ms: u64,
}

/// Decision for a token whose `kid` is not in the cached set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKidDecision {
    /// Start (or join) a refetch and hold the request until it ends.
    Refetch,
    /// Reject now: the kid was already looked for, or the last kid refetch was too recent.
    Reject,
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
    settings: CacheSettings,
    record: Option<KeySetRecord>,
    /// Keys from `local_jwks`, served until the first fetch succeeds.
    bootstrap: Option<Rc<KeySet>>,
    state: FetchState,
    consecutive_failures: u32,
    started_at_ms: u64,
    kid_refetch_requested: bool,
    last_kid_refetch_ms: Option<u64>,
    /// Kids requested before the last refetch, checked against its result.
    kids_in_question: Vec<String>,
    /// Kids a refetch did not find, with the time they may be looked for again.
    unknown_kids: Vec<(String, u64)>,
}

impl RemoteKeyCache {
    pub fn new(settings: CacheSettings, started_at_ms: u64, bootstrap: Option<Rc<KeySet>>) -> Self {
        RemoteKeyCache {
            settings,
            record: None,
            bootstrap,
            state: FetchState::Idle,
            consecutive_failures: 0,
            started_at_ms,
            kid_refetch_requested: false,
            last_kid_refetch_ms: None,
            kids_in_question: Vec::new(),
            unknown_kids: Vec::new(),
        }
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Returns the state of the cached keys at `now_ms`.
    pub fn key_state(&self, now_ms: u64) -> KeyState {
        match &self.record {
            None => KeyState::Empty,
            Some(record) if now_ms < record.refresh_at_ms => KeyState::Fresh,
            Some(record) if now_ms < record.expires_at_ms.saturating_add(self.settings.max_stale_ms) => KeyState::Stale,
            Some(_) => KeyState::Expired,
        }
    }

    /// Returns why a fetch should start now, or `None`.
    pub fn fetch_due(&self, now_ms: u64) -> Option<FetchCause> {
        match self.state {
            FetchState::InFlight { .. } => None,
            FetchState::Backoff { retry_at_ms } => (now_ms >= retry_at_ms).then_some(FetchCause::Retry),
            FetchState::Idle => {
                if self.kid_refetch_requested {
                    Some(FetchCause::UnknownKid)
                } else {
                    match self.key_state(now_ms) {
                        KeyState::Empty => Some(FetchCause::Initial),
                        KeyState::Fresh => None,
                        KeyState::Stale | KeyState::Expired => Some(FetchCause::Refresh),
                    }
                }
            }
        }
    }

    /// Records that this worker sent a fetch.
    pub fn fetch_started(&mut self, now_ms: u64) {
        if self.kid_refetch_requested {
            self.kid_refetch_requested = false;
            self.last_kid_refetch_ms = Some(now_ms);
        }
        self.state = FetchState::InFlight {
            deadline_ms: now_ms
                .saturating_add(self.settings.timeout_ms)
                .saturating_add(LOST_CALLBACK_GRACE_MS),
        };
    }

    /// Returns whether an in-flight fetch is past its deadline, so the host should call
    /// `fetch_failed` and stop waiting for it.
    pub fn fetch_overdue(&self, now_ms: u64) -> bool {
        matches!(self.state, FetchState::InFlight { deadline_ms } if now_ms > deadline_ms)
    }

    /// Builds the record for a key set fetched at `now_ms`. The TTL is the response's
    /// `max-age` clamped to [30 s, cache duration]; the refresh point falls at 80% to 90% of
    /// it, placed by `jitter_permille` (0 to 1000) so workers and gateways spread out.
    pub fn new_record(&self, now_ms: u64, key_set: KeySet, max_age_seconds: Option<u64>, jitter_permille: u64) -> KeySetRecord {
        let cache_duration_ms = self.settings.cache_duration_ms;
        let ttl_ms = match max_age_seconds {
            Some(seconds) => seconds
                .saturating_mul(1000)
                .clamp(MIN_TTL_MS.min(cache_duration_ms), cache_duration_ms),
            None => cache_duration_ms,
        };
        let refresh_permille = 800 + jitter_permille.min(1000) / 10;
        KeySetRecord {
            key_set: Rc::new(key_set),
            fetched_at_ms: now_ms,
            refresh_at_ms: now_ms.saturating_add(ttl_ms.saturating_mul(refresh_permille) / 1000),
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        }
    }

    /// Stores a key set this worker fetched. Returns the kids that were requested but are
    /// still missing; they are remembered as unknown.
    pub fn fetch_succeeded(&mut self, now_ms: u64, record: KeySetRecord) -> Vec<String> {
        self.state = FetchState::Idle;
        self.consecutive_failures = 0;
        self.adopt(now_ms, record)
    }

    /// Stores a key set another worker fetched (or this one, via `fetch_succeeded`). Returns
    /// the kids that were requested but are still missing.
    pub fn adopt(&mut self, now_ms: u64, record: KeySetRecord) -> Vec<String> {
        let missing: Vec<String> = self
            .kids_in_question
            .drain(..)
            .filter(|kid| !record.key_set.keys.iter().any(|key| key.kid.as_deref() == Some(kid.as_str())))
            .collect();
        let forget_at_ms = now_ms.saturating_add(self.settings.kid_refetch_min_interval_ms);
        for kid in &missing {
            self.remember_unknown_kid(kid.clone(), forget_at_ms);
        }
        self.unknown_kids
            .retain(|(kid, _)| !record.key_set.keys.iter().any(|key| key.kid.as_deref() == Some(kid.as_str())));
        if matches!(self.state, FetchState::Backoff { .. }) {
            self.state = FetchState::Idle;
            self.consecutive_failures = 0;
        }
        self.kid_refetch_requested = false;
        self.bootstrap = None;
        self.record = Some(record);
        missing
    }

    /// Records a failed fetch and schedules the retry; cached keys stay in use. Kids in
    /// question stay unknown. Returns the retry delay in milliseconds.
    pub fn fetch_failed(&mut self, now_ms: u64) -> u64 {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let delay_ms = backoff_delay_ms(self.consecutive_failures);
        self.state = FetchState::Backoff {
            retry_at_ms: now_ms.saturating_add(delay_ms),
        };
        let forget_at_ms = now_ms.saturating_add(self.settings.kid_refetch_min_interval_ms);
        let in_question: Vec<String> = self.kids_in_question.drain(..).collect();
        for kid in in_question {
            self.remember_unknown_kid(kid, forget_at_ms);
        }
        delay_ms
    }

    /// Records that another worker is fetching (or will fetch) for this worker, which then
    /// only waits to adopt the result. Called when the shared fetch lease is taken.
    pub fn fetch_delegated(&mut self) {
        self.kid_refetch_requested = false;
    }

    /// Decides what a token with an unknown `kid` gets. A kid joins a fetch already in flight
    /// or requested; otherwise it may start one, at most once per refetch interval.
    pub fn unknown_kid(&self, kid: &str, now_ms: u64) -> UnknownKidDecision {
        let known_unknown = self
            .unknown_kids
            .iter()
            .any(|(unknown, forget_at_ms)| unknown == kid && now_ms < *forget_at_ms);
        if known_unknown {
            return UnknownKidDecision::Reject;
        }
        if self.kids_in_question.iter().any(|pending| pending == kid) {
            return UnknownKidDecision::Refetch;
        }
        if self.kids_in_question.len() >= MAX_UNKNOWN_KIDS {
            return UnknownKidDecision::Reject;
        }
        if matches!(self.state, FetchState::InFlight { .. }) || self.kid_refetch_requested {
            return UnknownKidDecision::Refetch;
        }
        // The last fetch failed and its retry is not due: no refetch can run before then, so
        // holding the request would only delay its rejection.
        if matches!(self.state, FetchState::Backoff { retry_at_ms } if now_ms < retry_at_ms) {
            return UnknownKidDecision::Reject;
        }
        // A refetch inside the interval throttles only once its result is here: until another
        // worker's refetch is adopted, the kid may be in it, so the request waits for it.
        let throttled = self.last_kid_refetch_ms.is_some_and(|last| {
            now_ms < last.saturating_add(self.settings.kid_refetch_min_interval_ms)
                && self.record.as_ref().is_some_and(|record| record.fetched_at_ms >= last)
        });
        if throttled {
            UnknownKidDecision::Reject
        } else {
            UnknownKidDecision::Refetch
        }
    }

    /// Asks for a refetch because a token named `kid`, which the set lacks. While a fetch is
    /// in flight, the kid only waits for its result.
    pub fn request_kid_refetch(&mut self, kid: &str) {
        if !self.kids_in_question.iter().any(|pending| pending == kid) && self.kids_in_question.len() < MAX_UNKNOWN_KIDS {
            self.kids_in_question.push(kid.to_owned());
        }
        if !matches!(self.state, FetchState::InFlight { .. }) {
            self.kid_refetch_requested = true;
        }
    }

    /// Drops a requested kid refetch that the shared rate limit refused: the kids in question
    /// are remembered as unknown, so their held requests get `key_not_found`.
    pub fn kid_refetch_refused(&mut self, now_ms: u64) {
        self.kid_refetch_requested = false;
        let forget_at_ms = now_ms.saturating_add(self.settings.kid_refetch_min_interval_ms);
        let in_question: Vec<String> = self.kids_in_question.drain(..).collect();
        for kid in in_question {
            self.remember_unknown_kid(kid, forget_at_ms);
        }
    }

    /// Returns whether requests wait for a refetch that may bring their kids.
    pub fn has_kids_in_question(&self) -> bool {
        !self.kids_in_question.is_empty()
    }

    /// Returns whether requests wait for kids that another worker's fetch may bring: kids are
    /// in question, but this worker has no fetch in flight and no refetch requested.
    pub fn waits_for_other_worker(&self) -> bool {
        !self.kids_in_question.is_empty() && !self.kid_refetch_requested && !matches!(self.state, FetchState::InFlight { .. })
    }

    /// Notes a kid refetch that another worker started, so this one does not start another
    /// within the interval.
    pub fn note_kid_refetch(&mut self, at_ms: u64) {
        if self.last_kid_refetch_ms.is_none_or(|last| at_ms > last) {
            self.last_kid_refetch_ms = Some(at_ms);
        }
    }

    pub fn last_kid_refetch_ms(&self) -> Option<u64> {
        self.last_kid_refetch_ms
    }

    /// Returns what a request for this provider's keys gets now.
    pub fn availability(&self, now_ms: u64) -> KeyAvailability {
        match (&self.record, self.key_state(now_ms)) {
            (Some(record), KeyState::Fresh | KeyState::Stale) => {
                return KeyAvailability::Ready(Rc::clone(&record.key_set))
            }
            (_, KeyState::Empty) => {
                if let Some(bootstrap) = &self.bootstrap {
                    return KeyAvailability::Ready(Rc::clone(bootstrap));
                }
                let wait_until_ms = self.started_at_ms.saturating_add(self.settings.startup_wait_ms);
                if now_ms < wait_until_ms {
                    return KeyAvailability::Pending { wait_until_ms };
                }
            }
            _ => {}
        }
        let retry_after_ms = match self.state {
            FetchState::Backoff { retry_at_ms } => retry_at_ms.saturating_sub(now_ms),
            FetchState::Idle | FetchState::InFlight { .. } => 1_000,
        };
        KeyAvailability::Unavailable {
            retry_after_seconds: retry_after_ms.div_ceil(1000).max(1),
        }
    }

    /// Number of cached keys (0 before the first successful fetch).
    pub fn key_count(&self) -> usize {
        self.record.as_ref().map_or(0, |record| record.key_set.keys.len())
    }

    pub fn record(&self) -> Option<&KeySetRecord> {
        self.record.as_ref()
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    fn remember_unknown_kid(&mut self, kid: String, forget_at_ms: u64) {
        self.unknown_kids.retain(|(unknown, _)| *unknown != kid);
        if self.unknown_kids.len() >= MAX_UNKNOWN_KIDS {
            self.unknown_kids.remove(0);
        }
        self.unknown_kids.push((kid, forget_at_ms));
    }
}

/// Returns the retry delay after `failures` consecutive failures: 1 s, 2 s, 4 s, ... capped.
pub fn backoff_delay_ms(failures: u32) -> u64 {
    let exponent = failures.saturating_sub(1).min(16);
    INITIAL_BACKOFF_MS.saturating_mul(1 << exponent).min(MAX_BACKOFF_MS)
}

#[cfg(test)]
#[path = "jwks_cache_tests.rs"]
mod tests;
