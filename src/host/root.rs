//! The root context: configuration, the per-provider key caches, JWKS fetches coordinated
//! with the other workers, and the requests held while keys are on their way.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};
use ring::rand::{SecureRandom, SystemRandom};

use super::backend;
use super::logger;
use super::metrics;
use super::request::{self, FilterRequest, WaitingRequest};
use crate::authenticator::{KeyAvailability, KeyStore};
use crate::config::{FilterConfig, JwksSource, Provider, RemoteJwks};
use crate::higress::{self, PluginConfig};
use crate::discovery::{self, JwksLocation};
use crate::fetch_lease::{self, Acquire, PublishedKeys, SharedData, SharedKeys};
use crate::algorithm::Algorithm;
use crate::jwks::{self, Jwk, KeySet};
use crate::jwt_cache::JwtCache;
use crate::signature::{BackendPlan, SignatureBackend, HOST_ALGORITHMS};
use crate::stats;
use crate::jwks_cache::{self, FetchCause, FetchError, KeyState, RemoteKeyCache, UnknownKidDecision};

/// Period of the root context tick, which adopts keys fetched by other workers, starts due
/// fetches and finishes overdue held requests.
pub const TICK_PERIOD_MS: u64 = 250;
/// Period of the tick while a remote source has no keys yet or requests are held. The first
/// tick after configure then starts the first fetches soon after Envoy's clusters are ready.
/// A worker also adopts keys that another thread fetched within this time, not a whole
/// `TICK_PERIOD_MS` later.
const FAST_TICK_MS: u64 = 20;

/// A remote key set in one worker's view. Providers (in any configuration) that fetch from
/// the same cluster and URI share one.
pub struct RemoteSource {
    /// Name of the first provider that uses it, for logs.
    name: String,
    /// Issuer a discovery document must name.
    issuer: String,
    remote: RemoteJwks,
    pub cache: RemoteKeyCache,
    shared_keys: SharedKeys,
    /// CAS token of the published key set this worker last adopted.
    seen_cas: Option<u32>,
    /// Location of the key set, once a discovery document named it.
    location: Option<JwksLocation>,
}

impl RemoteSource {
    /// Returns the URL the key set comes from: the `jwks_uri` a discovery document named, or
    /// the configured URI.
    fn jwks_uri(&self) -> &str {
        self.location.as_ref().map_or(self.remote.uri.as_str(), |location| location.uri.as_str())
    }
}

/// Source of a provider's keys, with this worker's copy of them.
pub enum KeySource {
    Local(Rc<KeySet>),
    Remote(Box<RemoteSource>),
}

/// Kind of document an in-flight HTTP call fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchKind {
    Discovery,
    Jwks,
}

/// State shared by the root context and every request context of one worker VM.
pub struct Shared {
    pub plugin: Rc<PluginConfig>,
    pub sources: Vec<KeySource>,
    /// For each configuration index (see `PluginConfig::select`), the key source index of each
    /// of its providers.
    pub provider_sources: Vec<Vec<usize>>,
    /// Headers that any configuration sets from a token, removed from every incoming request.
    pub protected_headers: Vec<String>,
    pub waiting: Vec<WaitingRequest>,
    /// HTTP calls in flight: call token to source index and what it fetches.
    in_flight: HashMap<u32, (usize, FetchKind)>,
    /// This VM's id in fetch leases.
    worker_id: String,
    /// For each configuration index, which algorithms the host verifies.
    pub backend_plans: Vec<BackendPlan>,
    /// Verified tokens of this worker.
    pub jwt_cache: RefCell<JwtCache>,
    /// Cache hits and misses already added to the metrics.
    reported_cache_counts: (u64, u64),
}

/// The key store of one configuration as seen at one instant.
pub struct KeysAt<'a> {
    pub sources: &'a [KeySource],
    pub provider_sources: &'a [usize],
    pub now_ms: u64,
    pub backend: BackendPlan,
}

impl KeysAt<'_> {
    fn source(&self, provider_index: usize) -> Option<&KeySource> {
        self.provider_sources
            .get(provider_index)
            .and_then(|source_index| self.sources.get(*source_index))
    }
}

impl KeyStore for KeysAt<'_> {
    fn keys(&self, provider_index: usize) -> KeyAvailability {
        match self.source(provider_index) {
            Some(KeySource::Local(key_set)) => KeyAvailability::Ready(Rc::clone(key_set)),
            Some(KeySource::Remote(remote)) => remote.cache.availability(self.now_ms),
            None => KeyAvailability::Unavailable {
                retry_after_seconds: 1,
            },
        }
    }

    fn unknown_kid(&self, provider_index: usize, kid: &str) -> UnknownKidDecision {
        match self.source(provider_index) {
            Some(KeySource::Remote(remote)) => remote.cache.unknown_kid(kid, self.now_ms),
            _ => UnknownKidDecision::Reject,
        }
    }

    fn verify_signature(&self, alg: Algorithm, key: &Jwk, message: &[u8], signature: &[u8]) -> bool {
        if self.backend.uses_host(alg) {
            backend::verify_on_host(alg, key, message, signature)
        } else {
            crate::signature::verify(alg, &key.material, message, signature)
        }
    }
}

/// Envoy's shared data, through the host calls.
struct HostSharedData;

impl SharedData for HostSharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
            _ => None,
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

pub struct FilterRoot {
    shared: Option<Rc<RefCell<Shared>>>,
    random: SystemRandom,
    /// The tick period last set: `FAST_TICK_MS` or `TICK_PERIOD_MS`.
    tick_period_ms: u64,
}

impl FilterRoot {
    pub fn new() -> Self {
        FilterRoot {
            shared: None,
            random: SystemRandom::new(),
            tick_period_ms: FAST_TICK_MS,
        }
    }

    fn random_u64(&self) -> u64 {
        let mut bytes = [0u8; 8];
        // Without randomness the jitter is 0 and worker ids may collide; both stay correct
        // (the lease CAS still admits one fetcher), only less spread out.
        let _ = self.random.fill(&mut bytes);
        u64::from_le_bytes(bytes)
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
        let parsed = match higress::parse_plugin_config(&bytes, &|name| std::env::var(name).ok()) {
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

        let now_ms = now_ms();
        let plugin = Rc::new(parsed.config);
        let mut sources: Vec<KeySource> = Vec::new();
        let mut provider_sources = vec![Vec::new(); plugin.rules.len() + 1];
        for (config_index, config) in plugin.all() {
            let indexes: Vec<usize> = config
                .providers
                .iter()
                .map(|provider| source_for(&mut sources, provider, now_ms))
                .collect();
            if let Some(slot) = provider_sources.get_mut(config_index) {
                *slot = indexes;
            }
        }
        let Some(backend_plans) = plan_backends(&plugin) else {
            return false;
        };
        let cache_size = plugin.all().next().map_or(0, |(_, config)| config.jwt_cache_size);
        info!("configured: {}", describe(&plugin));
        if plugin.global.is_none() {
            warn!("no global providers: requests that match no _rules_ entry pass without a token");
        }

        let protected_headers = plugin.protected_headers().into_iter().map(str::to_owned).collect();
        self.shared = Some(Rc::new(RefCell::new(Shared {
            plugin,
            sources,
            provider_sources,
            protected_headers,
            waiting: Vec::new(),
            in_flight: HashMap::new(),
            worker_id: format!("{:016x}", self.random_u64()),
            backend_plans,
            jwt_cache: RefCell::new(JwtCache::new(cache_size)),
            reported_cache_counts: (0, 0),
        })));
        true
    }

    /// Adopts keys other workers published, fails fetches whose callback never came, and
    /// starts the fetches that are due and whose lease this worker gets.
    fn drive_fetches(&self, shared_cell: &Rc<RefCell<Shared>>) {
        let now_ms = now_ms();
        let mut changed = Vec::new();
        {
            let Ok(mut shared) = shared_cell.try_borrow_mut() else {
                return;
            };
            let shared = &mut *shared;
            let mut store = HostSharedData;
            for (index, source) in shared.sources.iter_mut().enumerate() {
                let KeySource::Remote(remote) = source else {
                    continue;
                };
                let remote = &mut **remote;

                if adopt_published(remote, &store, now_ms) {
                    changed.push(index);
                }
                record_key_gauges(remote, now_ms);

                // Another worker's refetch for this worker's kids may have failed. The lease is
                // then free and backing off, so no fetch can bring the kids before the retry.
                if remote.cache.waits_for_other_worker() && shared_fetch_failed(&store, remote, now_ms) {
                    remote.cache.kid_refetch_refused(now_ms);
                    changed.push(index);
                }

                if remote.cache.fetch_overdue(now_ms) {
                    shared.in_flight.retain(|_, (source_index, _)| *source_index != index);
                    fail_fetch(remote, &mut store, &shared.worker_id, now_ms, &FetchError::TimedOut);
                    changed.push(index);
                }

                let Some(cause) = remote.cache.fetch_due(now_ms) else {
                    continue;
                };
                let settings = *remote.cache.settings();
                match fetch_lease::try_acquire(&mut store, &remote.shared_keys.lease, &shared.worker_id, now_ms, cause, &settings) {
                    Acquire::Acquired => {
                        if cause == FetchCause::UnknownKid {
                            metrics::increment(&stats::per_provider("jwks_kid_refetch", &remote.name), 1);
                        }
                        let kind = if remote.remote.discovery && remote.location.is_none() {
                            FetchKind::Discovery
                        } else {
                            FetchKind::Jwks
                        };
                        debug!("provider {}: starting {cause} fetch of the {kind:?} document", remote.name);
                        match dispatch_fetch(&remote.remote, remote.location.as_ref(), kind) {
                            Ok(token) => {
                                remote.cache.fetch_started(now_ms);
                                shared.in_flight.insert(token, (index, kind));
                            }
                            Err(fetch_error) => {
                                fail_fetch(remote, &mut store, &shared.worker_id, now_ms, &fetch_error);
                                changed.push(index);
                            }
                        }
                    }
                    Acquire::HeldByOther => {
                        if cause == FetchCause::UnknownKid {
                            remote.cache.fetch_delegated();
                        }
                    }
                    Acquire::BackingOff { .. } => {
                        // A fetch just failed and none may start before the shared backoff ends,
                        // so the kids' held requests get key_not_found now. This worker's own
                        // retry may be due before the shared backoff ends, so this also applies
                        // when the cause is a retry.
                        if cause == FetchCause::UnknownKid || remote.cache.has_kids_in_question() {
                            remote.cache.kid_refetch_refused(now_ms);
                            changed.push(index);
                        }
                    }
                    Acquire::KidRefetchThrottled { last_kid_refetch_ms } => {
                        metrics::increment(&stats::per_provider("jwks_kid_refetch_throttled", &remote.name), 1);
                        remote.cache.note_kid_refetch(last_kid_refetch_ms);
                        remote.cache.kid_refetch_refused(now_ms);
                        changed.push(index);
                    }
                }
            }
        }
        changed.dedup();
        if !changed.is_empty() {
            if let Ok(shared) = shared_cell.try_borrow() {
                drop_stale_cache_entries(&shared);
            }
        }
        // on_tick, the only caller, finishes the released requests afterwards.
        for index in changed {
            request::release_waiting(shared_cell, index);
        }
    }

    /// Handles a finished HTTP call: a discovery document leads to the JWKS fetch, a JWKS
    /// replaces the cached keys and is published for the other workers.
    fn finish_fetch(&self, shared_cell: &Rc<RefCell<Shared>>, token_id: u32, status: Option<u32>, body_size: usize, body: Option<Vec<u8>>, max_age: Option<u64>) {
        let now_ms = now_ms();
        let jitter_permille = self.random_u64() % 1001;
        let source_index = {
            let Ok(mut shared) = shared_cell.try_borrow_mut() else {
                return;
            };
            let shared = &mut *shared;
            let Some((index, kind)) = shared.in_flight.remove(&token_id) else {
                return;
            };
            let Some(KeySource::Remote(remote)) = shared.sources.get_mut(index) else {
                return;
            };
            let remote = &mut **remote;
            let mut store = HostSharedData;
            let worker_id = shared.worker_id.clone();

            let checked = jwks_cache::check_fetch_response(status, body_size, body.as_deref());
            match kind {
                FetchKind::Discovery => match checked.and_then(|document| discovery::parse_discovery(document, &remote.issuer)) {
                    Ok(location) => {
                        info!("provider {}: discovery document names JWKS {}", remote.name, location.uri);
                        let dispatched = dispatch_fetch(&remote.remote, Some(&location), FetchKind::Jwks);
                        remote.location = Some(location);
                        match dispatched {
                            Ok(token) => {
                                shared.in_flight.insert(token, (index, FetchKind::Jwks));
                                return;
                            }
                            Err(fetch_error) => fail_fetch(remote, &mut store, &worker_id, now_ms, &fetch_error),
                        }
                    }
                    Err(fetch_error) => fail_fetch(remote, &mut store, &worker_id, now_ms, &fetch_error),
                },
                FetchKind::Jwks => {
                    let parsed = checked.and_then(|document| {
                        let parsed = jwks::parse_jwks(document).map_err(FetchError::Jwks)?;
                        Ok((parsed, String::from_utf8_lossy(document).into_owned()))
                    });
                    match parsed {
                        Ok((parsed, text)) => {
                            let fetched = FetchedKeys { parsed, text, max_age, jitter_permille };
                            store_fetched(remote, &mut store, &worker_id, now_ms, fetched);
                        }
                        Err(fetch_error) => fail_fetch(remote, &mut store, &worker_id, now_ms, &fetch_error),
                    }
                }
            }
            index
        };
        if let Ok(shared) = shared_cell.try_borrow() {
            drop_stale_cache_entries(&shared);
        }
        request::release_waiting(shared_cell, source_index);
        request::finish_due(shared_cell, now_ms);
    }
}

impl Context for FilterRoot {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(shared_cell) = self.shared.clone() else {
            return;
        };

        // Read the response before anything switches the effective context.
        // A failed call (reset, or a response cut off after its headers) arrives with no
        // headers, and Envoy then has no response map. Reading one returns BadArgument, and the
        // SDK panics on that, which kills the VM. So headers are read only when there are some.
        // Bytes, not text: the SDK's text getter panics on a value that is not UTF-8.
        let header = |name: &str| {
            if num_headers == 0 {
                return None;
            }
            hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
                .ok()
                .flatten()
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        };
        let status = header(":status").and_then(|status| status.parse::<u32>().ok());
        let max_age = header("cache-control").and_then(|value| jwks_cache::cache_control_max_age(&value));
        // An oversized body is never read; its size alone rejects it.
        let body = if body_size == 0 || body_size > jwks_cache::MAX_JWKS_BODY_BYTES {
            None
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten()
        };
        self.finish_fetch(&shared_cell, token_id, status, body_size, body, max_age);
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
        // The first fetch waits for the first tick: during on_configure on the main thread
        // Envoy's clusters are not ready yet, and a call sent then is lost without a callback.
        // That tick comes early; later ticks choose their period in `on_tick`.
        if let Err(status) = hostcalls::set_tick_period(Duration::from_millis(FAST_TICK_MS)) {
            error!("could not set the tick period ({status:?}); remote key sets would never refresh");
            return false;
        }
        self.tick_period_ms = FAST_TICK_MS;
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        self.drive_fetches(&shared);
        let now_ms = now_ms();
        request::finish_due(&shared, now_ms);
        let mut waiting_for_keys = false;
        if let Ok(mut state) = shared.try_borrow_mut() {
            report_cache_counts(&mut state);
            waiting_for_keys = !state.waiting.is_empty()
                || state.sources.iter().any(|source| {
                    matches!(source, KeySource::Remote(remote) if remote.cache.key_state(now_ms) == KeyState::Empty)
                });
        };
        metrics::flush();

        let period_ms = if waiting_for_keys { FAST_TICK_MS } else { TICK_PERIOD_MS };
        if period_ms != self.tick_period_ms && hostcalls::set_tick_period(Duration::from_millis(period_ms)).is_ok() {
            self.tick_period_ms = period_ms;
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FilterRequest::new(context_id, self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Adopts published key sets for the remote sources of configuration `config_index` that have
/// no usable keys, so a worker does not send 503 while another worker's keys wait for its
/// next tick. Reads shared data only for sources without keys. Returns the indexes of the
/// sources whose keys changed; their held requests must be resumed.
pub fn adopt_missing_keys(shared: &mut Shared, config_index: usize, now_ms: u64) -> Vec<usize> {
    let Some(indexes) = shared.provider_sources.get(config_index) else {
        return Vec::new();
    };
    let mut changed = Vec::new();
    for index in indexes {
        if let Some(KeySource::Remote(remote)) = shared.sources.get_mut(*index) {
            if matches!(remote.cache.key_state(now_ms), KeyState::Empty | KeyState::Expired)
                && adopt_published(remote, &HostSharedData, now_ms)
            {
                changed.push(*index);
            }
        }
    }
    changed
}

/// Returns whether the shared lease of `remote` shows a failed fetch whose backoff has not
/// ended, with no fetch in progress.
fn shared_fetch_failed(store: &HostSharedData, remote: &RemoteSource, now_ms: u64) -> bool {
    fetch_lease::read_lease(store, &remote.shared_keys.lease)
        .is_some_and(|(lease, _)| lease.holder.is_empty() && lease.failures > 0 && now_ms < lease.not_before_ms)
}

/// Adopts the key set another worker published, if it is newer than the local one. Returns
/// whether the local keys changed.
fn adopt_published(remote: &mut RemoteSource, store: &HostSharedData, now_ms: u64) -> bool {
    if let Some((lease, _)) = fetch_lease::read_lease(store, &remote.shared_keys.lease) {
        if lease.last_kid_refetch_ms != 0 {
            remote.cache.note_kid_refetch(lease.last_kid_refetch_ms);
        }
    }
    let Some((published, cas)) = fetch_lease::read_published(store, &remote.shared_keys.published, remote.seen_cas) else {
        return false;
    };
    remote.seen_cas = Some(cas);
    if remote.cache.record().is_some_and(|record| record.fetched_at_ms >= published.fetched_at_ms) {
        return false;
    }
    let parsed = match jwks::parse_jwks(published.jwks.as_bytes()) {
        Ok(parsed) => parsed,
        Err(jwks_error) => {
            warn!("provider {}: ignoring the key set another worker published: {jwks_error}", remote.name);
            return false;
        }
    };
    let record = jwks_cache::KeySetRecord {
        key_set: Rc::new(parsed.key_set),
        fetched_at_ms: published.fetched_at_ms,
        refresh_at_ms: published.refresh_at_ms,
        expires_at_ms: published.expires_at_ms,
    };
    let missing = remote.cache.adopt(now_ms, record);
    record_key_gauges(remote, now_ms);
    debug!(
        "provider {}: adopted {} keys fetched by another worker{}",
        remote.name,
        remote.cache.key_count(),
        describe_missing(&missing)
    );
    true
}

/// A key set this worker fetched, with what its record needs.
struct FetchedKeys {
    parsed: jwks::ParsedKeySet,
    /// The JWKS document as received, published for the other workers.
    text: String,
    max_age: Option<u64>,
    jitter_permille: u64,
}

/// Stores a fetched key set locally, publishes it and releases the lease.
fn store_fetched(
    remote: &mut RemoteSource,
    store: &mut HostSharedData,
    worker_id: &str,
    now_ms: u64,
    fetched: FetchedKeys,
) {
    let FetchedKeys { parsed, text, max_age, jitter_permille } = fetched;
    for skipped in parsed.skipped.iter().take(jwks::MAX_SKIPPED_SHOWN) {
        warn!("provider {}: JWKS from {}: skipping {skipped}", remote.name, remote.jwks_uri());
    }
    if parsed.skipped.len() > jwks::MAX_SKIPPED_SHOWN {
        warn!(
            "provider {}: JWKS from {}: skipping {} more keys",
            remote.name,
            remote.jwks_uri(),
            parsed.skipped.len() - jwks::MAX_SKIPPED_SHOWN
        );
    }

    let key_count = parsed.key_set.keys.len();
    let record = remote.cache.new_record(now_ms, parsed.key_set, max_age, jitter_permille);
    let published = PublishedKeys {
        fetched_at_ms: record.fetched_at_ms,
        refresh_at_ms: record.refresh_at_ms,
        expires_at_ms: record.expires_at_ms,
        jwks: text,
    };
    let ttl_seconds = (record.expires_at_ms - record.fetched_at_ms) / 1000;
    let refresh_seconds = (record.refresh_at_ms - record.fetched_at_ms) / 1000;
    let missing = remote.cache.fetch_succeeded(now_ms, record);
    metrics::increment(&stats::per_provider("jwks_fetch_success", &remote.name), 1);
    record_key_gauges(remote, now_ms);

    if fetch_lease::publish(store, &remote.shared_keys.published, &published) {
        remote.seen_cas = store.get(&remote.shared_keys.published).map(|(_, cas)| cas);
    } else {
        warn!("provider {}: could not publish the key set to the other workers", remote.name);
    }
    fetch_lease::release(store, &remote.shared_keys.lease, worker_id, now_ms, true);

    info!(
        "provider {}: loaded {key_count} keys from {} ({} skipped); TTL {ttl_seconds} s, refresh in {refresh_seconds} s{}",
        remote.name,
        remote.jwks_uri(),
        parsed.skipped.len(),
        describe_missing(&missing)
    );
}

/// Sets the `jwks_keys` and `jwks_age_seconds` gauges of a remote key set.
fn record_key_gauges(remote: &RemoteSource, now_ms: u64) {
    metrics::set_gauge(&stats::per_provider("jwks_keys", &remote.name), remote.cache.key_count() as u64);
    let age_seconds = remote
        .cache
        .record()
        .map_or(0, |record| now_ms.saturating_sub(record.fetched_at_ms) / 1000);
    metrics::set_gauge(&stats::per_provider("jwks_age_seconds", &remote.name), age_seconds);
}

fn fail_fetch(
    remote: &mut RemoteSource,
    store: &mut HostSharedData,
    worker_id: &str,
    now_ms: u64,
    fetch_error: &FetchError,
) {
    remote.cache.fetch_failed(now_ms);
    metrics::increment(&stats::per_provider("jwks_fetch_failed", &remote.name), 1);
    let retry_ms = fetch_lease::release(store, &remote.shared_keys.lease, worker_id, now_ms, false);
    let keeping = match remote.cache.key_count() {
        0 => "no keys loaded yet".to_owned(),
        count => format!("keeping the {count} cached keys"),
    };
    let message = format!(
        "provider {}: fetch from {} via cluster {} failed: {fetch_error}; {keeping}; next attempt in {retry_ms} ms",
        remote.name, remote.remote.uri, remote.remote.cluster
    );
    if matches!(fetch_error, FetchError::Discovery(_)) {
        error!("{message}");
    } else {
        warn!("{message}");
    }
}

fn dispatch_fetch(remote: &RemoteJwks, location: Option<&JwksLocation>, kind: FetchKind) -> Result<u32, FetchError> {
    let (authority, path) = match (kind, location) {
        (FetchKind::Jwks, Some(location)) => (location.authority.as_str(), location.path.as_str()),
        _ => (remote.authority.as_str(), remote.path.as_str()),
    };
    let headers = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", authority),
        ("accept", "application/json"),
        ("user-agent", concat!("idaas-jwt-filter/", env!("CARGO_PKG_VERSION"))),
    ];
    hostcalls::dispatch_http_call(&remote.cluster, headers, None, Vec::new(), Duration::from_millis(remote.timeout_ms))
        .map_err(|status| {
            FetchError::Dispatch(format!(
                "host returned {status:?}; check that cluster {:?} exists",
                remote.cluster
            ))
        })
}

fn describe_missing(missing: &[String]) -> String {
    if missing.is_empty() {
        String::new()
    } else {
        let kids: Vec<String> = missing.iter().map(|kid| format!("{:?}", crate::jws::truncate(kid, 64))).collect();
        format!("; still unknown kids: {}", kids.join(", "))
    }
}

/// Decides, per configuration, which algorithms the host verifies. Runs the host self-test
/// once if any configuration wants the host. Returns `None` (and logs why) when a
/// configuration requires the host and the host fails its self-test.
fn plan_backends(plugin: &PluginConfig) -> Option<Vec<BackendPlan>> {
    let wants_host = plugin
        .all()
        .any(|(_, config)| config.signature_backend != SignatureBackend::Wasm);
    let passed = if wants_host { backend::self_test() } else { Vec::new() };
    let mut plans = vec![BackendPlan::default(); plugin.rules.len() + 1];
    for (index, config) in plugin.all() {
        let plan = match config.signature_backend {
            SignatureBackend::Wasm => BackendPlan::default(),
            SignatureBackend::Auto => BackendPlan::with_host(&passed),
            SignatureBackend::Host => {
                if passed.len() < HOST_ALGORITHMS.len() {
                    error!(
                        "invalid configuration: signature_backend: \"host\" needs the proxy's verify_signature function, which failed its self-test; use \"auto\" or \"wasm\""
                    );
                    return None;
                }
                BackendPlan::with_host(&passed)
            }
        };
        if let Some(slot) = plans.get_mut(index) {
            *slot = plan;
        }
    }
    Some(plans)
}

/// Drops cached verifications whose key is in no current key set.
fn drop_stale_cache_entries(shared: &Shared) {
    let current: HashSet<[u8; 32]> = shared
        .sources
        .iter()
        .flat_map(|source| {
            let keys: Vec<[u8; 32]> = match source {
                KeySource::Local(key_set) => key_set.keys.iter().map(|key| key.fingerprint).collect(),
                KeySource::Remote(remote) => remote
                    .cache
                    .record()
                    .map(|record| record.key_set.keys.iter().map(|key| key.fingerprint).collect())
                    .unwrap_or_default(),
            };
            keys
        })
        .collect();
    if let Ok(mut cache) = shared.jwt_cache.try_borrow_mut() {
        cache.retain_keys(&current);
    }
}

/// Adds the cache hits and misses since the last tick to the metrics.
fn report_cache_counts(shared: &mut Shared) {
    let Ok(cache) = shared.jwt_cache.try_borrow() else {
        return;
    };
    let (hits, misses) = (cache.hits, cache.misses);
    drop(cache);
    let (reported_hits, reported_misses) = shared.reported_cache_counts;
    if hits > reported_hits {
        metrics::increment(&stats::global("jwt_cache_hit"), (hits - reported_hits) as i64);
    }
    if misses > reported_misses {
        metrics::increment(&stats::global("jwt_cache_miss"), (misses - reported_misses) as i64);
    }
    shared.reported_cache_counts = (hits, misses);
}

/// Returns the key source index for a provider, sharing one remote source among providers
/// that fetch the same cluster and URI with the same settings.
fn source_for(sources: &mut Vec<KeySource>, provider: &Provider, now_ms: u64) -> usize {
    match &provider.jwks {
        JwksSource::Local(key_set) => {
            sources.push(KeySource::Local(Rc::new(key_set.clone())));
        }
        JwksSource::Remote(remote) => {
            // Providers share a source only if nothing about it differs: its timings, its
            // bootstrap keys, and for discovery the issuer the document must name. Otherwise
            // the first provider's settings would silently apply to the others.
            let existing = sources.iter().position(|source| {
                matches!(source, KeySource::Remote(known)
                    if known.remote.cluster == remote.cluster
                        && known.remote.uri == remote.uri
                        && known.remote.discovery == remote.discovery
                        && known.remote.cache_settings() == remote.cache_settings()
                        && known.remote.bootstrap == remote.bootstrap
                        && (!remote.discovery || known.issuer == provider.issuer))
            });
            if let Some(index) = existing {
                return index;
            }
            sources.push(KeySource::Remote(Box::new(RemoteSource {
                name: provider.name.clone(),
                issuer: provider.issuer.clone(),
                remote: remote.clone(),
                cache: RemoteKeyCache::new(remote.cache_settings(), now_ms, remote.bootstrap.clone().map(Rc::new)),
                shared_keys: SharedKeys::for_source(
                    &remote.cluster,
                    &remote.uri,
                    &remote.cache_settings(),
                    remote.discovery.then_some(provider.issuer.as_str()),
                ),
                seen_cas: None,
                location: None,
            })));
        }
    }
    sources.len() - 1
}

fn describe(plugin: &PluginConfig) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(global) = &plugin.global {
        parts.push(describe_config(global));
    }
    for (index, rule) in plugin.rules.iter().enumerate() {
        parts.push(format!("_rules_[{index}]: {}", describe_config(&rule.config)));
    }
    parts.join(" | ")
}

fn describe_config(config: &FilterConfig) -> String {
    let providers: Vec<String> = config
        .providers
        .iter()
        .map(|provider| {
            let source = match &provider.jwks {
                JwksSource::Remote(remote) => format!(
                    "{} {} via cluster {}{}",
                    if remote.discovery { "discovery" } else { "remote JWKS" },
                    remote.uri,
                    remote.cluster,
                    remote
                        .bootstrap
                        .as_ref()
                        .map_or(String::new(), |set| format!(", {} bootstrap keys", set.keys.len()))
                ),
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
    // upstream_authorization is a secret: only whether it is set is logged.
    format!(
        "{}; required_scopes [{}] ({:?}); {} rules; clock_skew_seconds {}; keep_token {}; upstream_authorization {}",
        providers.join("; "),
        config.required_scopes.join(" "),
        config.scope_match,
        config.rules.len(),
        config.clock_skew_seconds,
        config.keep_token,
        if config.upstream.authorization.is_some() { "set" } else { "not set" }
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
