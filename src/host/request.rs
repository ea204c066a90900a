//! The request context: authenticates each request and carries out the verdict. A request
//! whose provider has no keys yet is paused here and finished later by `resume_waiting`.

use std::cell::RefCell;
use std::rc::Rc;

use log::{debug, error, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::root::{now_ms, KeysAt, ProviderKeys, Shared, WaitingRequest, TICK_PERIOD_MS};
use crate::authenticator::{self, Denial, RequestAuth, Verdict};
use crate::config::{FilterConfig, JwksSource};
use crate::jwks_cache::LOST_CALLBACK_GRACE_MS;
use crate::reason::{Reason, Rejection};
use crate::response;


pub struct FilterRequest {
    context_id: u32,
    shared: Option<Rc<RefCell<Shared>>>,
}

impl FilterRequest {
    pub fn new(context_id: u32, shared: Option<Rc<RefCell<Shared>>>) -> Self {
        FilterRequest { context_id, shared }
    }
}

/// The request data the filter reads, taken from the headers once.
struct RequestInfo {
    authorization: Vec<String>,
    authority: String,
    request_id: String,
}

impl RequestInfo {
    fn from_headers(headers: Vec<(String, String)>) -> Self {
        let mut info = RequestInfo {
            authorization: Vec::new(),
            authority: String::new(),
            request_id: String::new(),
        };
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("authorization") {
                info.authorization.push(value);
            } else if name == ":authority" {
                info.authority = value;
            } else if name.eq_ignore_ascii_case("x-request-id") {
                info.request_id = value;
            }
        }
        info
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
            return send_unavailable(&RequestInfo::from_headers(Vec::new()));
        };

        let info = match hostcalls::get_map(MapType::HttpRequestHeaders) {
            Ok(headers) => RequestInfo::from_headers(headers),
            Err(status) => {
                error!("request rejected: request headers could not be read ({status:?})");
                return send_unavailable(&RequestInfo::from_headers(Vec::new()));
            }
        };

        let now_ms = now_ms();
        let (verdict, config) = {
            let Ok(shared) = shared_cell.try_borrow() else {
                return send_unavailable(&info);
            };
            (authenticate(&shared, &info.authorization, now_ms), Rc::clone(&shared.config))
        };

        if let Verdict::WaitForKeys { provider_index, kid, wait_until_ms } = &verdict {
            let deadline_ms = wait_until_ms.unwrap_or_else(|| refetch_deadline_ms(&config, *provider_index, now_ms));
            if hold(&shared_cell, self.context_id, *provider_index, kid.as_deref(), deadline_ms, &info) {
                debug!(
                    "request held: provider={} waiting for {} request_id={}",
                    provider_name(&config, Some(*provider_index)),
                    kid.as_deref().map_or("the first key set".to_owned(), |kid| format!("a refetch for kid {:?}", crate::jws::truncate(kid, 64))),
                    info.request_id
                );
                return Action::Pause;
            }
            return send_unavailable(&info);
        }
        enforce(&config, verdict, &info)
    }
}

/// Registers a held request, and asks for a refetch when it waits for an unknown kid.
fn hold(shared_cell: &Rc<RefCell<Shared>>, context_id: u32, provider_index: usize, kid: Option<&str>, deadline_ms: u64, info: &RequestInfo) -> bool {
    let Ok(mut shared) = shared_cell.try_borrow_mut() else {
        return false;
    };
    if let (Some(kid), Some(ProviderKeys::Remote(remote))) = (kid, shared.keys.get_mut(provider_index)) {
        remote.cache.request_kid_refetch(kid);
    }
    shared.waiting.push(WaitingRequest {
        context_id,
        provider_index,
        authorization: info.authorization.clone(),
        authority: info.authority.clone(),
        request_id: info.request_id.clone(),
        deadline_ms,
    });
    true
}

fn authenticate(shared: &Shared, authorization: &[String], now_ms: u64) -> Verdict {
    let values: Vec<&str> = authorization.iter().map(String::as_str).collect();
    let keys = KeysAt {
        keys: &shared.keys,
        now_ms,
    };
    let request = RequestAuth {
        authorization: &values,
        now_seconds: i64::try_from(now_ms / 1000).unwrap_or(i64::MAX),
    };
    authenticator::authenticate(&shared.config, &keys, request)
}

/// Carries out a final verdict on the current effective context and returns the action for
/// the request. Every allowed or denied request leaves through here.
fn enforce(config: &FilterConfig, verdict: Verdict, info: &RequestInfo) -> Action {
    match verdict {
        Verdict::Allow(verified) => {
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
            if !config.keep_token {
                if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, "authorization", None) {
                    error!("request rejected: the Authorization header could not be removed ({status:?})");
                    return send_unavailable(info);
                }
            }
            Action::Continue
        }
        Verdict::Deny(denial) => {
            send_denial(config, &denial, info);
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
            send_denial(config, &denial, info);
            Action::Pause
        }
        Verdict::WaitForKeys { provider_index, kid: None, .. } => {
            let denial = unavailable_denial(Some(provider_index), "no key set arrived in time");
            send_denial(config, &denial, info);
            Action::Pause
        }
    }
}

fn send_denial(config: &FilterConfig, denial: &Denial, info: &RequestInfo) {
    debug!(
        "request denied: reason={} provider={} detail={} request_id={}",
        denial.rejection.reason.code(),
        provider_name(config, denial.provider_index),
        denial.rejection.detail,
        info.request_id
    );
    let reply = response::deny_response(denial, &info.authority, &config.required_scopes);
    let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
    if let Err(status) = hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes())) {
        warn!("could not send the {} response ({status:?})", reply.status);
    }
}

/// Answers 503 when the filter cannot evaluate the request at all.
fn send_unavailable(info: &RequestInfo) -> Action {
    let denial = unavailable_denial(None, "filter state unavailable");
    let reply = response::deny_response(&denial, &info.authority, &[]);
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

/// Finishes held requests of `provider_index` (all held requests when `None`) now that its
/// fetch has ended, successfully or not.
pub fn resume_waiting(shared_cell: &Rc<RefCell<Shared>>, provider_index: Option<usize>, now_ms: u64) {
    let ready = take_waiting(shared_cell, |waiting| {
        provider_index.is_none_or(|index| index == waiting.provider_index)
    });
    finish_waiting(shared_cell, ready, now_ms, false);
}

/// Finishes held requests whose deadline has passed: they are authenticated once more and
/// denied if they would still have to wait.
pub fn expire_waiting(shared_cell: &Rc<RefCell<Shared>>, now_ms: u64) {
    let expired = take_waiting(shared_cell, |waiting| now_ms >= waiting.deadline_ms);
    finish_waiting(shared_cell, expired, now_ms, true);
}

fn take_waiting(shared_cell: &Rc<RefCell<Shared>>, mut selected: impl FnMut(&WaitingRequest) -> bool) -> Vec<WaitingRequest> {
    let Ok(mut shared) = shared_cell.try_borrow_mut() else {
        return Vec::new();
    };
    let (taken, kept): (Vec<_>, Vec<_>) = shared.waiting.drain(..).partition(|waiting| selected(waiting));
    shared.waiting = kept;
    taken
}

fn finish_waiting(shared_cell: &Rc<RefCell<Shared>>, requests: Vec<WaitingRequest>, now_ms: u64, at_deadline: bool) {
    for waiting in requests {
        let info = RequestInfo {
            authorization: waiting.authorization,
            authority: waiting.authority,
            request_id: waiting.request_id,
        };
        let (verdict, config) = {
            let Ok(shared) = shared_cell.try_borrow() else {
                continue;
            };
            (authenticate(&shared, &info.authorization, now_ms), Rc::clone(&shared.config))
        };

        // Keys that arrived may still lack the token's kid, which can then wait for a refetch.
        if let Verdict::WaitForKeys { provider_index, kid, wait_until_ms } = &verdict {
            let deadline_ms = wait_until_ms.unwrap_or_else(|| refetch_deadline_ms(&config, *provider_index, now_ms));
            if !at_deadline
                && now_ms < deadline_ms
                && hold(shared_cell, waiting.context_id, *provider_index, kid.as_deref(), deadline_ms, &info)
            {
                continue;
            }
        }

        // The client may have gone away while its request was held.
        if hostcalls::set_effective_context(waiting.context_id).is_err() {
            continue;
        }
        if enforce(&config, verdict, &info) == Action::Continue {
            if let Err(status) = hostcalls::resume_http_request() {
                warn!("could not resume a held request ({status:?})");
            }
        }
    }
}

/// Returns how long a request may wait for a kid refetch: the fetch's timeout, the grace
/// before a lost callback counts as failed, and one tick for another worker's result.
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
