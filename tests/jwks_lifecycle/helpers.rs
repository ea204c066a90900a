//! Helpers shared by the key set and held-request suites: tokens signed by the test keys,
//! routes to a test JWKS server, and waiting for a route to admit a token.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::gateway::{describe, plugin_config, reason_code, Gateway, Route, ISSUER};
use crate::http::Reply;
use crate::jwks_server::JwksServer;
use crate::tokens::{self, idp_like_claims, IDP_KEY_ID};

/// The signing key before the rotation, which the local IdP also publishes.
pub const KEY_1: &str = IDP_KEY_ID;

pub fn signed_by(key_id: &str) -> String {
    tokens::sign(Algorithm::RS256, key_id, &idp_like_claims(ISSUER))
}

pub fn remote_jwks(server: &JwksServer, settings: Value) -> Value {
    let mut source = json!({ "uri": server.jwks_uri() });
    if let (Some(target), Value::Object(extra)) = (source.as_object_mut(), settings) {
        target.extend(extra);
    }
    source
}

pub fn route(name: &str, server: &JwksServer, settings: Value) -> Route {
    Route {
        name: name.to_string(),
        plugin_config: plugin_config(name, "remote_jwks", remote_jwks(server, settings)),
        jwks_port: server.port(),
    }
}

pub fn status_of(result: &Result<Reply, String>) -> Option<u16> {
    result.as_ref().ok().map(|reply| reply.status)
}

/// Sends requests with `token` until one gets 200, failing the test after `timeout`.
pub fn warm_up(gateway: &Gateway, name: &str, token: &str, timeout: Duration) {
    let (last, elapsed) = gateway.wait_for_ok(name, token, Duration::from_millis(100), timeout);
    assert_eq!(
        status_of(&last),
        Some(200),
        "route {name}: no 200 within {elapsed:?}; last reply: {}\n{}",
        describe(&last),
        gateway.log_tail()
    );
}

/// Returns `token` with its header's `kid` replaced. The signature no longer matches, but the
/// filter looks the kid up before it checks the signature, so the reply depends on the kid.
pub fn with_kid(token: &str, kid: &str) -> String {
    let mut parts = token.splitn(2, '.');
    let _header = parts.next();
    let rest = parts.next().expect("token has no payload");
    let header = json!({ "alg": "RS256", "typ": "at+jwt", "kid": kid });
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

/// Describes a reply as "<status> <reason code>", or a failed request by its error text.
pub fn describe_code(reply: &Result<Reply, String>) -> String {
    match reply {
        Ok(reply) => format!("{} {}", reply.status, reason_code(reply)),
        Err(error) => error.clone(),
    }
}

/// Counts equal descriptions, in the order they first appear.
pub fn count_codes(descriptions: impl IntoIterator<Item = String>) -> Vec<(String, usize)> {
    let mut codes: Vec<(String, usize)> = Vec::new();
    for code in descriptions {
        match codes.iter_mut().find(|(known, _)| *known == code) {
            Some((_, count)) => *count += 1,
            None => codes.push((code, 1)),
        }
    }
    codes
}
