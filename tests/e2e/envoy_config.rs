//! Envoy bootstrap configurations for the tests, written as JSON (which Envoy reads like YAML).
//!
//! One Envoy serves several listeners; each has its own plugin configuration, so one Envoy start
//! covers every scenario that needs a running filter.

use std::path::Path;

use serde_json::{json, Value};

use crate::tokens::{read_fixture, AUDIENCE, LOCAL_ES256_KEY_ID};

pub const ISSUER_PATH: &str = "/api/v2/iauths_system/oauth2";
/// Issuer of the provider that checks tokens against the inline ES256 JWKS.
pub const LOCAL_ES256_ISSUER: &str = "https://local-es256.invalid/oauth2";
pub const REQUIRED_SCOPE: &str = "model.invoke";
pub const IDP_JWKS_CLUSTER: &str = "idaas_jwks";
pub const CLOSED_JWKS_CLUSTER: &str = "jwks_closed_port";
pub const UPSTREAM_CLUSTER: &str = "model_studio";

pub fn idp_issuer(idp_port: u16) -> String {
    format!("http://127.0.0.1:{idp_port}{ISSUER_PATH}")
}

/// Builds the plugin configuration of `make run`, pointed at the test IdP's port.
pub fn idp_plugin_config(idp_port: u16) -> Value {
    let issuer = idp_issuer(idp_port);
    json!({
        "providers": [{
            "name": "idaas",
            "issuer": issuer,
            "audiences": [AUDIENCE],
            "remote_jwks": {
                "cluster": IDP_JWKS_CLUSTER,
                "uri": format!("{issuer}/jwks"),
                "timeout_ms": 1500,
                "cache_duration_seconds": 600
            }
        }],
        "required_scopes": [REQUIRED_SCOPE],
        "clock_skew_seconds": 60,
        "keep_token": false
    })
}

/// Builds `idp_plugin_config` with `keep_token: true`, so the Authorization header reaches the
/// upstream.
pub fn keep_token_plugin_config(idp_port: u16) -> Value {
    let mut config = idp_plugin_config(idp_port);
    config["keep_token"] = json!(true);
    config
}

/// Builds a plugin configuration whose provider has its keys inline: the ES256 fixture JWKS as a
/// JSON string.
pub fn local_es256_plugin_config() -> Value {
    json!({
        "providers": [{
            "name": "local",
            "issuer": LOCAL_ES256_ISSUER,
            "audiences": [AUDIENCE],
            "local_jwks": read_fixture(&format!("{LOCAL_ES256_KEY_ID}.jwks.json"))
        }],
        "required_scopes": [REQUIRED_SCOPE],
        "clock_skew_seconds": 60,
        "keep_token": false
    })
}

/// Builds a plugin configuration with the IdP's issuer whose JWKS cluster points at a 127.0.0.1
/// port where nothing listens, so the first fetch fails.
pub fn closed_jwks_plugin_config(idp_port: u16, closed_port: u16) -> Value {
    let mut config = idp_plugin_config(idp_port);
    config["providers"][0]["remote_jwks"] = json!({
        "cluster": CLOSED_JWKS_CLUSTER,
        "uri": format!("http://127.0.0.1:{closed_port}{ISSUER_PATH}/jwks"),
        "timeout_ms": 500,
        "cache_duration_seconds": 600
    });
    config
}

/// A listener on 127.0.0.1:`port` whose Wasm filter gets `plugin_config`.
pub struct ListenerSpec {
    pub name: String,
    pub port: u16,
    pub plugin_config: Value,
}

pub fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": "127.0.0.1", "port_value": port }
            }}}]}]
        }
    })
}

/// Builds a listener that runs the filter with `spec.plugin_config`, then routes to `UPSTREAM_CLUSTER`.
pub fn listener(spec: &ListenerSpec, wasm_path: &Path) -> Value {
    let wasm_filter = json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": format!("idaas_jwt_filter_{}", spec.name),
                "root_id": "idaas_jwt_filter",
                "vm_config": {
                    "vm_id": "idaas_jwt_filter",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm_path.display().to_string() } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": spec.plugin_config.to_string()
                }
            }
        }
    });
    let router = json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    });
    json!({
        "name": spec.name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": spec.port } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": spec.name,
                "route_config": {
                    "name": spec.name,
                    "virtual_hosts": [{
                        "name": "model_studio",
                        "domains": ["*"],
                        "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": UPSTREAM_CLUSTER } }]
                    }]
                },
                "http_filters": [wasm_filter, router]
            }
        }]}]
    })
}

/// Ports of the clusters that every test Envoy defines.
pub struct ClusterPorts {
    pub idp: u16,
    pub upstream: u16,
    pub closed: u16,
}

/// Builds a bootstrap with the admin interface on 127.0.0.1:`admin_port` and one listener per spec.
pub fn bootstrap(admin_port: u16, listeners: &[ListenerSpec], wasm_path: &Path, clusters: &ClusterPorts) -> Value {
    let listeners: Vec<Value> = listeners.iter().map(|spec| listener(spec, wasm_path)).collect();
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } },
        "static_resources": {
            "listeners": listeners,
            "clusters": [
                static_cluster(IDP_JWKS_CLUSTER, clusters.idp),
                static_cluster(UPSTREAM_CLUSTER, clusters.upstream),
                static_cluster(CLOSED_JWKS_CLUSTER, clusters.closed),
            ]
        }
    })
}
