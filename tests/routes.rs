//! End-to-end tests of per-route policy in real Envoy 1.40. They cover route rules that skip
//! validation or need other scopes, `scope_match`, `scope_claims` and `<identifier>|<value>`
//! scopes. They check what reaches the upstream: claim headers a client cannot forge, the
//! verified payload header and the gateway's API key in place of the IdP token. They also
//! cover CORS preflight and a Higress-shaped configuration whose `_rules_` are selected by
//! route name, `:authority` and cluster name, and every configuration snippet in docs/ and
//! the READMEs.
//!
//! Run with `make test` or, after `make deps build`, `cargo test --test routes`. Configs and
//! logs stay in $TMPDIR/idaas-jwt-filter-e2e-<pid>/ (routes_envoy.log has the filter's debug
//! logs).
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
#[path = "routes/gateway.rs"]
mod gateway;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/http.rs"]
mod http;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/processes.rs"]
mod processes;
#[path = "routes/snippets.rs"]
mod snippets;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/stack.rs"]
mod stack;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/tokens.rs"]
mod tokens;

use std::sync::Mutex;

use serde_json::{json, Map, Value};

use gateway::{
    gateway, API_KEY, API_KEY_VARIABLE, CLIENT_ID_HEADER, DEFAULT_SCOPE, LIST_SCOPE, PAYLOAD_HEADER, SCOPE_HEADER,
    SERVICE_SCOPE, TENANT_SCOPE, TUNING_SCOPE,
};
use http::Reply;
use stack::work_dir;
use tokens::AUDIENCE;

const CHAT_PATH: &str = "/v1/chat/completions";
const MODELS_PATH: &str = "/v1/models";
const HEALTH_PATH: &str = "/healthz";
const TENANT_HOST: &str = "api.tenant.example.com";

// --- Tokens and requests ---

/// Every token this binary minted or fetched, so the log test can look for all of them.
static ISSUED_TOKENS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn remember(token: String) -> String {
    ISSUED_TOKENS.lock().unwrap().push(token.clone());
    token
}

/// Mints an IdP-like token whose scope claims are exactly `scope_claims` (no `scope` otherwise).
fn mint(scope_claims: Value) -> String {
    let mut claims = tokens::idp_like_claims(&gateway().issuer);
    claims.as_object_mut().unwrap().remove("scope");
    for (name, value) in scope_claims.as_object().unwrap() {
        claims[name] = value.clone();
    }
    remember(tokens::sign_as_idp(&claims))
}

fn mint_with_scope(scope: &str) -> String {
    mint(json!({ "scope": scope }))
}

/// Fetches a client_credentials token from the local IdP.
fn idp_token(client_id: &str, scope: &str) -> String {
    remember(tokens::fetch_idp_token(&gateway().token_endpoint, client_id, Some(scope)))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Sends `method path` to the listener on `port` with extra request headers.
fn call(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut request = http::agent().request(method, &url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    http::send(request, &url)
}

fn get_with_token(port: u16, path: &str, token: &str) -> Reply {
    call(port, "GET", path, &[("authorization", &bearer(token))])
}

fn envoy_log_tail() -> String {
    gateway().envoy.log_tail()
}

// --- Checks ---

/// Checks that the request reached the upstream echo as `method path` and returns the headers
/// the upstream saw.
fn assert_reached_upstream(reply: &Reply, method: &str, path: &str) -> Map<String, Value> {
    assert_eq!(reply.status, 200, "expected 200 from the upstream, got {reply:?}\n{}", envoy_log_tail());
    let echo = reply.json();
    assert_eq!(echo["method"], method, "upstream saw another method: {echo}");
    assert_eq!(echo["path"], path, "upstream saw another path: {echo}");
    match echo.get("headers") {
        Some(Value::Object(headers)) => headers.clone(),
        _ => panic!("upstream echo has no headers object: {echo}"),
    }
}

/// Checks a rejection's status and reason code, and that it did not come from the upstream.
fn assert_denied(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "expected {status} {code}, got {reply:?}\n{}", envoy_log_tail());
    assert_eq!(reply.code(), code, "wrong reason code in {reply:?}");
    assert!(reply.json().get("headers").is_none(), "the rejection came from the upstream: {reply:?}");
}

/// Checks a 403 `scope_insufficient` whose challenge names exactly `scopes`.
fn assert_scope_insufficient(reply: &Reply, scopes: &str) {
    assert_denied(reply, 403, "scope_insufficient");
    let challenge = reply.header("www-authenticate").unwrap_or_else(|| panic!("no WWW-Authenticate in {reply:?}"));
    assert!(challenge.contains("error=\"insufficient_scope\""), "challenge lacks insufficient_scope: {challenge}");
    let expected = format!("scope=\"{scopes}\"");
    assert!(challenge.contains(&expected), "challenge lacks {expected}: {challenge}");
}

fn header_value<'a>(headers: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(Value::as_str)
}

// --- Route rules ---

#[test]
fn skip_route_passes_without_token() {
    let reply = call(gateway().listeners.routes, "GET", HEALTH_PATH, &[]);

    let headers = assert_reached_upstream(&reply, "GET", HEALTH_PATH);
    assert_eq!(header_value(&headers, "authorization"), None, "the skip route added an authorization header: {headers:?}");
}

#[test]
fn models_route_accepts_list_only_client() {
    let token = idp_token("list-only", "model.invoke model.list");
    assert_eq!(tokens::decode_payload(&token)["scope"], LIST_SCOPE, "unexpected scope from the IdP");

    let reply = get_with_token(gateway().listeners.routes, MODELS_PATH, &token);

    assert_reached_upstream(&reply, "GET", MODELS_PATH);
}

#[test]
fn chat_route_rejects_list_only_client() {
    let token = idp_token("list-only", "model.invoke model.list");

    let reply = get_with_token(gateway().listeners.routes, CHAT_PATH, &token);

    assert_scope_insufficient(&reply, DEFAULT_SCOPE);
}

#[test]
fn models_rule_applies_only_to_get() {
    // The /v1/models rule lists only GET, so a POST falls back to the top-level model.invoke.
    let token = mint_with_scope(LIST_SCOPE);

    let reply = call(gateway().listeners.routes, "POST", MODELS_PATH, &[("authorization", &bearer(&token))]);

    assert_scope_insufficient(&reply, DEFAULT_SCOPE);
}

#[test]
fn scope_match_any_accepts_one_scope() {
    let path = "/v1/batches";
    let with_one = mint_with_scope(DEFAULT_SCOPE);
    let with_none = mint_with_scope(LIST_SCOPE);

    let accepted = get_with_token(gateway().listeners.routes, path, &with_one);
    let rejected = get_with_token(gateway().listeners.routes, path, &with_none);

    assert_reached_upstream(&accepted, "GET", path);
    assert_scope_insufficient(&rejected, "batch.write model.invoke");
}

#[test]
fn regex_rule_applies_to_every_alternative() {
    let invoke_only = mint_with_scope(DEFAULT_SCOPE);

    // The second alternative only matches the whole path if the pattern is anchored as a whole.
    for path in ["/v1/fine-tunes", "/v1/fine-tunes/admin"] {
        let reply = get_with_token(gateway().listeners.routes, path, &invoke_only);
        assert_scope_insufficient(&reply, TUNING_SCOPE);
    }
}

#[test]
fn scope_match_all_needs_every_scope() {
    let path = "/v1/files";
    let with_one = mint_with_scope(DEFAULT_SCOPE);
    let with_both = mint_with_scope("files.write model.invoke");

    let rejected = get_with_token(gateway().listeners.routes, path, &with_one);
    let accepted = get_with_token(gateway().listeners.routes, path, &with_both);

    assert_scope_insufficient(&rejected, "files.write model.invoke");
    assert_reached_upstream(&accepted, "GET", path);
}

// --- Where scopes come from ---

#[test]
fn scp_array_grants_scope() {
    let granted = mint(json!({ "scp": [LIST_SCOPE, DEFAULT_SCOPE] }));
    let other = mint(json!({ "scp": [LIST_SCOPE] }));

    let accepted = get_with_token(gateway().listeners.routes, CHAT_PATH, &granted);
    let rejected = get_with_token(gateway().listeners.routes, CHAT_PATH, &other);

    assert_reached_upstream(&accepted, "GET", CHAT_PATH);
    assert_scope_insufficient(&rejected, DEFAULT_SCOPE);
}

#[test]
fn scope_claims_reads_only_configured_claim() {
    let port = gateway().listeners.scope_claims;
    let as_array = mint(json!({ "permissions": [DEFAULT_SCOPE] }));
    let as_string = mint(json!({ "permissions": "model.list model.invoke" }));
    let in_scope_claim = mint_with_scope(DEFAULT_SCOPE);

    assert_reached_upstream(&get_with_token(port, CHAT_PATH, &as_array), "GET", CHAT_PATH);
    assert_reached_upstream(&get_with_token(port, CHAT_PATH, &as_string), "GET", CHAT_PATH);
    // With scope_claims ["permissions"], the standard scope claim is not read at all.
    assert_denied(&get_with_token(port, CHAT_PATH, &in_scope_claim), 403, "scope_empty");
}

#[test]
fn identifier_scope_of_audience_is_accepted() {
    let token = mint_with_scope(&format!("{AUDIENCE}|{DEFAULT_SCOPE}"));

    let reply = get_with_token(gateway().listeners.routes, CHAT_PATH, &token);

    assert_reached_upstream(&reply, "GET", CHAT_PATH);
}

#[test]
fn identifier_scope_of_other_server_is_rejected() {
    let token = mint_with_scope(&format!("api://another-resource-server|{DEFAULT_SCOPE}"));

    let reply = get_with_token(gateway().listeners.routes, CHAT_PATH, &token);

    assert_scope_insufficient(&reply, DEFAULT_SCOPE);
}

// --- What reaches the upstream ---

#[test]
fn forged_claim_headers_are_replaced() {
    let token = mint_with_scope(DEFAULT_SCOPE);
    let authorization = bearer(&token);
    let forged = [
        ("authorization", authorization.as_str()),
        (CLIENT_ID_HEADER, "forged"),
        (SCOPE_HEADER, "forged.scope"),
        (PAYLOAD_HEADER, "forged"),
    ];

    let reply = call(gateway().listeners.routes, "GET", CHAT_PATH, &forged);

    let headers = assert_reached_upstream(&reply, "GET", CHAT_PATH);
    assert_eq!(header_value(&headers, CLIENT_ID_HEADER), Some("ci-pipeline"), "upstream headers: {headers:?}");
    assert_eq!(header_value(&headers, SCOPE_HEADER), Some(DEFAULT_SCOPE), "upstream headers: {headers:?}");
    let payload = token.split('.').nth(1).unwrap();
    assert_eq!(header_value(&headers, PAYLOAD_HEADER), Some(payload), "upstream headers: {headers:?}");
}

#[test]
fn forged_claim_headers_removed_on_skip_route() {
    let forged = [(CLIENT_ID_HEADER, "forged"), (SCOPE_HEADER, "forged.scope"), (PAYLOAD_HEADER, "forged")];

    let reply = call(gateway().listeners.routes, "GET", HEALTH_PATH, &forged);

    let headers = assert_reached_upstream(&reply, "GET", HEALTH_PATH);
    for (name, _) in forged {
        assert_eq!(header_value(&headers, name), None, "{name} reached the upstream on a skip route: {headers:?}");
    }
}

#[test]
fn payload_header_carries_token_payload() {
    let token = mint_with_scope(DEFAULT_SCOPE);

    let reply = get_with_token(gateway().listeners.routes, CHAT_PATH, &token);

    let headers = assert_reached_upstream(&reply, "GET", CHAT_PATH);
    let forwarded = header_value(&headers, PAYLOAD_HEADER).unwrap_or_else(|| panic!("no {PAYLOAD_HEADER}: {headers:?}"));
    assert_eq!(forwarded, token.split('.').nth(1).unwrap(), "the header is not the token's payload segment");
    let forwarded_token = format!("e30.{forwarded}.AA");
    assert_eq!(tokens::decode_payload(&forwarded_token), tokens::decode_payload(&token), "payload decodes differently");
}

#[test]
fn api_key_replaces_idp_token() {
    let token = idp_token("ci-pipeline", "model.invoke");

    let reply = get_with_token(gateway().listeners.routes, CHAT_PATH, &token);

    let headers = assert_reached_upstream(&reply, "GET", CHAT_PATH);
    let expected = format!("Bearer {API_KEY}");
    assert_eq!(header_value(&headers, "authorization"), Some(expected.as_str()), "upstream headers: {headers:?}");
    let echoed = reply.body.as_str();
    assert!(!echoed.contains(&token), "the IdP token reached the upstream: {echoed}");
}

#[test]
fn missing_api_key_variable_stops_envoy() {
    let plugin_config = gateway::routes_plugin_config("https://idaas.example/oauth2");
    let bootstrap = gateway::validation_bootstrap(plugin_config, &[]);

    let (status, errors) = validate("missing_api_key_variable", &bootstrap);

    assert!(!status, "envoy --mode validate accepted a config whose {API_KEY_VARIABLE} is not set");
    assert_eq!(errors.len(), 1, "expected one plugin error line, got {errors:#?}");
    assert!(errors[0].contains("upstream_authorization"), "the error line does not name upstream_authorization: {}", errors[0]);
    assert!(errors[0].contains(API_KEY_VARIABLE), "the error line does not name {API_KEY_VARIABLE}: {}", errors[0]);
}

// --- Paths an upstream may resolve to another route ---

fn get_raw_path(port: u16, raw_path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut lines = vec![format!("Host: 127.0.0.1:{port}")];
    lines.extend(authorization.map(|value| format!("Authorization: {value}")));
    http::get_raw(port, raw_path, &lines)
}

#[test]
fn repeated_host_headers_are_rejected_when_rules_exist() {
    let gateway = gateway();
    let token = bearer(&mint_with_scope(DEFAULT_SCOPE));
    let ports = [gateway.listeners.routes, gateway.listeners.higress, gateway.listeners.higress_rules_only];
    for port in ports {
        let lines = [
            "Host: evil.example".to_owned(),
            format!("Host: 127.0.0.1:{port}"),
            format!("Authorization: {token}"),
        ];
        let (status, response) = http::get_raw(port, CHAT_PATH, &lines);
        assert_eq!(status, 400, "two Host headers were not rejected on port {port}:\n{response}");
        assert!(response.contains("\"authority_invalid\""), "wrong reason on port {port}:\n{response}");
    }
}

#[test]
fn unnormalized_paths_are_rejected_when_rules_exist() {
    let port = gateway().listeners.routes;
    let invoke_only = bearer(&mint_with_scope(DEFAULT_SCOPE));
    // Without the check, the first two would skip the token under the /healthz rule and the
    // others would escape the model.list rule of /v1/models.
    let cases = [
        ("/healthz/../v1/chat/completions", None),
        ("/healthz/..%2fv1/chat/completions", None),
        ("//v1/models", Some(invoke_only.as_str())),
        ("/v1/%6dodels", Some(invoke_only.as_str())),
        ("/x/../v1/models", Some(invoke_only.as_str())),
        ("/v1/models;x", Some(invoke_only.as_str())),
    ];
    for (path, authorization) in cases {
        let (status, response) = get_raw_path(port, path, authorization);
        assert_eq!(status, 400, "{path} was not rejected:\n{response}");
        assert!(response.contains("\"path_not_normalized\""), "wrong reason for {path}:\n{response}");
        assert!(response.contains("error=\"invalid_request\""), "no invalid_request challenge for {path}:\n{response}");
    }

    // A normalized path with a query still passes the check.
    let (status, response) = get_raw_path(port, "/healthz?probe=../x", None);
    assert_eq!(status, 200, "a normalized path was rejected:\n{response}");
}

// --- CORS preflight ---

fn preflight_headers() -> [(&'static str, &'static str); 2] {
    [("origin", "https://console.example.com"), ("access-control-request-method", "POST")]
}

#[test]
fn cors_preflight_passes_without_token() {
    let reply = call(gateway().listeners.routes, "OPTIONS", CHAT_PATH, &preflight_headers());

    assert_reached_upstream(&reply, "OPTIONS", CHAT_PATH);
}

#[test]
fn preflight_with_authorization_is_authenticated() {
    // A preflight never carries credentials, so one that does is checked like any request.
    let mut headers = preflight_headers().to_vec();
    headers.push(("authorization", "Bearer not-a-jwt"));
    let reply = call(gateway().listeners.routes, "OPTIONS", CHAT_PATH, &headers);
    assert_denied(&reply, 401, "token_malformed");

    let token = bearer(&mint_with_scope(DEFAULT_SCOPE));
    headers.pop();
    headers.push(("authorization", token.as_str()));
    let reply = call(gateway().listeners.routes, "OPTIONS", CHAT_PATH, &headers);
    assert_reached_upstream(&reply, "OPTIONS", CHAT_PATH);
}

#[test]
fn preflight_with_empty_origin_needs_token() {
    let reply = call(gateway().listeners.routes, "OPTIONS", CHAT_PATH, &[("origin", ""), ("access-control-request-method", "POST")]);

    assert_denied(&reply, 401, "token_missing");
}

#[test]
fn options_without_origin_needs_token() {
    let reply = call(gateway().listeners.routes, "OPTIONS", CHAT_PATH, &[("access-control-request-method", "POST")]);

    assert_denied(&reply, 401, "token_missing");
}

#[test]
fn cors_preflight_needs_token_without_bypass() {
    let reply = call(gateway().listeners.no_cors_bypass, "OPTIONS", CHAT_PATH, &preflight_headers());

    assert_denied(&reply, 401, "token_missing");
}

// --- Higress `_rules_` ---

#[test]
fn higress_rule_selected_by_route_name() {
    let port = gateway().listeners.higress;
    let list_only = mint_with_scope(LIST_SCOPE);

    // /v1/models is Envoy route "models-route", whose rule needs model.list.
    let accepted = get_with_token(port, MODELS_PATH, &list_only);
    let rejected = get_with_token(port, CHAT_PATH, &list_only);

    let headers = assert_reached_upstream(&accepted, "GET", MODELS_PATH);
    // The rule sets only required_scopes; claims_to_headers comes from the global part.
    assert_eq!(header_value(&headers, CLIENT_ID_HEADER), Some("ci-pipeline"), "upstream headers: {headers:?}");
    assert_scope_insufficient(&rejected, DEFAULT_SCOPE);
}

#[test]
fn higress_rule_selected_by_authority() {
    let port = gateway().listeners.higress;
    let invoke = mint_with_scope("model.invoke model.list");
    let tenant = mint_with_scope(TENANT_SCOPE);
    let host = format!("{TENANT_HOST}:8443");

    let rejected = call(port, "GET", CHAT_PATH, &[("host", &host), ("authorization", &bearer(&invoke))]);
    let accepted = call(port, "GET", CHAT_PATH, &[("host", &host), ("authorization", &bearer(&tenant))]);

    assert_scope_insufficient(&rejected, TENANT_SCOPE);
    let headers = assert_reached_upstream(&accepted, "GET", CHAT_PATH);
    assert_eq!(header_value(&headers, "host"), Some(host.as_str()), "the upstream saw another host: {headers:?}");
}

#[test]
fn higress_domain_rule_sees_through_host_variants() {
    let port = gateway().listeners.higress;
    let invoke = bearer(&mint_with_scope("model.invoke model.list"));

    // An upstream may read these as the tenant host, so the tenant rule must apply to them.
    for host in [format!("{TENANT_HOST}."), format!("{TENANT_HOST}.:8443"), format!("{TENANT_HOST}:")] {
        let reply = call(port, "GET", CHAT_PATH, &[("host", &host), ("authorization", &invoke)]);
        assert_scope_insufficient(&reply, TENANT_SCOPE);
    }
    for host in [format!("{TENANT_HOST}:abc"), format!("{TENANT_HOST}.."), format!("[{TENANT_HOST}]"), format!("{TENANT_HOST}%2e")] {
        let reply = call(port, "GET", CHAT_PATH, &[("host", &host), ("authorization", &invoke)]);
        assert_denied(&reply, 400, "authority_invalid");
    }
}

#[test]
fn higress_rule_selected_by_cluster_name() {
    let port = gateway().listeners.higress;
    let path = "/qwen/v1/chat/completions";
    let invoke = mint_with_scope(DEFAULT_SCOPE);
    let service = mint_with_scope(SERVICE_SCOPE);

    let rejected = get_with_token(port, path, &invoke);
    let accepted = get_with_token(port, path, &service);

    assert_scope_insufficient(&rejected, SERVICE_SCOPE);
    assert_reached_upstream(&accepted, "GET", path);
}

#[test]
fn higress_unmatched_request_uses_global_part() {
    let port = gateway().listeners.higress;
    let invoke = mint_with_scope(DEFAULT_SCOPE);
    let list_only = mint_with_scope(LIST_SCOPE);

    let accepted = get_with_token(port, CHAT_PATH, &invoke);
    let rejected = get_with_token(port, CHAT_PATH, &list_only);
    let without_token = call(port, "GET", CHAT_PATH, &[]);

    let headers = assert_reached_upstream(&accepted, "GET", CHAT_PATH);
    assert_eq!(header_value(&headers, CLIENT_ID_HEADER), Some("ci-pipeline"), "upstream headers: {headers:?}");
    assert_eq!(header_value(&headers, "authorization"), None, "the token reached the upstream: {headers:?}");
    assert_scope_insufficient(&rejected, DEFAULT_SCOPE);
    assert_denied(&without_token, 401, "token_missing");
}

#[test]
fn forged_claim_headers_removed_where_no_configuration_applies() {
    // Only the tenant domain's rule sets the header, and this request matches no rule.
    let port = gateway().listeners.higress_rules_only;

    let reply = call(port, "GET", CHAT_PATH, &[(CLIENT_ID_HEADER, "forged")]);

    let headers = assert_reached_upstream(&reply, "GET", CHAT_PATH);
    assert_eq!(header_value(&headers, CLIENT_ID_HEADER), None, "a forged claim header reached the upstream: {headers:?}");
}

// --- Invalid configurations ---

/// Lines that the plugin itself logged at error level (Envoy prefixes them with "wasm log").
fn plugin_error_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains("[error]") && line.contains("wasm log"))
        .map(str::to_owned)
        .collect()
}

/// Runs `envoy --mode validate` on `bootstrap` and returns whether it passed and the plugin's
/// error lines.
fn validate(name: &str, bootstrap: &Value) -> (bool, Vec<String>) {
    let config_path = work_dir().join(format!("routes_validate_{name}.json"));
    std::fs::write(&config_path, bootstrap.to_string()).unwrap();
    let (status, log) = stack::validate_envoy_config(&format!("routes_validate_{name}"), &config_path).unwrap();
    (status.success(), plugin_error_lines(&log))
}

#[test]
fn invalid_rule_configs_name_index_and_field() {
    let valid = gateway::routes_plugin_config("https://idaas.example/oauth2");
    let environment = [(API_KEY_VARIABLE, API_KEY)];
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();

    let mut config = valid.clone();
    config["rules"][2]["regex"] = json!("/v1/(batches");
    cases.push(("invalid_regex", config, "rules[2].regex: invalid regex"));

    let mut config = valid.clone();
    config["rules"][2]["regex"] = json!("(?x)/v1/batches # batch jobs");
    cases.push(("regex_comment", config, "rules[2].regex: cannot be matched against the whole path"));

    let mut config = valid.clone();
    config["rules"][1]["providers"] = json!(["nobody"]);
    cases.push(("unknown_rule_provider", config, "rules[1].providers"));

    let mut config = valid.clone();
    config["rules"][0]["required_scopes"] = json!(["model.invoke"]);
    cases.push(("skip_with_scopes", config, "rules[0].skip"));

    let mut config = gateway::higress_plugin_config("https://idaas.example/oauth2");
    config["_rules_"][1]["rules"] = json!([{ "regex": "(" }]);
    cases.push(("higress_rule_regex", config, "_rules_[1].rules[0].regex: invalid regex"));

    let mut config = gateway::higress_plugin_config("https://idaas.example/oauth2");
    config["_rules_"][2].as_object_mut().unwrap().remove("_match_service_");
    cases.push(("higress_rule_without_match", config, "_rules_[2]"));

    cases.push(("empty_config", json!({}), "providers"));

    let mut failures = Vec::new();
    for (name, plugin_config, expected) in cases {
        let (passed, errors) = validate(name, &gateway::validation_bootstrap(plugin_config, &environment));
        if passed {
            failures.push(format!("{name}: envoy --mode validate accepted it"));
        } else if errors.len() != 1 {
            failures.push(format!("{name}: expected one plugin error line, got {errors:#?}"));
        } else if !errors[0].contains(expected) {
            failures.push(format!("{name}: the error line does not contain `{expected}`: {}", errors[0]));
        }
    }
    assert!(failures.is_empty(), "invalid configs not rejected as expected:\n{}", failures.join("\n"));
}

#[test]
fn valid_routes_config_passes_validation() {
    // The invalid cases above change one field of this config; this shows the rest is valid.
    let plugin_config = gateway::routes_plugin_config("https://idaas.example/oauth2");
    let bootstrap = gateway::validation_bootstrap(plugin_config, &[(API_KEY_VARIABLE, API_KEY)]);

    let (passed, errors) = validate("valid_routes", &bootstrap);

    assert!(passed, "envoy --mode validate rejected the routes config: {errors:#?}");
    assert!(errors.is_empty(), "the plugin logged errors: {errors:#?}");
}

// --- Logs ---

/// Sends traffic through every kind of decision, then checks that the Envoy log contains no
/// token signature and not the API key. Tokens other tests issued before this point are
/// checked too.
#[test]
fn envoy_log_has_no_token_or_api_key() {
    let listeners = &gateway().listeners;
    let accepted = mint_with_scope(DEFAULT_SCOPE);
    let insufficient = mint_with_scope(LIST_SCOPE);
    let tampered = remember(tokens::with_tampered_signature(&accepted));
    let mut expired_claims = tokens::idp_like_claims(&gateway().issuer);
    expired_claims["exp"] = json!(tokens::now_seconds() - 3600);
    let expired = remember(tokens::sign_as_idp(&expired_claims));

    assert_reached_upstream(&get_with_token(listeners.routes, CHAT_PATH, &accepted), "GET", CHAT_PATH);
    assert_scope_insufficient(&get_with_token(listeners.routes, CHAT_PATH, &insufficient), DEFAULT_SCOPE);
    assert_denied(&get_with_token(listeners.routes, CHAT_PATH, &tampered), 401, "signature_invalid");
    assert_denied(&get_with_token(listeners.routes, CHAT_PATH, &expired), 401, "token_expired");
    assert_reached_upstream(&get_with_token(listeners.routes, HEALTH_PATH, &accepted), "GET", HEALTH_PATH);
    assert_scope_insufficient(&get_with_token(listeners.higress, CHAT_PATH, &insufficient), DEFAULT_SCOPE);

    let log = gateway().envoy.log();
    assert!(log.contains("request allowed"), "the filter's debug lines are missing from the log; is wasm:debug on?");
    assert!(!log.contains(API_KEY), "the Envoy log contains the API key value");
    let issued = ISSUED_TOKENS.lock().unwrap().clone();
    for token in &issued {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "the Envoy log contains a token signature: {signature}");
        assert!(!log.contains(token.as_str()), "the Envoy log contains a token");
    }
}

// --- Documented configurations ---

#[test]
fn documented_json_configs_parse() {
    let snippets = snippets::all_snippets(&stack::repo_root());
    let json_snippets: Vec<_> = snippets.iter().filter(|snippet| snippet.language == "json").collect();
    assert!(json_snippets.len() >= 5, "expected the docs to show several JSON configs, found {}", json_snippets.len());

    let mut failures = Vec::new();
    for snippet in json_snippets {
        // The examples are templates: the filter rejects "<instance>" and the like, so a reader
        // fills them in first, as this does.
        let filled = fill_placeholders(&snippet.text);
        if filled != snippet.text && !snippet.marked_invalid {
            match idaas_jwt_filter::higress::parse_plugin_config(snippet.text.as_bytes(), &snippets::documented_env) {
                Err(error) if error.to_string().contains("placeholder") => {}
                other => failures.push(format!("{}: with its placeholders: expected a placeholder error, got {other:?}", snippet.location())),
            }
        }
        let result = idaas_jwt_filter::higress::parse_plugin_config(filled.as_bytes(), &snippets::documented_env);
        match (result, snippet.marked_invalid) {
            (Ok(_), false) | (Err(_), true) => {}
            (Ok(_), true) => failures.push(format!("{}: marked invalid but accepted", snippet.location())),
            (Err(error), false) => failures.push(format!("{}: rejected: {error}", snippet.location())),
        }
    }
    assert!(failures.is_empty(), "documented configs:\n{}", failures.join("\n"));
}

/// Replaces each `<...>` placeholder of a documented example with a value a reader might fill
/// in: `<instance>` with "example", any other with "api://example".
fn fill_placeholders(text: &str) -> String {
    let mut filled = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let Some(length) = rest[start..].find('>') else { break };
        filled.push_str(&rest[..start]);
        let placeholder = &rest[start..=start + length];
        filled.push_str(if placeholder == "<instance>" { "example" } else { "api://example" });
        rest = &rest[start + length + 1..];
    }
    filled.push_str(rest);
    filled
}

#[test]
fn documented_yaml_loads_and_wasm_plugins_parse() {
    let snippets = snippets::all_snippets(&stack::repo_root());
    let yaml_snippets: Vec<_> = snippets.iter().filter(|snippet| snippet.language == "yaml").collect();
    assert!(!yaml_snippets.is_empty(), "expected YAML snippets in the docs");

    let documents = snippets::load_yaml_snippets("routes", &yaml_snippets);

    let mut wasm_plugins = 0;
    let mut failures = Vec::new();
    for (snippet, documents) in yaml_snippets.iter().zip(&documents) {
        for document in documents.iter().filter(|document| document["kind"] == "WasmPlugin") {
            wasm_plugins += 1;
            let spec = &document["spec"];
            if spec["phase"] != "AUTHN" {
                failures.push(format!("{}: phase is {}, not AUTHN", snippet.location(), spec["phase"]));
            }
            if spec["failStrategy"] != "FAIL_CLOSE" {
                failures.push(format!("{}: failStrategy is {}, not FAIL_CLOSE", snippet.location(), spec["failStrategy"]));
            }
            let plugin_json = snippets::wasm_plugin_config(document).to_string();
            if let Err(error) = idaas_jwt_filter::higress::parse_plugin_config(plugin_json.as_bytes(), &snippets::documented_env) {
                failures.push(format!("{}: the merged plugin config is rejected: {error}", snippet.location()));
            }
        }
    }
    assert!(wasm_plugins >= 1, "expected a WasmPlugin resource in the docs");
    assert!(failures.is_empty(), "documented WasmPlugin resources:\n{}", failures.join("\n"));
}
