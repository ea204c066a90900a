//! Access tokens for the tests: real ones from the local IdP, and tokens minted with the fixture
//! keys (tests/fixtures/keys) that look exactly like the IdP's, or break one rule on purpose.
//!
//! Minting uses jsonwebtoken 9, an encoder independent of the filter under test.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The Resource Server Identifier that the local IdP puts in `aud`.
pub const AUDIENCE: &str = "api://model-studio";
pub const IDP_KEY_ID: &str = "idp-rs256-1";
/// A key that no JWKS publishes.
pub const UNPUBLISHED_KEY_ID: &str = "other-rs256-1";
pub const LOCAL_ES256_KEY_ID: &str = "local-es256-1";
pub const ACCESS_TOKEN_LIFETIME_SECONDS: i64 = 600;

pub fn fixture_path(file_name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys").join(file_name)
}

pub fn read_fixture(file_name: &str) -> String {
    let path = fixture_path(file_name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

pub fn now_seconds() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("system clock is before 1970");
    since_epoch.as_secs() as i64
}

/// Claims of a valid ci-pipeline token as the local IdP issues it.
pub fn idp_like_claims(issuer: &str) -> Value {
    let now = now_seconds();
    json!({
        "jti": format!("e2e-{now}"),
        "sub": "ci-pipeline",
        "iat": now,
        "exp": now + ACCESS_TOKEN_LIFETIME_SECONDS,
        "scope": "model.invoke model.list",
        "client_id": "ci-pipeline",
        "iss": issuer,
        "aud": AUDIENCE,
    })
}

/// Signs `claims` with the private key of `key_id` from the fixtures.
pub fn sign(algorithm: Algorithm, key_id: &str, claims: &Value) -> String {
    let pem = read_fixture(&format!("{key_id}.key.pem"));
    let key = match algorithm {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
        other => panic!("no fixture key type for {other:?}"),
    }
    .unwrap_or_else(|error| panic!("cannot load {key_id}.key.pem: {error}"));
    encode(algorithm, key_id, claims, &key)
}

fn encode(algorithm: Algorithm, key_id: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.typ = Some("at+jwt".to_string());
    header.kid = Some(key_id.to_string());
    jsonwebtoken::encode(&header, claims, key).unwrap_or_else(|error| panic!("cannot sign token: {error}"))
}

/// Signs `claims` with the IdP's RSA key, as the IdP does.
pub fn sign_as_idp(claims: &Value) -> String {
    sign(Algorithm::RS256, IDP_KEY_ID, claims)
}

fn encode_segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Builds an unsigned token: header `alg: none` and an empty signature part.
pub fn unsigned_alg_none(claims: &Value) -> String {
    let header = json!({ "alg": "none", "typ": "at+jwt", "kid": IDP_KEY_ID });
    format!("{}.{}.", encode_segment(&header), encode_segment(claims))
}

/// Signs `claims` with HS256, using the IdP's public key PEM text as the HMAC secret (the
/// key-confusion attack). A verifier that lets the token choose the algorithm would accept it.
pub fn hs256_with_idp_public_key_as_secret(claims: &Value) -> String {
    let public_pem = read_fixture(&format!("{IDP_KEY_ID}.pub.pem"));
    let key = EncodingKey::from_secret(public_pem.as_bytes());
    encode(Algorithm::HS256, IDP_KEY_ID, claims, &key)
}

fn split_token(token: &str) -> (String, String, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    (parts[0].to_string(), parts[1].to_string(), parts[2].to_string())
}

/// Decodes the payload of a compact JWS without checking anything.
pub fn decode_payload(token: &str) -> Value {
    let (_, payload, _) = split_token(token);
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("payload is not base64url");
    serde_json::from_slice(&bytes).expect("payload is not JSON")
}

/// Replaces the payload with a changed copy (`sub` rewritten) and keeps the original signature.
pub fn with_tampered_payload(token: &str) -> String {
    let (header, _, signature) = split_token(token);
    let mut claims = decode_payload(token);
    claims["sub"] = json!("attacker");
    format!("{header}.{}.{signature}", encode_segment(&claims))
}

/// Flips one bit in the middle of the signature; the header and payload stay intact.
pub fn with_tampered_signature(token: &str) -> String {
    let (header, payload, signature) = split_token(token);
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("signature is not base64url");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Requests a client_credentials token from the local IdP's token endpoint.
pub fn fetch_idp_token(token_endpoint: &str, client_id: &str, scope: Option<&str>) -> String {
    let mut form = vec![("resource", AUDIENCE)];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    fetch_idp_token_with(token_endpoint, client_id, &form)
}

/// Requests a client_credentials token with the given form fields besides `grant_type`.
pub fn fetch_idp_token_with(token_endpoint: &str, client_id: &str, fields: &[(&str, &str)]) -> String {
    let credentials = STANDARD.encode(format!("{client_id}:{client_id}-secret"));
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(fields);
    let response = crate::http::agent()
        .post(token_endpoint)
        .set("authorization", &format!("Basic {credentials}"))
        .send_form(&form);
    let body: Value = match response {
        Ok(response) => response.into_json().expect("token response is not JSON"),
        Err(ureq::Error::Status(status, response)) => panic!(
            "IdP rejected the token request for {client_id} with {status}: {}",
            response.into_string().unwrap_or_default()
        ),
        Err(error) => panic!("token request to {token_endpoint} failed: {error}"),
    };
    match body.get("access_token") {
        Some(Value::String(token)) => token.clone(),
        _ => panic!("token response for {client_id} has no access_token: {body}"),
    }
}
