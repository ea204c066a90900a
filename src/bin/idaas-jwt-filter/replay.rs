//! The filter's checks re-run one at a time, in the order `authenticator::authenticate_with`
//! runs them, so that `explain` can show which step passed and where it stopped.
//!
//! The replay only describes. The verdict `explain` reports comes from `authenticate_with`
//! itself, and `explain` prints a note when the two disagree.

use idaas_jwt_filter::authenticator::{self, KeyAvailability, KeyStore, Requirements};
use idaas_jwt_filter::claims;
use idaas_jwt_filter::config::{FilterConfig, ScopeMatch};
use idaas_jwt_filter::extractor;
use idaas_jwt_filter::jwks::KeyQuery;
use idaas_jwt_filter::jws::{self, UnverifiedJws};
use idaas_jwt_filter::reason::{Reason, Rejection};
use serde_json::{Map, Value};

use crate::keys::ToolKeys;
use crate::output::{describe_key, list, relative_time};

/// Result of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// The configuration does not ask for this check.
    Skip,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        }
    }
}

/// One line of the replay.
pub struct Step {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

/// The replayed steps, the decoded token when it parsed, and the reason of the failed step.
pub struct Replay {
    pub steps: Vec<Step>,
    pub header: Option<Map<String, Value>>,
    pub claims: Option<Map<String, Value>>,
    pub failure: Option<Rejection>,
}

impl Replay {
    fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, Outcome::Pass, detail.into());
    }

    fn skip(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, Outcome::Skip, detail.into());
    }

    /// Records a failed step; the replay stops after it, as the filter does.
    fn fail(&mut self, name: &'static str, rejection: Rejection) {
        self.push(name, Outcome::Fail, format!("{}: {}", rejection.reason.code(), rejection.detail));
        self.failure = Some(rejection);
    }

    fn push(&mut self, name: &'static str, outcome: Outcome, detail: String) {
        self.steps.push(Step { name, outcome, detail });
    }
}

/// Replays the checks on the `Authorization` values of one request.
pub fn replay(
    config: &FilterConfig,
    keys: &ToolKeys,
    authorization: &[&str],
    now_seconds: i64,
    requirements: &Requirements<'_>,
) -> Replay {
    let mut replay = Replay {
        steps: Vec::new(),
        header: None,
        claims: None,
        failure: None,
    };
    let Some(jws) = token_steps(&mut replay, authorization) else {
        return replay;
    };
    replay.header = Some(jws.header.clone());
    replay.claims = Some(jws.claims.clone());
    // A failed step is already recorded in `replay.failure`.
    let _stopped = verification_steps(&mut replay, config, keys, &jws, now_seconds, requirements);
    replay
}

/// Runs extraction and parsing, the steps that need no configuration.
fn token_steps<'a>(replay: &mut Replay, authorization: &[&'a str]) -> Option<UnverifiedJws<'a>> {
    let token = match extractor::extract_bearer_token(authorization) {
        Ok(token) => token,
        Err(rejection) => {
            replay.fail("token", rejection);
            return None;
        }
    };
    replay.pass("token", format!("one Bearer token of {} bytes", token.len()));

    match jws::parse_compact(token) {
        Ok(jws) => {
            replay.pass(
                "parse",
                format!(
                    "compact JWS: JSON object header and payload, {}-byte signature",
                    jws.signature.len()
                ),
            );
            Some(jws)
        }
        Err(rejection) => {
            replay.fail("parse", rejection);
            None
        }
    }
}

/// Marks where the replay stopped early; the failed step is already recorded.
struct Stopped;

/// Runs the steps from the header to the scope. Returns `Err(Stopped)` at the first failure.
fn verification_steps(
    replay: &mut Replay,
    config: &FilterConfig,
    keys: &ToolKeys,
    jws: &UnverifiedJws<'_>,
    now_seconds: i64,
    requirements: &Requirements<'_>,
) -> Result<(), Stopped> {
    let header = check(replay, "header", jws::check_header(&jws.header))?;
    let kid_text = header.kid.map_or("no kid".to_owned(), |kid| format!("kid {kid:?}"));
    replay.pass("header", format!("alg {}, {kid_text}", header.alg));

    let provider_index = check(replay, "provider", authenticator::select_provider(config, &jws.claims))?;
    let Some(provider) = config.providers.get(provider_index) else {
        replay.fail("provider", Rejection::new(Reason::IssuerUnknown, "provider index out of range"));
        return Err(Stopped);
    };
    replay.pass("provider", format!("{}: iss equals its issuer {:?}", provider.name, provider.issuer));

    if !provider.allowed_algorithms.contains(&header.alg) {
        let detail = format!(
            "alg {} is not in allowed_algorithms of provider {}",
            header.alg, provider.name
        );
        replay.fail("algorithm", Rejection::new(Reason::AlgNotAllowed, detail));
        return Err(Stopped);
    }
    replay.pass("algorithm", format!("{} is in the provider's allowed_algorithms", header.alg));

    match &provider.require_typ {
        Some(required) => {
            check(replay, "typ", authenticator::check_typ(&jws.header, required))?;
            replay.pass("typ", format!("typ is {required:?}"));
        }
        None => replay.skip("typ", "the provider sets no require_typ"),
    }

    let key_set = match keys.keys(provider_index) {
        KeyAvailability::Ready(key_set) => key_set,
        KeyAvailability::Pending { .. } | KeyAvailability::Unavailable { .. } => {
            let detail = format!(
                "no keys loaded for provider {} (keys: {})",
                provider.name,
                keys.origin(provider_index)
            );
            replay.fail("key", Rejection::new(Reason::JwksUnavailable, detail));
            return Err(Stopped);
        }
    };
    let candidates = key_set.candidates(KeyQuery {
        kid: header.kid,
        alg: header.alg,
    });
    if candidates.is_empty() {
        let detail = match header.kid {
            Some(kid) => format!("no {} key with kid {:?} in {}", header.alg, jws::truncate(kid, 64), keys.origin(provider_index)),
            None => format!("token has no kid and {} has no single {} key", keys.origin(provider_index), header.alg),
        };
        replay.fail("key", Rejection::new(Reason::KeyNotFound, detail));
        return Err(Stopped);
    }
    let described: Vec<String> = candidates.iter().map(|key| describe_key(key)).collect();
    replay.pass("key", format!("{} from {}", list(&described), keys.origin(provider_index)));

    let verifies = candidates
        .iter()
        .any(|key| keys.verify_signature(header.alg, key, jws.signing_input, &jws.signature));
    if !verifies {
        let detail = format!("{} signature does not verify", header.alg);
        replay.fail("signature", Rejection::new(Reason::SignatureInvalid, detail));
        return Err(Stopped);
    }
    replay.pass("signature", format!("{} signature verifies", header.alg));

    // The filter checks the route's provider list after the signature, with the other
    // policy checks, because a cached verification skips the steps before it.
    match requirements.providers {
        Some(allowed) if !allowed.contains(&provider_index) => {
            let detail = format!("provider {} is not allowed on this route", provider.name);
            replay.fail("route", Rejection::new(Reason::IssuerUnknown, detail));
            return Err(Stopped);
        }
        Some(_) => replay.pass("route", format!("the route rule allows provider {}", provider.name)),
        None => replay.skip("route", "the route sets no providers list"),
    }

    check(replay, "time", claims::check_time(&jws.claims, now_seconds, config.clock_skew_seconds))?;
    replay.pass("time", describe_times(&jws.claims, now_seconds, config.clock_skew_seconds));

    match provider.max_token_lifetime_seconds {
        Some(max_seconds) => {
            check(replay, "lifetime", authenticator::check_lifetime(&jws.claims, max_seconds))?;
            replay.pass("lifetime", format!("exp - iat is at most max_token_lifetime_seconds {max_seconds}"));
        }
        None => replay.skip("lifetime", "the provider sets no max_token_lifetime_seconds"),
    }

    let (audiences, audience_source) = match requirements.audiences {
        Some(audiences) => (audiences, "the route rule's audiences"),
        None => (provider.audiences.as_slice(), "the provider's audiences"),
    };
    check(replay, "audience", authenticator::check_audience(&jws.claims, audiences))?;
    let token_audiences = claims::audiences(&jws.claims).unwrap_or_default();
    replay.pass(
        "audience",
        format!("aud {} contains one of {audience_source}: {}", list(&token_audiences), list(audiences)),
    );

    client_steps(replay, &jws.claims, provider.subjects.as_deref(), provider.client_ids.as_deref())?;

    check(replay, "scope", authenticator::check_scope(&jws.claims, requirements, audiences))?;
    let granted = claims::scopes(&jws.claims, requirements.scope_claims).unwrap_or_default();
    let required = match (requirements.required_scopes.is_empty(), requirements.scope_match) {
        (true, _) => "none required beyond a non-empty scope".to_owned(),
        (false, ScopeMatch::All) => format!("requires all of {}", list(requirements.required_scopes)),
        (false, ScopeMatch::Any) => format!("requires one of {}", list(requirements.required_scopes)),
    };
    replay.pass("scope", format!("granted {}; {required}", list(&granted)));
    Ok(())
}

/// Checks the `sub` and `client_id` allow-lists, in the filter's order.
fn client_steps(
    replay: &mut Replay,
    claims: &Map<String, Value>,
    subjects: Option<&[String]>,
    client_ids: Option<&[String]>,
) -> Result<(), Stopped> {
    if subjects.is_none() && client_ids.is_none() {
        replay.skip("client", "the provider sets neither subjects nor client_ids");
        return Ok(());
    }
    check(replay, "client", authenticator::check_client(claims, "sub", subjects))?;
    check(replay, "client", authenticator::check_client(claims, "client_id", client_ids))?;
    let mut passed = Vec::new();
    if subjects.is_some() {
        passed.push("sub");
    }
    if client_ids.is_some() {
        passed.push("client_id");
    }
    replay.pass("client", format!("{} on the provider's allow-list", passed.join(" and ")));
    Ok(())
}

/// Records a failed step for an `Err` and stops; returns the value of an `Ok`.
fn check<T>(replay: &mut Replay, name: &'static str, result: Result<T, Rejection>) -> Result<T, Stopped> {
    result.map_err(|rejection| {
        replay.fail(name, rejection);
        Stopped
    })
}

/// Describes `exp`, `nbf` and `iat` against the clock, for a token that passed the time step.
fn describe_times(claims: &Map<String, Value>, now_seconds: i64, skew_seconds: u64) -> String {
    let mut parts = Vec::new();
    for name in ["exp", "nbf", "iat"] {
        if let Ok(Some(time)) = claims::numeric_date(claims, name) {
            parts.push(format!("{name} {}", relative_time(time, now_seconds)));
        }
    }
    parts.push(format!("clock skew {skew_seconds} s"));
    parts.join("; ")
}
