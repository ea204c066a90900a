//! The request context: picks the configuration and route requirements for each request,
//! authenticates it and carries out the verdict. A request whose keys are not there yet is
//! paused here, released by `release_waiting` when its fetch ends, and finished by `finish_due`.

use std::cell::RefCell;
use std::rc::Rc;

use log::{debug, error, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType, Status};

use super::metrics;
use super::root::{adopt_missing_keys, now_ms, KeySource, KeysAt, Shared, TICK_PERIOD_MS};
use crate::authenticator::{self, Denial, RequestAuth, Requirements, Verdict};
use crate::config::{FilterConfig, JwksSource};
use crate::extractor;
use crate::higress::RequestRoute;
use crate::jwks_cache::LOST_CALLBACK_GRACE_MS;
use crate::reason::{Reason, Rejection};
use crate::response;
use crate::route::{self, RouteAction, RouteRequest};
use crate::stats;
use crate::upstream;

/// The request data the filter reads, taken from the request headers with one host call.
///
/// All headers are read, not only `Authorization`: Envoy returns just the first copy of a
/// repeated header to `get_map_value`, and it joins repeated `Authorization` headers into one
/// value only on builds that register the header as inline. Reading the whole map returns every
/// copy on any build, so several `Authorization` headers are always rejected.
///
/// Values are bytes on the wire: HTTP allows obs-text (0x80 to 0xFF) in header values, so a
/// value that is not UTF-8 is converted lossily and can only fail the checks (a non-UTF-8
/// token becomes `token_malformed`).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    authorization: Vec<String>,
    authority: String,
    path: String,
    method: String,
    request_id: String,
    origin: String,
    preflight_method: String,
}

impl RequestInfo {
    /// Reads the headers of the current request.
    fn read() -> Result<Self, Status> {
        // Bytes, not text: the SDK's text getters panic on a value that is not UTF-8.
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders)?;
        let mut info = RequestInfo::default();
        for (name, bytes) in headers {
            // Envoy passes names in lower case, so the copy is made only for another host.
            let lowered;
            let name = if name.bytes().any(|byte| byte.is_ascii_uppercase()) {
                lowered = name.to_ascii_lowercase();
                lowered.as_str()
            } else {
                name.as_str()
            };
            let field = match name {
                "authorization" => {
                    info.authorization.push(header_text(bytes));
                    continue;
                }
                ":authority" => &mut info.authority,
                ":path" => &mut info.path,
                ":method" => &mut info.method,
                "x-request-id" => &mut info.request_id,
                "origin" => &mut info.origin,
                "access-control-request-method" => &mut info.preflight_method,
                _ => continue,
            };
            *field = header_text(bytes);
        }
        Ok(info)
    }

    /// Returns the path without its query string, for log lines: clients sometimes put
    /// credentials in the query.
    fn path_without_query(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// Returns whether the request is a CORS preflight: `OPTIONS` (methods are
    /// case-sensitive) with a non-empty `Origin` and `Access-Control-Request-Method`, and no
    /// `Authorization`. A browser never sends credentials on a preflight, so a request that
    /// carries them is authenticated like any other.
    fn is_cors_preflight(&self) -> bool {
        self.method == "OPTIONS"
            && !self.origin.is_empty()
            && !self.preflight_method.is_empty()
            && self.authorization.is_empty()
    }
}

/// Converts a header value to text, replacing bytes that are not UTF-8.
fn header_text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

/// The configuration and route rule a request falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Index into the plugin configurations (0 is the global one).
    config_index: usize,
    /// Index of the matching `rules` entry, if any.
    rule_index: Option<usize>,
}

/// Maximum number of requests one filter configuration keeps waiting for keys on a worker. A
/// request beyond it gets 503 `jwks_unavailable` at once, so a burst of tokens with unknown
/// kids cannot grow memory without bound.
pub const MAX_HELD_REQUESTS: usize = 1000;

/// Maximum number of held requests finished in one host callback. The rest wait for the next tick.
///
/// Envoy defers each local reply sent during a callback and runs the deferred replies nested in
/// one another once the callback returns, each re-entering the VM. On Envoy 1.40 about 300 of
/// them overflowed V8's stack, which kills the VM for good, so each callback sends far fewer.
pub const MAX_FINISHED_PER_CALLBACK: usize = 50;

/// Longest path kept for a held request's log line, in characters.
const HELD_PATH_CHARS: usize = 128;

/// A request paused until its keys arrive or a refetch for its kid ends.
pub struct WaitingRequest {
    pub context_id: u32,
    /// Key source the request waits for.
    pub source_index: usize,
    placement: Placement,
    info: RequestInfo,
    /// Time at which the request gets its final response even if the fetch has not ended.
    deadline_ms: u64,
    /// Whether the fetch it waited for has ended, so it is finished at the next chance.
    released: bool,
}

impl WaitingRequest {
    fn is_due(&self, now_ms: u64) -> bool {
        self.released || now_ms >= self.deadline_ms
    }
}

/// Result of `hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldOutcome {
    Held,
    /// The configuration already keeps `MAX_HELD_REQUESTS` waiting on this worker.
    Full,
    /// The filter state was already borrowed, which should not happen.
    Busy,
}

pub struct FilterRequest {
    context_id: u32,
    shared: Option<Rc<RefCell<Shared>>>,
}

impl FilterRequest {
    pub fn new(context_id: u32, shared: Option<Rc<RefCell<Shared>>>) -> Self {
        FilterRequest { context_id, shared }
    }
}

impl Context for FilterRequest {
    fn on_done(&mut self) -> bool {
        if let Some(shared) = &self.shared {
            if let Ok(mut shared) = shared.try_borrow_mut() {
                shared.waiting.retain(|waiting| waiting.context_id != self.context_id);
            }
        }
        true
    }
}

impl HttpContext for FilterRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared_cell) = self.shared.clone() else {
            // on_configure failed, so the proxy should not run this filter; fail closed anyway.
            error!("request rejected: the filter has no valid configuration");
            return send_unavailable(&RequestInfo::default());
        };

        let info = match RequestInfo::read() {
            Ok(info) => info,
            Err(status) => {
                error!("request rejected: request headers could not be read ({status:?})");
                return send_unavailable(&RequestInfo::default());
            }
        };

        let Ok(shared) = shared_cell.try_borrow() else {
            return send_unavailable(&info);
        };
        let plugin = Rc::clone(&shared.plugin);
        for name in &shared.protected_headers {
            if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None) {
                error!("request rejected: incoming header {name} could not be removed ({status:?})");
                return send_unavailable(&info);
            }
        }
        // Higress rules select by route and cluster name; read those properties only if needed.
        let (route_name, cluster_name) = if plugin.rules.is_empty() {
            (None, None)
        } else {
            // Higress exposes `route_name` and `cluster_name`; Envoy 1.40 only the `xds.` forms.
            (
                property(&["route_name"]).or_else(|| property(&["xds", "route_name"])),
                property(&["cluster_name"]).or_else(|| property(&["xds", "cluster_name"])),
            )
        };
        // Higress rules may select by domain, which a joined Host header could fake. The
        // check runs before selection, so also when there is no global configuration.
        if !plugin.rules.is_empty() && !route::is_single_host(&info.authority) {
            let rejection = Rejection::new(Reason::AuthorityInvalid, route::NOT_SINGLE_HOST_DETAIL);
            return send_plain_denial(&Denial::without_provider(rejection), &info);
        }
        let selected = plugin.select(&RequestRoute {
            route_name: route_name.as_deref(),
            cluster_name: cluster_name.as_deref(),
            authority: &info.authority,
        });
        let Some((config_index, config)) = selected else {
            debug!("request passes: no configuration applies to it request_id={}", info.request_id);
            return Action::Continue;
        };
        drop(shared);
        let now_ms = now_ms();
        let adopted = match shared_cell.try_borrow_mut() {
            Ok(mut shared) => adopt_missing_keys(&mut shared, config_index, now_ms),
            Err(_) => Vec::new(),
        };
        if !adopted.is_empty() {
            for source_index in adopted {
                release_waiting(&shared_cell, source_index);
            }
            finish_due(&shared_cell, now_ms);
            // Resuming held requests switched the effective context; switch back to this one.
            if let Err(status) = hostcalls::set_effective_context(self.context_id) {
                error!("request rejected: could not return to its context ({status:?})");
                return Action::Pause;
            }
        }
        let Ok(shared) = shared_cell.try_borrow() else {
            return send_unavailable(&info);
        };
        let pass = handle(&shared, config_index, config, &info, now_ms);
        drop(shared);
        self.finish(&shared_cell, pass, info)
    }
}

/// The outcome of the first pass over a request.
enum FirstPass {
    Done(Action),
    Hold { source_index: usize, placement: Placement, provider_index: usize, kid: Option<String>, deadline_ms: u64 },
}

impl FilterRequest {
    fn finish(&self, shared_cell: &Rc<RefCell<Shared>>, pass: FirstPass, info: RequestInfo) -> Action {
        match pass {
            FirstPass::Done(action) => action,
            FirstPass::Hold { source_index, placement, provider_index, kid, deadline_ms } => {
                match hold(shared_cell, self.context_id, source_index, placement, kid.as_deref(), deadline_ms, &info) {
                    HoldOutcome::Held => {
                        log_held(shared_cell, placement, provider_index, kid.as_deref(), &info);
                        Action::Pause
                    }
                    HoldOutcome::Full => reject_over_cap(shared_cell, placement, provider_index, &info),
                    HoldOutcome::Busy => send_unavailable(&info),
                }
            }
        }
    }
}

/// Applies the CORS and route rules, and authenticates.
fn handle(shared: &Shared, config_index: usize, config: &FilterConfig, info: &RequestInfo, now_ms: u64) -> FirstPass {
    if config.bypass_cors_preflight && info.is_cors_preflight() {
        debug!("request passes: CORS preflight request_id={}", info.request_id);
        return FirstPass::Done(Action::Continue);
    }

    let route_request = RouteRequest::new(&info.path, &info.method, &info.authority);
    if !config.rules.is_empty() {
        if let Err(rejection) = route::check_rule_input(route_request.path, &info.authority) {
            let placement = Placement { config_index, rule_index: None };
            return FirstPass::Done(enforce(config, placement, Verdict::Deny(Denial::without_provider(rejection)), info));
        }
    }
    let rule_index = config.rules.iter().position(|rule| rule.matcher.matches(&route_request));
    if let Some(RouteAction::Skip) = rule_index.and_then(|index| config.rules.get(index)).map(|rule| &rule.action) {
        debug!("request passes: route rule {} skips validation request_id={}", rule_index.unwrap_or_default(), info.request_id);
        return FirstPass::Done(Action::Continue);
    }

    let placement = Placement { config_index, rule_index };
    let verdict = evaluate(shared, placement, &info.authorization, now_ms);
    if let Verdict::WaitForKeys { provider_index, kid, wait_until_ms } = verdict {
        let source_index = shared
            .provider_sources
            .get(config_index)
            .and_then(|sources| sources.get(provider_index))
            .copied()
            .unwrap_or_default();
        let deadline_ms = wait_until_ms.unwrap_or_else(|| refetch_deadline_ms(config, provider_index, now_ms));
        return FirstPass::Hold { source_index, placement, provider_index, kid, deadline_ms };
    }
    FirstPass::Done(enforce(config, placement, verdict, info))
}

/// Runs the verification path for a request placed under a configuration and rule.
fn evaluate(shared: &Shared, placement: Placement, authorization: &[String], now_ms: u64) -> Verdict {
    let Some(config) = shared.plugin.get(placement.config_index) else {
        return Verdict::Deny(unavailable_denial(None, "configuration index out of range"));
    };
    let values: Vec<&str> = authorization.iter().map(String::as_str).collect();
    let keys = KeysAt {
        sources: &shared.sources,
        provider_sources: shared
            .provider_sources
            .get(placement.config_index)
            .map_or(&[][..], Vec::as_slice),
        now_ms,
        backend: shared.backend_plans.get(placement.config_index).copied().unwrap_or_default(),
    };
    let request = RequestAuth {
        authorization: &values,
        now_seconds: i64::try_from(now_ms / 1000).unwrap_or(i64::MAX),
    };
    let requirements = Requirements::for_route(config, route_requirements(config, placement));
    match shared.jwt_cache.try_borrow_mut() {
        Ok(mut cache) => authenticator::authenticate_cached(
            config,
            &keys,
            request,
            &requirements,
            Some((&mut cache, placement.config_index)),
        ),
        Err(_) => authenticator::authenticate_with(config, &keys, request, &requirements),
    }
}

fn route_requirements(config: &FilterConfig, placement: Placement) -> Option<&route::RouteRequirements> {
    match placement.rule_index.and_then(|index| config.rules.get(index)).map(|rule| &rule.action) {
        Some(RouteAction::Require(requirements)) => Some(requirements),
        _ => None,
    }
}

/// Registers a held request, and requests a refetch when it waits for an unknown kid.
fn hold(
    shared_cell: &Rc<RefCell<Shared>>,
    context_id: u32,
    source_index: usize,
    placement: Placement,
    kid: Option<&str>,
    deadline_ms: u64,
    info: &RequestInfo,
) -> HoldOutcome {
    let Ok(mut shared) = shared_cell.try_borrow_mut() else {
        return HoldOutcome::Busy;
    };
    if shared.waiting.len() >= MAX_HELD_REQUESTS {
        return HoldOutcome::Full;
    }
    if let (Some(kid), Some(KeySource::Remote(remote))) = (kid, shared.sources.get_mut(source_index)) {
        remote.cache.request_kid_refetch(kid);
    }
    // Only log lines read the path of a held request, and they shorten it anyway.
    let mut info = info.clone();
    info.path = crate::jws::truncate(info.path_without_query(), HELD_PATH_CHARS);
    shared.waiting.push(WaitingRequest {
        context_id,
        source_index,
        placement,
        info,
        deadline_ms,
        released: false,
    });
    HoldOutcome::Held
}

/// Sends 503 `jwks_unavailable` to a request that `MAX_HELD_REQUESTS` kept from being held.
fn reject_over_cap(shared_cell: &Rc<RefCell<Shared>>, placement: Placement, provider_index: usize, info: &RequestInfo) -> Action {
    let Ok(shared) = shared_cell.try_borrow() else {
        return send_unavailable(info);
    };
    let Some(config) = shared.plugin.get(placement.config_index) else {
        return send_unavailable(info);
    };
    let detail = format!("{MAX_HELD_REQUESTS} requests of this filter configuration already wait for keys on this worker");
    let denial = Denial {
        rejection: Rejection::new(Reason::JwksUnavailable, detail),
        provider_index: Some(provider_index),
        retry_after_seconds: Some(1),
    };
    enforce(config, placement, Verdict::Deny(denial), info)
}

/// Logs at `debug` that a request is now held, and what for.
fn log_held(shared_cell: &Rc<RefCell<Shared>>, placement: Placement, provider_index: usize, kid: Option<&str>, info: &RequestInfo) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let Ok(shared) = shared_cell.try_borrow() else {
        return;
    };
    let provider = shared.plugin.get(placement.config_index).map_or("-", |config| provider_name(config, Some(provider_index)));
    let waiting_for = kid.map_or("the first key set".to_owned(), |kid| format!("a refetch for kid {:?}", crate::jws::truncate(kid, 64)));
    debug!("request held: provider={provider} waiting for {waiting_for} request_id={}", info.request_id);
}

/// Carries out a final verdict on the current effective context and returns the action for
/// the request. Every allowed or denied request leaves through here.
fn enforce(config: &FilterConfig, placement: Placement, verdict: Verdict, info: &RequestInfo) -> Action {
    let requirements = Requirements::for_route(config, route_requirements(config, placement));
    match verdict {
        Verdict::Allow(verified) => {
            metrics::count_allowed(provider_name(config, Some(verified.provider_index)));
            if log::log_enabled!(log::Level::Debug) {
                let client = verified
                    .claims
                    .get("client_id")
                    .or_else(|| verified.claims.get("sub"))
                    .and_then(|value| value.as_str())
                    .unwrap_or("-");
                debug!(
                    "request allowed: provider={} kid={} client={} request_id={}",
                    provider_name(config, Some(verified.provider_index)),
                    verified.kid.as_deref().unwrap_or("-"),
                    crate::jws::truncate(client, 64),
                    info.request_id
                );
            }
            match forward_to_upstream(config, &verified.claims, info) {
                Ok(()) => Action::Continue,
                Err(status) => {
                    error!("request rejected: upstream headers could not be set ({status:?})");
                    send_unavailable(info)
                }
            }
        }
        Verdict::Deny(denial) => {
            send_denial(config, &requirements, &denial, info);
            Action::Pause
        }
        // A request still waiting at its deadline: its kid stayed unknown, or no key set came.
        Verdict::WaitForKeys { provider_index, kid: Some(kid), .. } => {
            let denial = Denial {
                rejection: Rejection::new(
                    Reason::KeyNotFound,
                    format!("kid {:?} unknown; no refetch brought it in time", crate::jws::truncate(&kid, 64)),
                ),
                provider_index: Some(provider_index),
                retry_after_seconds: None,
            };
            send_denial(config, &requirements, &denial, info);
            Action::Pause
        }
        Verdict::WaitForKeys { provider_index, kid: None, .. } => {
            let denial = unavailable_denial(Some(provider_index), "no key set arrived in time");
            send_denial(config, &requirements, &denial, info);
            Action::Pause
        }
    }
}

/// Sets what an admitted request carries upstream: claim headers, the verified payload, and
/// either the gateway's credential or no `Authorization` at all (unless `keep_token`).
fn forward_to_upstream(
    config: &FilterConfig,
    claims: &serde_json::Map<String, serde_json::Value>,
    info: &RequestInfo,
) -> Result<(), proxy_wasm::types::Status> {
    let settings = &config.upstream;
    for entry in &settings.claims_to_headers {
        match claims.get(&entry.claim).and_then(upstream::claim_header_value) {
            Some(value) => hostcalls::set_map_value(MapType::HttpRequestHeaders, &entry.header, Some(&value))?,
            None => debug!("claim {} is missing or not a string, number, boolean or string array; {} not set", entry.claim, entry.header),
        }
    }
    if let Some(header) = &settings.forward_payload_header {
        let values: Vec<&str> = info.authorization.iter().map(String::as_str).collect();
        let payload = extractor::extract_bearer_token(&values)
            .ok()
            .and_then(|token| token.split('.').nth(1));
        if let Some(payload) = payload {
            hostcalls::set_map_value(MapType::HttpRequestHeaders, header, Some(payload))?;
        }
    }
    match &settings.authorization {
        Some(credential) => hostcalls::set_map_value(MapType::HttpRequestHeaders, "authorization", Some(credential.expose()))?,
        None if !config.keep_token => hostcalls::set_map_value(MapType::HttpRequestHeaders, "authorization", None)?,
        None => {}
    }
    Ok(())
}

fn send_denial(config: &FilterConfig, requirements: &Requirements<'_>, denial: &Denial, info: &RequestInfo) {
    let provider = match denial.provider_index {
        Some(_) => provider_name(config, denial.provider_index),
        None => stats::NO_PROVIDER,
    };
    metrics::count_denied(denial.rejection.reason.code(), provider);
    if log::log_enabled!(log::Level::Debug) {
        let values: Vec<&str> = info.authorization.iter().map(String::as_str).collect();
        let ids = extractor::extract_bearer_token(&values).map(crate::jws::token_ids).unwrap_or_default();
        let ids = if ids.is_empty() { ids } else { format!(" {ids}") };
        debug!(
            "request denied: reason={} provider={} route={} {}{ids} detail={} request_id={}",
            denial.rejection.reason.code(),
            provider_name(config, denial.provider_index),
            crate::jws::truncate(info.path_without_query(), 128),
            info.method,
            denial.rejection.detail,
            info.request_id
        );
    }
    let reply = response::deny_response(denial, &info.authority, requirements.required_scopes);
    let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
    if let Err(status) = hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes())) {
        warn!("could not send the {} response ({status:?})", reply.status);
    }
}

/// Sends 503 when the filter cannot evaluate the request at all.
fn send_unavailable(info: &RequestInfo) -> Action {
    send_plain_denial(&unavailable_denial(None, "filter state unavailable"), info)
}

/// Sends a denial that comes before any configuration is selected, so it names no provider
/// and no required scopes.
fn send_plain_denial(denial: &Denial, info: &RequestInfo) -> Action {
    metrics::count_denied(denial.rejection.reason.code(), stats::NO_PROVIDER);
    debug!(
        "request denied: reason={} detail={} request_id={}",
        denial.rejection.reason.code(),
        denial.rejection.detail,
        info.request_id
    );
    let reply = response::deny_response(denial, &info.authority, &[]);
    let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
    if let Err(status) = hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes())) {
        warn!("could not send the {} response ({status:?})", reply.status);
    }
    Action::Pause
}

fn unavailable_denial(provider_index: Option<usize>, detail: &'static str) -> Denial {
    Denial {
        rejection: Rejection::new(Reason::JwksUnavailable, detail),
        provider_index,
        retry_after_seconds: Some(1),
    }
}

/// Marks the held requests of `source_index` as released now that its fetch has ended,
/// successfully or not. The callback then finishes them with one `finish_due` call.
pub fn release_waiting(shared_cell: &Rc<RefCell<Shared>>, source_index: usize) {
    if let Ok(mut shared) = shared_cell.try_borrow_mut() {
        for waiting in shared.waiting.iter_mut().filter(|waiting| waiting.source_index == source_index) {
            waiting.released = true;
        }
    }
}

/// Finishes held requests that were released or whose deadline has passed, at most
/// `MAX_FINISHED_PER_CALLBACK` of them, oldest first. Requests at their deadline are
/// authenticated once more and denied if they would still have to wait.
///
/// The cap bounds the replies of one host callback only because each callback (a tick, an HTTP
/// call response, a request that adopted keys) calls this function once.
pub fn finish_due(shared_cell: &Rc<RefCell<Shared>>, now_ms: u64) {
    let due = take_due(shared_cell, now_ms);
    finish_waiting(shared_cell, due, now_ms);
}

fn take_due(shared_cell: &Rc<RefCell<Shared>>, now_ms: u64) -> Vec<WaitingRequest> {
    let Ok(mut shared) = shared_cell.try_borrow_mut() else {
        return Vec::new();
    };
    let mut due = Vec::new();
    let mut still_waiting = Vec::with_capacity(shared.waiting.len());
    for waiting in shared.waiting.drain(..) {
        if due.len() < MAX_FINISHED_PER_CALLBACK && waiting.is_due(now_ms) {
            due.push(waiting);
        } else {
            still_waiting.push(waiting);
        }
    }
    shared.waiting = still_waiting;
    due
}

fn finish_waiting(shared_cell: &Rc<RefCell<Shared>>, requests: Vec<WaitingRequest>, now_ms: u64) {
    for waiting in requests {
        let at_deadline = now_ms >= waiting.deadline_ms;
        let evaluated = shared_cell.try_borrow().ok().map(|shared| {
            (evaluate(&shared, waiting.placement, &waiting.info.authorization, now_ms), Rc::clone(&shared.plugin))
        });
        let Some((verdict, plugin)) = evaluated else {
            reject_unevaluated(waiting.context_id, &waiting.info);
            continue;
        };
        let Some(config) = plugin.get(waiting.placement.config_index) else {
            reject_unevaluated(waiting.context_id, &waiting.info);
            continue;
        };

        // Keys that arrived may still lack the token's kid, which can then wait for a refetch.
        if let Verdict::WaitForKeys { provider_index, kid, wait_until_ms } = &verdict {
            let deadline_ms = wait_until_ms.unwrap_or_else(|| refetch_deadline_ms(config, *provider_index, now_ms));
            if !at_deadline && now_ms < deadline_ms {
                let source_index = waiting.source_index;
                if hold(shared_cell, waiting.context_id, source_index, waiting.placement, kid.as_deref(), deadline_ms, &waiting.info) == HoldOutcome::Held {
                    continue;
                }
            }
        }

        // The client may have gone away while its request was held.
        if hostcalls::set_effective_context(waiting.context_id).is_err() {
            continue;
        }
        if enforce(config, waiting.placement, verdict, &waiting.info) == Action::Continue {
            if let Err(status) = hostcalls::resume_http_request() {
                warn!("could not resume a held request ({status:?})");
            }
        }
    }
}

/// Sends 503 to a held request that cannot be evaluated, so that it is never left without a
/// response. Neither cause (filter state in use, a configuration index out of range) is
/// expected.
fn reject_unevaluated(context_id: u32, info: &RequestInfo) {
    error!("held request rejected: the filter state or its configuration could not be read request_id={}", info.request_id);
    if hostcalls::set_effective_context(context_id).is_ok() {
        send_unavailable(info);
    }
}

/// Returns how long a request may wait for a kid refetch: the fetch's timeout, the grace
/// before a lost callback counts as failed, and two ticks for another worker's result.
fn refetch_deadline_ms(config: &FilterConfig, provider_index: usize, now_ms: u64) -> u64 {
    let timeout_ms = match config.providers.get(provider_index).map(|provider| &provider.jwks) {
        Some(JwksSource::Remote(remote)) => remote.timeout_ms,
        _ => 0,
    };
    now_ms
        .saturating_add(timeout_ms)
        .saturating_add(LOST_CALLBACK_GRACE_MS)
        .saturating_add(2 * TICK_PERIOD_MS)
}

fn provider_name(config: &FilterConfig, provider_index: Option<usize>) -> &str {
    provider_index
        .and_then(|index| config.providers.get(index))
        .map_or("-", |provider| provider.name.as_str())
}

/// Reads a host property as text; a property the host lacks is `None`, not an error.
fn property(path: &[&str]) -> Option<String> {
    match hostcalls::get_property(path.to_vec()) {
        Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
        _ => None,
    }
}
