//! Tests of the whole verification path, one or more per reason code.

use serde_json::{json, Value};

use super::*;
use crate::config::{JwksSource, Provider, ScopeMatch};
use crate::jwks::Jwk;
use crate::jwt_cache::JwtCache;
use crate::route::RouteRequirements;
use crate::test_support::{key_set, FixedKeys, TestKey};

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://example.aliyunidaas.com/api/v2/iauths_system/oauth2";
const AUDIENCE: &str = "api://model-studio";

fn config(required_scopes: &[&str]) -> FilterConfig {
    FilterConfig {
        providers: vec![Provider {
            name: "idaas".to_owned(),
            issuer: ISSUER.to_owned(),
            audiences: vec![AUDIENCE.to_owned()],
            jwks: JwksSource::Local(KeySet::default()),
            allowed_algorithms: Algorithm::ALL.to_vec(),
            require_typ: None,
            max_token_lifetime_seconds: None,
            subjects: None,
            client_ids: None,
        }],
        required_scopes: required_scopes.iter().map(|s| (*s).to_owned()).collect(),
        clock_skew_seconds: 60,
        keep_token: false,
        scope_match: ScopeMatch::All,
        scope_claims: vec!["scope".to_owned(), "scp".to_owned()],
        rules: Vec::new(),
        bypass_cors_preflight: true,
        upstream: Default::default(),
        jwt_cache_size: 0,
        signature_backend: Default::default(),
    }
}

fn good_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "app_ci",
        "client_id": "app_ci",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 3600,
        "scope": "model.invoke model.list",
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn run(config: &FilterConfig, keys: &FixedKeys, header: &str) -> Verdict {
    let values = [header];
    authenticate(config, keys, RequestAuth { authorization: &values, now_seconds: NOW })
}

fn run_token(key: &TestKey, token: &str) -> Verdict {
    run(&config(&["model.invoke"]), &FixedKeys::ready(key_set(&[key])), &format!("Bearer {token}"))
}

fn reason(verdict: &Verdict) -> Option<Reason> {
    match verdict {
        Verdict::Deny(denial) => Some(denial.rejection.reason),
        _ => None,
    }
}

fn reason_for_claims(claims: &Value) -> Option<Reason> {
    let key = TestKey::es256("k1");
    reason(&run_token(&key, &key.mint(claims)))
}

fn tamper_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{}.{}", parts[0], payload, parts[2])
}

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

#[test]
fn valid_es256_token_is_allowed() {
    let key = TestKey::es256("k1");
    let verdict = run_token(&key, &key.mint(&good_claims()));
    let Verdict::Allow(verified) = verdict else { panic!("{verdict:?}") };
    assert_eq!(verified.provider_index, 0);
    assert_eq!(verified.alg, Algorithm::ES256);
    assert_eq!(verified.kid.as_deref(), Some("k1"));
    assert_eq!(verified.claims["client_id"], "app_ci");
}

#[test]
fn valid_eddsa_token_is_allowed() {
    let key = TestKey::ed25519("e1");
    assert!(matches!(run_token(&key, &key.mint(&good_claims())), Verdict::Allow(_)));
}

#[test]
fn valid_rs256_token_is_allowed() {
    let key = TestKey::rs256_rfc7515("r1");
    assert!(matches!(run_token(&key, &key.mint(&good_claims())), Verdict::Allow(_)));
}

#[test]
fn rfc7515_rs256_example_verifies() {
    // RFC 7515 appendix A.2 is signed with the same key; issuer "joe", exp 1300819380.
    let key = TestKey::rs256_rfc7515("unused");
    let cases = crate::test_support::read_vector_json("rfc/rfc_jws_cases.json");
    let case = cases["cases"].as_array().unwrap().iter().find(|c| c["name"] == "RFC7515-A.2-RS256").unwrap();
    let token = case["token"].as_str().unwrap();

    let mut config = config(&[]);
    config.providers[0].issuer = "joe".to_owned();
    let mut set = key_set(&[&key]);
    set.keys[0].kid = None;
    let values = [format!("Bearer {token}")];
    let values: Vec<&str> = values.iter().map(String::as_str).collect();

    let before_exp = RequestAuth { authorization: &values, now_seconds: 1_300_819_000 };
    let verdict = authenticate(&config, &FixedKeys::ready(set.clone()), before_exp);
    assert_eq!(reason(&verdict), Some(Reason::AudienceNotAllowed));

    let real_clock = RequestAuth { authorization: &values, now_seconds: NOW };
    let verdict = authenticate(&config, &FixedKeys::ready(set), real_clock);
    assert_eq!(reason(&verdict), Some(Reason::TokenExpired));
}

#[test]
fn missing_authorization_is_token_missing() {
    let verdict = authenticate(&config(&[]), &FixedKeys::ready(KeySet::default()), RequestAuth {
        authorization: &[],
        now_seconds: NOW,
    });
    assert_eq!(reason(&verdict), Some(Reason::TokenMissing));
}

#[test]
fn garbage_token_is_malformed() {
    let key = TestKey::es256("k1");
    for token in ["abc", "a.b.c", "..", "e30.e30", "e30.W10.", "e30.e30.e30.e30"] {
        assert_eq!(reason(&run_token(&key, token)), Some(Reason::TokenMalformed), "{token}");
    }
}

#[test]
fn alg_none_is_rejected() {
    let key = TestKey::es256("k1");
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(good_claims().to_string());
    let token = format!("{header}.{payload}.");
    assert_eq!(reason(&run_token(&key, &token)), Some(Reason::AlgNotAllowed));
}

#[test]
fn hs256_signed_with_public_key_is_rejected() {
    let key = TestKey::es256("k1");
    let secret = key.public_jwk.to_string();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"k1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(good_claims().to_string());
    let signing_input = format!("{header}.{payload}");
    let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()), signing_input.as_bytes());
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    assert_eq!(reason(&run_token(&key, &token)), Some(Reason::AlgNotAllowed));
}

#[test]
fn crit_header_is_rejected_even_when_signed() {
    let key = TestKey::es256("k1");
    let header = json!({"alg": "ES256", "kid": "k1", "crit": ["exp"], "exp": 1});
    let token = key.mint_with_header(&header, &good_claims());
    assert_eq!(reason(&run_token(&key, &token)), Some(Reason::HeaderNotSupported));
}

#[test]
fn unknown_issuer_is_rejected() {
    assert_eq!(
        reason_for_claims(&with(good_claims(), "iss", json!("https://evil.example"))),
        Some(Reason::IssuerUnknown)
    );
}

#[test]
fn missing_issuer_is_rejected() {
    assert_eq!(reason_for_claims(&without(good_claims(), "iss")), Some(Reason::IssuerUnknown));
    assert_eq!(reason_for_claims(&with(good_claims(), "iss", json!(["x"]))), Some(Reason::IssuerUnknown));
}

#[test]
fn unknown_kid_is_key_not_found() {
    let trusted = TestKey::es256("k1");
    let other = TestKey::es256("other");
    let verdict = run_token(&trusted, &other.mint(&good_claims()));
    assert_eq!(reason(&verdict), Some(Reason::KeyNotFound));
}

#[test]
fn key_of_another_type_is_key_not_found() {
    let trusted = TestKey::ed25519("k1");
    let other = TestKey::es256("k1");
    assert_eq!(reason(&run_token(&trusted, &other.mint(&good_claims()))), Some(Reason::KeyNotFound));
}

#[test]
fn token_without_kid_uses_the_only_fitting_key() {
    let key = TestKey::es256("k1");
    let token = key.mint_with_header(&json!({"alg": "ES256"}), &good_claims());
    assert!(matches!(run_token(&key, &token), Verdict::Allow(_)));
}

#[test]
fn ambiguous_kidless_token_is_rejected() {
    let first = TestKey::es256("k1");
    let second = TestKey::es256("k2");
    let token = first.mint_with_header(&json!({"alg": "ES256"}), &good_claims());
    let keys = FixedKeys::ready(key_set(&[&first, &second]));
    let verdict = run(&config(&[]), &keys, &format!("Bearer {token}"));
    assert_eq!(reason(&verdict), Some(Reason::KeyNotFound));
}

#[test]
fn same_kid_from_another_key_is_signature_invalid() {
    let trusted = TestKey::es256("k1");
    let impostor = TestKey::es256("k1");
    assert_eq!(reason(&run_token(&trusted, &impostor.mint(&good_claims()))), Some(Reason::SignatureInvalid));
}

#[test]
fn tampered_payload_is_signature_invalid() {
    let key = TestKey::es256("k1");
    let token = key.mint(&good_claims());
    let forged = tamper_payload(&token, &with(good_claims(), "scope", json!("model.invoke admin")));
    assert_eq!(reason(&run_token(&key, &forged)), Some(Reason::SignatureInvalid));
}

#[test]
fn tampered_signature_is_signature_invalid() {
    let key = TestKey::rs256_rfc7515("r1");
    let token = key.mint(&good_claims());
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[10] ^= 1;
    let forged = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(bytes));
    assert_eq!(reason(&run_token(&key, &forged)), Some(Reason::SignatureInvalid));
}

#[test]
fn expired_token_is_rejected() {
    assert_eq!(reason_for_claims(&with(good_claims(), "exp", json!(NOW - 61))), Some(Reason::TokenExpired));
}

#[test]
fn token_without_exp_is_rejected() {
    assert_eq!(reason_for_claims(&without(good_claims(), "exp")), Some(Reason::TokenExpired));
}

#[test]
fn future_nbf_is_not_yet_valid() {
    assert_eq!(reason_for_claims(&with(good_claims(), "nbf", json!(NOW + 120))), Some(Reason::TokenNotYetValid));
}

#[test]
fn future_iat_is_not_yet_valid() {
    assert_eq!(reason_for_claims(&with(good_claims(), "iat", json!(NOW + 120))), Some(Reason::TokenNotYetValid));
}

#[test]
fn exp_as_string_is_claim_invalid() {
    assert_eq!(reason_for_claims(&with(good_claims(), "exp", json!("1800003600"))), Some(Reason::ClaimInvalid));
}

#[test]
fn wrong_audience_is_rejected() {
    assert_eq!(reason_for_claims(&with(good_claims(), "aud", json!("api://other"))), Some(Reason::AudienceNotAllowed));
    assert_eq!(reason_for_claims(&without(good_claims(), "aud")), Some(Reason::AudienceNotAllowed));
}

fn detail_for_claims(claims: &Value) -> String {
    let key = TestKey::es256("k1");
    match run_token(&key, &key.mint(claims)) {
        Verdict::Deny(denial) => denial.rejection.detail.into_owned(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn mismatch_details_name_configured_values() {
    let issuer_detail = detail_for_claims(&with(good_claims(), "iss", json!("https://other.example")));
    assert!(issuer_detail.contains(ISSUER), "{issuer_detail}");

    let audience_detail = detail_for_claims(&with(good_claims(), "aud", json!("api://other")));
    assert!(audience_detail.contains(AUDIENCE), "{audience_detail}");
}

#[test]
fn audience_array_with_configured_entry_is_accepted() {
    assert_eq!(reason_for_claims(&with(good_claims(), "aud", json!(["api://other", AUDIENCE]))), None);
}

#[test]
fn audience_of_wrong_type_is_claim_invalid() {
    assert_eq!(reason_for_claims(&with(good_claims(), "aud", json!(42))), Some(Reason::ClaimInvalid));
}

#[test]
fn missing_or_empty_scope_is_scope_empty() {
    for claims in [
        without(good_claims(), "scope"),
        with(good_claims(), "scope", json!("")),
        with(good_claims(), "scope", json!("   ")),
        with(without(good_claims(), "scope"), "scp", json!([])),
    ] {
        assert_eq!(reason_for_claims(&claims), Some(Reason::ScopeEmpty), "{claims}");
    }
}

#[test]
fn empty_scope_rejected_without_requirements() {
    let key = TestKey::es256("k1");
    let token = key.mint(&without(good_claims(), "scope"));
    let verdict = run(&config(&[]), &FixedKeys::ready(key_set(&[&key])), &format!("Bearer {token}"));
    assert_eq!(reason(&verdict), Some(Reason::ScopeEmpty));
}

#[test]
fn missing_required_scope_is_insufficient() {
    assert_eq!(reason_for_claims(&with(good_claims(), "scope", json!("model.list"))), Some(Reason::ScopeInsufficient));
}

#[test]
fn scp_array_satisfies_required_scope() {
    let claims = with(without(good_claims(), "scope"), "scp", json!(["model.invoke"]));
    assert_eq!(reason_for_claims(&claims), None);
}

#[test]
fn scope_of_wrong_type_is_claim_invalid() {
    assert_eq!(reason_for_claims(&with(good_claims(), "scope", json!(7))), Some(Reason::ClaimInvalid));
}

#[test]
fn unavailable_keys_give_jwks_unavailable_with_retry_after() {
    let key = TestKey::es256("k1");
    let keys = FixedKeys(KeyAvailability::Unavailable { retry_after_seconds: 4 });
    let verdict = run(&config(&[]), &keys, &format!("Bearer {}", key.mint(&good_claims())));
    let Verdict::Deny(denial) = verdict else { panic!("{verdict:?}") };
    assert_eq!(denial.rejection.reason, Reason::JwksUnavailable);
    assert_eq!(denial.retry_after_seconds, Some(4));
    assert_eq!(denial.provider_index, Some(0));
}

#[test]
fn pending_keys_hold_the_request() {
    let key = TestKey::es256("k1");
    let keys = FixedKeys(KeyAvailability::Pending { wait_until_ms: 7 });
    let verdict = run(&config(&[]), &keys, &format!("Bearer {}", key.mint(&good_claims())));
    assert_eq!(verdict, Verdict::WaitForKeys { provider_index: 0, kid: None, wait_until_ms: Some(7) });
}

#[test]
fn pending_keys_do_not_hold_a_malformed_request() {
    let keys = FixedKeys(KeyAvailability::Pending { wait_until_ms: 7 });
    assert_eq!(reason(&run(&config(&[]), &keys, "Bearer x.y.z")), Some(Reason::TokenMalformed));
}

#[test]
fn signature_is_checked_before_expiry() {
    let trusted = TestKey::es256("k1");
    let impostor = TestKey::es256("k1");
    let token = impostor.mint(&with(good_claims(), "exp", json!(NOW - 1000)));
    assert_eq!(reason(&run_token(&trusted, &token)), Some(Reason::SignatureInvalid));
}

#[test]
fn expiry_is_checked_before_audience_and_scope() {
    let claims = with(with(good_claims(), "exp", json!(NOW - 1000)), "aud", json!("api://other"));
    assert_eq!(reason_for_claims(&without(claims, "scope")), Some(Reason::TokenExpired));
}

#[test]
fn audience_is_checked_before_scope() {
    let claims = with(good_claims(), "aud", json!("api://other"));
    assert_eq!(reason_for_claims(&without(claims, "scope")), Some(Reason::AudienceNotAllowed));
}

#[test]
fn second_provider_is_chosen_by_issuer() {
    let key = TestKey::ed25519("e1");
    let mut config = config(&[]);
    let mut second = config.providers[0].clone();
    second.name = "other".to_owned();
    second.issuer = "https://other.example".to_owned();
    config.providers.push(second);
    let token = key.mint(&with(good_claims(), "iss", json!("https://other.example")));
    let verdict = run(&config, &FixedKeys::ready(key_set(&[&key])), &format!("Bearer {token}"));
    let Verdict::Allow(verified) = verdict else { panic!("{verdict:?}") };
    assert_eq!(verified.provider_index, 1);
}

/// A key store whose unknown kids may be refetched.
struct RefetchingKeys(KeySet);

impl KeyStore for RefetchingKeys {
    fn keys(&self, _provider_index: usize) -> KeyAvailability {
        KeyAvailability::Ready(std::rc::Rc::new(self.0.clone()))
    }

    fn unknown_kid(&self, _provider_index: usize, _kid: &str) -> UnknownKidDecision {
        UnknownKidDecision::Refetch
    }
}

#[test]
fn unknown_kid_waits_for_refetch_when_allowed() {
    let trusted = TestKey::es256("k1");
    let rotated = TestKey::es256("k2");
    let values = [format!("Bearer {}", rotated.mint(&good_claims()))];
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let keys = RefetchingKeys(key_set(&[&trusted]));
    let verdict = authenticate(&config(&[]), &keys, RequestAuth { authorization: &values, now_seconds: NOW });
    assert_eq!(verdict, Verdict::WaitForKeys { provider_index: 0, kid: Some("k2".to_owned()), wait_until_ms: None });
}

#[test]
fn known_kid_with_bad_signature_does_not_refetch() {
    let trusted = TestKey::es256("k1");
    let impostor = TestKey::es256("k1");
    let values = [format!("Bearer {}", impostor.mint(&good_claims()))];
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let keys = RefetchingKeys(key_set(&[&trusted]));
    let verdict = authenticate(&config(&[]), &keys, RequestAuth { authorization: &values, now_seconds: NOW });
    assert_eq!(reason(&verdict), Some(Reason::SignatureInvalid));
}

fn run_with(config: &FilterConfig, key: &TestKey, claims: &Value, route: &RouteRequirements) -> Verdict {
    let values = [format!("Bearer {}", key.mint(claims))];
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let request = RequestAuth { authorization: &values, now_seconds: NOW };
    let requirements = Requirements::for_route(config, Some(route));
    authenticate_with(config, &FixedKeys::ready(key_set(&[key])), request, &requirements)
}

#[test]
fn route_scopes_replace_top_level_scopes() {
    let key = TestKey::es256("k1");
    let route = RouteRequirements { required_scopes: Some(vec!["model.list".to_owned()]), ..Default::default() };
    let claims = with(good_claims(), "scope", json!("model.list"));
    assert!(matches!(run_with(&config(&["model.invoke"]), &key, &claims, &route), Verdict::Allow(_)));
}

#[test]
fn scope_match_any_needs_one_scope() {
    let key = TestKey::es256("k1");
    let required = Some(vec!["model.invoke".to_owned(), "model.admin".to_owned()]);
    let any = RouteRequirements { required_scopes: required.clone(), scope_match: Some(ScopeMatch::Any), ..Default::default() };
    let all = RouteRequirements { required_scopes: required, ..Default::default() };
    let claims = with(good_claims(), "scope", json!("model.invoke"));
    assert!(matches!(run_with(&config(&[]), &key, &claims, &any), Verdict::Allow(_)));
    assert_eq!(reason(&run_with(&config(&[]), &key, &claims, &all)), Some(Reason::ScopeInsufficient));
    let none = with(good_claims(), "scope", json!("model.list"));
    assert_eq!(reason(&run_with(&config(&[]), &key, &none, &any)), Some(Reason::ScopeInsufficient));
}

#[test]
fn identifier_scope_counts_for_its_audience_only() {
    let key = TestKey::es256("k1");
    let route = RouteRequirements::default();
    let own = with(good_claims(), "scope", json!(format!("{AUDIENCE}|model.invoke")));
    assert!(matches!(run_with(&config(&["model.invoke"]), &key, &own, &route), Verdict::Allow(_)));
    let foreign = with(good_claims(), "scope", json!("api://other|model.invoke"));
    assert_eq!(reason(&run_with(&config(&["model.invoke"]), &key, &foreign, &route)), Some(Reason::ScopeInsufficient));
}

#[test]
fn route_audiences_replace_provider_audiences() {
    let key = TestKey::es256("k1");
    let route = RouteRequirements { audiences: Some(vec!["api://billing".to_owned()]), ..Default::default() };
    assert_eq!(reason(&run_with(&config(&[]), &key, &good_claims(), &route)), Some(Reason::AudienceNotAllowed));
    let billing = with(good_claims(), "aud", json!("api://billing"));
    assert!(matches!(run_with(&config(&[]), &key, &billing, &route), Verdict::Allow(_)));
}

#[test]
fn provider_not_allowed_on_route_is_rejected() {
    let key = TestKey::es256("k1");
    let route = RouteRequirements { providers: Some(vec![1]), ..Default::default() };
    assert_eq!(reason(&run_with(&config(&[]), &key, &good_claims(), &route)), Some(Reason::IssuerUnknown));
}

fn reason_with_provider(edit: impl Fn(&mut Provider), key: &TestKey, token: &str) -> Option<Reason> {
    let mut config = config(&[]);
    edit(&mut config.providers[0]);
    reason(&run(&config, &FixedKeys::ready(key_set(&[key])), &format!("Bearer {token}")))
}

#[test]
fn algorithm_outside_allowed_algorithms_is_rejected() {
    let key = TestKey::es256("k1");
    let token = key.mint(&good_claims());
    assert_eq!(reason_with_provider(|p| p.allowed_algorithms = vec![Algorithm::RS256], &key, &token), Some(Reason::AlgNotAllowed));
    assert_eq!(reason_with_provider(|p| p.allowed_algorithms = vec![Algorithm::ES256], &key, &token), None);
}

#[test]
fn required_typ_accepts_both_spellings() {
    let key = TestKey::es256("k1");
    let require = |p: &mut Provider| p.require_typ = Some("at+jwt".to_owned());
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let token = key.mint_with_header(&json!({"alg": "ES256", "kid": "k1", "typ": typ}), &good_claims());
        assert_eq!(reason_with_provider(require, &key, &token), None, "{typ}");
    }
}

#[test]
fn wrong_or_missing_typ_is_rejected() {
    let key = TestKey::es256("k1");
    let require = |p: &mut Provider| p.require_typ = Some("at+jwt".to_owned());
    let jwt = key.mint_with_header(&json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}), &good_claims());
    assert_eq!(reason_with_provider(require, &key, &jwt), Some(Reason::TypeNotAllowed));
    let untyped = key.mint_with_header(&json!({"alg": "ES256", "kid": "k1"}), &good_claims());
    assert_eq!(reason_with_provider(require, &key, &untyped), Some(Reason::TypeNotAllowed));
}

#[test]
fn long_lived_token_is_rejected() {
    let key = TestKey::es256("k1");
    let limit = |p: &mut Provider| p.max_token_lifetime_seconds = Some(3600);
    let ok = key.mint(&with(good_claims(), "exp", json!(NOW - 10 + 3600)));
    assert_eq!(reason_with_provider(limit, &key, &ok), None);
    let long = key.mint(&with(good_claims(), "exp", json!(NOW - 10 + 3601)));
    assert_eq!(reason_with_provider(limit, &key, &long), Some(Reason::TokenLifetimeTooLong));
    let no_iat = key.mint(&without(good_claims(), "iat"));
    assert_eq!(reason_with_provider(limit, &key, &no_iat), Some(Reason::TokenLifetimeTooLong));
}

#[test]
fn client_outside_allow_list_is_rejected() {
    let key = TestKey::es256("k1");
    let token = key.mint(&good_claims());
    assert_eq!(reason_with_provider(|p| p.client_ids = Some(vec!["app_other".to_owned()]), &key, &token), Some(Reason::ClientNotAllowed));
    assert_eq!(reason_with_provider(|p| p.client_ids = Some(vec!["app_ci".to_owned()]), &key, &token), None);
    assert_eq!(reason_with_provider(|p| p.subjects = Some(vec!["someone".to_owned()]), &key, &token), Some(Reason::ClientNotAllowed));
}

/// Counts signature checks, to see which requests the cache spared. Its key set can be
/// replaced, or made unavailable as an expired remote set is.
struct CountingKeys {
    set: std::cell::RefCell<KeySet>,
    available: std::cell::Cell<bool>,
    checks: std::cell::Cell<usize>,
}

impl CountingKeys {
    fn new(set: KeySet) -> CountingKeys {
        CountingKeys { set: std::cell::RefCell::new(set), available: std::cell::Cell::new(true), checks: std::cell::Cell::new(0) }
    }
}

impl KeyStore for CountingKeys {
    fn keys(&self, _provider_index: usize) -> KeyAvailability {
        if !self.available.get() {
            return KeyAvailability::Unavailable { retry_after_seconds: 1 };
        }
        KeyAvailability::Ready(std::rc::Rc::new(self.set.borrow().clone()))
    }

    fn verify_signature(&self, alg: Algorithm, key: &Jwk, message: &[u8], signature: &[u8]) -> bool {
        self.checks.set(self.checks.get() + 1);
        crate::signature::verify(alg, &key.material, message, signature)
    }
}

fn run_cached(config: &FilterConfig, keys: &CountingKeys, token: &str, cache: &mut JwtCache, route: Option<&RouteRequirements>) -> Verdict {
    let values = [format!("Bearer {token}")];
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let request = RequestAuth { authorization: &values, now_seconds: NOW };
    let requirements = Requirements::for_route(config, route);
    authenticate_cached(config, keys, request, &requirements, Some((cache, 0)))
}

#[test]
fn cached_token_skips_the_signature_check() {
    let key = TestKey::es256("k1");
    let keys = CountingKeys::new(key_set(&[&key]));
    let mut cache = JwtCache::new(10);
    let token = key.mint(&good_claims());
    let config = config(&["model.invoke"]);
    assert!(matches!(run_cached(&config, &keys, &token, &mut cache, None), Verdict::Allow(_)));
    assert!(matches!(run_cached(&config, &keys, &token, &mut cache, None), Verdict::Allow(_)));
    assert_eq!(keys.checks.get(), 1);
    assert_eq!((cache.hits, cache.misses), (1, 1));
}

#[test]
fn cached_token_still_meets_route_policy() {
    let key = TestKey::es256("k1");
    let keys = CountingKeys::new(key_set(&[&key]));
    let mut cache = JwtCache::new(10);
    let token = key.mint(&good_claims());
    let config = config(&[]);
    assert!(matches!(run_cached(&config, &keys, &token, &mut cache, None), Verdict::Allow(_)));
    let admin = RouteRequirements { required_scopes: Some(vec!["model.admin".to_owned()]), ..Default::default() };
    assert_eq!(reason(&run_cached(&config, &keys, &token, &mut cache, Some(&admin))), Some(Reason::ScopeInsufficient));
    assert_eq!(keys.checks.get(), 1);
}

#[test]
fn rejected_token_is_not_cached() {
    let key = TestKey::es256("k1");
    let keys = CountingKeys::new(key_set(&[&key]));
    let mut cache = JwtCache::new(10);
    let token = key.mint(&with(good_claims(), "scope", json!("model.list")));
    let config = config(&["model.invoke"]);
    assert_eq!(reason(&run_cached(&config, &keys, &token, &mut cache, None)), Some(Reason::ScopeInsufficient));
    assert!(cache.is_empty());
}

#[test]
fn cached_token_is_rejected_once_keys_expire() {
    let key = TestKey::es256("k1");
    let keys = CountingKeys::new(key_set(&[&key]));
    let mut cache = JwtCache::new(10);
    let token = key.mint(&good_claims());
    let config = config(&["model.invoke"]);
    assert!(matches!(run_cached(&config, &keys, &token, &mut cache, None), Verdict::Allow(_)));

    keys.available.set(false);
    assert_eq!(reason(&run_cached(&config, &keys, &token, &mut cache, None)), Some(Reason::JwksUnavailable));
    assert!(cache.is_empty(), "the entry must go when its keys expire");
    assert_eq!((cache.hits, cache.misses), (0, 2));
}

#[test]
fn cached_token_rejected_after_key_removal() {
    let key = TestKey::es256("k1");
    let other = TestKey::es256("k2");
    let keys = CountingKeys::new(key_set(&[&key]));
    let mut cache = JwtCache::new(10);
    let token = key.mint(&good_claims());
    let config = config(&["model.invoke"]);
    assert!(matches!(run_cached(&config, &keys, &token, &mut cache, None), Verdict::Allow(_)));

    *keys.set.borrow_mut() = key_set(&[&other]);
    assert_eq!(reason(&run_cached(&config, &keys, &token, &mut cache, None)), Some(Reason::KeyNotFound));
    assert!(cache.is_empty());
}
