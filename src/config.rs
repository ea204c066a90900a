//! Filter configuration: parsing the plugin's JSON and validating it into `FilterConfig`.
//!
//! Every error names the field by its JSON path (`providers[0].audiences`) and states what to
//! change. Unknown fields are not errors, because Higress adds its own (`_rules_`,
//! `_match_route_`), but they are returned so the host can log them once.

use std::fmt;

use serde_json::{Map, Value};

use crate::algorithm::Algorithm;
use crate::jwks::{self, KeySet, SkippedKey};
use crate::route::{self, RouteRule};
use crate::signature::SignatureBackend;
use crate::upstream::{self, UpstreamHeaders};

/// Default for `clock_skew_seconds`, the tolerance applied to `exp`, `nbf` and `iat`.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// Largest `clock_skew_seconds` accepted; more would quietly extend every token's life.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 3600;
/// Default for `remote_jwks.timeout_ms`.
pub const DEFAULT_JWKS_TIMEOUT_MS: u64 = 1500;
/// Largest `remote_jwks.timeout_ms` accepted; requests wait on the first fetch that long.
pub const MAX_JWKS_TIMEOUT_MS: u64 = 60_000;
/// Default for `remote_jwks.cache_duration_seconds`.
pub const DEFAULT_JWKS_CACHE_DURATION_SECONDS: u64 = 600;
/// Largest `remote_jwks.cache_duration_seconds` accepted (7 days).
pub const MAX_JWKS_CACHE_DURATION_SECONDS: u64 = 7 * 24 * 3600;
/// Default for `remote_jwks.max_stale_seconds` (24 hours).
pub const DEFAULT_MAX_STALE_SECONDS: u64 = 24 * 3600;
/// Largest `remote_jwks.max_stale_seconds` accepted (30 days).
pub const MAX_MAX_STALE_SECONDS: u64 = 30 * 24 * 3600;
/// Default for `remote_jwks.kid_refetch_min_interval_seconds`.
pub const DEFAULT_KID_REFETCH_MIN_INTERVAL_SECONDS: u64 = 30;
/// Largest `remote_jwks.kid_refetch_min_interval_seconds` accepted.
pub const MAX_KID_REFETCH_MIN_INTERVAL_SECONDS: u64 = 3600;
/// Default for `remote_jwks.startup_wait_ms`.
pub const DEFAULT_STARTUP_WAIT_MS: u64 = 3000;
/// Largest `remote_jwks.startup_wait_ms` accepted.
pub const MAX_STARTUP_WAIT_MS: u64 = 60_000;

/// The validated configuration of one filter instance.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// Trusted issuers; a token's `iss` selects one by exact match.
    pub providers: Vec<Provider>,
    /// Scope values every token must carry (all of them). Empty means any non-empty scope.
    pub required_scopes: Vec<String>,
    /// Tolerance, in seconds, for clock differences between IdP and gateway.
    pub clock_skew_seconds: u64,
    /// Whether the verified `Authorization` header is passed to the upstream (default false).
    pub keep_token: bool,
    /// Whether a token needs all of `required_scopes` or any one of them.
    pub scope_match: ScopeMatch,
    /// Claims that carry scope values, read in order (default `scope`, then `scp`).
    pub scope_claims: Vec<String>,
    /// Per-route requirements; the first matching rule applies.
    pub rules: Vec<RouteRule>,
    /// Whether CORS preflight requests (`OPTIONS` with a non-empty `Origin` and
    /// `Access-Control-Request-Method`, and no `Authorization`) pass without a token
    /// (default true).
    pub bypass_cors_preflight: bool,
    /// Headers the filter sets on an admitted request for the upstream.
    pub upstream: UpstreamHeaders,
    /// Entries in each worker's verified-token cache; 0 disables it (default 1000).
    pub jwt_cache_size: usize,
    /// The code that verifies signatures (default `auto`).
    pub signature_backend: SignatureBackend,
}

/// Whether a token needs all or any of the required scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScopeMatch {
    #[default]
    All,
    Any,
}

impl ScopeMatch {
    pub(crate) fn parse(value: &Value, field: &str) -> Result<ScopeMatch, ConfigError> {
        match value.as_str() {
            Some("all") => Ok(ScopeMatch::All),
            Some("any") => Ok(ScopeMatch::Any),
            _ => Err(error(field, format!("must be \"all\" or \"any\", got {}", describe_value(value)))),
        }
    }
}

/// One trusted issuer and where its keys come from.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Short name used in logs.
    pub name: String,
    /// Exact `iss` value (IDaaS console: Issuer URL).
    pub issuer: String,
    /// Accepted `aud` values (IDaaS console: Resource Server Identifier). Never empty.
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// Signature algorithms accepted from this issuer (default: all supported ones).
    /// Narrowing it to what the IdP uses (RS256 for IDaaS) removes algorithm confusion risk.
    pub allowed_algorithms: Vec<Algorithm>,
    /// Required header `typ`, compared case-insensitively with or without `application/`
    /// (RFC 9068 section 2.1: `at+jwt` marks an access token, not an ID token).
    pub require_typ: Option<String>,
    /// Longest accepted `exp - iat`, in seconds; tokens must then carry `iat`.
    pub max_token_lifetime_seconds: Option<u64>,
    /// Accepted `sub` values; `None` accepts any.
    pub subjects: Option<Vec<String>>,
    /// Accepted `client_id` values; `None` accepts any.
    pub client_ids: Option<Vec<String>>,
}

/// Source of a provider's verification keys.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// Fetched over HTTP through a proxy cluster and cached (`remote_jwks` or `discovery`).
    Remote(RemoteJwks),
    /// Given inline in the configuration (`local_jwks` alone).
    Local(KeySet),
}

/// A JWKS endpoint, or an OpenID discovery document naming one, reached through a proxy
/// cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// Name of the proxy cluster that routes to the JWKS (and discovery) host.
    pub cluster: String,
    /// The configured URI, for logs.
    pub uri: String,
    /// `:authority` of the fetch, taken from `uri`.
    pub authority: String,
    /// `:path` of the fetch (with query), taken from `uri`.
    pub path: String,
    /// Whether `uri` is an OpenID discovery document whose `jwks_uri` names the key set.
    pub discovery: bool,
    /// How long one fetch may take before it counts as failed.
    pub timeout_ms: u64,
    /// How long a fetched key set is used before it is fetched again.
    pub cache_duration_seconds: u64,
    /// How long past expiry keys are still served while refreshes fail.
    pub max_stale_seconds: u64,
    /// Minimum time between two refetches caused by tokens with unknown kids.
    pub kid_refetch_min_interval_seconds: u64,
    /// How long requests wait for the first key set before they get 503.
    pub startup_wait_ms: u64,
    /// Keys from `local_jwks`, used until the first fetch succeeds.
    pub bootstrap: Option<KeySet>,
}

impl RemoteJwks {
    /// Returns the cache timings in milliseconds.
    pub fn cache_settings(&self) -> crate::jwks_cache::CacheSettings {
        crate::jwks_cache::CacheSettings {
            cache_duration_ms: self.cache_duration_seconds.saturating_mul(1000),
            timeout_ms: self.timeout_ms,
            max_stale_ms: self.max_stale_seconds.saturating_mul(1000),
            kid_refetch_min_interval_ms: self.kid_refetch_min_interval_seconds.saturating_mul(1000),
            startup_wait_ms: self.startup_wait_ms,
        }
    }
}

/// An invalid configuration value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the offending field, such as `providers[0].audiences`.
    pub field: String,
    /// The problem and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A valid configuration plus what the host should log about it.
#[derive(Debug, Clone)]
pub struct ParsedConfig {
    pub config: FilterConfig,
    /// Paths of fields this version does not know; they are ignored.
    pub unknown_fields: Vec<String>,
    /// Inline keys that were skipped, with the `local_jwks` path they came from.
    pub skipped_keys: Vec<(String, SkippedKey)>,
}

/// Looks up a Wasm VM environment variable (for `${NAME}` in `upstream_authorization`).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses and validates a plugin configuration without Higress `_rules_`, reading
/// `${NAME}` references from the process environment.
pub fn parse_config(bytes: &[u8]) -> Result<ParsedConfig, ConfigError> {
    let root = parse_root(bytes)?;
    parse_filter_config(&root, &|name| std::env::var(name).ok())
}

/// Parses the configuration text into its top-level JSON object. A member name given twice is
/// an error, because with "last one wins" a second `"required_scopes": []` would drop the first.
pub fn parse_root(bytes: &[u8]) -> Result<Map<String, Value>, ConfigError> {
    match crate::json::parse_object(bytes) {
        Ok(map) => Ok(map),
        Err(crate::json::JsonError::NotAnObject) => Err(error("", "configuration must be a JSON object")),
        Err(crate::json::JsonError::Invalid(message)) => Err(error("", format!("configuration is not valid JSON: {message}"))),
    }
}

/// Parses and validates one filter configuration object.
pub fn parse_filter_config(root: &Map<String, Value>, env: EnvLookup<'_>) -> Result<ParsedConfig, ConfigError> {
    let mut unknown_fields = Vec::new();
    let mut skipped_keys = Vec::new();
    let mut reader = ObjectReader::new(root, String::new());

    let providers = match reader.get("providers") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut providers = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let path = format!("providers[{index}]");
                providers.push(parse_provider(item, path, &mut unknown_fields, &mut skipped_keys)?);
            }
            providers
        }
        Some(Value::Array(_)) | None => {
            return Err(error(
                "providers",
                "at least one provider is required (issuer, audiences and remote_jwks or local_jwks)",
            ))
        }
        Some(_) => return Err(error("providers", "must be an array of provider objects")),
    };
    check_unique(&providers, |p| &p.name, "name")?;
    check_unique(&providers, |p| &p.issuer, "issuer")?;

    let required_scopes = match reader.get("required_scopes") {
        None => Vec::new(),
        Some(value) => scope_list(value, "required_scopes")?,
    };
    let clock_skew_seconds = match reader.get("clock_skew_seconds") {
        None => DEFAULT_CLOCK_SKEW_SECONDS,
        Some(value) => bounded_u64(value, "clock_skew_seconds", "seconds", 0, MAX_CLOCK_SKEW_SECONDS)?,
    };
    let keep_token = boolean(reader.get("keep_token"), "keep_token", false)?;
    let scope_match = match reader.get("scope_match") {
        None => ScopeMatch::All,
        Some(value) => ScopeMatch::parse(value, "scope_match")?,
    };
    let scope_claims = match reader.get("scope_claims") {
        None => crate::claims::SCOPE_CLAIMS.iter().map(|name| (*name).to_owned()).collect(),
        Some(value) => {
            let names = string_list(value, "scope_claims")?;
            if names.is_empty() {
                return Err(error("scope_claims", "must name at least one claim, or be left out"));
            }
            names
        }
    };
    let provider_names: Vec<&str> = providers.iter().map(|provider| provider.name.as_str()).collect();
    let rules = match reader.get("rules") {
        None => Vec::new(),
        Some(value) => route::parse_rules(value, &provider_names, &mut unknown_fields)?,
    };
    let bypass_cors_preflight = boolean(reader.get("bypass_cors_preflight"), "bypass_cors_preflight", true)?;
    let upstream = upstream::parse_upstream_headers(&mut reader, env, &mut unknown_fields)?;
    let jwt_cache_size = match reader.get("jwt_cache_size") {
        None => crate::jwt_cache::DEFAULT_CAPACITY,
        Some(value) => {
            let max = crate::jwt_cache::MAX_CAPACITY as u64;
            bounded_u64(value, "jwt_cache_size", "entries", 0, max)? as usize
        }
    };
    let signature_backend = match reader.get("signature_backend") {
        None => SignatureBackend::Auto,
        Some(value) => match value.as_str() {
            Some("auto") => SignatureBackend::Auto,
            Some("host") => SignatureBackend::Host,
            Some("wasm") => SignatureBackend::Wasm,
            _ => return Err(error("signature_backend", format!("must be \"auto\", \"host\" or \"wasm\", got {}", describe_value(value)))),
        },
    };
    reader.collect_unknown(&mut unknown_fields);

    Ok(ParsedConfig {
        config: FilterConfig {
            providers,
            required_scopes,
            clock_skew_seconds,
            keep_token,
            scope_match,
            scope_claims,
            rules,
            bypass_cors_preflight,
            upstream,
            jwt_cache_size,
            signature_backend,
        },
        unknown_fields,
        skipped_keys,
    })
}

fn parse_provider(
    value: &Value,
    path: String,
    unknown_fields: &mut Vec<String>,
    skipped_keys: &mut Vec<(String, SkippedKey)>,
) -> Result<Provider, ConfigError> {
    let Value::Object(map) = value else {
        return Err(error(&path, "must be an object"));
    };
    let mut reader = ObjectReader::new(map, path);

    let name = non_empty_string(reader.get("name"), &reader.field("name"), "a short provider name used in logs")?;
    let issuer = non_empty_string(
        reader.get("issuer"),
        &reader.field("issuer"),
        "the exact iss value of the tokens (IDaaS: Issuer URL)",
    )?;
    check_identifier(&issuer, &reader.field("issuer"))?;

    let audiences_field = reader.field("audiences");
    let audiences = match reader.get("audiences") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut audiences = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let item_field = format!("{audiences_field}[{index}]");
                let audience = non_empty_string(Some(item), &item_field, "an audience string")?;
                check_identifier(&audience, &item_field)?;
                audiences.push(audience);
            }
            audiences
        }
        Some(Value::Array(_)) | None => {
            return Err(error(
                &audiences_field,
                "must list at least one audience (IDaaS: the Resource Server Identifier)",
            ))
        }
        Some(other) => {
            let message = format!("must be an array of strings, got {}; write [\"<Resource Server Identifier>\"]", json_kind(other));
            return Err(error(&audiences_field, message));
        }
    };

    let remote_field = reader.field("remote_jwks");
    let discovery_field = reader.field("discovery");
    let local_field = reader.field("local_jwks");
    let local = match reader.get("local_jwks") {
        Some(local) => {
            let parsed = parse_local_jwks(local, &local_field)?;
            skipped_keys.extend(parsed.skipped.into_iter().map(|key| (local_field.clone(), key)));
            Some(parsed.key_set)
        }
        None => None,
    };
    let jwks = match (reader.get("remote_jwks"), reader.get("discovery"), local) {
        (Some(remote), None, bootstrap) => {
            JwksSource::Remote(parse_remote_jwks(remote, remote_field, false, bootstrap, unknown_fields)?)
        }
        (None, Some(discovery), bootstrap) => {
            JwksSource::Remote(parse_remote_jwks(discovery, discovery_field, true, bootstrap, unknown_fields)?)
        }
        (None, None, Some(local)) => JwksSource::Local(local),
        (Some(_), Some(_), _) => {
            return Err(error(
                &reader.path,
                "set either remote_jwks or discovery, not both",
            ))
        }
        (None, None, None) => {
            return Err(error(
                &reader.path,
                "set remote_jwks (the IDaaS JWKS endpoint), discovery (its OpenID configuration) or local_jwks (an inline JWKS)",
            ))
        }
    };

    let allowed_algorithms = match reader.get("allowed_algorithms") {
        None => Algorithm::ALL.to_vec(),
        Some(value) => {
            let field = reader.field("allowed_algorithms");
            let names = string_list(value, &field)?;
            if names.is_empty() {
                return Err(error(&field, "must list at least one algorithm, or be left out"));
            }
            let mut algorithms = Vec::with_capacity(names.len());
            for name in &names {
                let alg = Algorithm::from_name(name).ok_or_else(|| {
                    let supported: Vec<&str> = Algorithm::ALL.iter().map(|alg| alg.name()).collect();
                    error(&field, format!("{name:?} is not supported; choose from {}", supported.join(", ")))
                })?;
                algorithms.push(alg);
            }
            algorithms
        }
    };
    let require_typ = match reader.get("require_typ") {
        None => None,
        Some(value) => Some(non_empty_string(Some(value), &reader.field("require_typ"), "a JOSE type such as at+jwt")?),
    };
    let max_token_lifetime_seconds = match reader.get("max_token_lifetime_seconds") {
        None => None,
        Some(value) => Some(bounded_u64(value, &reader.field("max_token_lifetime_seconds"), "seconds", 1, MAX_JWKS_CACHE_DURATION_SECONDS)?),
    };
    let mut optional_list = |name: &'static str| -> Result<Option<Vec<String>>, ConfigError> {
        match reader.get(name) {
            None => Ok(None),
            Some(value) => {
                let field = reader.field(name);
                let list = string_list(value, &field)?;
                if list.is_empty() {
                    return Err(error(&field, "must list at least one value, or be left out"));
                }
                Ok(Some(list))
            }
        }
    };
    let subjects = optional_list("subjects")?;
    let client_ids = optional_list("client_ids")?;

    reader.collect_unknown(unknown_fields);
    Ok(Provider {
        name,
        issuer,
        audiences,
        jwks,
        allowed_algorithms,
        require_typ,
        max_token_lifetime_seconds,
        subjects,
        client_ids,
    })
}

fn parse_remote_jwks(
    value: &Value,
    path: String,
    discovery: bool,
    bootstrap: Option<KeySet>,
    unknown_fields: &mut Vec<String>,
) -> Result<RemoteJwks, ConfigError> {
    let Value::Object(map) = value else {
        return Err(error(&path, "must be an object with cluster and uri"));
    };
    let mut reader = ObjectReader::new(map, path);

    let cluster = non_empty_string(
        reader.get("cluster"),
        &reader.field("cluster"),
        "the name of the proxy cluster that reaches the JWKS host",
    )?;
    let uri_field = reader.field("uri");
    let what = if discovery { "the OpenID discovery URL" } else { "the JWKS URL" };
    let uri = non_empty_string(reader.get("uri"), &uri_field, what)?;
    reject_placeholder(&uri, &uri_field)?;
    let (authority, fetch_path) = split_http_uri(&uri).map_err(|message| error(&uri_field, message))?;

    let mut number = |name: &'static str, unit: &str, min: u64, max: u64, default: u64| match reader.get(name) {
        None => Ok(default),
        Some(value) => bounded_u64(value, &reader.field(name), unit, min, max),
    };
    let timeout_ms = number("timeout_ms", "milliseconds", 1, MAX_JWKS_TIMEOUT_MS, DEFAULT_JWKS_TIMEOUT_MS)?;
    let cache_duration_seconds = number(
        "cache_duration_seconds",
        "seconds",
        1,
        MAX_JWKS_CACHE_DURATION_SECONDS,
        DEFAULT_JWKS_CACHE_DURATION_SECONDS,
    )?;
    let max_stale_seconds = number("max_stale_seconds", "seconds", 0, MAX_MAX_STALE_SECONDS, DEFAULT_MAX_STALE_SECONDS)?;
    let kid_refetch_min_interval_seconds = number(
        "kid_refetch_min_interval_seconds",
        "seconds",
        1,
        MAX_KID_REFETCH_MIN_INTERVAL_SECONDS,
        DEFAULT_KID_REFETCH_MIN_INTERVAL_SECONDS,
    )?;
    let startup_wait_ms = number("startup_wait_ms", "milliseconds", 0, MAX_STARTUP_WAIT_MS, DEFAULT_STARTUP_WAIT_MS)?;

    reader.collect_unknown(unknown_fields);
    Ok(RemoteJwks {
        cluster,
        uri,
        authority,
        path: fetch_path,
        discovery,
        timeout_ms,
        cache_duration_seconds,
        max_stale_seconds,
        kid_refetch_min_interval_seconds,
        startup_wait_ms,
        bootstrap,
    })
}

fn parse_local_jwks(value: &Value, field: &str) -> Result<jwks::ParsedKeySet, ConfigError> {
    let parsed = match value {
        Value::String(text) => jwks::parse_jwks(text.as_bytes()),
        Value::Object(map) => jwks::parse_jwks_object(map),
        _ => return Err(error(field, "must be a JWKS document, as a JSON string or an object")),
    };
    parsed.map_err(|jwks_error| error(field, jwks_error.to_string()))
}

/// Splits `http(s)://authority/path?query` into the fetch's `:authority` and `:path`.
pub fn split_http_uri(uri: &str) -> Result<(String, String), String> {
    // A URI from a discovery document may be very long, so messages show only its start.
    let masked_uri = crate::jws::truncate(&without_userinfo(uri), 256);
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| format!("{masked_uri:?} must start with https:// or http://"))?;
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) || rest.contains('#') {
        return Err(format!("{masked_uri:?} must not contain whitespace or a fragment"));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(format!("{masked_uri:?} has user info, which is not allowed; the filter sends no credentials to the JWKS host"));
    }
    if authority.is_empty() {
        return Err(format!("{masked_uri:?} has no host"));
    }
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    Ok((authority.to_owned(), path))
}

/// Returns whether `value` is a URL whose authority has user info (`scheme://user@host`).
fn has_userinfo(value: &str) -> bool {
    let Some(rest) = value.find("://").and_then(|at| value.get(at + 3..)) else {
        return false;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.get(..authority_end).is_some_and(|authority| authority.contains('@'))
}

/// Returns `uri` with any user info (`user:password@`) replaced by `***@`. Error messages use
/// it, so a password never reaches a log line, even in a URI rejected for containing it.
fn without_userinfo(uri: &str) -> String {
    // Malformed URIs such as "http:/user:pw@host" count too, so everything from the first ':'
    // to the last '@' is masked, which may also hide part of a path.
    let Some(at) = uri.rfind('@') else {
        return uri.to_owned();
    };
    let start = uri.find(':').filter(|colon| *colon < at).map_or(0, |colon| colon + 1);
    let start = start + uri.get(start..at).map_or(0, |between| between.len() - between.trim_start_matches('/').len());
    format!("{}***@{}", uri.get(..start).unwrap_or_default(), uri.get(at + 1..).unwrap_or_default())
}

/// Tracks which members of a JSON object were read, to report the rest as unknown.
pub(crate) struct ObjectReader<'a> {
    map: &'a Map<String, Value>,
    pub(crate) path: String,
    read: Vec<&'static str>,
}

impl<'a> ObjectReader<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>, path: String) -> Self {
        ObjectReader {
            map,
            path,
            read: Vec::new(),
        }
    }

    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.read.push(key);
        self.map.get(key)
    }

    pub(crate) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Adds the members that were never read to `unknown_fields`. A likely typo gets the closest
    /// known name, because an ignored `requried_scopes` silently drops the scope requirement.
    pub(crate) fn collect_unknown(&self, unknown_fields: &mut Vec<String>) {
        for key in self.map.keys() {
            if self.read.contains(&key.as_str()) {
                continue;
            }
            match closest_known(key, &self.read) {
                Some(known) => unknown_fields.push(format!("{} (did you mean {known}?)", self.field(key))),
                None => unknown_fields.push(self.field(key)),
            }
        }
    }
}

/// Returns the name in `known` nearest to `key` by edit distance, if at most two edits and
/// fewer than half of the key's characters apart, or else the one name that is `key` with a
/// unit suffix (`timeout` for `timeout_ms`). Keys that start with `_` are Higress's own and get
/// no suggestion.
fn closest_known(key: &str, known: &[&'static str]) -> Option<&'static str> {
    if key.starts_with('_') {
        return None;
    }
    let with_unit: Vec<&'static str> = ["_ms", "_seconds"]
        .iter()
        .filter_map(|unit| known.iter().copied().find(|name| name.strip_suffix(unit) == Some(key)))
        .collect();
    if let [only] = with_unit.as_slice() {
        return Some(only);
    }
    let key_length = key.chars().count();
    known
        .iter()
        .map(|name| (edit_distance(key, name), *name))
        .filter(|(distance, _)| *distance <= 2 && *distance * 2 < key_length)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance between two strings, counted in characters.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    let mut current = vec![0; right.len() + 1];
    for (i, left_char) in left.chars().enumerate() {
        current.fill(0);
        if let Some(first) = current.first_mut() {
            *first = i + 1;
        }
        for (j, right_char) in right.iter().enumerate() {
            let substitution = previous.get(j).copied().unwrap_or_default() + usize::from(left_char != *right_char);
            let deletion = previous.get(j + 1).copied().unwrap_or_default() + 1;
            let insertion = current.get(j).copied().unwrap_or_default() + 1;
            if let Some(cell) = current.get_mut(j + 1) {
                *cell = substitution.min(deletion).min(insertion);
            }
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous.last().copied().unwrap_or_default()
}

pub(crate) fn error(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        message: message.into(),
    }
}

pub(crate) fn non_empty_string(value: Option<&Value>, field: &str, what: &str) -> Result<String, ConfigError> {
    match value {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        Some(Value::String(_)) => Err(error(field, format!("must not be empty; expected {what}"))),
        // The value is not printed, because an API key put in an array must not reach
        // the log through this message.
        Some(other) => Err(error(field, format!("must be a string ({what}), got {}", json_kind(other)))),
        None => Err(error(field, format!("is missing; expected {what}"))),
    }
}

fn bounded_u64(value: &Value, field: &str, unit: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match value.as_u64() {
        Some(number) if (min..=max).contains(&number) => Ok(number),
        _ => Err(error(
            field,
            format!("must be a whole number of {unit} from {min} to {max}, got {}", describe_value(value)),
        )),
    }
}

pub(crate) fn boolean(value: Option<&Value>, field: &str, default: bool) -> Result<bool, ConfigError> {
    match value {
        None => Ok(default),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(other) => Err(error(field, format!("must be true or false, got {}", describe_value(other)))),
    }
}

/// Names the JSON type of `value`, for messages that must not show the value itself.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Shows a wrong value in an error: numbers, booleans and null as they are, a string shortened,
/// and only the type of an array or object, which could hold anything.
fn describe_value(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) => json_kind(value).to_owned(),
        Value::String(text) => format!("{:?}", crate::jws::truncate(text, 64)),
        scalar => scalar.to_string(),
    }
}

/// Checks an issuer or audience, which tokens must match exactly: no whitespace at either end
/// (a copy-paste slip that would make every token fail), and no placeholder.
fn check_identifier(value: &str, field: &str) -> Result<(), ConfigError> {
    let masked = without_userinfo(value);
    if value.trim() != value {
        return Err(error(
            field,
            format!("{masked:?} has whitespace at the start or end; tokens never do, so remove it"),
        ));
    }
    if has_userinfo(value) {
        return Err(error(field, format!("{masked:?} has user info (user:password@), which no issuer or audience URL contains")));
    }
    reject_placeholder(value, field)
}

/// Rejects a value that still contains a documentation placeholder such as `<instance>`, which
/// no issuer, audience or URL from the IDaaS console contains.
fn reject_placeholder(value: &str, field: &str) -> Result<(), ConfigError> {
    let Some(start) = value.find('<') else {
        return Ok(());
    };
    let Some(length) = value.get(start..).and_then(|rest| rest.find('>')) else {
        return Ok(());
    };
    let placeholder = value.get(start..=start + length).unwrap_or_default();
    Err(error(
        field,
        format!("contains the placeholder {placeholder:?}; replace it with the value from the IDaaS console"),
    ))
}

/// Reads an array of non-empty strings.
pub(crate) fn string_list(value: &Value, field: &str) -> Result<Vec<String>, ConfigError> {
    let Value::Array(items) = value else {
        return Err(error(field, format!("must be an array of strings, got {}", json_kind(value))));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| non_empty_string(Some(item), &format!("{field}[{index}]"), "a non-empty string"))
        .collect()
}

pub(crate) fn scope_list(value: &Value, field: &str) -> Result<Vec<String>, ConfigError> {
    let Value::Array(items) = value else {
        return Err(error(field, "must be an array of scope strings"));
    };
    let mut scopes = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(scope) if !scope.is_empty() && !scope.chars().any(char::is_whitespace) => {
                scopes.push(scope.clone());
            }
            _ => {
                return Err(error(
                    &format!("{field}[{index}]"),
                    format!("must be one non-empty scope value without spaces, got {item}"),
                ))
            }
        }
    }
    Ok(scopes)
}

fn check_unique(
    providers: &[Provider],
    key: impl Fn(&Provider) -> &String,
    name: &str,
) -> Result<(), ConfigError> {
    for (index, provider) in providers.iter().enumerate() {
        if providers.iter().take(index).any(|earlier| key(earlier) == key(provider)) {
            return Err(error(
                &format!("providers[{index}].{name}"),
                format!("{:?} is used by an earlier provider; each {name} must be unique", key(provider)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519_JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"e1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn remote_provider() -> Value {
        serde_json::json!({
            "name": "idaas",
            "issuer": "https://example.aliyunidaas.com/api/v2/iauths_system/oauth2",
            "audiences": ["api://model-studio"],
            "remote_jwks": {
                "cluster": "idaas",
                "uri": "https://example.aliyunidaas.com/api/v2/iauths_system/oauth2/jwks",
            }
        })
    }

    fn config_with(provider: Value) -> Value {
        serde_json::json!({ "providers": [provider], "required_scopes": ["model.invoke"] })
    }

    fn parse(value: &Value) -> Result<ParsedConfig, ConfigError> {
        parse_config(value.to_string().as_bytes())
    }

    fn field_of(value: &Value) -> String {
        parse(value).map_or_else(|e| e.field, |_| panic!("accepted {value}"))
    }

    #[test]
    fn remote_provider_gets_defaults() {
        let parsed = parse(&config_with(remote_provider())).unwrap();
        let config = parsed.config;
        assert_eq!(config.clock_skew_seconds, 60);
        assert!(!config.keep_token);
        assert_eq!(config.required_scopes, vec!["model.invoke".to_owned()]);
        let JwksSource::Remote(remote) = &config.providers[0].jwks else { panic!() };
        assert_eq!(remote.authority, "example.aliyunidaas.com");
        assert_eq!(remote.path, "/api/v2/iauths_system/oauth2/jwks");
        assert_eq!(remote.timeout_ms, 1500);
        assert_eq!(remote.cache_duration_seconds, 600);
    }

    #[test]
    fn local_jwks_as_string_or_object_is_accepted() {
        let mut provider = remote_provider();
        provider.as_object_mut().unwrap().remove("remote_jwks");
        provider["local_jwks"] = Value::String(ED25519_JWKS.to_owned());
        assert!(parse(&config_with(provider.clone())).is_ok());
        provider["local_jwks"] = serde_json::from_str(ED25519_JWKS).unwrap();
        assert!(parse(&config_with(provider)).is_ok());
    }

    #[test]
    fn bad_json_is_rejected() {
        let result = parse_config(b"{\"providers\": [");
        assert!(result.unwrap_err().message.contains("not valid JSON"));
    }

    #[test]
    fn empty_object_needs_a_provider() {
        assert_eq!(field_of(&serde_json::json!({})), "providers");
    }

    #[test]
    fn missing_issuer_is_rejected() {
        let mut provider = remote_provider();
        provider.as_object_mut().unwrap().remove("issuer");
        assert_eq!(field_of(&config_with(provider)), "providers[0].issuer");
    }

    #[test]
    fn empty_audiences_are_rejected() {
        let mut provider = remote_provider();
        provider["audiences"] = serde_json::json!([]);
        let err = parse(&config_with(provider)).unwrap_err();
        assert_eq!(err.field, "providers[0].audiences");
        assert!(err.message.contains("Resource Server Identifier"));
    }

    #[test]
    fn local_jwks_beside_remote_is_bootstrap() {
        let mut provider = remote_provider();
        provider["local_jwks"] = Value::String(ED25519_JWKS.to_owned());
        let config = parse(&config_with(provider)).unwrap().config;
        let JwksSource::Remote(remote) = &config.providers[0].jwks else { panic!() };
        assert_eq!(remote.bootstrap.as_ref().map(|set| set.keys.len()), Some(1));
    }

    #[test]
    fn remote_and_discovery_together_are_rejected() {
        let mut provider = remote_provider();
        provider["discovery"] = serde_json::json!({"cluster": "c", "uri": "https://x/.well-known/openid-configuration"});
        let err = parse(&config_with(provider)).unwrap_err();
        assert_eq!(err.field, "providers[0]");
        assert!(err.message.contains("not both"));
    }

    #[test]
    fn discovery_provider_is_remote() {
        let mut provider = remote_provider();
        provider.as_object_mut().unwrap().remove("remote_jwks");
        provider["discovery"] = serde_json::json!({"cluster": "c", "uri": "https://x/.well-known/openid-configuration"});
        let config = parse(&config_with(provider)).unwrap().config;
        let JwksSource::Remote(remote) = &config.providers[0].jwks else { panic!() };
        assert!(remote.discovery);
        assert_eq!(remote.path, "/.well-known/openid-configuration");
    }

    #[test]
    fn life_cycle_settings_have_defaults_and_bounds() {
        let config = parse(&config_with(remote_provider())).unwrap().config;
        let JwksSource::Remote(remote) = &config.providers[0].jwks else { panic!() };
        assert_eq!(remote.max_stale_seconds, 86_400);
        assert_eq!(remote.kid_refetch_min_interval_seconds, 30);
        assert_eq!(remote.startup_wait_ms, 3000);

        let mut provider = remote_provider();
        provider["remote_jwks"]["kid_refetch_min_interval_seconds"] = serde_json::json!(0);
        assert_eq!(field_of(&config_with(provider)), "providers[0].remote_jwks.kid_refetch_min_interval_seconds");
        let mut provider = remote_provider();
        provider["remote_jwks"]["startup_wait_ms"] = serde_json::json!(120_000);
        assert_eq!(field_of(&config_with(provider)), "providers[0].remote_jwks.startup_wait_ms");
    }

    #[test]
    fn neither_jwks_source_is_rejected() {
        let mut provider = remote_provider();
        provider.as_object_mut().unwrap().remove("remote_jwks");
        assert_eq!(field_of(&config_with(provider)), "providers[0]");
    }

    #[test]
    fn local_jwks_without_usable_key_is_rejected() {
        let mut provider = remote_provider();
        provider.as_object_mut().unwrap().remove("remote_jwks");
        provider["local_jwks"] = Value::String(r#"{"keys":[{"kty":"oct","k":"AA"}]}"#.to_owned());
        let err = parse(&config_with(provider)).unwrap_err();
        assert_eq!(err.field, "providers[0].local_jwks");
        assert!(err.message.contains("no usable"));
    }

    #[test]
    fn negative_durations_are_rejected() {
        let mut provider = remote_provider();
        provider["remote_jwks"]["cache_duration_seconds"] = serde_json::json!(-5);
        assert_eq!(field_of(&config_with(provider.clone())), "providers[0].remote_jwks.cache_duration_seconds");
        provider["remote_jwks"]["cache_duration_seconds"] = serde_json::json!(600);
        provider["remote_jwks"]["timeout_ms"] = serde_json::json!(-1);
        assert_eq!(field_of(&config_with(provider)), "providers[0].remote_jwks.timeout_ms");
        let mut config = config_with(remote_provider());
        config["clock_skew_seconds"] = serde_json::json!(-60);
        assert_eq!(field_of(&config), "clock_skew_seconds");
    }

    #[test]
    fn oversized_clock_skew_is_rejected() {
        let mut config = config_with(remote_provider());
        config["clock_skew_seconds"] = serde_json::json!(86_400);
        assert_eq!(field_of(&config), "clock_skew_seconds");
    }

    #[test]
    fn jwks_uri_must_be_http() {
        let mut provider = remote_provider();
        provider["remote_jwks"]["uri"] = serde_json::json!("ftp://x/jwks");
        assert_eq!(field_of(&config_with(provider.clone())), "providers[0].remote_jwks.uri");
        provider["remote_jwks"]["uri"] = serde_json::json!("https:///jwks");
        assert_eq!(field_of(&config_with(provider)), "providers[0].remote_jwks.uri");
    }

    #[test]
    fn jwks_uri_without_path_fetches_root() {
        assert_eq!(split_http_uri("http://127.0.0.1:9000"), Ok(("127.0.0.1:9000".into(), "/".into())));
        assert_eq!(split_http_uri("http://h?x=1"), Ok(("h".into(), "/?x=1".into())));
    }

    #[test]
    fn scope_with_space_is_rejected() {
        let mut config = config_with(remote_provider());
        config["required_scopes"] = serde_json::json!(["a b"]);
        assert_eq!(field_of(&config), "required_scopes[0]");
    }

    #[test]
    fn duplicate_issuer_is_rejected() {
        let mut second = remote_provider();
        second["name"] = serde_json::json!("other");
        let config = serde_json::json!({ "providers": [remote_provider(), second] });
        assert_eq!(field_of(&config), "providers[1].issuer");
    }

    #[test]
    fn token_policy_options_are_parsed() {
        let mut provider = remote_provider();
        provider["allowed_algorithms"] = serde_json::json!(["RS256"]);
        provider["require_typ"] = serde_json::json!("at+jwt");
        provider["max_token_lifetime_seconds"] = serde_json::json!(3600);
        provider["client_ids"] = serde_json::json!(["app_ci"]);
        let config = parse(&config_with(provider)).unwrap().config;
        let provider = &config.providers[0];
        assert_eq!(provider.allowed_algorithms, vec![Algorithm::RS256]);
        assert_eq!(provider.require_typ.as_deref(), Some("at+jwt"));
        assert_eq!(provider.max_token_lifetime_seconds, Some(3600));
        assert_eq!(provider.client_ids, Some(vec!["app_ci".to_owned()]));
        assert_eq!(provider.subjects, None);
    }

    #[test]
    fn unsupported_allowed_algorithm_is_rejected() {
        let mut provider = remote_provider();
        provider["allowed_algorithms"] = serde_json::json!(["RS256", "HS256"]);
        let err = parse(&config_with(provider)).unwrap_err();
        assert_eq!(err.field, "providers[0].allowed_algorithms");
        assert!(err.message.contains("HS256"));
    }

    #[test]
    fn keep_token_must_be_boolean() {
        let mut config = config_with(remote_provider());
        config["keep_token"] = serde_json::json!("yes");
        assert_eq!(field_of(&config), "keep_token");
    }

    #[test]
    fn userinfo_in_uri_is_rejected_without_echoing_it() {
        let err = split_http_uri("https://user:secretpw@idp.example/jwks").unwrap_err();
        assert!(err.contains("user info"), "{err}");
        assert!(!err.contains("secretpw"), "{err}");
        assert!(err.contains("https://***@idp.example/jwks"), "{err}");
        let err = split_http_uri("https://user:secretpw@idp.example/a b").unwrap_err();
        assert!(!err.contains("secretpw"), "{err}");
        assert_eq!(without_userinfo("http:/user:pw@h/jwks"), "http:/***@h/jwks");
        assert_eq!(without_userinfo("user:pw@h"), "user:***@h");
        assert_eq!(without_userinfo("https://idp.example/jwks"), "https://idp.example/jwks");
    }

    #[test]
    fn issuer_with_surrounding_whitespace_is_rejected() {
        let mut provider = remote_provider();
        provider["issuer"] = serde_json::json!(" https://example.aliyunidaas.com/api/v2/iauths_system/oauth2");
        let err = parse(&config_with(provider)).unwrap_err();
        assert_eq!(err.field, "providers[0].issuer");
        assert!(err.message.contains("whitespace"), "{}", err.message);

        let mut provider = remote_provider();
        provider["audiences"] = serde_json::json!(["api://model-studio\n"]);
        assert_eq!(field_of(&config_with(provider)), "providers[0].audiences[0]");
    }

    #[test]
    fn wrong_types_do_not_echo_strings_in_containers() {
        let mut config = config_with(remote_provider());
        config["upstream_authorization"] = serde_json::json!(["Bearer sk-live-secret"]);
        let err = parse(&config).unwrap_err();
        assert!(!err.message.contains("sk-live-secret"), "{}", err.message);
        assert!(err.message.contains("got an array"), "{}", err.message);

        let mut provider = remote_provider();
        provider["remote_jwks"]["uri"] = serde_json::json!(["https://user:secretpw@idp.example/jwks"]);
        let err = parse(&config_with(provider)).unwrap_err();
        assert!(!err.message.contains("secretpw"), "{}", err.message);

        let mut provider = remote_provider();
        provider["issuer"] = serde_json::json!("https://user:secretpw@idp.example/oauth2");
        let err = parse(&config_with(provider)).unwrap_err();
        assert_eq!(err.field, "providers[0].issuer");
        assert!(!err.message.contains("secretpw"), "{}", err.message);
        assert!(err.message.contains("user info"), "{}", err.message);

        let mut provider = remote_provider();
        provider["audiences"] = serde_json::json!(["svc@example"]);
        assert!(parse(&config_with(provider)).is_ok(), "an audience that is not a URL may contain '@'");
    }

    #[test]
    fn duplicate_member_is_rejected() {
        let text = br#"{"providers": [], "required_scopes": ["model.invoke"], "required_scopes": []}"#;
        let err = parse_root(text).unwrap_err();
        assert!(err.message.contains("required_scopes"), "{}", err.message);
        assert!(err.message.contains("duplicate"), "{}", err.message);
    }

    #[test]
    fn misspelled_field_gets_a_suggestion() {
        let mut config = config_with(remote_provider());
        config["requried_scopes"] = serde_json::json!(["model.invoke"]);
        config["providers"][0]["allowed_algorithm"] = serde_json::json!(["RS256"]);
        let parsed = parse(&config).unwrap();
        assert!(parsed.unknown_fields.contains(&"requried_scopes (did you mean required_scopes?)".to_owned()), "{:?}", parsed.unknown_fields);
        assert!(
            parsed.unknown_fields.contains(&"providers[0].allowed_algorithm (did you mean allowed_algorithms?)".to_owned()),
            "{:?}",
            parsed.unknown_fields
        );
    }

    #[test]
    fn field_without_its_unit_gets_a_suggestion() {
        let mut config = config_with(remote_provider());
        config["providers"][0]["remote_jwks"]["timeout"] = serde_json::json!(500);
        config["clock_skew"] = serde_json::json!(30);
        let parsed = parse(&config).unwrap();
        let expected = [
            "providers[0].remote_jwks.timeout (did you mean timeout_ms?)",
            "clock_skew (did you mean clock_skew_seconds?)",
        ];
        for field in expected {
            assert!(parsed.unknown_fields.contains(&field.to_owned()), "{field}: {:?}", parsed.unknown_fields);
        }
    }

    #[test]
    fn audiences_of_wrong_type_name_the_type() {
        let mut config = config_with(remote_provider());
        config["providers"][0]["audiences"] = serde_json::json!("api://model-studio");
        let err = parse(&config).unwrap_err();
        assert_eq!(err.field, "providers[0].audiences");
        assert!(err.message.contains("got a string"), "{}", err.message);
    }

    #[test]
    fn placeholders_are_rejected() {
        fn assert_error(config: Value, field: &str, message: &str) {
            let err = parse(&config).unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.message.contains(message), "{}", err.message);
        }

        let mut provider = remote_provider();
        provider["issuer"] = serde_json::json!("https://<instance>.aliyunidaas.com/api/v2/iauths_system/oauth2");
        assert_error(config_with(provider), "providers[0].issuer", "placeholder \"<instance>\"");

        let mut provider = remote_provider();
        provider["audiences"] = serde_json::json!(["<Resource Server Identifier>"]);
        assert_error(config_with(provider), "providers[0].audiences[0]", "placeholder \"<Resource Server Identifier>\"");

        let mut provider = remote_provider();
        provider["remote_jwks"]["uri"] = serde_json::json!("https://<instance>.aliyunidaas.com/api/v2/iauths_system/oauth2/jwks");
        assert_error(config_with(provider), "providers[0].remote_jwks.uri", "replace it with the value from the IDaaS console");
    }

    #[test]
    fn distant_unknown_field_gets_no_suggestion() {
        assert_eq!(closest_known("colour", &["issuer", "audiences", "name"]), None);
        assert_eq!(closest_known("_rules_", &["rules"]), None);
        assert_eq!(closest_known("uri", &["url"]), Some("url"));
        assert_eq!(edit_distance("requried_scopes", "required_scopes"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn unknown_fields_are_reported_not_rejected() {
        let mut config = config_with(remote_provider());
        config["_rules_"] = serde_json::json!([]);
        config["providers"][0]["colour"] = serde_json::json!("blue");
        let parsed = parse(&config).unwrap();
        assert_eq!(parsed.unknown_fields, vec!["providers[0].colour".to_owned(), "_rules_".to_owned()]);
    }
}
