//! Fuzzes the request path: the input is one `Authorization` header value (a newline splits it
//! into several headers), authenticated against a fixed configuration with two inline-key
//! providers, RS256 and ES256. The same text also goes to `jws::parse_compact` directly.
//!
//! The seeds are tokens signed with the keys in tests/fixtures/keys, so the checks after the
//! signature (time, audience, subject, scope) are reached too.

#![no_main]

use std::rc::Rc;

use idaas_jwt_filter::authenticator::{
    self, KeyAvailability, KeyStore, RequestAuth, Requirements, Verdict,
};
use idaas_jwt_filter::claims;
use idaas_jwt_filter::config::{self, FilterConfig, JwksSource, ScopeMatch};
use idaas_jwt_filter::jwks::KeySet;
use idaas_jwt_filter::jws;
use idaas_jwt_filter::response;
use libfuzzer_sys::fuzz_target;

/// The clock for every request, in seconds since the Unix epoch (2027-01-15). The seed tokens
/// are valid at this instant.
const NOW_SECONDS: i64 = 1_800_000_000;

const IDP_ISSUER: &str = "http://127.0.0.1:9000/api/v2/iauths_system/oauth2";
const LOCAL_ISSUER: &str = "https://local.example/oauth2";

const IDP_JWKS: &str = include_str!("../../tests/fixtures/keys/idp-rs256-1.jwks.json");
const LOCAL_JWKS: &str = include_str!("../../tests/fixtures/keys/local-es256-1.jwks.json");

/// Builds the plugin JSON: provider 0 takes RS256 tokens from the local IdP's key, provider 1
/// takes ES256 `at+jwt` tokens and sets every optional provider check.
fn config_json() -> String {
    format!(
        r#"{{
  "providers": [
    {{
      "name": "idp",
      "issuer": "{IDP_ISSUER}",
      "audiences": ["api://model-studio"],
      "local_jwks": {IDP_JWKS},
      "allowed_algorithms": ["RS256", "PS256"]
    }},
    {{
      "name": "local",
      "issuer": "{LOCAL_ISSUER}",
      "audiences": ["api://model-studio", "api://other"],
      "local_jwks": {LOCAL_JWKS},
      "require_typ": "at+jwt",
      "max_token_lifetime_seconds": 86400,
      "subjects": ["app_ci"],
      "client_ids": ["app_ci"]
    }}
  ],
  "required_scopes": ["model.invoke"],
  "clock_skew_seconds": 60
}}"#
    )
}

/// The configuration and each provider's keys, built once per process.
struct Fixture {
    config: FilterConfig,
    keys: Vec<Rc<KeySet>>,
}

impl KeyStore for Fixture {
    fn keys(&self, provider_index: usize) -> KeyAvailability {
        match self.keys.get(provider_index) {
            Some(key_set) => KeyAvailability::Ready(Rc::clone(key_set)),
            None => KeyAvailability::Unavailable { retry_after_seconds: 30 },
        }
    }
}

fn build_fixture() -> Fixture {
    let parsed = match config::parse_config(config_json().as_bytes()) {
        Ok(parsed) => parsed,
        Err(error) => panic!("the fuzz target's own configuration is invalid: {error}"),
    };
    let keys = parsed
        .config
        .providers
        .iter()
        .map(|provider| match &provider.jwks {
            JwksSource::Local(key_set) => Rc::new(key_set.clone()),
            JwksSource::Remote(_) => panic!("provider {} has remote keys, but this target needs local_jwks", provider.name),
        })
        .collect();
    Fixture { config: parsed.config, keys }
}

thread_local! {
    static FIXTURE: Fixture = build_fixture();
}

/// Turns a denial into the response the host would send, so its formatting of
/// attacker-chosen details runs too.
fn render(verdict: &Verdict, required_scopes: &[String]) {
    if let Verdict::Deny(denial) = verdict {
        let reply = response::deny_response(denial, "gateway.example:8443", required_scopes);
        assert!(reply.status >= 400, "deny response has status {}", reply.status);
    }
}

fn authenticate_all(fixture: &Fixture, header_values: &[&str]) {
    let request = RequestAuth {
        authorization: header_values,
        now_seconds: NOW_SECONDS,
    };

    let verdict = authenticator::authenticate(&fixture.config, fixture, request);
    render(&verdict, &fixture.config.required_scopes);

    // A route that overrides every requirement: any one of two scopes, read from other
    // claims, another audience, and only the second provider.
    let route_scopes = vec!["model.invoke".to_owned(), "model.list".to_owned()];
    let route_scope_claims = vec!["scp".to_owned(), "permissions".to_owned()];
    let route_audiences = vec!["api://other".to_owned()];
    let route_providers = [1];
    let requirements = Requirements {
        required_scopes: &route_scopes,
        scope_match: ScopeMatch::Any,
        scope_claims: &route_scope_claims,
        audiences: Some(&route_audiences),
        providers: Some(&route_providers),
    };
    let verdict = authenticator::authenticate_with(&fixture.config, fixture, request, &requirements);
    render(&verdict, &route_scopes);
}

fn parse_directly(token: &str) {
    let Ok(parsed) = jws::parse_compact(token) else {
        return;
    };
    let _ = jws::check_header(&parsed.header);
    let _ = claims::check_time(&parsed.claims, NOW_SECONDS, 60);
    let _ = claims::audiences(&parsed.claims);
    let _ = claims::scopes(&parsed.claims, &claims::SCOPE_CLAIMS);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let header_values: Vec<&str> = text.split('\n').collect();

    FIXTURE.with(|fixture| authenticate_all(fixture, &header_values));

    // The text after the last space is the token when the input is `Bearer <token>`.
    let token = text.rsplit(' ').next().unwrap_or_default();
    parse_directly(token);
});
