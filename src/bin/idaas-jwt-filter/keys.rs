//! The keys `explain` verifies with: a JWKS file or URL given on the command line, or the keys
//! in the configuration, served to the authenticator through its `KeyStore` interface.

use std::io::Read as _;
use std::rc::Rc;
use std::time::Duration;

use idaas_jwt_filter::authenticator::{KeyAvailability, KeyStore};
use idaas_jwt_filter::config::{self, FilterConfig, JwksSource};
use idaas_jwt_filter::jwks::{self, KeySet, ParsedKeySet};
use idaas_jwt_filter::jwks_cache::{self, MAX_JWKS_BODY_BYTES};

use crate::args::JwksOverride;
use crate::Failure;

/// Time limit of the whole `--jwks-url` request, connection included.
const FETCH_TIMEOUT_SECONDS: u64 = 10;

/// `Retry-After` of a provider without keys. The filter sends the time until its next fetch
/// attempt, at least 1 s. The tool never fetches, so it sends that minimum.
const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 1;

/// A key set from the command line and where it came from.
pub struct OverrideKeys {
    pub key_set: Rc<KeySet>,
    /// `--jwks FILE` or `--jwks-url URL`, for the step lines.
    pub origin: String,
}

/// Reads or fetches the `--jwks` / `--jwks-url` key set. Keys the filter would skip are
/// reported on standard error.
pub fn load_override(source: &JwksOverride) -> Result<OverrideKeys, Failure> {
    let (parsed, origin) = match source {
        JwksOverride::File(path) => {
            let bytes = std::fs::read(path).map_err(|error| Failure::Input(format!("cannot read --jwks {path}: {error}")))?;
            let parsed = jwks::parse_jwks(&bytes).map_err(|error| Failure::Input(format!("--jwks {path}: {error}")))?;
            (parsed, format!("--jwks {path}"))
        }
        JwksOverride::Url(url) => (fetch_jwks(url)?, format!("--jwks-url {url}")),
    };
    for skipped in &parsed.skipped {
        errln!("warning: {origin}: {skipped}; the filter skips this key");
    }
    Ok(OverrideKeys {
        key_set: Rc::new(parsed.key_set),
        origin,
    })
}

/// Fetches a JWKS once and applies the filter's response rules: status 200, a body of at most
/// `MAX_JWKS_BODY_BYTES`, at least one usable key. Redirects are not followed, because the
/// filter's fetch through an Envoy cluster does not follow them either.
fn fetch_jwks(url: &str) -> Result<ParsedKeySet, Failure> {
    config::split_http_uri(url).map_err(|message| Failure::Usage(format!("--jwks-url: {message}")))?;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(FETCH_TIMEOUT_SECONDS))
        .redirects(0)
        .user_agent(concat!("idaas-jwt-filter/", env!("CARGO_PKG_VERSION"), " explain"))
        .build();
    let response = match agent.get(url).set("accept", "application/json").call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(error)) => {
            return Err(Failure::Input(format!("fetching the JWKS from {url} failed: {error}")))
        }
    };
    let status = u32::from(response.status());
    let limit = u64::try_from(MAX_JWKS_BODY_BYTES).unwrap_or(u64::MAX).saturating_add(1);
    let mut body = Vec::new();
    response
        .into_reader()
        .take(limit)
        .read_to_end(&mut body)
        .map_err(|error| Failure::Input(format!("reading the JWKS response from {url} failed: {error}")))?;
    if status == 200 && body.len() > MAX_JWKS_BODY_BYTES {
        return Err(Failure::Input(format!(
            "the JWKS response from {url} is over the {MAX_JWKS_BODY_BYTES}-byte limit the filter enforces"
        )));
    }
    jwks_cache::parse_fetch_response(Some(status), body.len(), Some(&body))
        .map_err(|error| Failure::Input(format!("the JWKS from {url} is unusable: {error}")))
}

/// One provider's keys and a description of where they come from.
pub struct ProviderKeys {
    pub availability: KeyAvailability,
    pub origin: String,
}

/// The keys of every provider of one configuration, fixed for the run. A `kid` missing from a
/// set is rejected at once (the trait's default), as the filter does after its refetch finds
/// nothing new.
pub struct ToolKeys {
    providers: Vec<ProviderKeys>,
}

impl ToolKeys {
    /// Assigns keys to the providers of `config`: inline `local_jwks` keys stay; remote
    /// providers get the command-line set, else their bootstrap keys, else none.
    pub fn new(config: &FilterConfig, override_keys: Option<&OverrideKeys>) -> ToolKeys {
        let providers = config
            .providers
            .iter()
            .map(|provider| match (&provider.jwks, override_keys) {
                (JwksSource::Local(key_set), _) => ProviderKeys {
                    availability: KeyAvailability::Ready(Rc::new(key_set.clone())),
                    origin: "the provider's local_jwks".to_owned(),
                },
                (JwksSource::Remote(_), Some(keys)) => ProviderKeys {
                    availability: KeyAvailability::Ready(Rc::clone(&keys.key_set)),
                    origin: keys.origin.clone(),
                },
                (JwksSource::Remote(remote), None) => match &remote.bootstrap {
                    Some(bootstrap) => ProviderKeys {
                        availability: KeyAvailability::Ready(Rc::new(bootstrap.clone())),
                        origin: "the provider's local_jwks bootstrap keys (the filter replaces them after its first fetch)"
                            .to_owned(),
                    },
                    None => ProviderKeys {
                        availability: KeyAvailability::Unavailable {
                            retry_after_seconds: UNAVAILABLE_RETRY_AFTER_SECONDS,
                        },
                        origin: format!(
                            "none: the provider fetches {} and no --jwks or --jwks-url was given",
                            remote.uri
                        ),
                    },
                },
            })
            .collect();
        ToolKeys { providers }
    }

    /// Describes where the keys of `provider_index` come from.
    pub fn origin(&self, provider_index: usize) -> &str {
        self.providers
            .get(provider_index)
            .map_or("no provider with this index", |keys| keys.origin.as_str())
    }
}

impl KeyStore for ToolKeys {
    fn keys(&self, provider_index: usize) -> KeyAvailability {
        match self.providers.get(provider_index) {
            Some(keys) => keys.availability.clone(),
            None => KeyAvailability::Unavailable {
                retry_after_seconds: UNAVAILABLE_RETRY_AFTER_SECONDS,
            },
        }
    }
}
