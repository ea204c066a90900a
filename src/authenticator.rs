//! The verification path: one function that runs every check in a fixed order and returns one
//! verdict. The host turns the verdict into a response through `response`, so no path can
//! skip a check, a log line or the status mapping.
//!
//! Order: bearer extraction, JWS parse, header (`alg`, `crit`), provider by `iss`, key by
//! `kid`, signature, time (`exp`, `nbf`, `iat`), audience, scope. The claims read before the
//! signature (`iss`, the header) only choose keys; nothing else is trusted until it verifies.

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::algorithm::Algorithm;
use crate::claims;
use crate::config::{FilterConfig, ScopeMatch};
use crate::route::RouteRequirements;
use crate::extractor;
use crate::jwks::{Jwk, KeyQuery, KeySet};
use crate::jwt_cache::JwtCache;
use crate::jwks_cache::UnknownKidDecision;
use crate::jws;
use crate::reason::{Reason, Rejection};
use crate::signature;

/// Key availability for one provider at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAvailability {
    Ready(Rc<KeySet>),
    /// No keys yet, but the first fetch may still bring them: hold the request until the
    /// fetch ends, at most until `wait_until_ms`.
    Pending { wait_until_ms: u64 },
    /// No keys and no fetch in flight; the next attempt is in `retry_after_seconds`.
    Unavailable { retry_after_seconds: u64 },
}

/// Supplies each provider's keys; the host implements it over its JWKS caches.
pub trait KeyStore {
    fn keys(&self, provider_index: usize) -> KeyAvailability;

    /// Decides whether a `kid` missing from the provider's set may wait for a refetch.
    /// Inline key sets never change, so the default rejects.
    fn unknown_kid(&self, _provider_index: usize, _kid: &str) -> UnknownKidDecision {
        UnknownKidDecision::Reject
    }

    /// Verifies a signature with `key`. The default uses ring inside the VM; the host layer
    /// may hand some algorithms to the proxy instead.
    fn verify_signature(&self, alg: Algorithm, key: &Jwk, message: &[u8], signature: &[u8]) -> bool {
        signature::verify(alg, &key.material, message, signature)
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub provider_index: usize,
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    /// Fingerprint of the key that verified the signature (see `Jwk::fingerprint`).
    pub key_fingerprint: [u8; 32],
}

/// A rejected request, with what the response and the log line need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub rejection: Rejection,
    /// The provider the token named, once `iss` matched one.
    pub provider_index: Option<usize>,
    /// Seconds for `Retry-After`, set with `jwks_unavailable`.
    pub retry_after_seconds: Option<u64>,
}

impl Denial {
    /// Creates a denial that names no provider and sets no `Retry-After`.
    pub fn without_provider(rejection: Rejection) -> Denial {
        Denial { rejection, provider_index: None, retry_after_seconds: None }
    }
}

/// The outcome of authenticating one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow(Rc<Verified>),
    Deny(Denial),
    /// The provider's keys are being fetched: hold the request and authenticate it again
    /// when the fetch ends. `kid` is set when the fetch is a refetch for that unknown kid.
    WaitForKeys {
        provider_index: usize,
        kid: Option<String>,
        /// Latest time to hold the request, when the key store sets one.
        wait_until_ms: Option<u64>,
    },
}

/// The request data the checks read.
#[derive(Debug, Clone, Copy)]
pub struct RequestAuth<'a> {
    /// Values of every `Authorization` header, in order.
    pub authorization: &'a [&'a str],
    /// Current time from the host clock, in seconds since the Unix epoch.
    pub now_seconds: i64,
}

enum Stop {
    Deny(Denial),
    Wait {
        provider_index: usize,
        kid: Option<String>,
        wait_until_ms: Option<u64>,
    },
}

impl From<Rejection> for Stop {
    fn from(rejection: Rejection) -> Self {
        Stop::Deny(Denial {
            rejection,
            provider_index: None,
            retry_after_seconds: None,
        })
    }
}

/// Requirements a token must meet on one route: the top-level settings with the matching
/// rule's overrides applied.
#[derive(Debug, Clone, Copy)]
pub struct Requirements<'a> {
    pub required_scopes: &'a [String],
    pub scope_match: ScopeMatch,
    pub scope_claims: &'a [String],
    /// Accepted audiences in place of each provider's own, when the route sets them.
    pub audiences: Option<&'a [String]>,
    /// Providers allowed on the route; `None` allows every provider.
    pub providers: Option<&'a [usize]>,
}

impl<'a> Requirements<'a> {
    /// Applies a route rule's overrides to the top-level settings.
    pub fn for_route(config: &'a FilterConfig, route: Option<&'a RouteRequirements>) -> Self {
        Requirements {
            required_scopes: route
                .and_then(|route| route.required_scopes.as_deref())
                .unwrap_or(&config.required_scopes),
            scope_match: route.and_then(|route| route.scope_match).unwrap_or(config.scope_match),
            scope_claims: &config.scope_claims,
            audiences: route.and_then(|route| route.audiences.as_deref()),
            providers: route.and_then(|route| route.providers.as_deref()),
        }
    }
}

/// Authenticates one request against the top-level requirements and the current keys.
pub fn authenticate(config: &FilterConfig, keys: &dyn KeyStore, request: RequestAuth<'_>) -> Verdict {
    authenticate_with(config, keys, request, &Requirements::for_route(config, None))
}

/// Authenticates one request against `requirements` and the current keys.
pub fn authenticate_with(
    config: &FilterConfig,
    keys: &dyn KeyStore,
    request: RequestAuth<'_>,
    requirements: &Requirements<'_>,
) -> Verdict {
    authenticate_cached(config, keys, request, requirements, None)
}

/// Authenticates one request, looking the token up in `cache` (with the configuration's
/// index) before parsing and verifying it, and storing it there when it is admitted.
pub fn authenticate_cached(
    config: &FilterConfig,
    keys: &dyn KeyStore,
    request: RequestAuth<'_>,
    requirements: &Requirements<'_>,
    cache: Option<(&mut JwtCache, usize)>,
) -> Verdict {
    match run_checks(config, keys, request, requirements, cache) {
        Ok(verified) => Verdict::Allow(verified),
        Err(Stop::Deny(denial)) => Verdict::Deny(denial),
        Err(Stop::Wait {
            provider_index,
            kid,
            wait_until_ms,
        }) => Verdict::WaitForKeys {
            provider_index,
            kid,
            wait_until_ms,
        },
    }
}

fn run_checks(
    config: &FilterConfig,
    keys: &dyn KeyStore,
    request: RequestAuth<'_>,
    requirements: &Requirements<'_>,
    cache: Option<(&mut JwtCache, usize)>,
) -> Result<Rc<Verified>, Stop> {
    let token = extractor::extract_bearer_token(request.authorization)?;

    // A cached verification replaces steps 2 to 6, but the policy checks below always run.
    // A disabled cache (`jwt_cache_size: 0`) costs nothing: no key is computed.
    let mut cache = cache
        .filter(|(cache, _)| cache.is_enabled())
        .map(|(cache, config_index)| (JwtCache::key(config_index, token), cache));
    // An entry is trusted only while the key that verified it is still usable. A key removed
    // from the set, or one that expired with a key set that could not be refreshed, no longer
    // vouches for the token, so the token takes the full path and gets 401 or 503 there.
    let cached = cache
        .as_mut()
        .and_then(|(key, cache)| cache.get_if(key, request.now_seconds, |verified| verifying_key_is_usable(keys, verified)));
    let from_cache = cached.is_some();
    let verified = match cached {
        Some(verified) => verified,
        None => Rc::new(verify_token(config, keys, token)?),
    };

    check_policy(config, &verified, request.now_seconds, requirements)?;

    if !from_cache {
        if let Some((key, cache)) = cache {
            let exp = claims::numeric_date(&verified.claims, "exp").ok().flatten().unwrap_or_default();
            cache.insert(key, Rc::clone(&verified), exp, request.now_seconds);
        }
    }
    Ok(verified)
}

/// Returns whether the provider's keys are ready and still contain the key that verified a
/// cached token.
fn verifying_key_is_usable(keys: &dyn KeyStore, verified: &Verified) -> bool {
    match keys.keys(verified.provider_index) {
        KeyAvailability::Ready(key_set) => key_set.keys.iter().any(|key| key.fingerprint == verified.key_fingerprint),
        KeyAvailability::Pending { .. } | KeyAvailability::Unavailable { .. } => false,
    }
}

/// Returns the provider at `provider_index` and a function that turns a rejection into a
/// denial naming that provider.
fn provider_context(
    config: &FilterConfig,
    provider_index: usize,
) -> Result<(&crate::config::Provider, impl Fn(Rejection) -> Stop + Copy), Stop> {
    let provider = config
        .providers
        .get(provider_index)
        .ok_or_else(|| Rejection::new(Reason::IssuerUnknown, "provider index out of range"))?;
    let with_provider = move |rejection: Rejection| {
        Stop::Deny(Denial {
            rejection,
            provider_index: Some(provider_index),
            retry_after_seconds: None,
        })
    };
    Ok((provider, with_provider))
}

/// Steps 2 to 6: parses the token, checks its header, selects the provider and the key, and
/// verifies the signature. The result depends only on the token, the configuration and the
/// key set, so it may be cached.
fn verify_token(config: &FilterConfig, keys: &dyn KeyStore, token: &str) -> Result<Verified, Stop> {
    let jws = jws::parse_compact(token)?;
    let header = jws::check_header(&jws.header)?;

    let provider_index = select_provider(config, &jws.claims)?;
    let (provider, with_provider) = provider_context(config, provider_index)?;

    if !provider.allowed_algorithms.contains(&header.alg) {
        return Err(with_provider(Rejection::new(
            Reason::AlgNotAllowed,
            format!("alg {} is not in allowed_algorithms of provider {}", header.alg, provider.name),
        )));
    }
    if let Some(required) = &provider.require_typ {
        check_typ(&jws.header, required).map_err(with_provider)?;
    }

    let key_set = match keys.keys(provider_index) {
        KeyAvailability::Ready(key_set) => key_set,
        KeyAvailability::Pending { wait_until_ms } => {
            return Err(Stop::Wait {
                provider_index,
                kid: None,
                wait_until_ms: Some(wait_until_ms),
            })
        }
        KeyAvailability::Unavailable { retry_after_seconds } => {
            return Err(Stop::Deny(Denial {
                rejection: Rejection::new(
                    Reason::JwksUnavailable,
                    format!("no keys loaded for provider {}", provider.name),
                ),
                provider_index: Some(provider_index),
                retry_after_seconds: Some(retry_after_seconds),
            }))
        }
    };

    let query = KeyQuery {
        kid: header.kid,
        alg: header.alg,
    };
    let candidates = key_set.candidates(query);
    if candidates.is_empty() {
        // A kid the set lacks may be a key the IdP just rotated in.
        if let Some(kid) = header.kid {
            if keys.unknown_kid(provider_index, kid) == UnknownKidDecision::Refetch {
                return Err(Stop::Wait {
                    provider_index,
                    kid: Some(kid.to_owned()),
                    wait_until_ms: None,
                });
            }
        }
        let detail = match header.kid {
            Some(kid) => format!("no {} key with kid {:?}", header.alg, jws::truncate(kid, 64)),
            None => format!("token has no kid and the set has no single {} key", header.alg),
        };
        return Err(with_provider(Rejection::new(Reason::KeyNotFound, detail)));
    }

    let verifying_key = candidates
        .iter()
        .find(|key| keys.verify_signature(header.alg, key, jws.signing_input, &jws.signature));
    let Some(verifying_key) = verifying_key else {
        return Err(with_provider(Rejection::new(
            Reason::SignatureInvalid,
            format!("{} signature does not verify", header.alg),
        )));
    };

    Ok(Verified {
        provider_index,
        alg: header.alg,
        kid: header.kid.map(str::to_owned),
        key_fingerprint: verifying_key.fingerprint,
        claims: jws.claims,
    })
}

/// Steps 7 to 9 and the route's policy: the provider allowed on the route, time, lifetime,
/// audience, client allow-lists and scope. Runs on every request, cached or not.
fn check_policy(config: &FilterConfig, verified: &Verified, now_seconds: i64, requirements: &Requirements<'_>) -> Result<(), Stop> {
    let provider_index = verified.provider_index;
    let (provider, with_provider) = provider_context(config, provider_index)?;
    if requirements.providers.is_some_and(|allowed| !allowed.contains(&provider_index)) {
        return Err(with_provider(Rejection::new(
            Reason::IssuerUnknown,
            format!("provider {} is not allowed on this route", provider.name),
        )));
    }

    let claims = &verified.claims;
    claims::check_time(claims, now_seconds, config.clock_skew_seconds).map_err(with_provider)?;
    if let Some(max_seconds) = provider.max_token_lifetime_seconds {
        check_lifetime(claims, max_seconds).map_err(with_provider)?;
    }
    let audiences = requirements.audiences.unwrap_or(&provider.audiences);
    check_audience(claims, audiences).map_err(with_provider)?;
    check_client(claims, "sub", provider.subjects.as_deref()).map_err(with_provider)?;
    check_client(claims, "client_id", provider.client_ids.as_deref()).map_err(with_provider)?;
    check_scope(claims, requirements, audiences).map_err(with_provider)?;
    Ok(())
}

pub fn select_provider(config: &FilterConfig, claims: &Map<String, Value>) -> Result<usize, Rejection> {
    let issuer = match claims.get("iss") {
        Some(Value::String(issuer)) => issuer,
        Some(other) => {
            return Err(Rejection::new(
                Reason::IssuerUnknown,
                format!("iss is not a string: {}", claims::short_json(other)),
            ))
        }
        None => return Err(Rejection::new(Reason::IssuerUnknown, "token has no iss claim")),
    };
    config
        .providers
        .iter()
        .position(|provider| provider.issuer == *issuer)
        .ok_or_else(|| {
            let configured: Vec<&str> = config.providers.iter().map(|provider| provider.issuer.as_str()).collect();
            Rejection::new(
                Reason::IssuerUnknown,
                format!(
                    "iss {:?} matches no provider; the configured issuers are {:?}",
                    jws::truncate(issuer, 128),
                    jws::truncate(&configured.join(" "), 256)
                ),
            )
        })
}

/// Requires the header `typ` to equal `required`, ignoring case and an `application/` prefix
/// (RFC 7515 section 4.1.9 allows the prefix to be left out).
pub fn check_typ(header: &Map<String, Value>, required: &str) -> Result<(), Rejection> {
    let normalize = |value: &str| {
        let lower = value.to_ascii_lowercase();
        lower.strip_prefix("application/").map(str::to_owned).unwrap_or(lower)
    };
    match header.get("typ") {
        Some(Value::String(typ)) if normalize(typ) == normalize(required) => Ok(()),
        Some(Value::String(typ)) => Err(Rejection::new(
            Reason::TypeNotAllowed,
            format!("typ {:?} is not {required:?}", jws::truncate(typ, 32)),
        )),
        Some(_) => Err(Rejection::new(Reason::TypeNotAllowed, "typ is not a string")),
        None => Err(Rejection::new(Reason::TypeNotAllowed, format!("header has no typ; {required:?} is required"))),
    }
}

/// Requires `exp - iat` to be at most `max_seconds`; a token without `iat` cannot show its
/// lifetime and is rejected too.
pub fn check_lifetime(claims: &Map<String, Value>, max_seconds: u64) -> Result<(), Rejection> {
    let exp = claims::numeric_date(claims, "exp")?.unwrap_or_default();
    let Some(iat) = claims::numeric_date(claims, "iat")? else {
        return Err(Rejection::new(Reason::TokenLifetimeTooLong, "token has no iat, so its lifetime is unknown"));
    };
    let lifetime = exp.saturating_sub(iat);
    if u64::try_from(lifetime).is_ok_and(|lifetime| lifetime <= max_seconds) || lifetime < 0 {
        return Ok(());
    }
    Err(Rejection::new(
        Reason::TokenLifetimeTooLong,
        format!("lifetime {lifetime} s exceeds max_token_lifetime_seconds {max_seconds}"),
    ))
}

/// Requires the string claim `name` to be on `allowed`, when an allow-list is configured.
pub fn check_client(claims: &Map<String, Value>, name: &str, allowed: Option<&[String]>) -> Result<(), Rejection> {
    let Some(allowed) = allowed else {
        return Ok(());
    };
    match claims.get(name).and_then(Value::as_str) {
        Some(value) if allowed.iter().any(|entry| entry == value) => Ok(()),
        Some(value) => Err(Rejection::new(
            Reason::ClientNotAllowed,
            format!("{name} {:?} is not on the provider's allow-list", jws::truncate(value, 64)),
        )),
        None => Err(Rejection::new(Reason::ClientNotAllowed, format!("token has no string {name} claim"))),
    }
}

/// Requires that `aud` contains at least one of the provider's audiences.
pub fn check_audience(claims: &Map<String, Value>, allowed: &[String]) -> Result<(), Rejection> {
    let audiences = claims::audiences(claims)?;
    if audiences.iter().any(|aud| allowed.iter().any(|ok| ok == aud)) {
        return Ok(());
    }
    let detail = if audiences.is_empty() {
        "token has no aud claim".to_owned()
    } else {
        format!(
            "aud {:?} contains none of the configured audiences {:?}",
            jws::truncate(&audiences.join(" "), 128),
            jws::truncate(&allowed.join(" "), 256)
        )
    };
    Err(Rejection::new(Reason::AudienceNotAllowed, detail))
}

/// Requires a non-empty scope, and all (or, with `scope_match: any`, one) of the required
/// scope values.
///
/// An empty scope is rejected even when nothing is required: in IDaaS it means the
/// application was granted no permission with a Scope Value, a misconfiguration that must
/// surface at once rather than when a scope is first required. A granted entry of the IDaaS
/// form `<identifier>|<value>` counts as `<value>` when `<identifier>` is one of `audiences`.
pub fn check_scope(claims: &Map<String, Value>, requirements: &Requirements<'_>, audiences: &[String]) -> Result<(), Rejection> {
    let granted = claims::scopes(claims, requirements.scope_claims)?;
    if granted.is_empty() {
        return Err(Rejection::new(
            Reason::ScopeEmpty,
            format!("token has no scope values (claims {} are missing or empty)", requirements.scope_claims.join(", ")),
        ));
    }
    let has = |required: &str| {
        granted.iter().any(|entry| {
            *entry == required
                || entry
                    .rsplit_once('|')
                    .is_some_and(|(identifier, value)| value == required && audiences.iter().any(|aud| aud == identifier))
        })
    };
    let missing: Vec<&str> = requirements
        .required_scopes
        .iter()
        .map(String::as_str)
        .filter(|scope| !has(scope))
        .collect();
    let satisfied = match requirements.scope_match {
        ScopeMatch::All => missing.is_empty(),
        ScopeMatch::Any => requirements.required_scopes.is_empty() || missing.len() < requirements.required_scopes.len(),
    };
    if satisfied {
        Ok(())
    } else {
        Err(Rejection::new(
            Reason::ScopeInsufficient,
            match requirements.scope_match {
                ScopeMatch::All => format!("missing required scope {}", missing.join(" ")),
                ScopeMatch::Any => format!("has none of the scopes {}", missing.join(" ")),
            },
        ))
    }
}

#[cfg(test)]
#[path = "authenticator_tests.rs"]
mod tests;
