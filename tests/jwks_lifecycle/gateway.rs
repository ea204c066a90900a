//! One Envoy with four workers, the built filter on one listener per plugin configuration, and
//! a JWKS cluster per listener that points at the test's own `JwksServer`.

use std::io::Read;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::envoy_config::{self, ListenerSpec, REQUIRED_SCOPE, UPSTREAM_CLUSTER};
use crate::http::Reply;
use crate::jwks_server::Upstream;
use crate::processes::ChildProcess;
use crate::stack::{envoy_bin, free_ports, wait_until_ready, wasm_path, work_dir};
use crate::tokens::AUDIENCE;

/// Worker threads of every Envoy in this suite. With the main thread's VM, five VMs run the
/// filter and could each fetch on their own.
pub const ENVOY_WORKERS: u32 = 4;
/// Issuer of every provider in this suite. No request ever goes to this host.
pub const ISSUER: &str = "https://idaas-lifecycle.test/api/v2/iauths_system/oauth2";
pub const API_PATH: &str = "/v1/chat/completions";

const REQUEST_TIMEOUT_SECONDS: u64 = 20;
const CONNECT_TIMEOUT_MS: u64 = 1000;

/// One listener of the gateway: its provider's plugin configuration and the port of the JWKS
/// server that the provider's cluster reaches.
pub struct Route {
    pub name: String,
    pub plugin_config: Value,
    pub jwks_port: u16,
}

/// Returns the name of the cluster that carries `route_name`'s JWKS fetches.
pub fn jwks_cluster(route_name: &str) -> String {
    format!("jwks_{route_name}")
}

/// Builds a plugin configuration with one provider named `name` whose key source is
/// `source_field` (`remote_jwks` or `discovery`) set to `source`. `source` gets the provider's
/// cluster unless it names one.
pub fn plugin_config(name: &str, source_field: &str, mut source: Value) -> Value {
    if source.get("cluster").is_none() {
        source["cluster"] = json!(jwks_cluster(name));
    }
    let mut provider = json!({ "name": name, "issuer": ISSUER, "audiences": [AUDIENCE] });
    provider[source_field] = source;
    json!({
        "providers": [provider],
        "required_scopes": [REQUIRED_SCOPE],
        "clock_skew_seconds": 60
    })
}

pub struct Gateway {
    pub envoy: ChildProcess,
    /// When the Envoy process was spawned.
    pub started_at: Instant,
    listeners: Vec<(String, u16)>,
    _upstream: Upstream,
}

impl Gateway {
    /// Starts Envoy with one listener per route and waits until its admin interface reports
    /// ready. Fetches may still be running then.
    pub fn start(name: &str, routes: &[Route]) -> Gateway {
        Gateway::start_with_workers(name, routes, ENVOY_WORKERS)
    }

    /// Starts Envoy as `start` does, with `workers` worker threads.
    pub fn start_with_workers(name: &str, routes: &[Route], workers: u32) -> Gateway {
        let upstream = Upstream::start();
        let ports = free_ports(routes.len() + 1).unwrap_or_else(|error| panic!("{error}"));
        let admin_port = ports[0];
        let specs: Vec<ListenerSpec> = routes
            .iter()
            .zip(&ports[1..])
            .map(|(route, port)| ListenerSpec {
                name: route.name.clone(),
                port: *port,
                plugin_config: route.plugin_config.clone(),
            })
            .collect();

        let wasm = wasm_path();
        assert!(wasm.is_file(), "{} not found: run `make build`", wasm.display());
        let listeners: Vec<Value> = specs.iter().map(|spec| envoy_config::listener(spec, &wasm)).collect();
        let mut clusters = vec![envoy_config::static_cluster(UPSTREAM_CLUSTER, upstream.port())];
        clusters.extend(routes.iter().map(|route| envoy_config::static_cluster(&jwks_cluster(&route.name), route.jwks_port)));
        let bootstrap = json!({
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } },
            "static_resources": { "listeners": listeners, "clusters": clusters }
        });

        let config_path = work_dir().join(format!("{name}.json"));
        let config_text = serde_json::to_string_pretty(&bootstrap).unwrap_or_else(|error| panic!("{error}"));
        std::fs::write(&config_path, config_text).unwrap_or_else(|error| panic!("cannot write {}: {error}", config_path.display()));
        let mut command = Command::new(envoy_bin());
        command.arg("-c").arg(&config_path).args([
            "--concurrency",
            &workers.to_string(),
            "--disable-hot-restart",
            "--component-log-level",
            "wasm:debug",
        ]);
        let started_at = Instant::now();
        let envoy = ChildProcess::spawn(name, command, &work_dir().join(format!("{name}.log")))
            .unwrap_or_else(|error| panic!("{error}"));
        if let Err(error) = wait_until_ready(&envoy, &format!("http://127.0.0.1:{admin_port}/ready")) {
            panic!("{error}");
        }

        Gateway {
            envoy,
            started_at,
            listeners: specs.iter().map(|spec| (spec.name.clone(), spec.port)).collect(),
            _upstream: upstream,
        }
    }

    /// Returns the listener port of route `name`.
    pub fn port(&self, name: &str) -> u16 {
        match self.listeners.iter().find(|(listener, _)| listener == name) {
            Some((_, port)) => *port,
            None => panic!("no route named {name}"),
        }
    }

    /// Sends one request through route `name` on a new connection, so that successive calls
    /// spread over Envoy's workers.
    pub fn call(&self, name: &str, token: &str) -> Result<Reply, String> {
        call(self.port(name), token)
    }

    pub fn log(&self) -> String {
        self.envoy.log()
    }

    /// Returns the lines the filter logged at `level` ("warning", "error", ...) that contain `text`.
    pub fn filter_log_lines(&self, level: &str, text: &str) -> Vec<String> {
        let marker = format!("[{level}][wasm]");
        self.log()
            .lines()
            .filter(|line| line.contains(&marker) && line.contains(text))
            .map(str::to_string)
            .collect()
    }

    /// Polls the log until `filter_log_lines(level, text)` has more than `more_than` lines, for
    /// at most `timeout`, and returns the lines.
    pub fn wait_for_log_lines(&self, level: &str, text: &str, more_than: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.filter_log_lines(level, text);
            if lines.len() > more_than || Instant::now() >= deadline {
                return lines;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends requests with `token` through route `name` every `interval` until one gets 200,
    /// for at most `timeout`. Returns the last reply and the time it took.
    pub fn wait_for_ok(&self, name: &str, token: &str, interval: Duration, timeout: Duration) -> (Result<Reply, String>, Duration) {
        let started = Instant::now();
        let max_attempts = (timeout.as_millis() / interval.as_millis().max(1)) as usize + 1;
        let mut last = Err("no request sent".to_string());
        for _ in 0..max_attempts {
            last = self.call(name, token);
            if matches!(&last, Ok(reply) if reply.status == 200) || started.elapsed() >= timeout {
                break;
            }
            thread::sleep(interval);
        }
        (last, started.elapsed())
    }

    pub fn log_tail(&self) -> String {
        self.envoy.log_tail()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.envoy.kill();
    }
}

/// Sends `GET API_PATH` with `Authorization: Bearer <token>` to 127.0.0.1:`port` on a new
/// connection. Returns an error for transport failures, so load loops can count them.
pub fn call(port: u16, token: &str) -> Result<Reply, String> {
    let url = format!("http://127.0.0.1:{port}{API_PATH}");
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECONDS))
        .max_idle_connections(0)
        .build();
    let response = match agent.get(&url).set("authorization", &format!("Bearer {token}")).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(error)) => return Err(format!("request to {url} failed: {error}")),
    };
    let status = response.status();
    let mut headers = Vec::new();
    for name in response.headers_names() {
        if let Some(value) = response.header(&name) {
            headers.push((name.to_ascii_lowercase(), value.to_string()));
        }
    }
    let mut body = String::new();
    response
        .into_reader()
        .take(1024 * 1024)
        .read_to_string(&mut body)
        .map_err(|error| format!("reading the reply from {url} failed: {error}"))?;
    Ok(Reply { status, headers, body })
}

/// Returns the reason code of a filter rejection, or "-" when the body has none.
pub fn reason_code(reply: &Reply) -> String {
    serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|body| body.get("code").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "-".to_string())
}

/// Describes a reply in one line for failure messages.
pub fn describe(result: &Result<Reply, String>) -> String {
    match result {
        Ok(reply) => format!("{} {} {}", reply.status, reason_code(reply), reply.body.chars().take(200).collect::<String>()),
        Err(error) => error.clone(),
    }
}
