//! Tests of the `idaas-jwt-filter` command-line tool: `check-config` on the repository's own
//! and on invalid configurations, and `explain` on tokens minted with the fixture keys. The
//! last test runs the end-to-end suite's tokens through both `explain` and the library's
//! `authenticate` and requires the same reason codes.
//!
//! Everything runs locally: the only server is the test's own JWKS server on 127.0.0.1.
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
#[allow(dead_code, reason = "shared with tests/e2e.rs; tokens.rs needs it to compile")]
#[path = "e2e/http.rs"]
mod http;
#[path = "cli/jwks_server.rs"]
mod jwks_server;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/tokens.rs"]
mod tokens;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use idaas_jwt_filter::authenticator::{self, KeyAvailability, KeyStore, RequestAuth, Verdict};
use idaas_jwt_filter::config::JwksSource;
use idaas_jwt_filter::higress;
use idaas_jwt_filter::jwks;
use idaas_jwt_filter::response;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use jwks_server::JwksServer;
use tokens::{now_seconds, IDP_KEY_ID, LOCAL_ES256_KEY_ID, UNPUBLISHED_KEY_ID};

/// Port in the issuer of the e2e configuration; nothing is contacted there.
const IDP_PORT: u16 = 9000;
const IDP_JWKS_FILE: &str = "idp-rs256-1.jwks.json";

/// What one run of the tool printed and returned.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Returns the value of the first line whose first word is `key`, such as `reason` or
    /// `status` in the verdict block.
    fn value(&self, key: &str) -> Option<&str> {
        self.stdout.lines().find_map(|line| {
            let line = line.trim_start();
            let rest = line.strip_prefix(key)?;
            rest.starts_with(' ').then(|| rest.trim())
        })
    }

    /// Returns `accept`, `pass` or the reason code of a rejection.
    fn verdict(&self) -> String {
        match self.stdout.lines().find_map(|line| line.strip_prefix("verdict: ")) {
            Some("reject") => self.value("reason").unwrap_or("reject without a reason line").to_owned(),
            Some(other) => other.to_owned(),
            None => panic!("no verdict line in {self:#?}"),
        }
    }

    /// Returns the line of step `name` in the steps block.
    fn step(&self, name: &str) -> Option<&str> {
        self.stdout.lines().find(|line| {
            let mut words = line.split_whitespace();
            matches!(words.next(), Some("pass" | "FAIL" | "skip")) && words.next() == Some(name)
        })
    }
}

fn tool_path() -> &'static str {
    env!("CARGO_BIN_EXE_idaas-jwt-filter")
}

fn run_tool(args: &[&str]) -> Run {
    run_tool_with(args, None, &[])
}

/// Runs the tool with `stdin` as standard input (none when `None`) and extra environment
/// variables.
fn run_tool_with(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(tool_path());
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start {}: {error}", tool_path()));
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("idaas-jwt-filter-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// Writes `text` to a new file in the scratch directory and returns its path. Tests run in
/// parallel, so every call gets its own file.
fn write_file(name: &str, text: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let path = scratch_dir().join(format!("{}-{name}", COUNTER.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn write_config(name: &str, config: &Value) -> String {
    write_file(&format!("{name}.json"), &config.to_string())
}

fn fixture(file_name: &str) -> String {
    tokens::fixture_path(file_name).display().to_string()
}

fn issuer() -> String {
    envoy_config::idp_issuer(IDP_PORT)
}

fn e2e_config() -> Value {
    envoy_config::idp_plugin_config(IDP_PORT)
}

fn valid_claims() -> Value {
    tokens::idp_like_claims(&issuer())
}

/// Runs `explain` with the e2e configuration and the IdP's JWKS file.
fn explain(config_path: &str, extra: &[&str], token: &str) -> Run {
    let jwks = fixture(IDP_JWKS_FILE);
    let mut args = vec!["explain", "--config", config_path, "--jwks", &jwks];
    args.extend_from_slice(extra);
    args.push("--");
    args.push(token);
    run_tool(&args)
}

fn e2e_config_path() -> String {
    write_config("e2e", &e2e_config())
}

/// Extracts the plugin JSON from the `configuration.value` block scalar in envoy/envoy.yaml.
fn envoy_yaml_plugin_json() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("envoy/envoy.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let mut lines = yaml.lines();
    let marker = lines
        .by_ref()
        .find(|line| line.trim_start() == "value: |")
        .expect("envoy/envoy.yaml has no `value: |` block");
    let marker_indent = marker.len() - marker.trim_start().len();
    let block: Vec<&str> = lines
        .take_while(|line| line.trim().is_empty() || line.len() - line.trim_start().len() > marker_indent)
        .collect();
    block.join("\n")
}

// --- check-config ---

/// Returns the write end of a pipe whose read end is already closed, so the first write to it
/// fails with EPIPE, as a write to `| head -1` can once head has exited.
fn closed_pipe() -> Stdio {
    use std::os::fd::FromRawFd as _;

    let mut ends = [0; 2];
    // SAFETY: pipe writes two new descriptors into `ends`; each is closed or owned once below.
    assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0, "pipe failed");
    // SAFETY: the read end is not used after this.
    unsafe { libc::close(ends[0]) };
    // SAFETY: the write end is open and owned by nothing else.
    unsafe { Stdio::from_raw_fd(ends[1]) }
}

#[test]
fn closed_error_pipe_keeps_exit_status() {
    let output = Command::new(tool_path())
        .args(["check-config", "/nonexistent/config.json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(closed_pipe())
        .output()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", tool_path()));

    assert_eq!(output.status.code(), Some(2), "stdout: {}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn failed_output_write_is_an_error() {
    let path = write_config("full", &e2e_config());
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full is missing");

    let output = Command::new(tool_path())
        .args(["check-config", &path])
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", tool_path()));

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("cannot write to standard output"), "stderr: {stderr}");
}

#[test]
fn closed_output_pipe_ends_quietly() {
    let path = write_config("pipe", &e2e_config());
    let write_end = closed_pipe();
    let child = Command::new(tool_path())
        .args(["check-config", &path])
        .stdin(Stdio::null())
        .stdout(write_end)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", tool_path()));

    let output = child.wait_with_output().unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "the tool panicked: {stderr}");
    assert_eq!(output.status.code(), Some(141), "stderr: {stderr}");
}

#[test]
fn check_config_accepts_envoy_yaml_plugin() {
    let plugin_json = envoy_yaml_plugin_json();
    assert!(plugin_json.contains("\"providers\""), "extracted block: {plugin_json}");
    let path = write_file("envoy_yaml_plugin.json", &plugin_json);

    let run = run_tool(&["check-config", &path]);

    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("is valid."), "{run:#?}");
    assert!(run.stdout.contains("http://127.0.0.1:9000/api/v2/iauths_system/oauth2"), "issuer missing: {run:#?}");
    assert!(run.stdout.contains("api://model-studio"), "audience missing: {run:#?}");
    assert!(run.stdout.contains("remote_jwks http://127.0.0.1:9000/api/v2/iauths_system/oauth2/jwks through cluster idaas_jwks"), "{run:#?}");
    assert!(run.stdout.contains("model.invoke (all of them)"), "scopes missing: {run:#?}");
    assert!(!run.stdout.contains("warning:"), "{run:#?}");
}

#[test]
fn check_config_reports_field_paths() {
    let mut empty_audiences = e2e_config();
    empty_audiences["providers"][0]["audiences"] = json!([]);
    let mut missing_issuer = e2e_config();
    missing_issuer["providers"][0].as_object_mut().unwrap().remove("issuer");
    let mut negative_cache = e2e_config();
    negative_cache["providers"][0]["remote_jwks"]["cache_duration_seconds"] = json!(-1);
    let mut bad_regex = e2e_config();
    bad_regex["rules"] = json!([{"prefix": "/healthz", "skip": true}, {"regex": "("}]);
    let mut rule_without_match = e2e_config();
    rule_without_match["_rules_"] = json!([{"required_scopes": ["model.list"]}]);
    let cases = [
        ("empty_audiences", empty_audiences.to_string(), "error: providers[0].audiences: "),
        ("missing_issuer", missing_issuer.to_string(), "error: providers[0].issuer: "),
        ("negative_cache", negative_cache.to_string(), "error: providers[0].remote_jwks.cache_duration_seconds: "),
        ("bad_regex", bad_regex.to_string(), "error: rules[1].regex: invalid regex"),
        ("rule_without_match", rule_without_match.to_string(), "error: _rules_[0]: needs _match_route_"),
        ("not_json", "{\"providers\": [".to_owned(), "error: (whole document): configuration is not valid JSON"),
    ];

    for (name, text, expected) in cases {
        let path = write_file(&format!("invalid_{name}.json"), &text);

        let run = run_tool(&["check-config", &path]);

        assert_eq!(run.code, 1, "{name}: {run:#?}");
        assert!(run.stdout.contains(expected), "{name}: expected {expected:?} in {run:#?}");
        assert!(run.stdout.contains("is invalid"), "{name}: {run:#?}");
    }
}

#[test]
fn check_config_warns_on_unknown_fields() {
    let mut config = e2e_config();
    config["providers"][0]["colour"] = json!("blue");
    config["clock_skew"] = json!(60);
    let path = write_config("unknown_fields", &config);

    let run = run_tool(&["check-config", &path]);

    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("warning: providers[0].colour: unknown field"), "{run:#?}");
    assert!(run.stdout.contains("warning: clock_skew (did you mean clock_skew_seconds?): unknown field"), "{run:#?}");
}

#[test]
fn check_config_suggests_misspelled_field() {
    let mut config = e2e_config();
    config["requried_scopes"] = json!(["model.invoke"]);
    let path = write_config("misspelled_field", &config);

    let run = run_tool(&["check-config", &path]);

    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout.contains("warning: requried_scopes (did you mean required_scopes?): unknown field"),
        "{run:#?}"
    );
}

#[test]
fn check_config_hides_upstream_authorization() {
    let secret = "sk-cli-test-0123456789";
    let mut config = e2e_config();
    config["upstream_authorization"] = json!("Bearer ${CLI_TEST_API_KEY}");
    let path = write_config("upstream_authorization", &config);

    let run = run_tool_with(&["check-config", &path], None, &[("CLI_TEST_API_KEY", secret)]);

    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("replaced by upstream_authorization (value not shown)"), "{run:#?}");
    assert!(!run.stdout.contains(secret), "the secret is printed: {run:#?}");
    assert!(!run.stderr.contains(secret), "the secret is printed: {run:#?}");
}

#[test]
fn check_config_reports_unset_variable() {
    let mut config = e2e_config();
    config["upstream_authorization"] = json!("Bearer ${CLI_TEST_UNSET_VARIABLE}");
    let path = write_config("unset_variable", &config);

    let run = run_tool(&["check-config", &path]);

    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("error: upstream_authorization: "), "{run:#?}");
    assert!(run.stdout.contains("CLI_TEST_UNSET_VARIABLE"), "{run:#?}");
}

#[test]
fn check_config_summarizes_rules() {
    let mut config = e2e_config();
    config["rules"] = json!([
        {"path": "/healthz", "skip": true},
        {"prefix": "/v1/models", "methods": ["GET"], "required_scopes": ["model.list"], "scope_match": "any"},
    ]);
    config["_rules_"] = json!([
        {"_match_route_": ["chat"], "_match_domain_": ["*.example.com"], "required_scopes": ["model.chat"]},
    ]);
    config["claims_to_headers"] = json!([{"claim": "client_id", "header": "x-idaas-client-id"}]);
    let path = write_config("rules_summary", &config);

    let run = run_tool(&["check-config", &path]);

    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("rules[0]  path /healthz -> skip validation"), "{run:#?}");
    assert!(run.stdout.contains("rules[1]  prefix /v1/models, methods GET -> required_scopes model.list (any one of them)"), "{run:#?}");
    assert!(run.stdout.contains("_rules_[0]: when route name chat; or domain *.example.com"), "{run:#?}");
    assert!(run.stdout.contains("model.chat (all of them)"), "{run:#?}");
    assert!(run.stdout.contains("x-idaas-client-id <- claim client_id"), "{run:#?}");
}

#[test]
fn check_config_reads_stdin() {
    let run = run_tool_with(&["check-config", "-"], Some(&e2e_config().to_string()), &[]);

    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("- is valid."), "{run:#?}");
}

#[test]
fn check_config_missing_file_is_usage_error() {
    let run = run_tool(&["check-config", "/nonexistent/idaas-jwt-filter.json"]);

    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("cannot read the configuration from /nonexistent/idaas-jwt-filter.json"), "{run:#?}");
}

// --- explain: verdicts ---

#[test]
fn explain_accepts_valid_token() {
    let token = tokens::sign_as_idp(&valid_claims());

    let run = explain(&e2e_config_path(), &[], &token);

    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.verdict(), "accept");
    for step in ["token", "parse", "header", "provider", "algorithm", "key", "signature", "time", "audience", "scope"] {
        let line = run.step(step).unwrap_or_else(|| panic!("no {step} step in {run:#?}"));
        assert!(line.trim_start().starts_with("pass"), "step {step} did not pass: {line}");
    }
    assert!(run.stdout.contains(&format!("\"kid\": \"{IDP_KEY_ID}\"")), "header not printed: {run:#?}");
    assert!(run.stdout.contains("\"client_id\": \"ci-pipeline\""), "claims not printed: {run:#?}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!run.stdout.contains(signature), "the signature is printed: {run:#?}");
    assert!(run.value("authorization") == Some("removed (keep_token is false)"), "{run:#?}");
    assert!(!run.stderr.contains("warning"), "{run:#?}");
}

#[test]
fn explain_rejects_expired_token() {
    let mut claims = valid_claims();
    claims["iat"] = json!(now_seconds() - 7200);
    claims["exp"] = json!(now_seconds() - 3600);
    let token = tokens::sign_as_idp(&claims);

    let run = explain(&e2e_config_path(), &["--host", "gw.example.com"], &token);

    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.verdict(), "token_expired");
    assert_eq!(run.value("status"), Some("401"));
    assert_eq!(
        run.value("www-authenticate"),
        Some("Bearer realm=\"gw.example.com\", error=\"invalid_token\", error_description=\"token has expired\"")
    );
    assert!(run.step("time").unwrap().trim_start().starts_with("FAIL"), "{run:#?}");
}

#[test]
fn explain_rejects_wrong_audience() {
    let mut claims = valid_claims();
    claims["aud"] = json!("api://another-resource-server");
    let token = tokens::sign_as_idp(&claims);

    let run = explain(&e2e_config_path(), &[], &token);

    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.verdict(), "audience_not_allowed");
    assert_eq!(run.value("status"), Some("401"));
}

#[test]
fn explain_forbids_token_without_scope() {
    let mut claims = valid_claims();
    claims.as_object_mut().unwrap().remove("scope");
    let token = tokens::sign_as_idp(&claims);

    let run = explain(&e2e_config_path(), &[], &token);

    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.verdict(), "scope_empty");
    assert_eq!(run.value("status"), Some("403"));
    let challenge = run.value("www-authenticate").unwrap();
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.ends_with("scope=\"model.invoke\""), "{challenge}");
}

#[test]
fn explain_rejects_missing_token() {
    let run = explain(&e2e_config_path(), &[], "");

    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.verdict(), "token_missing");
    assert_eq!(run.value("www-authenticate"), Some("Bearer realm=\"localhost\""));
}

#[test]
fn explain_rejects_garbage_token() {
    let run = explain(&e2e_config_path(), &[], "not-a-jwt");

    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.verdict(), "token_malformed");
    assert!(run.step("parse").unwrap().trim_start().starts_with("FAIL"), "{run:#?}");
    assert!(run.stdout.contains("not decoded"), "{run:#?}");
}

#[test]
fn explain_now_sets_the_clock() {
    let now = now_seconds();
    let mut claims = valid_claims();
    claims["iat"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let expired = tokens::sign_as_idp(&claims);
    let valid = tokens::sign_as_idp(&valid_claims());
    let config = e2e_config_path();

    let before_expiry = (now - 5000).to_string();
    let run = explain(&config, &["--now", &before_expiry], &expired);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.verdict(), "accept");

    let two_hours_later = (now + 7200).to_string();
    let run = explain(&config, &["--now", &two_hours_later], &valid);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.verdict(), "token_expired");

    let before_issue = (now - 3600).to_string();
    let run = explain(&config, &[&format!("--now={before_issue}")], &valid);
    assert_eq!(run.verdict(), "token_not_yet_valid");
}

// --- explain: placing the request ---

#[test]
fn explain_applies_route_rules() {
    let mut config = e2e_config();
    config["rules"] = json!([
        {"path": "/healthz", "skip": true},
        {"prefix": "/v1/models", "required_scopes": ["model.admin"]},
    ]);
    let path = write_config("route_rules", &config);
    let token = tokens::sign_as_idp(&valid_claims());

    let run = explain(&path, &["--path", "/healthz?verbose=1"], "");
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.verdict(), "pass");
    assert!(run.stdout.contains("rules[0] (path /healthz) skips validation"), "{run:#?}");

    let run = explain(&path, &["--path", "/v1/models/qwen", "--method", "GET"], &token);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.verdict(), "scope_insufficient");
    assert_eq!(run.value("status"), Some("403"));
    assert!(run.value("www-authenticate").unwrap().ends_with("scope=\"model.admin\""), "{run:#?}");

    let run = explain(&path, &["--path", "/v1/chat/completions", "--method", "POST"], &token);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.verdict(), "accept");
    assert!(run.stdout.contains("none matches; the top-level requirements apply"), "{run:#?}");
}

#[test]
fn explain_checks_route_providers_after_signature() {
    let mut config = e2e_config();
    let local_provider = envoy_config::local_es256_plugin_config()["providers"][0].clone();
    config["providers"].as_array_mut().unwrap().push(local_provider);
    config["rules"] = json!([{"prefix": "/local/", "providers": ["local"]}]);
    let path = write_config("route_providers", &config);
    let token = tokens::sign_as_idp(&valid_claims());

    let run = explain(&path, &["--path", "/local/chat"], &token);
    assert_eq!(run.verdict(), "issuer_unknown", "{run:#?}");
    assert!(run.value("detail").unwrap().contains("provider idaas is not allowed on this route"), "{run:#?}");
    assert!(run.step("route").unwrap().trim_start().starts_with("FAIL"), "{run:#?}");

    // A bad signature is found first: the filter checks the route's providers after it.
    let run = explain(&path, &["--path", "/local/chat"], &tokens::with_tampered_signature(&token));
    assert_eq!(run.verdict(), "signature_invalid", "{run:#?}");
    assert!(!run.stderr.contains("step replay"), "{run:#?}");

    let run = explain(&path, &["--path", "/v1/chat/completions"], &token);
    assert_eq!(run.verdict(), "accept", "{run:#?}");
}

#[test]
fn explain_rejects_unnormalized_path_with_rules() {
    let mut config = e2e_config();
    config["rules"] = json!([{"prefix": "/healthz", "skip": true}]);
    let path = write_config("unnormalized_path", &config);
    let token = tokens::sign_as_idp(&valid_claims());

    let run = explain(&path, &["--path", "/healthz/../v1/chat/completions"], "");
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.verdict(), "path_not_normalized", "{run:#?}");

    let run = explain(&path, &["--host", "evil.example,gateway.example"], &token);
    assert_eq!(run.verdict(), "authority_invalid", "{run:#?}");

    // Higress `_rules_` without a global part: the Host check still runs.
    let rules_only = json!({"_rules_": [{"_match_domain_": ["*.tenant.example"], "providers": config["providers"].clone()}]});
    let rules_only_path = write_config("rules_only_joined_host", &rules_only);
    let run = explain(&rules_only_path, &["--host", "evil.example,a.tenant.example"], &token);
    assert_eq!(run.verdict(), "authority_invalid", "{run:#?}");

    // Without rules the path does not matter, so the same path is accepted with a token.
    let path = write_config("unnormalized_path_no_rules", &e2e_config());
    let run = explain(&path, &["--path", "/healthz/../v1/chat/completions"], &token);
    assert_eq!(run.verdict(), "accept", "{run:#?}");
}

#[test]
fn explain_selects_higress_rule_by_route_name() {
    let mut config = e2e_config();
    config["_rules_"] = json!([{"_match_route_": ["admin"], "required_scopes": ["model.admin"]}]);
    let path = write_config("higress_rules", &config);
    let token = tokens::sign_as_idp(&valid_claims());

    let run = explain(&path, &["--route-name", "admin"], &token);
    assert_eq!(run.verdict(), "scope_insufficient", "{run:#?}");
    assert!(run.stdout.contains("_rules_[0] (route name admin), matched by route name"), "{run:#?}");

    let run = explain(&path, &["--route-name", "chat"], &token);
    assert_eq!(run.verdict(), "accept", "{run:#?}");
    assert!(run.stdout.contains("global (no _rules_ entry matches"), "{run:#?}");
}

#[test]
fn explain_passes_cors_preflight() {
    let run = explain(
        &e2e_config_path(),
        &["--method", "OPTIONS", "--header", "Origin: https://app.example.com", "--header", "Access-Control-Request-Method: POST"],
        "",
    );

    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.verdict(), "pass");
    assert!(run.stdout.contains("CORS preflight"), "{run:#?}");
}

#[test]
fn explain_counts_extra_authorization_headers() {
    let token = tokens::sign_as_idp(&valid_claims());

    let run = explain(&e2e_config_path(), &["--header", &format!("Authorization: Bearer {token}")], &token);

    assert_eq!(run.verdict(), "token_malformed", "{run:#?}");
    assert!(run.value("detail").unwrap().contains("2 Authorization headers"), "{run:#?}");
    assert!(!run.stdout.contains(&token), "the token is printed: {run:#?}");
}

#[test]
fn explain_reads_token_from_stdin() {
    let token = tokens::sign_as_idp(&valid_claims());
    let config = e2e_config_path();
    let jwks = fixture(IDP_JWKS_FILE);

    let run = run_tool_with(
        &["explain", "--config", &config, "--jwks", &jwks, "-"],
        Some(&format!("Bearer {token}\n")),
        &[],
    );

    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.verdict(), "accept");
}

#[test]
fn explain_without_keys_is_unavailable() {
    let token = tokens::sign_as_idp(&valid_claims());
    let config = e2e_config_path();

    let run = run_tool(&["explain", "--config", &config, &token]);

    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.verdict(), "jwks_unavailable");
    assert_eq!(run.value("status"), Some("503"));
    assert!(run.value("retry-after").is_some(), "{run:#?}");
    assert!(run.step("key").unwrap().contains("no --jwks or --jwks-url was given"), "{run:#?}");
}

// --- explain: --jwks-url ---

#[test]
fn explain_fetches_jwks_url() {
    let server = JwksServer::start("200 OK", tokens::read_fixture(IDP_JWKS_FILE), 1);
    let url = format!("{}/api/v2/iauths_system/oauth2/jwks", server.base_url);
    let token = tokens::sign_as_idp(&valid_claims());
    let config = e2e_config_path();

    let run = run_tool(&["explain", "--config", &config, "--jwks-url", &url, &token]);

    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.verdict(), "accept");
    assert!(run.step("key").unwrap().contains(&format!("--jwks-url {url}")), "{run:#?}");
    assert_eq!(server.request_lines(), vec!["GET /api/v2/iauths_system/oauth2/jwks HTTP/1.1".to_owned()]);
}

#[test]
fn explain_jwks_url_error_status_is_input_error() {
    let server = JwksServer::start("404 Not Found", "{\"error\":\"not found\"}".to_owned(), 1);
    let url = format!("{}/jwks", server.base_url);
    let config = e2e_config_path();

    let run = run_tool(&["explain", "--config", &config, "--jwks-url", &url, "a.b.c"]);

    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("HTTP 404 instead of 200"), "{run:#?}");
    assert_eq!(server.request_lines().len(), 1);
}

// --- usage ---

#[test]
fn help_describes_every_option() {
    let run = run_tool(&["--help"]);

    assert_eq!(run.code, 0, "{run:#?}");
    for option in ["--config", "--jwks", "--jwks-url", "--path", "--method", "--host", "--route-name", "--cluster-name", "--header", "--now"] {
        assert!(run.stdout.contains(&format!("  {option} ")), "usage lacks {option}: {}", run.stdout);
    }
    assert!(run.stdout.contains("seconds since the Unix epoch"), "{}", run.stdout);
}

#[test]
fn usage_errors_exit_with_2() {
    let config = e2e_config_path();
    let jwks = fixture(IDP_JWKS_FILE);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "a command is required"),
        (vec!["verify"], "unknown command \"verify\""),
        (vec!["explain", "a.b.c"], "explain needs --config FILE"),
        (vec!["explain", "--config", &config], "explain needs a TOKEN"),
        (vec!["explain", "--config", &config, "--jwks", &jwks, "--jwks-url", "http://127.0.0.1:9/jwks", "a.b.c"], "not both"),
        (vec!["explain", "--config", &config, "--colour", "blue", "a.b.c"], "unknown option --colour"),
        (vec!["explain", "--config", &config, "--now", "yesterday", "a.b.c"], "--now \"yesterday\" must be a whole number of seconds"),
        (vec!["explain", "--config", &config, "--header", "Origin", "a.b.c"], "must have the form 'NAME: VALUE'"),
        (vec!["explain", "--config", &config, "--jwks-url", "ftp://127.0.0.1/jwks", "a.b.c"], "must start with https:// or http://"),
        (vec!["check-config"], "check-config needs the configuration FILE"),
    ];

    for (args, expected) in cases {
        let run = run_tool(&args);

        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert!(run.stderr.contains(expected), "{args:?}: expected {expected:?} in {}", run.stderr);
        assert!(run.stderr.contains("Usage:"), "{args:?}: no usage text in {}", run.stderr);
    }
}

#[test]
fn explain_invalid_config_is_input_error() {
    let mut config = e2e_config();
    config["providers"][0]["audiences"] = json!([]);
    let path = write_config("explain_invalid", &config);

    let run = explain(&path, &[], "a.b.c");

    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("providers[0].audiences"), "{run:#?}");
}

// --- explain agrees with the filter's library ---

/// Keys as the e2e stack's filter has them: the IdP's JWKS for remote providers (or none),
/// inline keys for local ones.
struct StackKeys {
    providers: Vec<KeyAvailability>,
}

impl KeyStore for StackKeys {
    fn keys(&self, provider_index: usize) -> KeyAvailability {
        self.providers[provider_index].clone()
    }
}

/// Returns `accept` or the reason code, with the status and WWW-Authenticate of a rejection,
/// as the library decides them.
fn library_verdict(config: &Value, remote_keys: bool, authorization: Option<&str>, now: i64, host: &str) -> (String, Option<String>, Option<String>) {
    let parsed = higress::parse_plugin_config(config.to_string().as_bytes(), &|_| None).unwrap();
    let filter_config = parsed.config.global.unwrap();
    let idp_keys = jwks::parse_jwks(tokens::read_fixture(IDP_JWKS_FILE).as_bytes()).unwrap().key_set;
    let providers = filter_config
        .providers
        .iter()
        .map(|provider| match &provider.jwks {
            JwksSource::Local(key_set) => KeyAvailability::Ready(Rc::new(key_set.clone())),
            JwksSource::Remote(_) if remote_keys => KeyAvailability::Ready(Rc::new(idp_keys.clone())),
            JwksSource::Remote(_) => KeyAvailability::Unavailable { retry_after_seconds: 1 },
        })
        .collect();
    let keys = StackKeys { providers };
    let values: Vec<&str> = authorization.into_iter().collect();
    let request = RequestAuth { authorization: &values, now_seconds: now };
    match authenticator::authenticate(&filter_config, &keys, request) {
        Verdict::Allow(_) => ("accept".to_owned(), None, None),
        Verdict::Deny(denial) => {
            let reply = response::deny_response(&denial, host, &filter_config.required_scopes);
            let challenge = reply.headers.iter().find(|(name, _)| *name == "www-authenticate").map(|(_, value)| value.clone());
            (denial.rejection.reason.code().to_owned(), Some(reply.status.to_string()), challenge)
        }
        Verdict::WaitForKeys { .. } => panic!("fixed key sets never wait"),
    }
}

/// One e2e scenario: the configuration, whether remote providers get the IdP's keys, the
/// `Authorization` value, and the verdict the e2e suite gets from Envoy.
struct Scenario {
    name: &'static str,
    config: Value,
    remote_keys: bool,
    authorization: Option<String>,
    expected: &'static str,
}

fn e2e_scenarios() -> Vec<Scenario> {
    let bearer = |token: String| Some(format!("Bearer {token}"));
    let idp = |claims: &Value| bearer(tokens::sign_as_idp(claims));
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = valid_claims();
        change(&mut claims);
        claims
    };
    let scenario = |name, authorization, expected| Scenario {
        name,
        config: e2e_config(),
        remote_keys: true,
        authorization,
        expected,
    };
    let original = tokens::sign_as_idp(&valid_claims());
    let now = now_seconds();
    vec![
        scenario("minted IdP-like token", idp(&valid_claims()), "accept"),
        Scenario {
            name: "ES256 token with local_jwks",
            config: envoy_config::local_es256_plugin_config(),
            remote_keys: false,
            authorization: bearer(tokens::sign(
                Algorithm::ES256,
                LOCAL_ES256_KEY_ID,
                &tokens::idp_like_claims(envoy_config::LOCAL_ES256_ISSUER),
            )),
            expected: "accept",
        },
        scenario("missing token", None, "token_missing"),
        scenario("not a JWT", Some("Bearer not-a-jwt".to_owned()), "token_malformed"),
        scenario("Basic scheme", Some("Basic Y2ktcGlwZWxpbmU6c2VjcmV0".to_owned()), "token_malformed"),
        scenario("alg none", bearer(tokens::unsigned_alg_none(&valid_claims())), "alg_not_allowed"),
        scenario("HS256 with the public key", bearer(tokens::hs256_with_idp_public_key_as_secret(&valid_claims())), "alg_not_allowed"),
        scenario(
            "wrong issuer",
            idp(&with(&|claims| claims["iss"] = json!("https://another-instance.aliyunidaas.com/api/v2/iauths_system/oauth2"))),
            "issuer_unknown",
        ),
        scenario("unknown kid", bearer(tokens::sign(Algorithm::RS256, UNPUBLISHED_KEY_ID, &valid_claims())), "key_not_found"),
        scenario("tampered payload", bearer(tokens::with_tampered_payload(&original)), "signature_invalid"),
        scenario("tampered signature", bearer(tokens::with_tampered_signature(&original)), "signature_invalid"),
        scenario(
            "expired",
            idp(&with(&|claims| {
                claims["iat"] = json!(now - 7200);
                claims["exp"] = json!(now - 3600);
            })),
            "token_expired",
        ),
        scenario("wrong audience", idp(&with(&|claims| claims["aud"] = json!("api://another-resource-server"))), "audience_not_allowed"),
        scenario(
            "no-scope client",
            idp(&with(&|claims| {
                claims.as_object_mut().unwrap().remove("scope");
            })),
            "scope_empty",
        ),
        scenario("list-only client", idp(&with(&|claims| claims["scope"] = json!("model.list"))), "scope_insufficient"),
        Scenario {
            name: "unreachable JWKS",
            config: e2e_config(),
            remote_keys: false,
            authorization: idp(&valid_claims()),
            expected: "jwks_unavailable",
        },
    ]
}

#[test]
fn explain_matches_library_on_e2e_tokens() {
    let now = now_seconds();
    let now_text = now.to_string();
    let jwks = fixture(IDP_JWKS_FILE);
    let host = "127.0.0.1:10000";
    let mut failures = Vec::new();

    for (index, scenario) in e2e_scenarios().into_iter().enumerate() {
        let config_path = write_config(&format!("scenario_{index}"), &scenario.config);
        let token = scenario.authorization.clone().unwrap_or_default();
        let mut args = vec!["explain", "--config", &config_path, "--now", &now_text, "--host", host];
        if scenario.remote_keys {
            args.extend(["--jwks", &jwks]);
        }
        args.extend(["--", &token]);

        let run = run_tool(&args);
        let (library, status, challenge) =
            library_verdict(&scenario.config, scenario.remote_keys, scenario.authorization.as_deref(), now, host);

        let name = scenario.name;
        if library != scenario.expected {
            failures.push(format!("{name}: the library says {library}, the e2e suite expects {}", scenario.expected));
        }
        if run.verdict() != library {
            failures.push(format!("{name}: explain says {}, the library says {library}\n{}", run.verdict(), run.stdout));
        }
        if run.value("status").map(str::to_owned) != status {
            failures.push(format!("{name}: explain status {:?}, library {status:?}", run.value("status")));
        }
        if run.value("www-authenticate").map(str::to_owned) != challenge {
            failures.push(format!("{name}: explain challenge {:?}, library {challenge:?}", run.value("www-authenticate")));
        }
        let expected_code = if library == "accept" { 0 } else { 1 };
        if run.code != expected_code {
            failures.push(format!("{name}: exit status {}, expected {expected_code}\n{}", run.code, run.stderr));
        }
        if run.stderr.contains("step replay") {
            failures.push(format!("{name}: the step replay disagrees with the verdict: {}", run.stderr));
        }
    }
    assert!(failures.is_empty(), "explain and the library disagree:\n{}", failures.join("\n"));
}
