//! Fuzzes configuration parsing: the input is the plugin JSON, read both as a plain Envoy
//! configuration and as a Higress plugin configuration with `_rules_`. A configuration that
//! parses is then asked to route a few fixed requests, so its host patterns, path regexes and
//! service names are matched too.

#![no_main]

use idaas_jwt_filter::config::{self, FilterConfig};
use idaas_jwt_filter::higress::{self, RequestRoute};
use idaas_jwt_filter::route::{self, RouteRequest};
use libfuzzer_sys::fuzz_target;

/// Resolves `${NAME}` in `upstream_authorization` for `parse_plugin_config` from a fixed table,
/// so its result does not depend on the environment. `parse_config` reads the real environment.
fn lookup_env(name: &str) -> Option<String> {
    match name {
        "DASHSCOPE_API_KEY" => Some("sk-fuzz".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// Requests as the host describes them: `:path`, `:method`, `:authority`, route name and
/// cluster name.
const REQUESTS: [(&str, &str, &str, Option<&str>, Option<&str>); 4] = [
    ("/v1/chat/completions?stream=true", "POST", "gateway.example:8443", Some("chat"), Some("outbound|443||qwen.dns")),
    ("/v1/models", "GET", "API.Example.com", Some("models"), None),
    ("/", "OPTIONS", "[::1]:10000", None, Some("idaas_jwks")),
    ("", "", "", None, None),
];

fn route_requests(config: &FilterConfig) {
    for (path, method, authority, _, _) in REQUESTS {
        let _ = route::select(&config.rules, &RouteRequest::new(path, method, authority));
    }
}

fuzz_target!(|data: &[u8]| {
    match config::parse_config(data) {
        Ok(parsed) => route_requests(&parsed.config),
        Err(error) => {
            let _ = error.to_string();
        }
    }

    match higress::parse_plugin_config(data, &lookup_env) {
        Ok(parsed) => {
            for (_, config) in parsed.config.all() {
                route_requests(config);
            }
            for (path, _, authority, route_name, cluster_name) in REQUESTS {
                let request = RequestRoute { route_name, cluster_name, authority };
                if let Some((index, config)) = parsed.config.select(&request) {
                    assert!(parsed.config.get(index).is_some(), "select returned index {index}, which get does not find for {path}");
                    route_requests(config);
                }
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
