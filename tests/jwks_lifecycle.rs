//! End-to-end tests of the remote key set's life cycle in real Envoy 1.40 with four workers:
//! shared fetches, key rotation under load, unknown-kid storms, JWKS outages, the start-up
//! hold, bootstrap keys and OpenID discovery. Every JWKS server is the test's own, on
//! 127.0.0.1, so each test switches its behaviour and counts its fetches.
//!
//! Run with `make test` or, after `make deps build`, `cargo test --test jwks_lifecycle -- --nocapture`
//! to see the measured numbers. Configs and Envoy logs stay in
//! $TMPDIR/idaas-jwt-filter-e2e-<pid>/.
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
#[path = "jwks_lifecycle/gateway.rs"]
mod gateway;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/http.rs"]
mod http;
#[allow(dead_code, reason = "shared with tests/held_requests.rs; this binary uses part of it")]
#[path = "jwks_lifecycle/helpers.rs"]
mod helpers;
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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};

use gateway::{describe, jwks_cluster, plugin_config, reason_code, Gateway, Route, ISSUER};
use http::Reply;
use jwks_server::{akp_jwk, fixture_jwk, jwks_of, Fault, JwksServer};
use helpers::{count_codes, describe_code, remote_jwks, route, signed_by, status_of, warm_up, with_kid, KEY_1};
use tokens::{idp_like_claims, UNPUBLISHED_KEY_ID};

/// The signing key after the rotation. The local IdP never publishes it; these tests' JWKS
/// servers do.
const KEY_2: &str = UNPUBLISHED_KEY_ID;
/// Period of the filter's root-context tick, which adopts published keys and starts fetches.
const TICK_MS: u64 = 250;
/// Allowance for scheduling delays on a loaded two-core machine, added to computed bounds.
const SCHEDULING_SLACK_MS: u64 = 300;

fn random_hex(random: &SystemRandom, bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    random.fill(&mut buffer).expect("no system randomness");
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

// --- Fetches shared by the workers ---

#[test]
fn workers_share_one_fetch_per_interval() {
    const CACHE_SECONDS: u64 = 3;
    const INTERVALS: u64 = 3;
    const REQUEST_INTERVAL_MS: u64 = 50;
    let server = JwksServer::start("fetch-count-jwks", jwks_of(&[KEY_1]));
    // The filter clamps max-age to cache_duration_seconds, so the TTL stays 3 s.
    server.set_cache_control(Some("public, max-age=3600"));
    let gateway = Gateway::start(
        "fetch_count",
        &[route("fetch_count", &server, json!({ "cache_duration_seconds": CACHE_SECONDS, "timeout_ms": 1000 }))],
    );
    let token = signed_by(KEY_1);
    warm_up(&gateway, "fetch_count", &token, Duration::from_secs(10));

    // Steady traffic until three cache durations have passed since the first fetch.
    let first_fetch = server.fetches()[0].received_at;
    let window_end = first_fetch + Duration::from_secs(CACHE_SECONDS * INTERVALS);
    let traffic_end = window_end + Duration::from_millis(SCHEDULING_SLACK_MS);
    let max_requests = (CACHE_SECONDS * INTERVALS * 1000 / REQUEST_INTERVAL_MS) as usize + 50;
    let mut sent = 0;
    let mut not_ok = Vec::new();
    while Instant::now() < traffic_end && sent < max_requests {
        let reply = gateway.call("fetch_count", &token);
        sent += 1;
        if status_of(&reply) != Some(200) {
            not_ok.push(describe(&reply));
        }
        thread::sleep(Duration::from_millis(REQUEST_INTERVAL_MS));
    }

    let fetches: Vec<Instant> = server
        .fetches()
        .iter()
        .map(|fetch| fetch.received_at)
        .filter(|received_at| *received_at <= window_end)
        .collect();
    let gaps_ms: Vec<u64> = fetches.windows(2).map(|pair| (pair[1] - pair[0]).as_millis() as u64).collect();
    let refreshes = fetches.len() - 1;
    println!(
        "fetch count: {} JWKS fetches in the {} s after the first (1 initial + {refreshes} refreshes), {sent} requests, gaps {gaps_ms:?} ms",
        fetches.len(),
        CACHE_SECONDS * INTERVALS
    );

    assert!(not_ok.is_empty(), "{} of {sent} requests did not get 200: {:?}", not_ok.len(), &not_ok[..not_ok.len().min(5)]);
    // One refresh starts at 80-90% of the TTL (2.4-2.7 s), on the first tick of any worker
    // after that point (at most 250 ms later), and the next TTL counts from the response. So
    // consecutive fetches are 2.4 s to 2.95 s apart, plus scheduling slack. Two fetches closer
    // than 2.4 s mean two VMs fetched for one interval.
    let min_gap_ms = CACHE_SECONDS * 1000 * 8 / 10;
    let max_gap_ms = CACHE_SECONDS * 1000 * 9 / 10 + TICK_MS + SCHEDULING_SLACK_MS;
    for gap in &gaps_ms {
        assert!(*gap >= min_gap_ms, "two fetches {gap} ms apart (less than {min_gap_ms} ms): more than one VM fetched; gaps {gaps_ms:?}");
        assert!(*gap <= max_gap_ms, "no fetch for {gap} ms (more than {max_gap_ms} ms): a refresh was late; gaps {gaps_ms:?}");
    }
    // With those gaps, 9 s after the first fetch hold floor(9 / 3.25) = 2 to floor(9 / 2.4) = 3
    // refreshes. If each of the 5 VMs (4 workers and the main thread) fetched on its own, the
    // server would see about 5 times as many.
    let min_refreshes = (CACHE_SECONDS * INTERVALS * 1000 / max_gap_ms) as usize;
    let max_refreshes = (CACHE_SECONDS * INTERVALS * 1000 / min_gap_ms) as usize;
    assert!(
        (min_refreshes..=max_refreshes).contains(&refreshes),
        "{refreshes} refreshes in {} s, expected {min_refreshes} to {max_refreshes}; gaps {gaps_ms:?}",
        CACHE_SECONDS * INTERVALS
    );
}

// --- Key rotation ---

/// The outcome of one request of the rotation load.
struct Outcome {
    key_id: &'static str,
    phase: &'static str,
    reply: Result<Reply, String>,
}

#[test]
fn rotation_under_load_rejects_no_valid_token() {
    const LOAD_THREADS: usize = 4;
    const PHASE_SECONDS: u64 = 4;
    const MAX_REQUESTS_PER_THREAD: usize = 1500;
    const PAUSE_BETWEEN_REQUESTS_MS: u64 = 20;
    // An IdP that responds in 300 ms, as one in another region may. A refetch then stays in
    // flight for more than one tick, so every other worker notes its start before its result.
    const JWKS_LATENCY_MS: u64 = 300;
    let server = JwksServer::start("rotation-jwks", jwks_of(&[KEY_1]));
    server.set_latency(Duration::from_millis(JWKS_LATENCY_MS));
    let gateway = Arc::new(Gateway::start(
        "rotation",
        &[route("rotation", &server, json!({ "cache_duration_seconds": 3, "timeout_ms": 1500 }))],
    ));
    let token_1 = signed_by(KEY_1);
    let token_2 = signed_by(KEY_2);
    warm_up(&gateway, "rotation", &token_1, Duration::from_secs(10));

    // Phase "key 1": everyone signs with key 1. Phase "key 2 added": the IdP publishes key 2 and
    // signs new tokens with it at once, while one client still sends a token signed by key 1
    // (issued before the rotation, still valid). Phase "key 1 dropped": only key 2 is
    // published and used.
    let phase = Arc::new(Mutex::new("key 1"));
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let mut clients = Vec::new();
    for client in 0..LOAD_THREADS {
        let (gateway, phase, stop, outcomes) = (Arc::clone(&gateway), Arc::clone(&phase), Arc::clone(&stop), Arc::clone(&outcomes));
        let (token_1, token_2) = (token_1.clone(), token_2.clone());
        clients.push(thread::spawn(move || {
            for _ in 0..MAX_REQUESTS_PER_THREAD {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let current = *phase.lock().unwrap();
                let key_id = match current {
                    "key 1" => KEY_1,
                    "key 2 added" if client == 0 => KEY_1,
                    _ => KEY_2,
                };
                let token = if key_id == KEY_1 { &token_1 } else { &token_2 };
                let reply = gateway.call("rotation", token);
                outcomes.lock().unwrap().push(Outcome { key_id, phase: current, reply });
                thread::sleep(Duration::from_millis(PAUSE_BETWEEN_REQUESTS_MS));
            }
        }));
    }

    thread::sleep(Duration::from_secs(PHASE_SECONDS));
    server.set_jwks(jwks_of(&[KEY_1, KEY_2]));
    *phase.lock().unwrap() = "key 2 added";
    thread::sleep(Duration::from_secs(PHASE_SECONDS));
    // Clients stop using key 1 before the IdP stops publishing it.
    *phase.lock().unwrap() = "key 1 dropped";
    thread::sleep(Duration::from_millis(100));
    server.set_jwks(jwks_of(&[KEY_2]));
    let dropped_at = Instant::now();
    thread::sleep(Duration::from_secs(PHASE_SECONDS));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("a load thread panicked");
    }

    // Wait until a fetch that started after the drop has completed, plus two ticks for
    // every worker to adopt it.
    let refreshed_deadline = Instant::now() + Duration::from_secs(5);
    while !server.fetches().iter().any(|fetch| fetch.received_at > dropped_at && fetch.answered_at.is_some())
        && Instant::now() < refreshed_deadline
    {
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(2 * TICK_MS + 100));
    let after_drop: Vec<Result<Reply, String>> = (0..12).map(|_| gateway.call("rotation", &token_1)).collect();

    let outcomes = outcomes.lock().unwrap();
    let rejected: Vec<String> = outcomes
        .iter()
        .filter(|outcome| status_of(&outcome.reply) != Some(200))
        .map(|outcome| format!("[{}] {}: {}", outcome.phase, outcome.key_id, describe(&outcome.reply)))
        .collect();
    let count = |key_id: &str| outcomes.iter().filter(|outcome| outcome.key_id == key_id).count();
    println!(
        "rotation: {} requests ({} with key 1, {} with key 2), valid tokens rejected: {}, JWKS fetches: {}",
        outcomes.len(),
        count(KEY_1),
        count(KEY_2),
        rejected.len(),
        server.fetch_count()
    );
    let dropped_key_replies: Vec<String> = after_drop.iter().map(describe).collect();
    println!("rotation: key 1 tokens after the drop: {dropped_key_replies:?}");

    assert!(
        rejected.is_empty(),
        "{} valid tokens were rejected during the rotation, first ones: {:#?}",
        rejected.len(),
        &rejected[..rejected.len().min(10)]
    );
    for reply in &after_drop {
        assert_eq!(status_of(reply), Some(401), "a key 1 token after the drop got {}", describe(reply));
        assert_eq!(reason_code(reply.as_ref().unwrap()), "key_not_found", "a key 1 token after the drop got {}", describe(reply));
    }
}

// --- Unknown kids ---

#[test]
fn unknown_kid_storm_is_rate_limited() {
    const REQUESTS: usize = 1000;
    const CLIENT_THREADS: usize = 8;
    const REFETCH_INTERVAL_SECONDS: u64 = 2;
    let server = JwksServer::start("storm-jwks", jwks_of(&[KEY_1]));
    let gateway = Arc::new(Gateway::start(
        "storm",
        &[route(
            "storm",
            &server,
            json!({ "cache_duration_seconds": 600, "timeout_ms": 1000, "kid_refetch_min_interval_seconds": REFETCH_INTERVAL_SECONDS }),
        )],
    ));
    let valid = signed_by(KEY_1);
    warm_up(&gateway, "storm", &valid, Duration::from_secs(10));
    let fetches_before = server.fetch_count();

    let random = SystemRandom::new();
    let storm_tokens: Vec<String> = (0..REQUESTS).map(|_| with_kid(&valid, &format!("storm-{}", random_hex(&random, 8)))).collect();
    let storm_tokens = Arc::new(storm_tokens);
    let next = Arc::new(AtomicUsize::new(0));
    let replies = Arc::new(Mutex::new(Vec::with_capacity(REQUESTS)));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENT_THREADS)
        .map(|_| {
            let (gateway, storm_tokens, next, replies) = (Arc::clone(&gateway), Arc::clone(&storm_tokens), Arc::clone(&next), Arc::clone(&replies));
            thread::spawn(move || loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(token) = storm_tokens.get(index) else {
                    break;
                };
                let reply = gateway.call("storm", token);
                replies.lock().unwrap().push(reply);
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a storm thread panicked");
    }
    let duration = started.elapsed();
    // A refetch started near the end of the storm is counted if it reaches the server.
    thread::sleep(Duration::from_millis(2 * TICK_MS));
    let storm_fetches = server.fetch_count() - fetches_before;

    let replies = replies.lock().unwrap();
    let codes = count_codes(replies.iter().map(describe_code));
    // One refetch may start at once and then one per interval, from a shared limit: at most
    // floor(duration / interval) + 1.
    let max_fetches = (duration.as_millis() as u64 / (REFETCH_INTERVAL_SECONDS * 1000)) as usize + 1;
    println!(
        "unknown kid storm: {REQUESTS} requests in {:.2} s, JWKS fetches {storm_fetches} (limit {max_fetches}), replies {codes:?}",
        duration.as_secs_f64()
    );

    assert_eq!(replies.len(), REQUESTS);
    assert_eq!(codes, vec![("401 key_not_found".to_string(), REQUESTS)], "every storm request must get 401 key_not_found");
    assert!(storm_fetches >= 1, "no refetch for an unknown kid at all");
    assert!(storm_fetches <= max_fetches, "{storm_fetches} JWKS fetches during a {duration:?} storm, limit {max_fetches}");
    let after = gateway.call("storm", &valid);
    assert_eq!(status_of(&after), Some(200), "a valid token after the storm got {}", describe(&after));
}

// --- Outages ---

/// One outage scenario: the fault, or a key set with an unusable key, and the provider named
/// after it.
struct Outage {
    name: &'static str,
    fault: Option<Fault>,
    /// For the scenario without a fault: the key set served, with one unusable key.
    jwks: Option<Value>,
    /// Text the failure's warn line must contain.
    expected_log: &'static str,
}

fn outages() -> Vec<Outage> {
    let outage = |name, fault, expected_log| Outage { name, fault: Some(fault), jwks: None, expected_log };
    vec![
        outage("down", Fault::Down, "failed:"),
        outage("hang", Fault::Hang, "failed:"),
        outage("status500", Fault::ServerError, "HTTP 500"),
        outage("html", Fault::Html, "failed:"),
        outage("truncated", Fault::TruncatedJson, "failed:"),
        outage("cutoff", Fault::CutOff, "failed:"),
        outage("huge", Fault::HugeBody, "failed:"),
        Outage {
            name: "akp",
            fault: None,
            jwks: Some(json!({ "keys": [akp_jwk(), fixture_jwk(KEY_1)] })),
            expected_log: "skipping",
        },
        Outage {
            name: "rsa_exponent_one",
            fault: None,
            jwks: Some(json!({ "keys": [rsa_exponent_one_jwk(), fixture_jwk(KEY_1)] })),
            expected_log: "at least 3",
        },
    ]
}

/// Returns the public key `KEY_1` under another kid, with the exponent 1, which makes every
/// message its own signature.
fn rsa_exponent_one_jwk() -> Value {
    let mut jwk = fixture_jwk(KEY_1);
    jwk["kid"] = json!("rsa-exponent-one");
    jwk["e"] = json!("AQ");
    jwk
}

const OUTAGE_TIMEOUT_MS: u64 = 500;
const OUTAGE_STARTUP_WAIT_MS: u64 = 1000;

fn outage_settings() -> Value {
    json!({ "cache_duration_seconds": 2, "timeout_ms": OUTAGE_TIMEOUT_MS, "startup_wait_ms": OUTAGE_STARTUP_WAIT_MS })
}

/// Applies an outage to its server: the fault, or the key set with an unusable key.
fn break_server(server: &JwksServer, outage: &Outage) {
    match &outage.jwks {
        Some(jwks) => server.set_jwks(jwks.clone()),
        None => server.set_fault(outage.fault),
    }
}

fn fix_server(server: &JwksServer) {
    server.set_jwks(jwks_of(&[KEY_1]));
    server.set_fault(None);
}

/// The most failed fetches that `elapsed` allows with retries after 1 s, 2 s, 4 s, ...:
/// failure k comes at least 2^(k-1) - 1 s after the first.
fn max_failures_within(elapsed: Duration) -> usize {
    let seconds = elapsed.as_secs_f64() + 1.0;
    seconds.log2().floor() as usize + 1
}

/// Checks the warn lines of one provider's fetch failures: at least one, and no more than the
/// backoff allows (so not one per worker or per request). Returns the problems found.
fn check_failure_log(outage: &Outage, lines: &[String], elapsed: Duration, problems: &mut Vec<String>) {
    let expected = lines.iter().filter(|line| line.contains(outage.expected_log)).count();
    if expected == 0 {
        problems.push(format!("{}: no warn line with {:?}; lines: {lines:#?}", outage.name, outage.expected_log));
    }
    let limit = max_failures_within(elapsed);
    if outage.fault.is_some() && lines.len() > limit {
        problems.push(format!(
            "{}: {} failure lines within {elapsed:?}, backoff allows {limit}: {lines:#?}",
            outage.name,
            lines.len()
        ));
    }
}

fn failure_marker(name: &str) -> String {
    format!("provider {name}: fetch from")
}

fn skip_marker(name: &str) -> String {
    format!("provider {name}: JWKS from")
}

#[test]
fn outage_on_cold_start_gives_503_then_recovers() {
    let outages = outages();
    let servers: Vec<JwksServer> = outages
        .iter()
        .map(|outage| {
            let server = JwksServer::start(&format!("cold-{}-jwks", outage.name), jwks_of(&[KEY_1]));
            break_server(&server, outage);
            server
        })
        .collect();
    let routes: Vec<Route> = outages.iter().zip(&servers).map(|(outage, server)| route(outage.name, server, outage_settings())).collect();
    let gateway = Arc::new(Gateway::start("outage_cold", &routes));
    let token = signed_by(KEY_1);

    // First requests, one per scenario in parallel, since a cold 503 waits out startup_wait_ms.
    let first_replies: Vec<(Result<Reply, String>, Duration)> = outages
        .iter()
        .map(|outage| {
            let (gateway, token, name) = (Arc::clone(&gateway), token.clone(), outage.name);
            thread::spawn(move || {
                let reply = gateway.call(name, &token);
                (reply, gateway.started_at.elapsed())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|handle| handle.join().expect("a request thread panicked"))
        .collect();

    let mut problems = Vec::new();
    for (outage, (reply, since_start)) in outages.iter().zip(&first_replies) {
        println!("cold {}: first reply {} after {since_start:?}", outage.name, describe(reply));
        if outage.fault.is_none() {
            if status_of(reply) != Some(200) {
                problems.push(format!("{}: a valid token got {}, expected 200", outage.name, describe(reply)));
            }
            continue;
        }
        match reply {
            Ok(reply) if reply.status == 503 && reason_code(reply) == "jwks_unavailable" => {
                let retry_after = reply.header("retry-after").and_then(|value| value.parse::<u64>().ok());
                if retry_after.is_none_or(|seconds| seconds < 1) {
                    problems.push(format!("{}: 503 without a Retry-After of at least 1 s: {:?}", outage.name, reply.headers));
                }
                if *since_start < Duration::from_millis(OUTAGE_STARTUP_WAIT_MS) {
                    problems.push(format!("{}: 503 came {since_start:?} after Envoy started, before startup_wait_ms", outage.name));
                }
            }
            other => problems.push(format!("{}: a valid token got {}, expected 503 jwks_unavailable", outage.name, describe(other))),
        }
    }

    let broken_for = gateway.started_at.elapsed();
    for outage in &outages {
        let marker = if outage.fault.is_some() { failure_marker(outage.name) } else { skip_marker(outage.name) };
        let lines = gateway.wait_for_log_lines("warning", &marker, 0, Duration::from_secs(5));
        check_failure_log(outage, &lines, gateway.started_at.elapsed(), &mut problems);
        println!("cold {}: {} warn lines in {broken_for:?}, first: {:?}", outage.name, lines.len(), lines.first());
    }

    for server in &servers {
        fix_server(server);
    }
    let recoveries: Vec<(Result<Reply, String>, Duration)> = outages
        .iter()
        .map(|outage| {
            let (gateway, token, name) = (Arc::clone(&gateway), token.clone(), outage.name);
            thread::spawn(move || gateway.wait_for_ok(name, &token, Duration::from_millis(200), Duration::from_secs(20)))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|handle| handle.join().expect("a recovery thread panicked"))
        .collect();
    for (outage, (reply, took)) in outages.iter().zip(&recoveries) {
        println!("cold {}: after the fix {} within {took:?}", outage.name, describe(reply));
        if status_of(reply) != Some(200) {
            problems.push(format!("{}: no 200 within {took:?} after the fix; last {}", outage.name, describe(reply)));
        }
    }

    assert!(problems.is_empty(), "cold-start outages:\n{}\n{}", problems.join("\n"), gateway.log_tail());
}

#[test]
fn outage_with_warm_cache_keeps_serving_cached_keys() {
    let outages = outages();
    let servers: Vec<JwksServer> =
        outages.iter().map(|outage| JwksServer::start(&format!("warm-{}-jwks", outage.name), jwks_of(&[KEY_1]))).collect();
    let routes: Vec<Route> = outages.iter().zip(&servers).map(|(outage, server)| route(outage.name, server, outage_settings())).collect();
    let gateway = Arc::new(Gateway::start("outage_warm", &routes));
    let token = signed_by(KEY_1);
    for outage in &outages {
        warm_up(&gateway, outage.name, &token, Duration::from_secs(10));
    }

    let broken_at = Instant::now();
    for (outage, server) in outages.iter().zip(&servers) {
        break_server(server, outage);
    }
    let mut problems = Vec::new();
    // The next refresh (at most 1.8 s away with a 2 s TTL) meets the fault.
    for outage in &outages {
        let marker = if outage.fault.is_some() { failure_marker(outage.name) } else { skip_marker(outage.name) };
        let lines = gateway.wait_for_log_lines("warning", &marker, 0, Duration::from_secs(6));
        if lines.is_empty() {
            problems.push(format!("{}: no warn line {marker:?} within 6 s of the fault", outage.name));
        }
    }
    // Give every scenario a second failure, so the cache is stale and backing off.
    thread::sleep(Duration::from_millis(1500));

    for outage in &outages {
        let replies: Vec<Result<Reply, String>> = (0..8).map(|_| gateway.call(outage.name, &token)).collect();
        let not_ok: Vec<String> = replies.iter().filter(|reply| status_of(reply) != Some(200)).map(describe).collect();
        println!("warm {}: {} of 8 valid tokens got 200 during the outage", outage.name, 8 - not_ok.len());
        if !not_ok.is_empty() {
            problems.push(format!("{}: valid tokens during the outage got {not_ok:?}, expected 200 from the cached keys", outage.name));
        }
    }

    let broken_for = broken_at.elapsed();
    let loaded_before: Vec<usize> = outages
        .iter()
        .map(|outage| gateway.filter_log_lines("info", &format!("provider {}: loaded", outage.name)).len())
        .collect();
    for outage in &outages {
        let marker = if outage.fault.is_some() { failure_marker(outage.name) } else { skip_marker(outage.name) };
        let lines = gateway.filter_log_lines("warning", &marker);
        check_failure_log(outage, &lines, broken_for, &mut problems);
        println!("warm {}: {} warn lines in {broken_for:?}, first: {:?}", outage.name, lines.len(), lines.first());
    }

    for server in &servers {
        fix_server(server);
    }
    for (outage, before) in outages.iter().zip(&loaded_before) {
        let started = Instant::now();
        let loaded = gateway.wait_for_log_lines("info", &format!("provider {}: loaded", outage.name), *before, Duration::from_secs(20));
        let reply = gateway.call(outage.name, &token);
        println!("warm {}: after the fix, loaded lines {before} -> {} within {:?}, reply {}", outage.name, loaded.len(), started.elapsed(), describe(&reply));
        if loaded.len() <= *before {
            problems.push(format!("{}: no successful fetch logged within 20 s of the fix", outage.name));
        }
        if status_of(&reply) != Some(200) {
            problems.push(format!("{}: after the fix a valid token got {}", outage.name, describe(&reply)));
        }
    }

    assert!(problems.is_empty(), "warm-cache outages:\n{}\n{}", problems.join("\n"), gateway.log_tail());
}

#[test]
fn cached_token_is_rejected_once_keys_expire() {
    let server = JwksServer::start("expiry-jwks", jwks_of(&[KEY_1]));
    let settings = json!({ "cache_duration_seconds": 1, "max_stale_seconds": 0, "timeout_ms": OUTAGE_TIMEOUT_MS });
    let gateway = Gateway::start("cache_key_expiry", &[route("expiry", &server, settings)]);
    let token = signed_by(KEY_1);
    warm_up(&gateway, "expiry", &token, Duration::from_secs(10));
    fill_worker_caches(&gateway, "expiry", &token);

    server.set_fault(Some(Fault::Down));
    // The keys expire one second after the last successful fetch, since max_stale_seconds is 0.
    let last = call_while_ok(&gateway, "expiry", &token, Duration::from_secs(10));
    assert_eq!(status_of(&last), Some(503), "no 503 within 10 s of the outage: {}\n{}", describe(&last), gateway.log_tail());

    // Every worker's keys have expired by now, so no cached entry may let the token through.
    thread::sleep(Duration::from_millis(1000 + SCHEDULING_SLACK_MS));
    let passed: Vec<String> = (0..CACHE_FILL_REQUESTS)
        .map(|_| gateway.call("expiry", &token))
        .filter(|reply| status_of(reply) != Some(503))
        .map(|reply| describe(&reply))
        .collect();
    assert!(passed.is_empty(), "replies other than 503 after the keys expired: {passed:?}\n{}", gateway.log_tail());
}

#[test]
fn cache_settings_are_not_shared() {
    let server = JwksServer::start("settings-jwks", jwks_of(&[KEY_1]));
    // Both routes fetch through the same cluster and URI, so only their settings differ.
    let lenient = route("lenient", &server, json!({ "timeout_ms": OUTAGE_TIMEOUT_MS }));
    let strict_settings = json!({
        "cluster": jwks_cluster("lenient"),
        "cache_duration_seconds": 1,
        "max_stale_seconds": 0,
        "timeout_ms": OUTAGE_TIMEOUT_MS
    });
    let strict = route("strict", &server, strict_settings);
    let gateway = Gateway::start("cache_settings_apart", &[lenient, strict]);
    let token = signed_by(KEY_1);
    for name in ["lenient", "strict"] {
        warm_up(&gateway, name, &token, Duration::from_secs(10));
        fill_worker_caches(&gateway, name, &token);
    }

    server.set_fault(Some(Fault::Down));
    let last = call_while_ok(&gateway, "strict", &token, Duration::from_secs(10));
    assert_eq!(status_of(&last), Some(503), "strict: no 503 within 10 s of the outage: {}\n{}", describe(&last), gateway.log_tail());
    thread::sleep(Duration::from_millis(1000 + SCHEDULING_SLACK_MS));

    let replies = |name: &str| -> Vec<Option<u16>> { (0..CACHE_FILL_REQUESTS).map(|_| status_of(&gateway.call(name, &token))).collect() };
    let strict_replies = replies("strict");
    assert!(strict_replies.iter().all(|status| *status == Some(503)), "strict after expiry: {strict_replies:?}\n{}", gateway.log_tail());
    // The lenient route's keys stay usable for max_stale_seconds (one day by default).
    let lenient_replies = replies("lenient");
    assert!(lenient_replies.iter().all(|status| *status == Some(200)), "lenient during the outage: {lenient_replies:?}\n{}", gateway.log_tail());
}

#[test]
fn unknown_kid_during_outage_is_rejected_without_waiting() {
    // Well under the hold deadline of a kid refetch (fetch timeout + 1 s grace + two ticks).
    const MAX_REJECTION_MS: u128 = 800;
    let server = JwksServer::start("kid-outage-jwks", jwks_of(&[KEY_1]));
    let settings = json!({ "timeout_ms": OUTAGE_TIMEOUT_MS, "kid_refetch_min_interval_seconds": 1 });
    let gateway = Gateway::start("kid_outage", &[route("kid-outage", &server, settings)]);
    let valid = signed_by(KEY_1);
    warm_up(&gateway, "kid-outage", &valid, Duration::from_secs(10));

    server.set_fault(Some(Fault::ServerError));
    // The first unknown kid starts a refetch, which fails; the shared backoff begins.
    let first = gateway.call("kid-outage", &with_kid(&valid, "outage-kid-0"));
    let code = |reply: &Result<Reply, String>| reply.as_ref().map(reason_code).unwrap_or_default();
    assert_eq!(code(&first), "key_not_found", "first: {}", describe(&first));

    let mut slow = Vec::new();
    for attempt in 1..=6 {
        let started = Instant::now();
        let reply = gateway.call("kid-outage", &with_kid(&valid, &format!("outage-kid-{attempt}")));
        let elapsed = started.elapsed();
        assert_eq!(code(&reply), "key_not_found", "attempt {attempt}: {}", describe(&reply));
        if elapsed.as_millis() > MAX_REJECTION_MS {
            slow.push(format!("attempt {attempt}: {elapsed:?}"));
        }
    }
    assert!(slow.is_empty(), "unknown kids waited for a refetch that could not run: {slow:?}\n{}", gateway.log_tail());
}

/// Requests that reach every worker of the test gateway at least once, in practice.
const CACHE_FILL_REQUESTS: usize = 20;

/// Sends `token` on `route` often enough to reach every worker, so each worker caches it.
fn fill_worker_caches(gateway: &Gateway, route: &str, token: &str) {
    for _ in 0..CACHE_FILL_REQUESTS {
        let reply = gateway.call(route, token);
        assert_eq!(status_of(&reply), Some(200), "{route}: the token must pass before the outage: {}", describe(&reply));
    }
}

/// Sends `token` on `route` every 100 ms while it gets 200, for at most `timeout`, and returns
/// the last reply.
fn call_while_ok(gateway: &Gateway, route: &str, token: &str, timeout: Duration) -> Result<Reply, String> {
    let deadline = Instant::now() + timeout;
    let mut last = gateway.call(route, token);
    while status_of(&last) == Some(200) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        last = gateway.call(route, token);
    }
    last
}

// --- Start-up, bootstrap keys and discovery ---

#[test]
fn startup_request_is_held_until_first_keys() {
    const JWKS_LATENCY_MS: u64 = 1000;
    let server = JwksServer::start("startup-jwks", jwks_of(&[KEY_1]));
    server.set_latency(Duration::from_millis(JWKS_LATENCY_MS));
    // timeout_ms (1500) and startup_wait_ms (3000) keep their defaults.
    let gateway = Gateway::start("startup", &[route("startup", &server, json!({ "cache_duration_seconds": 600 }))]);
    let sent_at = Instant::now();
    let reply = gateway.call("startup", &signed_by(KEY_1));
    let took = sent_at.elapsed();
    let fetches = server.fetches();
    let first_answer = fetches.first().and_then(|fetch| fetch.answered_at);
    println!(
        "startup: request sent {:?} after Envoy started, reply {} after {took:?}; first JWKS fetch received {:?} and answered {:?} after Envoy started",
        sent_at - gateway.started_at,
        describe(&reply),
        fetches.first().map(|fetch| fetch.received_at - gateway.started_at),
        first_answer.map(|answered| answered - gateway.started_at)
    );

    assert!(
        first_answer.is_none_or(|answered| answered > sent_at),
        "the JWKS server answered before the request was sent, so nothing was held; raise JWKS_LATENCY_MS"
    );
    assert_eq!(status_of(&reply), Some(200), "request during start-up got {}\n{}", describe(&reply), gateway.log_tail());
}

#[test]
fn bootstrap_keys_serve_while_remote_is_down() {
    let server = JwksServer::start("bootstrap-jwks", jwks_of(&[KEY_1]));
    server.set_fault(Some(Fault::Down));
    let mut config = plugin_config(
        "bootstrap",
        "remote_jwks",
        remote_jwks(&server, json!({ "cache_duration_seconds": 600, "timeout_ms": 500, "startup_wait_ms": 1000 })),
    );
    config["providers"][0]["local_jwks"] = jwks_of(&[KEY_1]);
    let gateway = Gateway::start("bootstrap", &[Route { name: "bootstrap".into(), plugin_config: config, jwks_port: server.port() }]);

    let replies: Vec<Result<Reply, String>> = (0..8).map(|_| gateway.call("bootstrap", &signed_by(KEY_1))).collect();
    let failures = gateway.wait_for_log_lines("warning", &failure_marker("bootstrap"), 0, Duration::from_secs(5));
    println!("bootstrap: replies {:?}, remote fetch failures logged {}", replies.iter().map(status_of).collect::<Vec<_>>(), failures.len());

    for reply in &replies {
        assert_eq!(status_of(reply), Some(200), "bootstrap-key token got {}\n{}", describe(reply), gateway.log_tail());
    }
    assert!(!failures.is_empty(), "no warn line for the unreachable remote JWKS");
}

#[test]
fn discovery_document_checks_issuer() {
    let good = JwksServer::start("discovery-good", jwks_of(&[KEY_1]));
    good.set_discovery(json!({ "issuer": ISSUER, "jwks_uri": good.jwks_uri() }));
    let wrong_issuer = "https://other-tenant.test/oauth2";
    let wrong = JwksServer::start("discovery-wrong", jwks_of(&[KEY_1]));
    wrong.set_discovery(json!({ "issuer": wrong_issuer, "jwks_uri": wrong.jwks_uri() }));
    let discovery = |name: &str, server: &JwksServer| Route {
        name: name.to_string(),
        plugin_config: plugin_config(
            name,
            "discovery",
            json!({ "uri": server.discovery_uri(), "cluster": jwks_cluster(name), "timeout_ms": 500, "startup_wait_ms": 1000 }),
        ),
        jwks_port: server.port(),
    };
    let gateway = Gateway::start("discovery", &[discovery("discovered", &good), discovery("wrong_issuer", &wrong)]);
    let token = signed_by(KEY_1);

    warm_up(&gateway, "discovered", &token, Duration::from_secs(10));
    let reply = gateway.call("wrong_issuer", &token);
    gateway.wait_for_log_lines("error", "provider wrong_issuer:", 0, Duration::from_secs(3));
    // A discovery fetch may be in flight; give its error line time to be written.
    let discovery_fetches = wrong.discovery_fetch_count();
    let error_lines = gateway.wait_for_log_lines("error", "provider wrong_issuer:", discovery_fetches.saturating_sub(1), Duration::from_secs(1));
    let mismatch_lines: Vec<&String> =
        error_lines.iter().filter(|line| line.contains(wrong_issuer) && line.contains(ISSUER)).collect();
    println!(
        "discovery: good provider fetched discovery {} and JWKS {} times; wrong issuer: reply {}, discovery fetches {}, JWKS fetches {}, error lines {}",
        good.discovery_fetch_count(),
        good.fetch_count(),
        describe(&reply),
        wrong.discovery_fetch_count(),
        wrong.fetch_count(),
        error_lines.len()
    );
    println!("discovery: first error line: {:?}", error_lines.first());

    assert_eq!(status_of(&reply), Some(503), "wrong-issuer provider gave {}", describe(&reply));
    assert_eq!(reason_code(reply.as_ref().unwrap()), "jwks_unavailable");
    // The load line names the key set's own URL, not the discovery document's.
    let loaded = gateway.wait_for_log_lines("info", "provider discovered: loaded", 0, Duration::from_secs(1));
    assert!(
        loaded.iter().any(|line| line.contains(&format!("from {} (", good.jwks_uri()))),
        "no load line names {}: {loaded:#?}",
        good.jwks_uri()
    );
    assert_eq!(wrong.fetch_count(), 0, "the JWKS named by a document for another issuer was fetched");
    assert!(!mismatch_lines.is_empty(), "no error line names both issuers: {error_lines:#?}");
    // One error line per failed discovery attempt, not one per worker or request.
    assert_eq!(error_lines.len(), discovery_fetches, "error lines {error_lines:#?} for {discovery_fetches} discovery fetches");
}

#[test]
fn discovery_keys_are_not_shared_across_issuers() {
    // Two providers fetch one discovery document through one cluster. The document names the
    // first provider's issuer, so the second must get no keys, also not the first one's.
    let other_issuer = "https://other-tenant.test/oauth2";
    let server = JwksServer::start("discovery-shared", jwks_of(&[KEY_1]));
    server.set_discovery(json!({ "issuer": ISSUER, "jwks_uri": server.jwks_uri() }));
    let source = json!({ "uri": server.discovery_uri(), "cluster": jwks_cluster("named"), "timeout_ms": 500, "startup_wait_ms": 1000 });
    let named = Route { name: "named".into(), plugin_config: plugin_config("named", "discovery", source.clone()), jwks_port: server.port() };
    let mut other_config = plugin_config("other", "discovery", source);
    other_config["providers"][0]["issuer"] = json!(other_issuer);
    let other = Route { name: "other".into(), plugin_config: other_config, jwks_port: server.port() };
    let gateway = Gateway::start("discovery_shared", &[named, other]);

    warm_up(&gateway, "named", &signed_by(KEY_1), Duration::from_secs(10));
    let other_token = tokens::sign(Algorithm::RS256, KEY_1, &idp_like_claims(other_issuer));
    let replies: Vec<Option<u16>> = (0..8).map(|_| status_of(&gateway.call("other", &other_token))).collect();
    println!("discovery shared: replies for the other issuer {replies:?}");

    assert!(replies.iter().all(|status| *status == Some(503)), "the other issuer's provider got keys: {replies:?}\n{}", gateway.log_tail());
}
