//! End-to-end tests of requests held for keys in real Envoy: when a fetch ends or the
//! start-up wait runs out, hundreds of held requests must get their responses without killing
//! the Wasm VM. Envoy runs the local replies sent during one VM callback nested in one another, and
//! on Envoy 1.40 about 300 of them overflowed V8's stack.
//!
//! These tests open hundreds of connections at once, so they run in their own test binary,
//! apart from the timing-sensitive key set tests in tests/jwks_lifecycle.rs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests report failures by panicking"
)]

#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/envoy_config.rs"]
mod envoy_config;
#[allow(dead_code, reason = "shared with tests/jwks_lifecycle.rs; this binary uses part of it")]
#[path = "jwks_lifecycle/gateway.rs"]
mod gateway;
#[allow(dead_code, reason = "shared with tests/jwks_lifecycle.rs; this binary uses part of it")]
#[path = "jwks_lifecycle/helpers.rs"]
mod helpers;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/http.rs"]
mod http;
#[allow(dead_code, reason = "shared with tests/jwks_lifecycle.rs; this binary uses part of it")]
#[path = "jwks_lifecycle/jwks_server.rs"]
mod jwks_server;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/processes.rs"]
mod processes;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/stack.rs"]
mod stack;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/tokens.rs"]
mod tokens;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::json;

use gateway::{describe, jwks_cluster, plugin_config, Gateway, Route, ISSUER};
use helpers::{count_codes, describe_code, route, signed_by, status_of, warm_up, with_kid, KEY_1};
use http::Reply;
use jwks_server::{jwks_of, Fault, JwksServer};
use tokens::idp_like_claims;

#[test]
fn mass_release_of_held_requests_keeps_vm_alive() {
    // Envoy runs the local replies sent in one VM callback nested in one another. On one
    // worker of Envoy 1.40, about 300 of them overflowed V8's stack and killed the VM.
    const HELD: usize = 450;
    const JWKS_LATENCY_MS: u64 = 800;
    let server = JwksServer::start("release-jwks", jwks_of(&[KEY_1]));
    let settings = json!({ "cache_duration_seconds": 600, "timeout_ms": 3000, "kid_refetch_min_interval_seconds": 1 });
    let gateway = Arc::new(Gateway::start_with_workers("release", &[route("release", &server, settings)], 1));
    let valid = signed_by(KEY_1);
    warm_up(&gateway, "release", &valid, Duration::from_secs(10));
    // Past the refetch interval, so the first unknown kid starts a refetch that the rest join.
    thread::sleep(Duration::from_millis(1200));
    let fetches_before = server.fetch_count();
    server.set_latency(Duration::from_millis(JWKS_LATENCY_MS));

    let unknown = with_kid(&valid, "held-kid");
    let port = gateway.port("release");
    let results = call_at_once(HELD, move || describe_code(&gateway::call(port, &unknown)));
    server.set_latency(Duration::ZERO);

    let codes = count_codes(results.iter().map(|(code, _)| code.clone()));
    let held_count = count_slower_than(&results, Duration::from_millis(JWKS_LATENCY_MS / 2));
    println!("mass release: {HELD} requests, {held_count} held for the refetch, replies {codes:?}");

    assert!(server.fetch_count() > fetches_before, "no refetch for the unknown kid, so nothing was held");
    assert!(held_count >= HELD / 2, "only {held_count} of {HELD} requests were held; the test did not exercise the release");
    assert_eq!(codes, vec![("401 key_not_found".to_string(), HELD)], "every held request must get 401 key_not_found\n{}", gateway.log_tail());
    let after = gateway.call("release", &valid);
    assert_eq!(status_of(&after), Some(200), "a valid token after the release got {}\n{}", describe(&after), gateway.log_tail());
}

#[test]
fn mass_expiry_of_held_requests_keeps_vm_alive() {
    // The start-up deadline passes while the JWKS server hangs, so the tick responds to every held
    // request with 503 in one callback.
    const HELD: usize = 600;
    let server = JwksServer::start("expiry-jwks", jwks_of(&[KEY_1]));
    server.set_fault(Some(Fault::Hang));
    let settings = json!({ "cache_duration_seconds": 600, "timeout_ms": 5000, "startup_wait_ms": 2000 });
    let gateway = Arc::new(Gateway::start_with_workers("expiry", &[route("expiry", &server, settings)], 1));
    let valid = signed_by(KEY_1);

    // Raw requests with `Connection: close`: Envoy then also closes each connection inside the
    // same callback, and only that made about 400 replies overflow the stack before the fix.
    let port = gateway.port("expiry");
    let authorization = format!("Authorization: Bearer {valid}");
    let results = call_at_once(HELD, move || raw_code(port, &authorization));
    let codes = count_codes(results.iter().map(|(code, _)| code.clone()));
    let held_count = count_slower_than(&results, Duration::from_millis(200));
    println!("mass expiry: {HELD} requests, {held_count} held at start-up, replies {codes:?}");
    server.set_fault(None);

    assert!(held_count >= HELD / 2, "only {held_count} of {HELD} requests were held; the test did not exercise the deadline");
    assert_eq!(codes, vec![("503 jwks_unavailable".to_string(), HELD)], "every held request must get 503 jwks_unavailable\n{}", gateway.log_tail());
    warm_up(&gateway, "expiry", &valid, Duration::from_secs(15));
}

#[test]
fn mass_release_across_sources_keeps_vm_alive() {
    // With one worker, the main thread's root context makes the start-up fetches and the worker
    // adopts every source's keys in one tick. Before the release was counted per callback, each
    // source released up to 50 replies of its own, and eight sources overflowed the stack.
    const SOURCES: usize = 8;
    const HELD: usize = 600;
    let server = JwksServer::start("sources-jwks", jwks_of(&[KEY_1]));
    server.set_latency(Duration::from_millis(1500));
    let issuer = |index: usize| format!("{ISSUER}/source-{index}");
    let mut config = plugin_config("sources", "remote_jwks", json!({ "uri": server.jwks_uri() }));
    config["providers"] = (0..SOURCES)
        .map(|index| {
            json!({
                "name": format!("source-{index}"),
                "issuer": issuer(index),
                "audiences": [tokens::AUDIENCE],
                "remote_jwks": {
                    "uri": format!("{}?source={index}", server.jwks_uri()),
                    "cluster": jwks_cluster("sources"),
                    "timeout_ms": 5000,
                    "startup_wait_ms": 10000,
                    "cache_duration_seconds": 600
                }
            })
        })
        .collect();
    let route = Route { name: "sources".into(), plugin_config: config, jwks_port: server.port() };
    let gateway = Arc::new(Gateway::start_with_workers("sources", &[route], 1));
    // Each token names one source's issuer and a known kid, and its signature does not verify.
    let forged: Vec<String> = (0..SOURCES)
        .map(|index| with_kid(&tokens::sign(Algorithm::RS256, KEY_1, &idp_like_claims(&issuer(index))), KEY_1))
        .collect();

    let next = Arc::new(AtomicUsize::new(0));
    let port = gateway.port("sources");
    let results = call_at_once(HELD, move || {
        let token = &forged[next.fetch_add(1, Ordering::SeqCst) % SOURCES];
        describe_code(&gateway::call(port, token))
    });
    let codes = count_codes(results.iter().map(|(code, _)| code.clone()));
    let held_count = count_slower_than(&results, Duration::from_millis(500));
    println!("mass release across sources: {HELD} requests over {SOURCES} sources, {held_count} held, replies {codes:?}");
    server.set_latency(Duration::ZERO);

    assert!(held_count >= HELD / 2, "only {held_count} of {HELD} requests were held; the test did not exercise the release");
    assert_eq!(codes, vec![("401 signature_invalid".to_string(), HELD)], "every held request must get 401 signature_invalid\n{}", gateway.log_tail());
    let valid = tokens::sign(Algorithm::RS256, KEY_1, &idp_like_claims(&issuer(0)));
    let after = gateway.call("sources", &valid);
    assert_eq!(status_of(&after), Some(200), "a valid token after the release got {}\n{}", describe(&after), gateway.log_tail());
}

/// Runs `call` `count` times at the same moment, each on its own thread, and returns what each
/// call returned with its duration.
fn call_at_once(count: usize, call: impl Fn() -> String + Send + Sync + 'static) -> Vec<(String, Duration)> {
    let call = Arc::new(call);
    let barrier = Arc::new(std::sync::Barrier::new(count));
    let clients: Vec<_> = (0..count)
        .map(|_| {
            let (call, barrier) = (Arc::clone(&call), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let started = Instant::now();
                let code = call();
                (code, started.elapsed())
            })
        })
        .collect();
    clients.into_iter().map(|client| client.join().expect("a client thread panicked")).collect()
}

/// Counts the calls that took at least `threshold`, which in these tests means they were held.
fn count_slower_than(results: &[(String, Duration)], threshold: Duration) -> usize {
    results.iter().filter(|(_, took)| *took >= threshold).count()
}

/// Sends `GET` with the header line `authorization` on a raw HTTP/1.1 connection with
/// `Connection: close`, and describes the reply as `describe_code` does.
fn raw_code(port: u16, authorization: &str) -> String {
    let lines = ["Host: 127.0.0.1".to_owned(), authorization.to_owned()];
    let reply = http::try_get_raw(port, gateway::API_PATH, &lines).map(|(status, response)| Reply {
        status,
        headers: Vec::new(),
        body: response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned(),
    });
    describe_code(&reply)
}
