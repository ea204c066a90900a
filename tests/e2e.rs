//! End-to-end tests: real Envoy 1.40 (from .venv) with the built .wasm, the local IdP
//! (oidc-provider) and the upstream echo, all on 127.0.0.1. Run with `make test` or, after
//! `make deps build`, `cargo test --test e2e`.
//!
//! The stack starts once per test binary; its configs and logs stay in
//! $TMPDIR/idaas-jwt-filter-e2e-<pid>/ (envoy.log has the filter's debug logs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests report failures by panicking"
)]

#[path = "e2e/envoy_config.rs"]
mod envoy_config;
#[path = "e2e/http.rs"]
mod http;
#[path = "e2e/processes.rs"]
mod processes;
#[path = "e2e/stack.rs"]
mod stack;
#[path = "e2e/tokens.rs"]
mod tokens;

use std::process::Command;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use envoy_config::{ListenerSpec, LOCAL_ES256_ISSUER, REQUIRED_SCOPE};
use http::Reply;
use processes::run_to_completion;
use stack::{stack, work_dir};
use tokens::{now_seconds, UNPUBLISHED_KEY_ID};

const API_PATH: &str = "/v1/chat/completions";
const ENVOY_EXIT_TIMEOUT_SECONDS: u64 = 30;
const TOOL_TIMEOUT_SECONDS: u64 = 60;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn call_idp_listener(authorization: Option<&str>) -> Reply {
    http::get(stack().listeners.idp, API_PATH, authorization)
}

fn envoy_log_tail() -> String {
    stack().envoy.log_tail()
}

/// Checks a 200 reply from the upstream echo and returns the request it saw.
fn assert_passed_upstream(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "expected 200, got {reply:?}\n{}", envoy_log_tail());
    let echo = reply.json();
    assert_eq!(echo["method"], "GET", "upstream saw another method: {echo}");
    assert_eq!(echo["path"], API_PATH, "upstream saw another path: {echo}");
    echo
}

/// Checks status, content type and JSON body of a rejection, and that the token is not echoed.
fn assert_rejection_body(reply: &Reply, status: u16, code: &str, token: Option<&str>) {
    assert_eq!(reply.status, status, "expected {status} {code}, got {reply:?}\n{}", envoy_log_tail());
    assert_eq!(reply.code(), code, "wrong reason code in {reply:?}");
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "content-type is {content_type:?}");
    let message = reply.json()["message"].clone();
    assert!(matches!(&message, Value::String(text) if !text.is_empty()), "message missing or empty: {message}");
    if let Some(token) = token {
        assert!(!reply.body.contains(token), "the body echoes the token: {}", reply.body);
        assert!(reply.headers.iter().all(|(_, value)| !value.contains(token)), "a header echoes the token: {reply:?}");
    }
}

fn www_authenticate(reply: &Reply) -> String {
    match reply.header("www-authenticate") {
        Some(value) => value.to_string(),
        None => panic!("no WWW-Authenticate header in {reply:?}"),
    }
}

fn assert_bearer_realm(challenge: &str, port: u16) {
    assert!(challenge.starts_with("Bearer "), "challenge is not Bearer: {challenge}");
    let realm = format!("realm=\"127.0.0.1:{port}\"");
    assert!(challenge.contains(&realm), "challenge lacks {realm}: {challenge}");
}

/// Checks a 401 with `error="invalid_token"` and the given reason code.
fn assert_invalid_token(reply: &Reply, port: u16, code: &str, token: &str) {
    assert_rejection_body(reply, 401, code, Some(token));
    let challenge = www_authenticate(reply);
    assert_bearer_realm(&challenge, port);
    assert!(challenge.contains("error=\"invalid_token\""), "challenge lacks error=\"invalid_token\": {challenge}");
    assert!(challenge.contains("error_description=\""), "challenge lacks error_description: {challenge}");
}

/// Checks a 403 with `error="insufficient_scope"`, the required scope and the given reason code.
fn assert_insufficient_scope(reply: &Reply, port: u16, code: &str, token: &str) {
    assert_rejection_body(reply, 403, code, Some(token));
    let challenge = www_authenticate(reply);
    assert_bearer_realm(&challenge, port);
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "challenge lacks error=\"insufficient_scope\": {challenge}"
    );
    assert!(challenge.contains("error_description=\""), "challenge lacks error_description: {challenge}");
    let scope = format!("scope=\"{REQUIRED_SCOPE}\"");
    assert!(challenge.contains(&scope), "challenge lacks {scope}: {challenge}");
}

// --- Accepted tokens ---

#[test]
fn idp_token_is_accepted() {
    let token = tokens::fetch_idp_token(&stack().token_endpoint, "ci-pipeline", Some("model.invoke"));

    let reply = call_idp_listener(Some(&bearer(&token)));

    let echo = assert_passed_upstream(&reply);
    assert!(echo["headers"].get("authorization").is_none(), "authorization reached the upstream: {echo}");
}

#[test]
fn idaas_form_scope_token_is_accepted() {
    // The token request names the scope as IDaaS does, `<Resource Server Identifier>|<Scope
    // Value>`, with no `resource` field, and the token's scope keeps that form.
    let scope = format!("{}|model.invoke", tokens::AUDIENCE);
    let token = tokens::fetch_idp_token_with(&stack().token_endpoint, "ci-pipeline", &[("scope", &scope)]);
    let claims = tokens::decode_payload(&token);
    assert_eq!(claims["scope"], scope.as_str(), "unexpected scope from the IdP: {claims}");
    assert_eq!(claims["aud"], tokens::AUDIENCE, "unexpected aud from the IdP: {claims}");

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_passed_upstream(&reply);
}

#[test]
fn minted_idp_like_token_is_accepted() {
    // The rejection tests below change one thing in this token; this shows the rest is valid.
    let token = tokens::sign_as_idp(&tokens::idp_like_claims(&stack().issuer));

    let reply = call_idp_listener(Some(&bearer(&token)));

    let echo = assert_passed_upstream(&reply);
    assert!(echo["headers"].get("authorization").is_none(), "authorization reached the upstream: {echo}");
}

#[test]
fn keep_token_forwards_authorization() {
    let token = tokens::sign_as_idp(&tokens::idp_like_claims(&stack().issuer));
    let authorization = bearer(&token);

    let reply = http::get(stack().listeners.keep_token, API_PATH, Some(&authorization));

    let echo = assert_passed_upstream(&reply);
    assert_eq!(echo["headers"]["authorization"], authorization.as_str(), "upstream echo: {echo}");
}

#[test]
fn es256_token_with_local_jwks_is_accepted() {
    let claims = tokens::idp_like_claims(LOCAL_ES256_ISSUER);
    let token = tokens::sign(Algorithm::ES256, tokens::LOCAL_ES256_KEY_ID, &claims);

    let reply = http::get(stack().listeners.local_es256, API_PATH, Some(&bearer(&token)));

    let echo = assert_passed_upstream(&reply);
    assert!(echo["headers"].get("authorization").is_none(), "authorization reached the upstream: {echo}");
}

// --- 401: token missing or malformed ---

#[test]
fn missing_token_is_rejected() {
    let reply = call_idp_listener(None);

    assert_rejection_body(&reply, 401, "token_missing", None);
    let challenge = www_authenticate(&reply);
    assert_bearer_realm(&challenge, stack().listeners.idp);
    assert!(!challenge.contains("error="), "a missing token must not carry an error code: {challenge}");
}

#[test]
fn malformed_token_is_rejected() {
    let reply = call_idp_listener(Some("Bearer not-a-jwt"));
    assert_invalid_token(&reply, stack().listeners.idp, "token_malformed", "not-a-jwt");

    let reply = call_idp_listener(Some("Basic Y2ktcGlwZWxpbmU6c2VjcmV0"));
    assert_invalid_token(&reply, stack().listeners.idp, "token_malformed", "Y2ktcGlwZWxpbmU6c2VjcmV0");
}

/// Sends a GET with each of `authorizations` as its own `Authorization` header line. The HTTP
/// client would replace repeated headers, so this goes over a raw connection.
fn get_with_repeated_authorization(port: u16, authorizations: &[&str]) -> (u16, String) {
    let mut lines = vec![format!("Host: 127.0.0.1:{port}")];
    lines.extend(authorizations.iter().map(|value| format!("Authorization: {value}")));
    http::get_raw(port, API_PATH, &lines)
}

#[test]
fn repeated_authorization_headers_are_rejected() {
    let valid = tokens::sign_as_idp(&tokens::idp_like_claims(&stack().issuer));
    let valid = bearer(&valid);
    // Alone, the token passes; two copies of it, or a valid and a broken one, must not.
    assert_passed_upstream(&call_idp_listener(Some(&valid)));
    for pair in [[valid.as_str(), valid.as_str()], [valid.as_str(), "Bearer not-a-jwt"], ["Bearer not-a-jwt", valid.as_str()]] {
        let (status, response) = get_with_repeated_authorization(stack().listeners.idp, &pair);
        assert_eq!(status, 401, "two Authorization headers were not rejected:\n{response}");
        assert!(response.contains("\"token_malformed\""), "wrong reason for two Authorization headers:\n{response}");
    }
}

// --- 401: header, issuer, key and signature ---

#[test]
fn alg_none_is_rejected() {
    let token = tokens::unsigned_alg_none(&tokens::idp_like_claims(&stack().issuer));

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_invalid_token(&reply, stack().listeners.idp, "alg_not_allowed", &token);
}

#[test]
fn hs256_with_public_key_secret_is_rejected() {
    let token = tokens::hs256_with_idp_public_key_as_secret(&tokens::idp_like_claims(&stack().issuer));

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_invalid_token(&reply, stack().listeners.idp, "alg_not_allowed", &token);
}

#[test]
fn wrong_issuer_is_rejected() {
    let mut claims = tokens::idp_like_claims(&stack().issuer);
    claims["iss"] = json!("https://another-instance.aliyunidaas.com/api/v2/iauths_system/oauth2");
    let token = tokens::sign_as_idp(&claims);

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_invalid_token(&reply, stack().listeners.idp, "issuer_unknown", &token);
}

#[test]
fn unknown_kid_is_rejected() {
    let token = tokens::sign(Algorithm::RS256, UNPUBLISHED_KEY_ID, &tokens::idp_like_claims(&stack().issuer));

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_invalid_token(&reply, stack().listeners.idp, "key_not_found", &token);
}

#[test]
fn tampered_payload_is_rejected() {
    let original = tokens::sign_as_idp(&tokens::idp_like_claims(&stack().issuer));
    let token = tokens::with_tampered_payload(&original);

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_invalid_token(&reply, stack().listeners.idp, "signature_invalid", &token);
}

#[test]
fn tampered_signature_is_rejected() {
    let original = tokens::sign_as_idp(&tokens::idp_like_claims(&stack().issuer));
    let token = tokens::with_tampered_signature(&original);

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_invalid_token(&reply, stack().listeners.idp, "signature_invalid", &token);
}

// --- 401: time and audience ---

#[test]
fn expired_token_is_rejected() {
    let mut claims = tokens::idp_like_claims(&stack().issuer);
    // An hour past expiry, far beyond the 60 s clock skew.
    claims["iat"] = json!(now_seconds() - 7200);
    claims["exp"] = json!(now_seconds() - 3600);
    let token = tokens::sign_as_idp(&claims);

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_invalid_token(&reply, stack().listeners.idp, "token_expired", &token);
}

#[test]
fn wrong_audience_is_rejected() {
    let mut claims = tokens::idp_like_claims(&stack().issuer);
    claims["aud"] = json!("api://another-resource-server");
    let token = tokens::sign_as_idp(&claims);

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_invalid_token(&reply, stack().listeners.idp, "audience_not_allowed", &token);
}

// --- 403: scope ---

#[test]
fn no_scope_client_token_is_forbidden() {
    let token = tokens::fetch_idp_token(&stack().token_endpoint, "no-scope", Some("model.invoke"));
    let claims = tokens::decode_payload(&token);
    assert!(claims.get("scope").is_none(), "the IdP gave the no-scope client a scope: {claims}");

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_insufficient_scope(&reply, stack().listeners.idp, "scope_empty", &token);
}

#[test]
fn scope_with_no_break_space_is_rejected() {
    let mut claims = tokens::idp_like_claims(&stack().issuer);
    // Not a delimiter, so the value is neither `model.invoke` nor empty.
    claims["scope"] = json!("model.invoke\u{a0}admin");
    let token = tokens::sign_as_idp(&claims);

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_invalid_token(&reply, stack().listeners.idp, "claim_invalid", &token);
}

#[test]
fn list_only_client_token_is_forbidden() {
    let token = tokens::fetch_idp_token(&stack().token_endpoint, "list-only", Some("model.invoke model.list"));
    let claims = tokens::decode_payload(&token);
    assert_eq!(claims["scope"], "model.list", "unexpected scope from the IdP: {claims}");

    let reply = call_idp_listener(Some(&bearer(&token)));

    assert_insufficient_scope(&reply, stack().listeners.idp, "scope_insufficient", &token);
}

// --- 503: JWKS ---

#[test]
fn unreachable_jwks_returns_service_unavailable() {
    let token = tokens::sign_as_idp(&tokens::idp_like_claims(&stack().issuer));

    let reply = http::get(stack().listeners.closed_jwks, API_PATH, Some(&bearer(&token)));

    assert_rejection_body(&reply, 503, "jwks_unavailable", Some(&token));
    let retry_after = reply.header("retry-after").unwrap_or_else(|| panic!("no Retry-After in {reply:?}"));
    assert!(retry_after.trim().parse::<u64>().is_ok(), "Retry-After is not a number of seconds: {retry_after:?}");
}

// --- Invalid plugin configuration ---

/// Lines that the plugin itself logged at error level (Envoy prefixes them with "wasm log").
fn plugin_error_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|line| line.contains("[error]") && line.contains("wasm log")).collect()
}

fn bootstrap_with_plugin_config(plugin_config: Value) -> Value {
    let ports = stack::free_ports(2).expect("free ports");
    let spec = ListenerSpec { name: "invalid".into(), port: ports[1], plugin_config };
    // The clusters are never contacted: the plugin is rejected before it fetches anything.
    let clusters = envoy_config::ClusterPorts { idp: ports[0], upstream: ports[0], closed: ports[0] };
    envoy_config::bootstrap(ports[0], &[spec], &stack::wasm_path(), &clusters)
}

#[test]
fn empty_audiences_stops_envoy() {
    let mut plugin_config = envoy_config::idp_plugin_config(9);
    plugin_config["providers"][0]["audiences"] = json!([]);
    let envoy = stack::spawn_envoy("envoy_empty_audiences", &bootstrap_with_plugin_config(plugin_config))
        .unwrap_or_else(|error| panic!("{error}"));

    // Envoy 1.40 rejects a static listener whose Wasm plugin fails on_configure and exits.
    let status = envoy.wait_for_exit(Duration::from_secs(ENVOY_EXIT_TIMEOUT_SECONDS));

    let log = envoy.log();
    let Some(status) = status else {
        envoy.kill();
        panic!("Envoy kept running with empty audiences\n{}", envoy.log_tail());
    };
    assert!(!status.success(), "Envoy exited with {status}\n{}", envoy.log_tail());
    assert!(log.contains("Unable to create Wasm plugin"), "no plugin creation failure logged\n{}", envoy.log_tail());
    let errors = plugin_error_lines(&log);
    assert_eq!(errors.len(), 1, "expected one plugin error line, got {errors:#?}");
    assert!(errors[0].contains("audiences"), "the error line does not name `audiences`: {}", errors[0]);
}

/// A password or API key placed in an invalid configuration, which no log line may contain.
const SECRET_IN_CONFIG: &str = "sk-e2e-config-secret";

#[test]
fn invalid_plugin_configs_fail_validation() {
    let valid = envoy_config::idp_plugin_config(9);
    let mut cases: Vec<(&str, Value, Option<&str>)> = Vec::new();

    let mut config = valid.clone();
    config["providers"][0]["audiences"] = json!([]);
    cases.push(("empty_audiences", config, Some("audiences")));

    let mut config = valid.clone();
    config["providers"][0].as_object_mut().unwrap().remove("issuer");
    cases.push(("missing_issuer", config, Some("issuer")));

    // local_jwks beside remote_jwks is allowed (bootstrap keys); remote_jwks beside discovery is not.
    let mut config = valid.clone();
    config["providers"][0]["discovery"] = config["providers"][0]["remote_jwks"].clone();
    cases.push(("remote_jwks_and_discovery", config, Some("discovery")));

    let mut config = valid.clone();
    config["providers"][0].as_object_mut().unwrap().remove("remote_jwks");
    cases.push(("no_jwks_source", config, Some("jwks")));

    let mut config = valid.clone();
    config["providers"][0]["remote_jwks"]["cache_duration_seconds"] = json!(-1);
    cases.push(("negative_cache_duration", config, Some("cache_duration_seconds")));

    let mut config = envoy_config::local_es256_plugin_config();
    config["providers"][0]["local_jwks"] = json!(r#"{"keys":[]}"#);
    cases.push(("local_jwks_without_keys", config, Some("local_jwks")));

    let mut config = valid.clone();
    config["providers"][0]["issuer"] = json!("https://<instance>.aliyunidaas.com/api/v2/iauths_system/oauth2");
    cases.push(("placeholder_issuer", config, Some("placeholder")));

    let mut config = valid.clone();
    config["providers"][0]["audiences"] = json!(["api://model-studio "]);
    cases.push(("audience_with_trailing_space", config, Some("whitespace")));

    let mut config = valid.clone();
    config["providers"][0]["remote_jwks"]["uri"] = json!(format!("http://user:{SECRET_IN_CONFIG}@127.0.0.1:9/jwks"));
    cases.push(("jwks_uri_with_password", config, Some("user info")));

    let mut config = valid.clone();
    config["upstream_authorization"] = json!([format!("Bearer {SECRET_IN_CONFIG}")]);
    cases.push(("upstream_authorization_as_array", config, Some("upstream_authorization")));

    let mut failures = Vec::new();
    for (name, plugin_config, field) in cases {
        let config_path = work_dir().join(format!("validate_{name}.json"));
        let bootstrap = bootstrap_with_plugin_config(plugin_config);
        std::fs::write(&config_path, bootstrap.to_string()).unwrap();

        let (status, log) = stack::validate_envoy_config(&format!("validate_{name}"), &config_path).unwrap();

        let errors = plugin_error_lines(&log);
        if log.contains(SECRET_IN_CONFIG) {
            failures.push(format!("{name}: the Envoy log contains the secret from the configuration"));
        }
        if status.success() {
            failures.push(format!("{name}: envoy --mode validate accepted it"));
        } else if errors.len() != 1 {
            failures.push(format!("{name}: expected one plugin error line, got {errors:#?}"));
        } else if let Some(field) = field {
            if !errors[0].contains(field) {
                failures.push(format!("{name}: the error line does not name `{field}`: {}", errors[0]));
            }
        }
    }
    assert!(failures.is_empty(), "invalid configs not rejected as expected:\n{}", failures.join("\n"));
}

#[test]
fn malformed_plugin_json_fails_validation() {
    let config_path = work_dir().join("validate_malformed_json.json");
    let mut bootstrap = bootstrap_with_plugin_config(json!({}));
    let listener_filters = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
    let wasm_filter = &mut listener_filters["typed_config"]["http_filters"][0];
    wasm_filter["typed_config"]["config"]["configuration"]["value"] = json!("{\"providers\": [");
    std::fs::write(&config_path, bootstrap.to_string()).unwrap();

    let (status, log) = stack::validate_envoy_config("validate_malformed_json", &config_path).unwrap();

    assert!(!status.success(), "envoy --mode validate accepted malformed JSON\n{log}");
    let errors = plugin_error_lines(&log);
    assert_eq!(errors.len(), 1, "expected one plugin error line, got {errors:#?}");
}

#[test]
fn duplicate_plugin_member_fails_validation() {
    let config_path = work_dir().join("validate_duplicate_member.json");
    let valid = envoy_config::idp_plugin_config(9);
    let mut bootstrap = bootstrap_with_plugin_config(valid.clone());
    // serde_json cannot build an object with a member twice, so the text is spliced.
    let text = valid.to_string();
    let duplicated = format!("{{\"required_scopes\": [], {}", text.strip_prefix('{').unwrap());
    let listener_filters = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
    let wasm_filter = &mut listener_filters["typed_config"]["http_filters"][0];
    wasm_filter["typed_config"]["config"]["configuration"]["value"] = json!(duplicated);
    std::fs::write(&config_path, bootstrap.to_string()).unwrap();

    let (status, log) = stack::validate_envoy_config("validate_duplicate_member", &config_path).unwrap();

    assert!(!status.success(), "envoy --mode validate accepted a member given twice\n{log}");
    let errors = plugin_error_lines(&log);
    assert_eq!(errors.len(), 1, "expected one plugin error line, got {errors:#?}");
    assert!(errors[0].contains("duplicate"), "the error line does not name the duplicate: {}", errors[0]);
}

// --- The repository's own configs and the built module ---

#[test]
fn envoy_yaml_passes_validation() {
    let config_path = stack::repo_root().join("envoy/envoy.yaml");

    let (status, log) = stack::validate_envoy_config("validate_envoy_yaml", &config_path).unwrap();

    assert!(status.success(), "envoy --mode validate rejected envoy/envoy.yaml:\n{log}");
}

#[test]
fn compose_envoy_config_passes_validation() {
    // The compose config expects the .wasm where docker-compose mounts it; point it at the build.
    let compose_config = std::fs::read_to_string(stack::repo_root().join("envoy/envoy-compose.yaml")).unwrap();
    let mounted_wasm = "/etc/envoy/idaas_jwt_filter.wasm";
    assert!(compose_config.contains(mounted_wasm), "envoy-compose.yaml no longer loads {mounted_wasm}");
    let local_config = compose_config.replace(mounted_wasm, &stack::wasm_path().display().to_string());
    let config_path = work_dir().join("envoy-compose.yaml");
    std::fs::write(&config_path, local_config).unwrap();

    let (status, log) = stack::validate_envoy_config("validate_envoy_compose", &config_path).unwrap();

    assert!(status.success(), "envoy --mode validate rejected envoy/envoy-compose.yaml:\n{log}");
}

#[test]
fn docker_compose_file_is_valid() {
    let mut command = Command::new("docker-compose");
    command.current_dir(stack::repo_root()).args(["-f", "envoy/docker-compose.yaml", "config", "--quiet"]);

    let result = run_to_completion(
        "docker-compose config",
        command,
        &work_dir().join("docker-compose-config.log"),
        Duration::from_secs(TOOL_TIMEOUT_SECONDS),
    );

    let (status, output) = result.unwrap_or_else(|error| panic!("{error} (is docker-compose installed? `make deps-apt`)"));
    assert!(status.success(), "docker-compose config rejected envoy/docker-compose.yaml:\n{output}");
}

#[test]
fn wasm_imports_only_proxy_and_wasi() {
    let mut command = Command::new("wasm-objdump");
    command.args(["-x", "-j", "Import"]).arg(stack::wasm_path());

    let result = run_to_completion(
        "wasm-objdump",
        command,
        &work_dir().join("wasm-objdump.log"),
        Duration::from_secs(TOOL_TIMEOUT_SECONDS),
    );

    let (status, output) = result.unwrap_or_else(|error| panic!("{error} (is wabt installed? `make deps-apt`)"));
    assert!(status.success(), "wasm-objdump failed:\n{output}");
    // Lines look like " - func[3] sig=9 <env.proxy_log> <- env.proxy_log".
    let imports: Vec<&str> = output.lines().filter_map(|line| line.split_once(" <- ").map(|(_, name)| name.trim())).collect();
    let declared_count = output
        .lines()
        .find_map(|line| line.strip_prefix("Import[").and_then(|rest| rest.strip_suffix("]:")))
        .and_then(|count| count.parse::<usize>().ok());
    assert_eq!(declared_count, Some(imports.len()), "could not parse every import:\n{output}");
    let unexpected: Vec<&&str> = imports
        .iter()
        .filter(|name| !(name.starts_with("env.proxy_") || name.starts_with("wasi_snapshot_preview1.")))
        .collect();
    assert!(unexpected.is_empty(), "unexpected imports: {unexpected:?}");
    assert!(imports.iter().any(|name| name.starts_with("env.proxy_")), "no proxy-wasm imports: {imports:?}");
}

/// Size budget of the size-optimized module (`wasm-opt -Oz`) that `make build` writes.
const OPTIMIZED_WASM_MAX_BYTES: u64 = 600 * 1024;

#[test]
fn optimized_wasm_fits_budget_and_loads() {
    let optimized = stack::wasm_path().with_file_name("idaas_jwt_filter.oz.wasm");
    let bytes = std::fs::metadata(&optimized)
        .unwrap_or_else(|error| panic!("{}: {error} (run `make build`)", optimized.display()))
        .len();
    assert!(bytes <= OPTIMIZED_WASM_MAX_BYTES, "{} is {bytes} bytes, over {OPTIMIZED_WASM_MAX_BYTES}", optimized.display());

    // The optimized module must still load and configure: run make run's config with it.
    let config = std::fs::read_to_string(stack::repo_root().join("envoy/envoy.yaml")).unwrap();
    let relative_wasm = "target/wasm32-wasip1/release/idaas_jwt_filter.wasm";
    assert!(config.contains(relative_wasm), "envoy/envoy.yaml no longer loads {relative_wasm}");
    let config_path = work_dir().join("envoy-optimized.yaml");
    std::fs::write(&config_path, config.replace(relative_wasm, &optimized.display().to_string())).unwrap();
    let (status, log) = stack::validate_envoy_config("validate_envoy_optimized", &config_path).unwrap();
    assert!(status.success(), "envoy --mode validate rejected the optimized module:\n{log}");
}
