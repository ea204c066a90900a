//! End-to-end tests of the signature backends and the verified-token cache in Envoy: the host
//! backend (Envoy's `verify_signature`) and the Wasm backend (ring) must give the same verdict
//! for every token, including malformed signatures, and a cached token must stop working once
//! its key leaves the key set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests report failures by panicking"
)]

#[path = "e2e/envoy_config.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod envoy_config;
#[path = "jwks_lifecycle/gateway.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod gateway;
#[path = "e2e/http.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod http;
#[path = "jwks_lifecycle/jwks_server.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod jwks_server;
#[path = "e2e/processes.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod processes;
#[path = "e2e/stack.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod stack;
#[path = "e2e/tokens.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod tokens;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use gateway::{describe, plugin_config, reason_code, Gateway, Route, ISSUER};
use jwks_server::{jwks_of, JwksServer};
use tokens::{idp_like_claims, IDP_KEY_ID, LOCAL_ES256_KEY_ID, UNPUBLISHED_KEY_ID};

/// Group order n of P-256, big-endian (FIPS 186-4 appendix D.1.2.3).
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Builds a route whose provider fetches from `server` with `remote_settings` added to its
/// `remote_jwks`, and `settings` added to the top level of the plugin configuration.
fn route(name: &str, server: &JwksServer, remote_settings: Value, settings: Value) -> Route {
    let mut source = json!({ "uri": server.jwks_uri(), "timeout_ms": 1500 });
    if let (Some(target), Value::Object(extra)) = (source.as_object_mut(), remote_settings) {
        target.extend(extra);
    }
    let mut config = plugin_config(name, "remote_jwks", source);
    if let (Some(target), Value::Object(extra)) = (config.as_object_mut(), settings) {
        target.extend(extra);
    }
    Route { name: name.to_string(), plugin_config: config, jwks_port: server.port() }
}

fn token(algorithm: Algorithm, key_id: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = idp_like_claims(ISSUER);
    edit(&mut claims);
    tokens::sign(algorithm, key_id, &claims)
}

/// Replaces the token's signature with `change(signature)`.
fn with_signature(token: &str, change: impl FnOnce(Vec<u8>) -> Vec<u8>) -> String {
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = change(URL_SAFE_NO_PAD.decode(signature).unwrap());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Returns n - value for big-endian numbers with value < n.
fn order_minus(value: &[u8]) -> Vec<u8> {
    let mut result = vec![0u8; 32];
    let mut borrow = 0i16;
    for index in (0..32).rev() {
        let mut digit = i16::from(P256_ORDER[index]) - i16::from(value[index]) - borrow;
        borrow = 0;
        if digit < 0 {
            digit += 256;
            borrow = 1;
        }
        result[index] = digit as u8;
    }
    result
}

/// The token matrix: name, token, and the status every backend must give.
fn token_matrix() -> Vec<(&'static str, String, u16)> {
    let rs256 = token(Algorithm::RS256, IDP_KEY_ID, |_| {});
    let es256 = token(Algorithm::ES256, LOCAL_ES256_KEY_ID, |_| {});
    let mut cases = vec![
        ("rs256 valid", rs256.clone(), 200),
        ("es256 valid", es256.clone(), 200),
        ("rs256 tampered payload", tokens::with_tampered_payload(&rs256), 401),
        ("rs256 tampered signature", tokens::with_tampered_signature(&rs256), 401),
        ("es256 tampered signature", tokens::with_tampered_signature(&es256), 401),
        ("rs256 expired", token(Algorithm::RS256, IDP_KEY_ID, |c| c["exp"] = json!(tokens::now_seconds() - 3600)), 401),
        ("rs256 wrong audience", token(Algorithm::RS256, IDP_KEY_ID, |c| c["aud"] = json!("api://other")), 401),
        ("rs256 unknown kid", token(Algorithm::RS256, UNPUBLISHED_KEY_ID, |_| {}), 401),
        ("alg none", tokens::unsigned_alg_none(&idp_like_claims(ISSUER)), 401),
        ("hs256 with public key", tokens::hs256_with_idp_public_key_as_secret(&idp_like_claims(ISSUER)), 401),
        ("rsa signature one byte short", with_signature(&rs256, |mut s| { s.pop(); s }), 401),
        ("rsa signature one byte long", with_signature(&rs256, |mut s| { s.push(0); s }), 401),
        ("rsa signature all zeros", with_signature(&rs256, |s| vec![0; s.len()]), 401),
        ("ecdsa r = 0", with_signature(&es256, |mut s| { s[..32].fill(0); s }), 401),
        ("ecdsa s = 0", with_signature(&es256, |mut s| { s[32..].fill(0); s }), 401),
        ("ecdsa s = n", with_signature(&es256, |mut s| { s[32..].copy_from_slice(&P256_ORDER); s }), 401),
        ("ecdsa s > n", with_signature(&es256, |mut s| { s[32..].fill(0xff); s }), 401),
        ("ecdsa 63 bytes", with_signature(&es256, |mut s| { s.pop(); s }), 401),
        ("ecdsa 65 bytes", with_signature(&es256, |mut s| { s.push(1); s }), 401),
        ("ecdsa der encoded", with_signature(&es256, |s| {
            let mut der = vec![0x30, 0x44, 0x02, 0x20];
            der.extend_from_slice(&s[..32]);
            der.extend_from_slice(&[0x02, 0x20]);
            der.extend_from_slice(&s[32..]);
            der
        }), 401),
    ];
    // (r, n - s) is the same signature with the other sign of s; ECDSA accepts both (no
    // low-S rule in JWS), and both backends must agree on that.
    cases.push(("ecdsa high-s twin", with_signature(&es256, |mut s| { let twin = order_minus(&s[32..]); s[32..].copy_from_slice(&twin); s }), 200));
    cases
}

#[test]
fn host_and_wasm_backends_agree() {
    let server = JwksServer::start("backends-jwks", jwks_of(&[IDP_KEY_ID, LOCAL_ES256_KEY_ID]));
    let settings = |backend: &str| json!({ "signature_backend": backend, "jwt_cache_size": 0 });
    let gateway = Gateway::start(
        "backends",
        &[
            route("host", &server, Value::Null, settings("host")),
            route("wasm", &server, Value::Null, settings("wasm")),
        ],
    );
    let valid = token(Algorithm::RS256, IDP_KEY_ID, |_| {});
    for name in ["host", "wasm"] {
        let (last, elapsed) = gateway.wait_for_ok(name, &valid, Duration::from_millis(100), Duration::from_secs(10));
        assert_eq!(last.as_ref().map(|reply| reply.status).ok(), Some(200), "{name}: no 200 in {elapsed:?}: {}", describe(&last));
    }
    let self_test = gateway.filter_log_lines("info", "passed its self-test for [RS256, RS384, RS512, ES256, ES384]");
    assert!(!self_test.is_empty(), "the host backend did not pass its self-test:\n{}", gateway.log_tail());

    let mut problems = Vec::new();
    for (name, token, expected) in token_matrix() {
        let host = gateway.call("host", &token);
        let wasm = gateway.call("wasm", &token);
        let verdict = |reply: &Result<http::Reply, String>| reply.as_ref().map(|r| (r.status, reason_code(r))).map_err(Clone::clone);
        if verdict(&host) != verdict(&wasm) {
            problems.push(format!("{name}: host {} but wasm {}", describe(&host), describe(&wasm)));
        }
        if host.as_ref().map(|reply| reply.status).ok() != Some(expected) {
            problems.push(format!("{name}: expected {expected}, host gave {}", describe(&host)));
        }
    }
    assert!(problems.is_empty(), "backends disagree or are wrong:\n{}", problems.join("\n"));
}

#[test]
fn cached_token_fails_after_key_rotation() {
    let server = JwksServer::start("cache-jwks", jwks_of(&[IDP_KEY_ID, UNPUBLISHED_KEY_ID]));
    // A 1 s TTL: the key set is refreshed after 0.8 to 0.9 s.
    let gateway = Gateway::start(
        "cache",
        &[route("cache", &server, json!({ "cache_duration_seconds": 1 }), json!({ "jwt_cache_size": 100 }))],
    );

    let old_key_token = token(Algorithm::RS256, IDP_KEY_ID, |_| {});
    let (last, _) = gateway.wait_for_ok("cache", &old_key_token, Duration::from_millis(100), Duration::from_secs(10));
    assert_eq!(last.as_ref().map(|reply| reply.status).ok(), Some(200), "{}", describe(&last));
    // Fill every worker's cache with the token.
    for _ in 0..20 {
        assert_eq!(gateway.call("cache", &old_key_token).map(|reply| reply.status).ok(), Some(200));
    }

    server.set_jwks(jwks_of(&[UNPUBLISHED_KEY_ID]));
    let new_key_token = token(Algorithm::RS256, UNPUBLISHED_KEY_ID, |_| {});
    let (last, elapsed) = gateway.wait_for_ok("cache", &new_key_token, Duration::from_millis(100), Duration::from_secs(10));
    assert_eq!(last.as_ref().map(|reply| reply.status).ok(), Some(200), "new key never worked: {}", describe(&last));

    // A kid refetch may have brought the new key before the scheduled refresh. So wait until the
    // old key is gone everywhere; then every request with the cached token must fail.
    std::thread::sleep(Duration::from_millis(2500));
    let mut accepted = 0;
    for _ in 0..20 {
        let reply = gateway.call("cache", &old_key_token);
        match &reply {
            Ok(reply) if reply.status == 401 && reason_code(reply) == "key_not_found" => {}
            other => {
                accepted += 1;
                eprintln!("cached token after rotation: {}", describe(other));
            }
        }
    }
    assert_eq!(accepted, 0, "a cached token outlived its key (waited {elapsed:?} for the new key)\n{}", gateway.log_tail());
}
