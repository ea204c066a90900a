//! The routes suite's stack: the local IdP, the upstream echo and one Envoy whose listeners
//! each run the filter with one per-route or Higress-shaped configuration, all on free
//! 127.0.0.1 ports and started once per test binary.
//!
//! Every listener gets its own Wasm VM (`vm_id`), because Envoy may share one VM between
//! filters with the same `vm_id` and code, and then only one set of
//! `vm_config.environment_variables` would apply.

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::envoy_config::{self, ListenerSpec, IDP_JWKS_CLUSTER, UPSTREAM_CLUSTER};
use crate::processes::ChildProcess;
use crate::stack::{self, free_ports, wait_until_ready, work_dir};
use crate::tokens::AUDIENCE;

/// The Model Studio key the gateway injects upstream: a literal test value, never a real key.
pub const API_KEY: &str = "sk-test-123";
pub const API_KEY_VARIABLE: &str = "DASHSCOPE_API_KEY";
pub const CLIENT_ID_HEADER: &str = "x-idaas-client-id";
/// Scope that the regex rule for `/v1/fine-tunes` requires.
pub const TUNING_SCOPE: &str = "tuning.admin";
pub const SCOPE_HEADER: &str = "x-idaas-scope";
pub const PAYLOAD_HEADER: &str = "x-idaas-jwt-payload";
/// The scope every route needs unless a rule sets another.
pub const DEFAULT_SCOPE: &str = "model.invoke";
pub const LIST_SCOPE: &str = "model.list";
/// Scope that the Higress rule selected by `:authority` requires.
pub const TENANT_SCOPE: &str = "tenant.admin";
/// Scope that the Higress rule selected by `cluster_name` requires.
pub const SERVICE_SCOPE: &str = "qwen.invoke";

/// Envoy route names on the Higress listener. Envoy 1.40 exposes them to Wasm as the property
/// `xds.route_name`, not `route_name`.
pub const MODELS_ROUTE: &str = "models-route";
pub const CHAT_ROUTE: &str = "chat-route";
/// A Higress-style cluster name for the route under `/qwen` (Envoy 1.40: `xds.cluster_name`).
pub const SERVICE_CLUSTER: &str = "outbound|443||qwen.dns";
pub const TENANT_DOMAIN_PATTERN: &str = "*.tenant.example.com";

/// Listener ports of the routes suite's Envoy.
pub struct Listeners {
    /// Plain config with `rules`, claim headers, payload header and `upstream_authorization`.
    pub routes: u16,
    /// `scope_claims: ["permissions"]`.
    pub scope_claims: u16,
    /// As `routes`, with `bypass_cors_preflight: false`.
    pub no_cors_bypass: u16,
    /// Higress-shaped config: a global part and `_rules_`.
    pub higress: u16,
    /// Higress-shaped config with only `_rules_`: requests that match no rule pass.
    pub higress_rules_only: u16,
}

pub struct Gateway {
    pub issuer: String,
    pub token_endpoint: String,
    pub listeners: Listeners,
    pub envoy: ChildProcess,
    _idp: ChildProcess,
    _upstream: ChildProcess,
}

/// Returns the shared gateway, starting it on first use.
pub fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Result<Gateway, String>> = OnceLock::new();
    match GATEWAY.get_or_init(Gateway::start) {
        Ok(gateway) => gateway,
        Err(message) => panic!("the routes stack did not start (logs in {}):\n{message}", work_dir().display()),
    }
}

fn provider(issuer: &str) -> Value {
    json!({
        "name": "idaas",
        "issuer": issuer,
        "audiences": [AUDIENCE],
        "remote_jwks": { "cluster": IDP_JWKS_CLUSTER, "uri": format!("{issuer}/jwks") }
    })
}

/// Builds the plain (non-Higress) configuration with per-route rules and upstream headers.
pub fn routes_plugin_config(issuer: &str) -> Value {
    json!({
        "providers": [provider(issuer)],
        "required_scopes": [DEFAULT_SCOPE],
        "rules": [
            { "prefix": "/healthz", "skip": true },
            { "path": "/v1/models", "methods": ["GET"], "required_scopes": [LIST_SCOPE] },
            { "prefix": "/v1/batches", "required_scopes": ["batch.write", DEFAULT_SCOPE], "scope_match": "any" },
            { "prefix": "/v1/files", "required_scopes": ["files.write", DEFAULT_SCOPE] },
            { "regex": "/v1/fine-tunes|/v1/fine-tunes/admin", "required_scopes": [TUNING_SCOPE] }
        ],
        "claims_to_headers": [
            { "claim": "client_id", "header": CLIENT_ID_HEADER },
            { "claim": "scope", "header": SCOPE_HEADER }
        ],
        "forward_payload_header": PAYLOAD_HEADER,
        "upstream_authorization": format!("Bearer ${{{API_KEY_VARIABLE}}}")
    })
}

fn scope_claims_plugin_config(issuer: &str) -> Value {
    json!({
        "providers": [provider(issuer)],
        "required_scopes": [DEFAULT_SCOPE],
        "scope_claims": ["permissions"]
    })
}

fn no_cors_bypass_plugin_config(issuer: &str) -> Value {
    let mut config = routes_plugin_config(issuer);
    config["bypass_cors_preflight"] = json!(false);
    config
}

/// Builds the configuration Higress would hand the plugin: the global part plus `_rules_`.
pub fn higress_plugin_config(issuer: &str) -> Value {
    json!({
        "providers": [provider(issuer)],
        "required_scopes": [DEFAULT_SCOPE],
        "claims_to_headers": [{ "claim": "client_id", "header": CLIENT_ID_HEADER }],
        "_rules_": [
            { "_match_route_": [MODELS_ROUTE], "required_scopes": [LIST_SCOPE] },
            { "_match_domain_": [TENANT_DOMAIN_PATTERN], "required_scopes": [TENANT_SCOPE] },
            { "_match_service_": [SERVICE_CLUSTER], "required_scopes": [SERVICE_SCOPE] }
        ]
    })
}

/// Builds a Higress configuration without a global part: only the tenant domain needs a token.
fn higress_rules_only_plugin_config(issuer: &str) -> Value {
    json!({
        "_rules_": [
            {
                "_match_domain_": [TENANT_DOMAIN_PATTERN],
                "providers": [provider(issuer)],
                "required_scopes": [TENANT_SCOPE],
                "claims_to_headers": [{ "claim": "client_id", "header": CLIENT_ID_HEADER }]
            }
        ]
    })
}

/// Builds a named Envoy route that sends requests under `prefix` to `cluster`.
fn named_route(name: &str, prefix: &str, cluster: &str) -> Value {
    json!({ "name": name, "match": { "prefix": prefix }, "route": { "cluster": cluster } })
}

/// Builds a listener like `envoy_config::listener`, with its own VM, named routes and the
/// VM environment variables in `environment`.
pub fn listener(spec: &ListenerSpec, routes: &[Value], environment: &[(&str, &str)]) -> Value {
    let mut listener = envoy_config::listener(spec, &stack::wasm_path());
    let manager = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
    manager["route_config"]["virtual_hosts"][0]["routes"] = json!(routes);
    let vm_config = &mut manager["http_filters"][0]["typed_config"]["config"]["vm_config"];
    vm_config["vm_id"] = json!(format!("idaas_jwt_filter_{}", spec.name));
    if !environment.is_empty() {
        let key_values: serde_json::Map<String, Value> =
            environment.iter().map(|(name, value)| ((*name).to_owned(), json!(value))).collect();
        vm_config["environment_variables"] = json!({ "key_values": key_values });
    }
    listener
}

/// Builds a bootstrap with the given listeners, the IdP JWKS cluster, the upstream cluster and
/// a Higress-named cluster that also reaches the upstream.
pub fn bootstrap(admin_port: u16, listeners: Vec<Value>, idp_port: u16, upstream_port: u16) -> Value {
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } },
        "static_resources": {
            "listeners": listeners,
            "clusters": [
                envoy_config::static_cluster(IDP_JWKS_CLUSTER, idp_port),
                envoy_config::static_cluster(UPSTREAM_CLUSTER, upstream_port),
                envoy_config::static_cluster(SERVICE_CLUSTER, upstream_port),
            ]
        }
    })
}

fn default_routes() -> Vec<Value> {
    vec![named_route("default", "/", UPSTREAM_CLUSTER)]
}

fn higress_routes() -> Vec<Value> {
    vec![
        named_route(MODELS_ROUTE, "/v1/models", UPSTREAM_CLUSTER),
        named_route("qwen-route", "/qwen", SERVICE_CLUSTER),
        named_route(CHAT_ROUTE, "/", UPSTREAM_CLUSTER),
    ]
}

impl Gateway {
    fn start() -> Result<Gateway, String> {
        let ports = free_ports(8)?;
        let [idp_port, upstream_port, admin_port, routes_port, scope_claims_port, no_cors_port, higress_port, rules_only_port] = ports[..]
        else {
            return Err(format!("expected 8 ports, got {ports:?}"));
        };

        let (idp, upstream, issuer) = stack::spawn_idp_and_upstream("routes_", idp_port, upstream_port)?;

        let api_key_env = [(API_KEY_VARIABLE, API_KEY)];
        let spec = |name: &str, port: u16, plugin_config: Value| ListenerSpec { name: name.into(), port, plugin_config };
        let listeners = vec![
            listener(&spec("routes", routes_port, routes_plugin_config(&issuer)), &default_routes(), &api_key_env),
            listener(&spec("scope_claims", scope_claims_port, scope_claims_plugin_config(&issuer)), &default_routes(), &[]),
            listener(&spec("no_cors_bypass", no_cors_port, no_cors_bypass_plugin_config(&issuer)), &default_routes(), &api_key_env),
            listener(&spec("higress", higress_port, higress_plugin_config(&issuer)), &higress_routes(), &[]),
            listener(
                &spec("higress_rules_only", rules_only_port, higress_rules_only_plugin_config(&issuer)),
                &higress_routes(),
                &[],
            ),
        ];
        let config = bootstrap(admin_port, listeners, idp_port, upstream_port);
        let envoy = stack::spawn_envoy("routes_envoy", &config)?;
        wait_until_ready(&envoy, &format!("http://127.0.0.1:{admin_port}/ready"))?;

        Ok(Gateway {
            token_endpoint: format!("{issuer}/token"),
            issuer,
            listeners: Listeners {
                routes: routes_port,
                scope_claims: scope_claims_port,
                no_cors_bypass: no_cors_port,
                higress: higress_port,
                higress_rules_only: rules_only_port,
            },
            envoy,
            _idp: idp,
            _upstream: upstream,
        })
    }
}

/// Builds a one-listener bootstrap for `envoy --mode validate`; nothing listens on its ports.
pub fn validation_bootstrap(plugin_config: Value, environment: &[(&str, &str)]) -> Value {
    let ports = free_ports(3).unwrap_or_else(|error| panic!("{error}"));
    let spec = ListenerSpec { name: "validate".into(), port: ports[1], plugin_config };
    let listeners = vec![listener(&spec, &default_routes(), environment)];
    bootstrap(ports[0], listeners, ports[2], ports[2])
}
