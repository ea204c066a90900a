//! Checks of the deployment examples in docs/ and the READMEs. Every Envoy bootstrap passes
//! `envoy --mode validate` with the built `.wasm`, uses TLS with SNI towards port 443 and carries
//! the `stats_config` rules of docs/operations.md. Every `WasmPlugin` exposes the environment
//! variables its configuration reads, and every Istio `WasmPlugin` names JWKS clusters that a
//! `ServiceEntry` and a `DestinationRule` in the same snippet define. (tests/routes.rs parses the
//! JSON configurations and the `WasmPlugin` plugin configurations with the filter's parser.)
//!
//! Run with `make test` or, after `make deps build`, `cargo test --test docs`. ENVOY_BIN selects
//! another Envoy binary. Configs and logs stay in $TMPDIR/idaas-jwt-filter-e2e-<pid>/.
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
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/http.rs"]
mod http;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/processes.rs"]
mod processes;
#[allow(dead_code, reason = "shared with tests/routes.rs; this binary uses part of it")]
#[path = "routes/snippets.rs"]
mod snippets;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/stack.rs"]
mod stack;
#[allow(dead_code, reason = "shared with tests/e2e.rs; this binary uses part of it")]
#[path = "e2e/tokens.rs"]
mod tokens;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use serde_json::{json, Value};

use snippets::{DOCUMENTED_API_KEY, DOCUMENTED_API_KEY_VARIABLE};
use stack::work_dir;

/// Lines of Envoy's log shown when a validation fails.
const LOG_TAIL_LINES: usize = 30;

/// One YAML document from a ```yaml block, with the block's `file:line`.
struct DocumentedYaml {
    location: String,
    value: Value,
}

/// Returns every document of every ```yaml block in the docs, loaded once per test binary.
fn documented_yaml() -> &'static [DocumentedYaml] {
    static DOCUMENTS: OnceLock<Vec<DocumentedYaml>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let all = snippets::all_snippets(&stack::repo_root());
        let yaml_snippets: Vec<_> = all.iter().filter(|snippet| snippet.language == "yaml").collect();
        let documents = snippets::load_yaml_snippets("docs", &yaml_snippets);
        yaml_snippets
            .iter()
            .zip(documents)
            .flat_map(|(snippet, values)| {
                values.into_iter().map(|value| DocumentedYaml { location: snippet.location(), value })
            })
            .collect()
    })
}

/// Documents that are whole Envoy bootstraps: they define `static_resources`.
fn envoy_bootstraps() -> Vec<&'static DocumentedYaml> {
    let bootstraps: Vec<_> = documented_yaml().iter().filter(|document| document.value.get("static_resources").is_some()).collect();
    assert!(!bootstraps.is_empty(), "expected an Envoy bootstrap in the docs (docs/deploy-envoy.md)");
    bootstraps
}

/// Documents of the given Kubernetes `kind`.
fn resources_of_kind(kind: &str) -> Vec<&'static DocumentedYaml> {
    documented_yaml().iter().filter(|document| document.value["kind"] == kind).collect()
}

// --- Envoy bootstraps ---

/// Calls `visit` on every Wasm `PluginConfig` (an object with `vm_config`) inside `value`.
fn for_each_wasm_plugin(value: &mut Value, visit: &mut dyn FnMut(&mut Value)) {
    match value {
        Value::Object(members) => {
            if members.contains_key("vm_config") {
                visit(value);
                return;
            }
            for member in members.values_mut() {
                for_each_wasm_plugin(member, visit);
            }
        }
        Value::Array(items) => {
            for item in items {
                for_each_wasm_plugin(item, visit);
            }
        }
        _ => {}
    }
}

fn clusters(bootstrap: &Value) -> Vec<&Value> {
    bootstrap["static_resources"]["clusters"].as_array().map(|clusters| clusters.iter().collect()).unwrap_or_default()
}

/// Returns the `socket_address` objects of a cluster's endpoints.
fn endpoint_addresses(cluster: &Value) -> Vec<&Value> {
    let mut addresses = Vec::new();
    for locality in cluster["load_assignment"]["endpoints"].as_array().into_iter().flatten() {
        for endpoint in locality["lb_endpoints"].as_array().into_iter().flatten() {
            addresses.push(&endpoint["endpoint"]["address"]["socket_address"]);
        }
    }
    addresses
}

/// Returns a copy of `bootstrap` that loads the built `.wasm` and resolves the names of its DNS
/// clusters through `127.0.0.1:resolver_port`. Validation sends DNS queries for `STRICT_DNS` and
/// `LOGICAL_DNS` clusters, and with this resolver none of them leaves the machine.
fn prepare_for_validation(bootstrap: &Value, wasm_path: &Path, resolver_port: u16) -> Value {
    let mut prepared = bootstrap.clone();
    for_each_wasm_plugin(&mut prepared, &mut |plugin| {
        plugin["vm_config"]["code"] = json!({ "local": { "filename": wasm_path.display().to_string() } });
    });
    let resolver = json!({
        "name": "envoy.network.dns_resolver.cares",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
            "resolvers": [{ "socket_address": { "address": "127.0.0.1", "port_value": resolver_port } }],
            "use_resolvers_as_fallback": false
        }
    });
    let clusters = prepared["static_resources"]["clusters"].as_array_mut().into_iter().flatten();
    for cluster in clusters {
        let resolves_names = matches!(cluster["type"].as_str(), Some("STRICT_DNS" | "LOGICAL_DNS"));
        if resolves_names {
            cluster["typed_dns_resolver_config"] = resolver.clone();
        }
    }
    prepared
}

fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[test]
fn envoy_bootstraps_pass_validation() {
    let bootstraps = envoy_bootstraps();
    let resolver_port = stack::free_ports(1).unwrap_or_else(|error| panic!("{error}"))[0];
    let environment = [(DOCUMENTED_API_KEY_VARIABLE, DOCUMENTED_API_KEY)];

    let mut failures = Vec::new();
    for (index, document) in bootstraps.iter().enumerate() {
        let name = format!("docs_validate_{index}");
        let config_path = work_dir().join(format!("{name}.json"));
        let prepared = prepare_for_validation(&document.value, &stack::wasm_path(), resolver_port);
        std::fs::write(&config_path, serde_json::to_string_pretty(&prepared).unwrap()).unwrap();

        let (status, log) = stack::validate_envoy_config_with_env(&name, &config_path, &environment)
            .unwrap_or_else(|error| panic!("{}: {error}", document.location));
        if !status.success() {
            failures.push(format!("{}: envoy --mode validate failed ({status}):\n{}", document.location, log_tail(&log)));
        } else if !log.contains("configured: provider") {
            // Validation runs the filter's configure step, which logs its providers at info.
            failures.push(format!("{}: the filter did not log its configuration:\n{}", document.location, log_tail(&log)));
        }
    }
    assert!(failures.is_empty(), "documented Envoy bootstraps (configs in {}):\n{}", work_dir().display(), failures.join("\n\n"));
}

#[test]
fn envoy_bootstrap_plugin_configs_parse() {
    let mut configurations = 0;
    let mut failures = Vec::new();
    for document in envoy_bootstraps() {
        let mut bootstrap = document.value.clone();
        for_each_wasm_plugin(&mut bootstrap, &mut |plugin| {
            configurations += 1;
            let Some(text) = plugin["configuration"]["value"].as_str() else {
                failures.push(format!("{}: a Wasm filter without a configuration string", document.location));
                return;
            };
            if let Err(error) = idaas_jwt_filter::higress::parse_plugin_config(text.as_bytes(), &snippets::documented_env) {
                failures.push(format!("{}: the plugin configuration is rejected: {error}", document.location));
            }
        });
    }
    assert!(configurations >= 1, "expected a Wasm filter in the documented Envoy bootstraps");
    assert!(failures.is_empty(), "documented plugin configurations:\n{}", failures.join("\n"));
}

#[test]
fn envoy_bootstrap_upstreams_use_tls_with_sni() {
    let mut failures = Vec::new();
    for document in envoy_bootstraps() {
        for cluster in clusters(&document.value) {
            let name = cluster["name"].as_str().unwrap_or("?");
            for address in endpoint_addresses(cluster).into_iter().filter(|address| address["port_value"] == 443) {
                let host = address["address"].as_str().unwrap_or_default();
                let tls = &cluster["transport_socket"]["typed_config"];
                if tls["sni"].as_str() != Some(host) {
                    failures.push(format!("{}: cluster {name} connects to {host}:443 but its SNI is {}", document.location, tls["sni"]));
                }
                if tls["common_tls_context"]["validation_context"]["trusted_ca"].is_null() {
                    failures.push(format!("{}: cluster {name} does not verify the server certificate (no trusted_ca)", document.location));
                }
            }
        }
    }
    assert!(failures.is_empty(), "documented TLS clusters:\n{}", failures.join("\n"));
}

#[test]
fn envoy_bootstrap_stats_tags_match_operations() {
    // docs/operations.md shows the rules alone, as a document with only `stats_config`.
    let rules: Vec<&DocumentedYaml> = documented_yaml()
        .iter()
        .filter(|document| document.value.as_object().is_some_and(|members| members.len() == 1 && members.contains_key("stats_config")))
        .collect();
    assert_eq!(rules.len(), 1, "expected one stats_config snippet (docs/operations.md)");

    for document in envoy_bootstraps() {
        assert_eq!(
            document.value["stats_config"], rules[0].value["stats_config"],
            "{}: stats_config differs from the rules at {}",
            document.location, rules[0].location
        );
    }
}

// --- WasmPlugin resources ---

/// Returns the names `NAME` of every `${NAME}` in the string values of `value`.
fn referenced_variables(value: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    match value {
        Value::String(text) => {
            let mut rest = text.as_str();
            while let Some(start) = rest.find("${") {
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else { break };
                names.insert(after[..end].to_owned());
                rest = &after[end + 1..];
            }
        }
        Value::Array(items) => items.iter().for_each(|item| names.extend(referenced_variables(item))),
        Value::Object(members) => members.values().for_each(|member| names.extend(referenced_variables(member))),
        _ => {}
    }
    names
}

#[test]
fn wasm_plugins_expose_referenced_variables() {
    let plugins = resources_of_kind("WasmPlugin");
    assert!(plugins.len() >= 2, "expected the Istio and the Higress WasmPlugin in the docs, found {}", plugins.len());

    let mut failures = Vec::new();
    for document in plugins {
        let exposed: BTreeSet<String> = document.value["spec"]["vmConfig"]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|variable| variable["name"].as_str().map(str::to_owned))
            .collect();
        for name in referenced_variables(&snippets::wasm_plugin_config(&document.value)) {
            if !exposed.contains(&name) {
                failures.push(format!("{}: the configuration reads ${{{name}}} but vmConfig.env does not list it", document.location));
            }
        }
    }
    assert!(failures.is_empty(), "documented WasmPlugin environments:\n{}", failures.join("\n"));
}

/// Splits an Istio cluster name `outbound|<port>||<host>` into host and port.
fn istio_cluster_host_port(cluster: &str) -> Option<(&str, u64)> {
    let rest = cluster.strip_prefix("outbound|")?;
    let (port, host) = rest.split_once("||")?;
    Some((host, port.parse().ok()?))
}

/// Returns `(uri, cluster)` of every provider's `remote_jwks` or `discovery`.
fn jwks_sources(plugin_config: &Value) -> Vec<(String, String)> {
    let mut sources = Vec::new();
    for provider in plugin_config["providers"].as_array().into_iter().flatten() {
        for source in [&provider["remote_jwks"], &provider["discovery"]] {
            if let (Some(uri), Some(cluster)) = (source["uri"].as_str(), source["cluster"].as_str()) {
                sources.push((uri.to_owned(), cluster.to_owned()));
            }
        }
    }
    sources
}

/// Returns whether some `ServiceEntry` in `resources` lists `host` with `port`.
fn service_entry_defines(resources: &[&DocumentedYaml], host: &str, port: u64) -> bool {
    resources.iter().filter(|document| document.value["kind"] == "ServiceEntry").any(|document| {
        let spec = &document.value["spec"];
        let has_host = spec["hosts"].as_array().into_iter().flatten().any(|listed| listed.as_str() == Some(host));
        let has_port = spec["ports"].as_array().into_iter().flatten().any(|listed| listed["number"] == port);
        has_host && has_port
    })
}

/// Returns whether some `DestinationRule` in `resources` originates TLS to `host` with `host` as SNI.
fn destination_rule_originates_tls(resources: &[&DocumentedYaml], host: &str) -> bool {
    resources.iter().filter(|document| document.value["kind"] == "DestinationRule").any(|document| {
        let spec = &document.value["spec"];
        let tls = &spec["trafficPolicy"]["tls"];
        spec["host"] == host && tls["mode"] == "SIMPLE" && tls["sni"] == host
    })
}

#[test]
fn istio_jwks_clusters_match_service_entries() {
    let istio_plugins: Vec<_> = resources_of_kind("WasmPlugin")
        .into_iter()
        .filter(|document| document.value["apiVersion"].as_str().is_some_and(|version| version.starts_with("extensions.istio.io/")))
        .collect();
    assert!(!istio_plugins.is_empty(), "expected an Istio WasmPlugin in the docs (docs/deploy-istio.md)");

    let mut failures = Vec::new();
    for plugin in istio_plugins {
        let same_snippet: Vec<&DocumentedYaml> =
            documented_yaml().iter().filter(|document| document.location == plugin.location).collect();
        let sources = jwks_sources(&snippets::wasm_plugin_config(&plugin.value));
        if sources.is_empty() {
            failures.push(format!("{}: no provider fetches keys through a cluster", plugin.location));
        }
        for (uri, cluster) in sources {
            let Some((host, port)) = istio_cluster_host_port(&cluster) else {
                failures.push(format!("{}: cluster {cluster} is not of the form outbound|<port>||<host>", plugin.location));
                continue;
            };
            if !uri.starts_with(&format!("https://{host}/")) {
                failures.push(format!("{}: {uri} is not on the cluster's host {host}", plugin.location));
            }
            if !service_entry_defines(&same_snippet, host, port) {
                failures.push(format!("{}: no ServiceEntry lists {host} with port {port}", plugin.location));
            }
            if !destination_rule_originates_tls(&same_snippet, host) {
                failures.push(format!("{}: no DestinationRule with tls mode SIMPLE and sni {host}", plugin.location));
            }
        }
    }
    assert!(failures.is_empty(), "documented Istio JWKS clusters:\n{}", failures.join("\n"));
}
