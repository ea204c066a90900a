//! The root context: configuration, the per-provider key caches, JWKS fetches, and the
//! requests held while a provider's first key set is on its way.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use super::logger;
use super::request::{self, FilterRequest};
use crate::authenticator::{KeyAvailability, KeyStore};
use crate::config::{self, FilterConfig, JwksSource, RemoteJwks};
use crate::jwks::KeySet;
use crate::jwks_cache::{self, FetchError, RemoteKeyCache};

/// How often the root context checks for due fetches and overdue requests.
const TICK_PERIOD_MS: u64 = 500;

/// Keys of one provider as this worker holds them.
pub enum ProviderKeys {
    Local(Rc<KeySet>),
    Remote(RemoteKeyCache),
}

/// A request paused until its provider's first key set arrives.
pub struct WaitingRequest {
    pub context_id: u32,
    pub provider_index: usize,
    pub authorization: Vec<String>,
    pub authority: String,
    pub request_id: String,
    /// When the request is answered 503 even if the fetch has not ended.
    pub deadline_ms: u64,
}

/// State shared by the root context and every request context of one worker VM.
pub struct Shared {
    pub config: Rc<FilterConfig>,
    pub keys: Vec<ProviderKeys>,
    pub waiting: Vec<WaitingRequest>,
    /// JWKS fetches in flight: call token to provider index.
    in_flight: HashMap<u32, usize>,
}

/// The key store as seen at one instant.
pub struct KeysAt<'a> {
    pub keys: &'a [ProviderKeys],
    pub now_ms: u64,
}

impl KeyStore for KeysAt<'_> {
    fn keys(&self, provider_index: usize) -> KeyAvailability {
        match self.keys.get(provider_index) {
            Some(ProviderKeys::Local(key_set)) => KeyAvailability::Ready(Rc::clone(key_set)),
            Some(ProviderKeys::Remote(cache)) => cache.availability(self.now_ms),
            None => KeyAvailability::Unavailable {
                retry_after_seconds: 1,
            },
        }
    }
}

pub struct FilterRoot {
    shared: Option<Rc<RefCell<Shared>>>,
}

impl FilterRoot {
    pub fn new() -> Self {
        FilterRoot { shared: None }
    }

    fn load_configuration(&mut self, size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(status) => {
                error!("invalid configuration: the plugin configuration could not be read ({status:?})");
                return false;
            }
        };
        let parsed = match config::parse_config(&bytes) {
            Ok(parsed) => parsed,
            Err(config_error) => {
                error!("invalid configuration: {config_error}");
                return false;
            }
        };

        if !parsed.unknown_fields.is_empty() {
            warn!("ignoring unknown configuration fields: {}", parsed.unknown_fields.join(", "));
        }
        for (field, skipped) in &parsed.skipped_keys {
            warn!("{field}: skipping {skipped}");
        }

        let config = Rc::new(parsed.config);
        let keys = config
            .providers
            .iter()
            .map(|provider| match &provider.jwks {
                JwksSource::Local(key_set) => ProviderKeys::Local(Rc::new(key_set.clone())),
                JwksSource::Remote(_) => ProviderKeys::Remote(RemoteKeyCache::new()),
            })
            .collect();
        info!("configured: {}", describe(&config));

        self.shared = Some(Rc::new(RefCell::new(Shared {
            config,
            keys,
            waiting: Vec::new(),
            in_flight: HashMap::new(),
        })));
        true
    }

    /// Starts every fetch that is due and fails every fetch whose callback never came.
    fn drive_fetches(&self, shared_cell: &Rc<RefCell<Shared>>) {
        let now_ms = now_ms();
        let mut finished = Vec::new();
        {
            let Ok(mut shared) = shared_cell.try_borrow_mut() else {
                return;
            };
            let shared = &mut *shared;
            for (index, provider) in shared.config.providers.iter().enumerate() {
                let (JwksSource::Remote(remote), Some(ProviderKeys::Remote(cache))) =
                    (&provider.jwks, shared.keys.get_mut(index))
                else {
                    continue;
                };

                if cache.fetch_overdue(now_ms) {
                    shared.in_flight.retain(|_, provider_index| *provider_index != index);
                    report_failure(&provider.name, remote, cache, now_ms, &FetchError::TimedOut);
                    finished.push(index);
                }
                if !cache.fetch_due(now_ms) {
                    continue;
                }
                match dispatch_fetch(remote) {
                    Ok(token) => {
                        cache.fetch_started(now_ms, remote.timeout_ms);
                        shared.in_flight.insert(token, index);
                    }
                    Err(fetch_error) => {
                        report_failure(&provider.name, remote, cache, now_ms, &fetch_error);
                        finished.push(index);
                    }
                }
            }
        }
        for index in finished {
            request::resume_waiting(shared_cell, Some(index), now_ms);
        }
    }
}

impl Context for FilterRoot {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(shared_cell) = self.shared.clone() else {
            return;
        };
        let now_ms = now_ms();

        // Read the response before anything switches the effective context.
        let status = if num_headers == 0 {
            None
        } else {
            match hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status") {
                Ok(Some(status)) => status.parse::<u32>().ok(),
                _ => None,
            }
        };
        // An oversized body is never read; its size alone rejects it.
        let body = if body_size == 0 || body_size > jwks_cache::MAX_JWKS_BODY_BYTES {
            None
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten()
        };
        let outcome = jwks_cache::parse_fetch_response(status, body_size, body.as_deref());

        let provider_index = {
            let Ok(mut shared) = shared_cell.try_borrow_mut() else {
                return;
            };
            let shared = &mut *shared;
            let Some(index) = shared.in_flight.remove(&token_id) else {
                return;
            };
            let Some(provider) = shared.config.providers.get(index) else {
                return;
            };
            let (JwksSource::Remote(remote), Some(ProviderKeys::Remote(cache))) =
                (&provider.jwks, shared.keys.get_mut(index))
            else {
                return;
            };
            match outcome {
                Ok(parsed) => {
                    for skipped in &parsed.skipped {
                        warn!("provider {}: JWKS from {}: skipping {skipped}", provider.name, remote.uri);
                    }
                    info!(
                        "provider {}: loaded {} keys from {} ({} skipped); next refresh in {} s",
                        provider.name,
                        parsed.key_set.keys.len(),
                        remote.uri,
                        parsed.skipped.len(),
                        remote.cache_duration_seconds
                    );
                    cache.fetch_succeeded(now_ms, parsed.key_set, remote.cache_duration_seconds);
                }
                Err(fetch_error) => report_failure(&provider.name, remote, cache, now_ms, &fetch_error),
            }
            index
        };
        request::resume_waiting(&shared_cell, Some(provider_index), now_ms);
    }
}

impl RootContext for FilterRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        logger::refresh_level();
        info!("idaas-jwt-filter {} started", env!("CARGO_PKG_VERSION"));
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        logger::refresh_level();
        if !self.load_configuration(plugin_configuration_size) {
            return false;
        }
        if let Err(status) = hostcalls::set_tick_period(Duration::from_millis(TICK_PERIOD_MS)) {
            error!("could not set the tick period ({status:?}); remote key sets would never refresh");
            return false;
        }
        if let Some(shared) = self.shared.clone() {
            self.drive_fetches(&shared);
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        self.drive_fetches(&shared);
        request::expire_waiting(&shared, now_ms());
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FilterRequest::new(context_id, self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn dispatch_fetch(remote: &RemoteJwks) -> Result<u32, FetchError> {
    let headers = vec![
        (":method", "GET"),
        (":path", remote.path.as_str()),
        (":authority", remote.authority.as_str()),
        ("accept", "application/json"),
        ("user-agent", concat!("idaas-jwt-filter/", env!("CARGO_PKG_VERSION"))),
    ];
    hostcalls::dispatch_http_call(
        &remote.cluster,
        headers,
        None,
        Vec::new(),
        Duration::from_millis(remote.timeout_ms),
    )
    .map_err(|status| {
        FetchError::Dispatch(format!(
            "host returned {status:?}; check that cluster {:?} exists",
            remote.cluster
        ))
    })
}

fn report_failure(provider: &str, remote: &RemoteJwks, cache: &mut RemoteKeyCache, now_ms: u64, fetch_error: &FetchError) {
    let retry_ms = cache.fetch_failed(now_ms);
    let keeping = if cache.key_count() > 0 {
        format!("keeping the {} cached keys", cache.key_count())
    } else {
        "no keys loaded yet".to_owned()
    };
    warn!(
        "provider {provider}: JWKS fetch from {} via cluster {} failed: {fetch_error}; {keeping}; retry {} in {} ms",
        remote.uri,
        remote.cluster,
        cache.consecutive_failures() + 1,
        retry_ms
    );
}

fn describe(config: &FilterConfig) -> String {
    let providers: Vec<String> = config
        .providers
        .iter()
        .map(|provider| {
            let source = match &provider.jwks {
                JwksSource::Remote(remote) => format!("remote JWKS {} via cluster {}", remote.uri, remote.cluster),
                JwksSource::Local(key_set) => format!("local JWKS with {} keys", key_set.keys.len()),
            };
            format!(
                "provider {} (issuer {}, audiences [{}], {source})",
                provider.name,
                provider.issuer,
                provider.audiences.join(", ")
            )
        })
        .collect();
    format!(
        "{}; required_scopes [{}]; clock_skew_seconds {}; keep_token {}",
        providers.join("; "),
        config.required_scopes.join(" "),
        config.clock_skew_seconds,
        config.keep_token
    )
}

/// Returns the host clock in milliseconds since the Unix epoch. If the host cannot tell the
/// time, returns `u64::MAX`, so every token counts as expired: failing closed.
pub fn now_ms() -> u64 {
    match hostcalls::get_current_time() {
        Ok(time) => time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
        Err(status) => {
            error!("host clock unavailable ({status:?}); treating every token as expired");
            u64::MAX
        }
    }
}
