//! Hardening tests in real Envoy 1.40 with the built .wasm: the attack corpus
//! (tests/corpus/attacks.json) sent as requests, 10,000 requests with random garbage in
//! `Authorization`, and header bytes that are not UTF-8. After each run a valid token must
//! still get 200, which shows the Wasm VM survived, and Envoy's log must show no panic.
//!
//! The filter checks tokens against inline keys (`local_jwks`), so only the upstream echo and
//! Envoy run, on free 127.0.0.1 ports. Run with `make test` or, after `make deps build`,
//! `cargo test --test hardening`. Configs and logs stay in $TMPDIR/idaas-jwt-filter-e2e-<pid>/.
//!
//! `HARDENING_SEED` (a decimal u64) replays one garbage run; the seed is in every failure message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests report failures by panicking"
)]

#[path = "corpus/corpus.rs"]
mod corpus;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/envoy_config.rs"]
mod envoy_config;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/http.rs"]
mod http;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/processes.rs"]
mod processes;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/stack.rs"]
mod stack;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/tokens.rs"]
mod tokens;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use corpus::Corpus;
use envoy_config::{ClusterPorts, ListenerSpec};
use http::Reply;
use processes::ChildProcess;
use stack::{free_ports, wait_until_ready, work_dir};

const API_PATH: &str = "/v1/chat/completions";
const GARBAGE_REQUESTS: usize = 10_000;
/// Concurrent client threads for the garbage run; Envoy runs one worker.
const GARBAGE_THREADS: usize = 8;
/// Time limit of the whole garbage run.
const GARBAGE_TIME_LIMIT_SECONDS: u64 = 300;
/// Maximum length of a garbage value, a little over the filter's 8 KiB token limit.
const GARBAGE_MAX_LENGTH: usize = 9 * 1024;
const DEFAULT_SEED: u64 = 0x1daa_5e4d_5eed;
/// Garbage requests shown in a failure message.
const FAILURES_SHOWN: usize = 20;
const RAW_REQUEST_TIMEOUT_SECONDS: u64 = 10;
/// Envoy's default limit on the request headers (`max_request_headers_kb`: 60); a longer
/// `Authorization` value gets 431 from Envoy itself.
const ENVOY_MAX_HEADERS_BYTES: usize = 60 * 1024;
/// Log lines that show a Wasm panic, a dead VM or an Envoy crash.
const FATAL_LOG_MARKERS: [&str; 4] = ["panicked", "Wasm VM failed", "[critical]", "Uncaught RuntimeError"];

/// One Envoy whose only listener runs the filter with the corpus configuration, and the
/// upstream echo behind it.
struct Gateway {
    name: String,
    listener: u16,
    envoy: ChildProcess,
    _upstream: ChildProcess,
}

impl Gateway {
    fn start(name: &str, corpus: &Corpus) -> Result<Gateway, String> {
        let envoy_bin = stack::envoy_bin();
        if !envoy_bin.is_file() {
            return Err(format!("Envoy not found at {}: run `make deps-envoy` or set ENVOY_BIN", envoy_bin.display()));
        }
        if !stack::wasm_path().is_file() {
            return Err(format!("{} not found: run `make build`", stack::wasm_path().display()));
        }
        let ports = free_ports(4)?;
        let [upstream_port, admin_port, listener_port, unused_port] = ports[..] else {
            return Err(format!("expected 4 ports, got {ports:?}"));
        };

        let mut upstream_command = Command::new("node");
        upstream_command
            .current_dir(stack::repo_root())
            .arg("envoy/upstream/upstream.js")
            .env("UPSTREAM_PORT", upstream_port.to_string());
        let upstream = ChildProcess::spawn(&format!("{name}_upstream"), upstream_command, &work_dir().join(format!("{name}_upstream.log")))?;
        wait_until_ready(&upstream, &format!("http://127.0.0.1:{upstream_port}/ready"))?;

        let spec = ListenerSpec { name: name.to_owned(), port: listener_port, plugin_config: corpus::plugin_config(corpus) };
        // The keys are inline, so the JWKS clusters are never contacted.
        let clusters = ClusterPorts { idp: unused_port, upstream: upstream_port, closed: unused_port };
        let config = envoy_config::bootstrap(admin_port, &[spec], &stack::wasm_path(), &clusters);
        let envoy = stack::spawn_envoy(&format!("{name}_envoy"), &config)?;
        wait_until_ready(&envoy, &format!("http://127.0.0.1:{admin_port}/ready"))?;

        Ok(Gateway { name: name.to_owned(), listener: listener_port, envoy, _upstream: upstream })
    }

    fn get(&self, authorization: Option<&str>) -> Reply {
        http::get(self.listener, API_PATH, authorization)
    }

    /// Returns the lines of Envoy's log that show a panic, a failed VM or a crash.
    fn fatal_log_lines(&self) -> Vec<String> {
        self.envoy
            .log()
            .lines()
            .filter(|line| FATAL_LOG_MARKERS.iter().any(|marker| line.contains(marker)))
            .map(str::to_owned)
            .collect()
    }

    /// Checks that Envoy still runs, that a valid token still gets 200, and that the log shows
    /// no panic.
    fn assert_survived(&self, corpus: &Corpus, after: &str) {
        if let Some(status) = self.envoy.exit_status() {
            panic!("{} exited with {status} after {after}\n{}", self.name, self.envoy.log_tail());
        }
        let control = &corpus.controls[0];
        let reply = self.get(Some(&format!("Bearer {}", control.token)));
        assert_eq!(reply.status, 200, "valid token {} after {after}: {reply:?}\n{}", control.name, self.envoy.log_tail());
        let fatal = self.fatal_log_lines();
        assert!(fatal.is_empty(), "Envoy's log after {after} shows a panic or a failed VM:\n{}", fatal.join("\n"));
    }
}

fn shared_corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(corpus::load)
}

/// Returns the gateway the corpus and garbage tests share, starting it on first use.
fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Result<Gateway, String>> = OnceLock::new();
    match GATEWAY.get_or_init(|| Gateway::start("hardening", shared_corpus())) {
        Ok(gateway) => gateway,
        Err(message) => panic!("the hardening stack did not start (logs in {}):\n{message}", work_dir().display()),
    }
}

fn expected_status(reason: &str) -> u16 {
    match reason {
        "scope_empty" | "scope_insufficient" => 403,
        _ => 401,
    }
}

#[test]
fn corpus_controls_pass_through_envoy() {
    let gateway = gateway();
    for control in &shared_corpus().controls {
        let reply = gateway.get(Some(&format!("Bearer {}", control.token)));
        assert_eq!(reply.status, 200, "control {}: {reply:?}\n{}", control.name, gateway.envoy.log_tail());
    }
}

#[test]
fn corpus_attacks_are_rejected_in_envoy() {
    // Every corpus token is sent: more than the 50 a sample needs, and each category is covered.
    // The one token over Envoy's header limit must get Envoy's own 431.
    let corpus = shared_corpus();
    let gateway = gateway();

    let mut failures = Vec::new();
    let mut summary: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for attack in &corpus.attacks {
        let counts = summary.entry(attack.category.as_str()).or_default();
        counts.0 += 1;
        let reply = gateway.get(Some(&format!("Bearer {}", attack.token)));
        if attack.token.len() > ENVOY_MAX_HEADERS_BYTES {
            // Envoy rejects the request before the filter runs.
            if reply.status == 431 {
                counts.1 += 1;
            } else {
                failures.push(format!("{}: {} bytes, expected Envoy's 431, got {}", attack.name, attack.token.len(), reply.status));
            }
            continue;
        }
        let code = reply.json().get("code").and_then(|code| code.as_str().map(str::to_owned));
        let expected_status = expected_status(&attack.expected_reason);
        if reply.status == expected_status && code.as_deref() == Some(attack.expected_reason.as_str()) {
            counts.1 += 1;
        } else {
            failures.push(format!(
                "{}: expected {expected_status} {}, got {} {:?}",
                attack.name, attack.expected_reason, reply.status, code
            ));
        }
    }

    for (category, (total, as_expected)) in &summary {
        println!("{category}: {as_expected} of {total} rejected in Envoy with the expected status and reason (or 431)");
    }
    assert!(failures.is_empty(), "{} of {} corpus tokens:\n{}", failures.len(), corpus.attacks.len(), failures.join("\n"));
    gateway.assert_survived(corpus, "the corpus");
}

#[test]
fn accepted_variants_pass_through_envoy() {
    let gateway = gateway();
    for variant in &shared_corpus().accepted_variants {
        let reply = gateway.get(Some(&format!("Bearer {}", variant.token)));
        assert_eq!(
            reply.status,
            200,
            "{} ({}) is documented as valid because {}: {reply:?}",
            variant.name,
            variant.category,
            variant.explanation
        );
    }
}

/// SplitMix64: a small, seedable generator, so a failing garbage run can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a number in `0..bound`; `bound` must not be 0.
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Returns `length` random characters that are valid in a header value sent by ureq: visible
/// ASCII, space and tab.
fn random_header_text(random: &mut Random, length: usize) -> String {
    (0..length)
        .map(|_| match random.below(20) {
            0 => ' ',
            1 => '\t',
            _ => char::from(0x21 + random.below(0x7f - 0x21) as u8),
        })
        .collect()
}

fn random_base64url(random: &mut Random, length: usize) -> String {
    (0..length).map(|_| char::from(BASE64URL[random.below(BASE64URL.len())])).collect()
}

/// Returns a base64url segment of random JSON fragments, so that near-valid JSON reaches the
/// filter's parser.
fn random_json_segment(random: &mut Random) -> String {
    use base64::Engine as _;
    let fragments = [
        "{", "}", "[", "]", ":", ",", "\"alg\"", "\"RS256\"", "\"none\"", "\"kid\"", "\"idp-rs256-1\"", "\"crit\"", "\"b64\"",
        "false", "null", "1e999", "-0", "\"\\u0000\"", "\"\\ud800\"", "\"exp\"", "4102444800", "\"aud\"", "\"scope\"",
    ];
    let count = 1 + random.below(40);
    let text: String = (0..count).map(|_| random.pick(&fragments)).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// Returns one `Authorization` value that must be rejected with 401, in one of several shapes.
fn garbage_authorization(random: &mut Random, valid_token: &str) -> String {
    let length = random.below(GARBAGE_MAX_LENGTH + 1);
    match random.below(8) {
        0 => random_header_text(random, length),
        1 => format!("Bearer {}", random_header_text(random, length)),
        2 => {
            let schemes = ["Basic", "Digest", "Token", "JWT", "DPoP", "Negotiate", "Bearer:", "Bearer,", "Bearer=", "Beare", "Bearerr", "B"];
            let scheme = if random.below(2) == 0 {
                random.pick(&schemes).to_owned()
            } else {
                let scheme_length = 1 + random.below(12);
                random_base64url(random, scheme_length)
            };
            let separator = random.pick(&[" ", "  ", "\t", ""]);
            format!("{scheme}{separator}{}", random_header_text(random, length))
        }
        3 => {
            let parts = [2, 3, 3, 3, 4, 5][random.below(6)];
            let segments: Vec<String> = (0..parts)
                .map(|_| {
                    let segment_length = random.below(length / parts + 1);
                    random_base64url(random, segment_length)
                })
                .collect();
            format!("Bearer {}", segments.join("."))
        }
        4 => {
            let mut bytes = valid_token.as_bytes().to_vec();
            let alphabet: Vec<u8> = BASE64URL.iter().copied().chain(*b".=+/ ").collect();
            for _ in 0..1 + random.below(4) {
                let position = random.below(bytes.len());
                bytes[position] = alphabet[random.below(alphabet.len())];
            }
            let mutated = String::from_utf8(bytes).expect("ASCII stays UTF-8");
            if mutated == valid_token {
                // The substitutions restored the original; cut the signature's last character.
                format!("Bearer {}", &valid_token[..valid_token.len() - 1])
            } else {
                format!("Bearer {mutated}")
            }
        }
        5 => {
            let segments: Vec<String> = (0..3).map(|_| random_json_segment(random)).collect();
            format!("Bearer {}", segments.join("."))
        }
        6 => {
            let storm: String = (0..length).map(|_| random.pick(&[".", " ", "\t", "=", "-", "_"])).collect();
            format!("Bearer {storm}")
        }
        _ => {
            // A strict prefix of the valid token, or the token with a suffix that is not only
            // whitespace (Envoy trims trailing whitespace, which would restore the token).
            if random.below(2) == 0 {
                format!("Bearer {}", &valid_token[..random.below(valid_token.len())])
            } else {
                let suffix_length = random.below(64);
                let suffix = random_header_text(random, suffix_length);
                format!("Bearer {valid_token}{}{suffix}", char::from(BASE64URL[random.below(BASE64URL.len())]))
            }
        }
    }
}

fn seed() -> u64 {
    match std::env::var("HARDENING_SEED") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("HARDENING_SEED must be a decimal u64, got {text:?}")),
        Err(_) => DEFAULT_SEED,
    }
}

/// Shortens a header value for a failure message.
fn preview(value: &str) -> String {
    let head: String = value.chars().take(80).collect();
    format!("{head:?}… ({} bytes)", value.len())
}

/// Result of one client thread of the garbage run.
#[derive(Default)]
struct GarbageOutcome {
    sent: usize,
    /// Requests that did not get 401, with the status or the transport error.
    unexpected: Vec<String>,
    timed_out: bool,
}

fn send_garbage(port: u16, thread_seed: u64, count: usize, valid_token: &str, deadline: Instant) -> GarbageOutcome {
    let mut random = Random(thread_seed);
    let agent = http::agent();
    let url = format!("http://127.0.0.1:{port}{API_PATH}");
    let mut outcome = GarbageOutcome::default();
    for index in 0..count {
        if Instant::now() >= deadline {
            outcome.timed_out = true;
            break;
        }
        let value = garbage_authorization(&mut random, valid_token);
        let result = agent.get(&url).set("authorization", &value).call();
        outcome.sent += 1;
        let problem = match result {
            Err(ureq::Error::Status(401, _)) => None,
            Ok(response) => Some(format!("status {}", response.status())),
            Err(ureq::Error::Status(status, response)) => Some(format!("status {status} {}", response.into_string().unwrap_or_default())),
            Err(ureq::Error::Transport(error)) => Some(format!("transport error {error}")),
        };
        if let Some(problem) = problem {
            outcome.unexpected.push(format!("request {index} (thread seed {thread_seed}) {}: {problem}", preview(&value)));
        }
    }
    outcome
}

#[test]
fn garbage_authorization_gets_401_and_vm_survives() {
    let corpus = shared_corpus();
    let gateway = gateway();
    let valid_token = corpus.controls[0].token.clone();
    let seed = seed();
    let deadline = Instant::now() + Duration::from_secs(GARBAGE_TIME_LIMIT_SECONDS);
    let started = Instant::now();

    let per_thread = GARBAGE_REQUESTS / GARBAGE_THREADS;
    let handles: Vec<_> = (0..GARBAGE_THREADS)
        .map(|thread_index| {
            let token = valid_token.clone();
            let port = gateway.listener;
            let thread_seed = seed.wrapping_add(thread_index as u64);
            let count = if thread_index == 0 { GARBAGE_REQUESTS - per_thread * (GARBAGE_THREADS - 1) } else { per_thread };
            thread::spawn(move || send_garbage(port, thread_seed, count, &token, deadline))
        })
        .collect();
    let outcomes: Vec<GarbageOutcome> = handles.into_iter().map(|handle| handle.join().expect("a garbage thread panicked")).collect();

    let sent: usize = outcomes.iter().map(|outcome| outcome.sent).sum();
    let unexpected: Vec<&String> = outcomes.iter().flat_map(|outcome| &outcome.unexpected).collect();
    println!("garbage run (seed {seed}): {sent} requests in {:.1} s, {} not 401", started.elapsed().as_secs_f64(), unexpected.len());
    assert!(
        !outcomes.iter().any(|outcome| outcome.timed_out),
        "the garbage run (seed {seed}) sent only {sent} of {GARBAGE_REQUESTS} requests within {GARBAGE_TIME_LIMIT_SECONDS} s"
    );
    assert_eq!(sent, GARBAGE_REQUESTS, "seed {seed}");
    let first_failures: Vec<&str> = unexpected.iter().take(FAILURES_SHOWN).map(|line| line.as_str()).collect();
    assert!(
        unexpected.is_empty(),
        "{} of {sent} garbage requests (seed {seed}) did not get 401; the first {}:\n{}\n{}",
        unexpected.len(),
        first_failures.len(),
        first_failures.join("\n"),
        gateway.envoy.log_tail()
    );
    gateway.assert_survived(corpus, &format!("{sent} garbage requests"));
}

/// Sends `GET /v1/chat/completions` over a plain TCP connection with raw header lines, which
/// ureq would refuse when they are not visible ASCII, and returns the status code.
fn raw_get_status(port: u16, header_lines: &[&[u8]]) -> Result<u16, String> {
    let timeout = Duration::from_secs(RAW_REQUEST_TIMEOUT_SECONDS);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|error| format!("connect failed: {error}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|error| error.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|error| error.to_string())?;
    let mut request = format!("GET {API_PATH} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n").into_bytes();
    for line in header_lines {
        request.extend_from_slice(line);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).map_err(|error| format!("write failed: {error}"))?;

    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|error| format!("read failed: {error}"))?;
    let status_line = response.split(|&byte| byte == b'\r').next().unwrap_or_default();
    let text = String::from_utf8_lossy(status_line);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line in the response: {:?}", String::from_utf8_lossy(&response)))
}

/// Sends each `(label, header line, expected status)` case in order, then a valid token, and
/// reports every request that got another status, with the fatal lines of Envoy's log.
fn check_raw_cases(gateway: &Gateway, corpus: &Corpus, cases: &[(&str, Vec<u8>, u16)]) {
    let valid_authorization = format!("authorization: Bearer {}", corpus.controls[0].token);
    let mut failures = Vec::new();
    for (label, line, expected) in cases {
        let lines: Vec<&[u8]> = if line.starts_with(b"authorization:") {
            vec![line.as_slice()]
        } else {
            vec![valid_authorization.as_bytes(), line.as_slice()]
        };
        match raw_get_status(gateway.listener, &lines) {
            Ok(status) if status == *expected => {}
            Ok(status) => failures.push(format!("{label}: expected {expected}, got {status}")),
            Err(error) => failures.push(format!("{label}: {error}")),
        }
    }
    match raw_get_status(gateway.listener, &[valid_authorization.as_bytes()]) {
        Ok(200) => {}
        Ok(status) => failures.push(format!("valid token afterwards: expected 200, got {status}")),
        Err(error) => failures.push(format!("valid token afterwards: {error}")),
    }

    let fatal = gateway.fatal_log_lines();
    assert!(
        failures.is_empty() && fatal.is_empty(),
        "header bytes that are not UTF-8 broke the filter:\n{}\nEnvoy log lines:\n{}",
        failures.join("\n"),
        fatal.join("\n")
    );
}

// RFC 9110 allows obs-text (bytes 0x80 to 0xFF) in field values, and Envoy passes such bytes
// to the filter unchanged. Each of these tests has its own Envoy, so a VM that dies there
// cannot fail the other tests.

#[test]
fn non_utf8_authorization_gets_401_and_vm_survives() {
    let corpus = shared_corpus();
    let gateway = Gateway::start("hardening_non_utf8_authorization", corpus).unwrap_or_else(|error| panic!("{error}"));
    let token = corpus.controls[0].token.as_bytes();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("latin-1 letter in the token", b"authorization: Bearer caf\xe9".to_vec(), 401),
        ("lone continuation bytes", b"authorization: Bearer \x80\x80\x80".to_vec(), 401),
        ("byte 0xff", b"authorization: Bearer \xff".to_vec(), 401),
        ("valid token with a trailing 0xfe", [b"authorization: Bearer ".as_slice(), token, b"\xfe"].concat(), 401),
        ("latin-1 letter in the scheme", b"authorization: B\xe9arer abc.def.ghi".to_vec(), 401),
    ];

    check_raw_cases(&gateway, corpus, &cases);
    gateway.envoy.kill();
}

#[test]
fn non_utf8_other_header_keeps_valid_token_accepted() {
    let corpus = shared_corpus();
    let gateway = Gateway::start("hardening_non_utf8_other_header", corpus).unwrap_or_else(|error| panic!("{error}"));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("latin-1 user-agent beside a valid token", b"user-agent: Caf\xe9Client/1.0".to_vec(), 200),
        ("0xff in a custom header beside a valid token", b"x-note: \xff".to_vec(), 200),
    ];

    check_raw_cases(&gateway, corpus, &cases);
    gateway.envoy.kill();
}

// The filter reads headers with the SDK's `get_map_bytes`, which panics on a header name that is
// not UTF-8, and a panic kills the VM. Header names are tokens (RFC 9110), and Envoy's HTTP/1
// codec rejects any other byte with 400 before a filter runs. This test keeps that true
// for the Envoy versions the suite runs on.
#[test]
fn non_utf8_header_name_gets_400_from_envoy() {
    let corpus = shared_corpus();
    let gateway = Gateway::start("hardening_non_utf8_header_name", corpus).unwrap_or_else(|error| panic!("{error}"));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("lone continuation byte in a name", b"x-\x80note: 1".to_vec(), 400),
        ("UTF-8 letter in a name", b"x-caf\xc3\xa9: 1".to_vec(), 400),
        ("name that is one 0xff byte", b"\xff: 1".to_vec(), 400),
    ];

    check_raw_cases(&gateway, corpus, &cases);
    gateway.envoy.kill();
}
