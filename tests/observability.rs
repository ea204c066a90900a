//! End-to-end tests of what operators see: Envoy's stats after known traffic, the documented
//! tag-extraction rules, and logs that never contain a token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests report failures by panicking"
)]

#[path = "e2e/envoy_config.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod envoy_config;
#[path = "e2e/http.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod http;
#[path = "e2e/processes.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod processes;
#[path = "e2e/stack.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod stack;
#[path = "e2e/tokens.rs"]
#[allow(dead_code, reason = "shared harness module; this binary uses part of it")]
mod tokens;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use envoy_config::{ClusterPorts, ListenerSpec, LOCAL_ES256_ISSUER};
use tokens::{now_seconds, LOCAL_ES256_KEY_ID};

/// Envoy tag-extraction rules that turn the reason code and the provider in the filter's
/// metric names into Prometheus labels. docs/operations.md shows the same rules.
fn stats_tags() -> Value {
    json!({
        "stats_tags": [
            { "tag_name": "idaas_reason", "regex": r"^wasmcustom\.idaas_jwt_filter\.denied(\.reason\.([^.]+))\." },
            { "tag_name": "idaas_provider", "regex": r"^wasmcustom\.idaas_jwt_filter\..+?(\.provider\.([^.]+))$" }
        ]
    })
}

fn local_token(claims_edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = tokens::idp_like_claims(LOCAL_ES256_ISSUER);
    claims_edit(&mut claims);
    tokens::sign(Algorithm::ES256, LOCAL_ES256_KEY_ID, &claims)
}

#[test]
fn stats_count_known_traffic_with_labels() {
    let ports = stack::free_ports(3).unwrap();
    let (admin_port, listener_port, closed_port) = (ports[0], ports[1], ports[2]);
    let spec = ListenerSpec {
        name: "stats".into(),
        port: listener_port,
        plugin_config: envoy_config::local_es256_plugin_config(),
    };
    // The upstream is a closed port: admitted requests get Envoy's 503, but they were counted.
    let clusters = ClusterPorts { idp: closed_port, upstream: closed_port, closed: closed_port };
    let mut config = envoy_config::bootstrap(admin_port, &[spec], &stack::wasm_path(), &clusters);
    config["stats_config"] = stats_tags();
    let envoy = stack::spawn_envoy("envoy_stats", &config).unwrap_or_else(|error| panic!("{error}"));
    stack::wait_until_ready(&envoy, &format!("http://127.0.0.1:{admin_port}/ready")).unwrap();

    let valid = local_token(|_| {});
    let expired = local_token(|claims| claims["exp"] = json!(now_seconds() - 3600));
    let foreign = local_token(|claims| claims["aud"] = json!("api://other"));
    let mut sent_tokens = Vec::new();
    for _ in 0..3 {
        let reply = http::get(listener_port, "/v1/chat/completions", Some(&format!("Bearer {valid}")));
        assert_eq!(reply.status, 503, "admitted request should reach the closed upstream: {reply:?}");
    }
    sent_tokens.push(valid);
    for _ in 0..2 {
        assert_eq!(http::get(listener_port, "/v1/chat/completions", None).code(), "token_missing");
    }
    assert_eq!(http::get(listener_port, "/", Some(&format!("Bearer {expired}"))).code(), "token_expired");
    assert_eq!(http::get(listener_port, "/", Some(&format!("Bearer {foreign}"))).code(), "audience_not_allowed");
    sent_tokens.extend([expired, foreign]);

    // Request counts reach Envoy's counters on the filter's next tick (every 250 ms).
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let stats = http::get(admin_port, "/stats?filter=idaas_jwt_filter", None).body;
    let expected = [
        ("wasmcustom.idaas_jwt_filter.allowed.provider.local", 3),
        ("wasmcustom.idaas_jwt_filter.denied.reason.token_missing.provider.none", 2),
        ("wasmcustom.idaas_jwt_filter.denied.reason.token_expired.provider.local", 1),
        ("wasmcustom.idaas_jwt_filter.denied.reason.audience_not_allowed.provider.local", 1),
    ];
    for (name, count) in expected {
        let line = format!("{name}: {count}");
        assert!(stats.lines().any(|stat| stat == line), "missing `{line}` in:\n{stats}");
    }

    let prometheus = http::get(admin_port, "/stats/prometheus", None).body;
    for line in [
        r#"idaas_jwt_filter_allowed{idaas_provider="local"} 3"#,
        r#"idaas_jwt_filter_denied{idaas_reason="token_missing",idaas_provider="none"} 2"#,
        r#"idaas_jwt_filter_denied{idaas_reason="token_expired",idaas_provider="local"} 1"#,
    ] {
        assert!(prometheus.lines().any(|metric| metric == line), "missing `{line}` in Prometheus output");
    }

    let log = envoy.log();
    envoy.kill();
    for token in &sent_tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "Envoy's log contains a token signature");
        assert!(!log.contains(token.as_str()), "Envoy's log contains a token");
    }
    assert!(log.contains("reason=token_expired"), "the debug line for the expired token is missing");
}
