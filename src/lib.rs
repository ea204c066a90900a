//! idaas-jwt-filter: a proxy-wasm HTTP filter that lets a request through only when it
//! carries a valid Alibaba Cloud IDaaS machine-to-machine access token (a JWT).
//!
//! Everything except `host` is host-free: it never imports `proxy_wasm`, takes the time as an
//! argument and runs under plain `cargo test`. The request's path through the modules:
//! `extractor` (bearer token), `jws` (compact parse and header), `config` (providers),
//! `jwks` and `jwks_cache` (keys), `signature`, `claims` (time, audience, scope readers),
//! `authenticator` (the checks in order), `reason` and `response` (what the client gets).

pub mod algorithm;
pub mod authenticator;
pub mod claims;
pub mod config;
pub mod der;
pub mod discovery;
pub mod extractor;
pub mod fetch_lease;
pub mod higress;
pub mod json;
pub mod jwks;
pub mod jwt_cache;
pub mod jwks_cache;
pub mod jws;
pub mod reason;
pub mod response;
pub mod route;
pub mod selftest_vectors;
pub mod signature;
pub mod stats;
pub mod upstream;

#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(test)]
mod test_support;
