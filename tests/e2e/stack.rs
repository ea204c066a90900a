//! The shared stack: the local IdP, the upstream echo and one Envoy with the built filter, all on
//! free 127.0.0.1 ports, started once per test binary.
//!
//! Missing prerequisites (Envoy in .venv, the .wasm, node, the IdP's npm packages) fail the tests
//! with the command that installs them; nothing is skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::envoy_config::{self, ClusterPorts, ListenerSpec};
use crate::http;
use crate::processes::{run_to_completion, ChildProcess};

const READY_TIMEOUT_SECONDS: u64 = 30;
const READY_POLL_INTERVAL_MS: u64 = 100;
/// Upper bound on readiness polls, whatever the clock does.
const READY_POLL_MAX_ATTEMPTS: u32 = 400;
const ENVOY_VALIDATE_TIMEOUT_SECONDS: u64 = 60;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the Envoy binary from the project's .venv (`make deps-envoy`), or `ENVOY_BIN` when set.
pub fn envoy_bin() -> PathBuf {
    match std::env::var_os("ENVOY_BIN") {
        Some(path) => PathBuf::from(path),
        None => repo_root().join(".venv/bin/envoy"),
    }
}

/// Returns the path of the release .wasm that `make build` writes, under `CARGO_TARGET_DIR` when that is set.
pub fn wasm_path() -> PathBuf {
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("target"),
    };
    target_dir.join("wasm32-wasip1/release/idaas_jwt_filter.wasm")
}

/// Returns the temporary folder for this test binary's configs and logs, creating it on first use.
/// It is kept after the run so that the logs can be read.
pub fn work_dir() -> &'static Path {
    static WORK_DIR: OnceLock<PathBuf> = OnceLock::new();
    WORK_DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("idaas-jwt-filter-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        dir
    })
}

/// Reserves `count` distinct free ports on 127.0.0.1. The ports are released before use, so
/// another process could take one in between; on this single-user machine that is unlikely.
pub fn free_ports(count: usize) -> Result<Vec<u16>, String> {
    // Ports the kernel picks for port 0 come from the ephemeral range, which outgoing client
    // connections also draw from. A test that opens hundreds of connections could then take a
    // port between this check and Envoy's bind. Ports below that range are safe from it, and
    // each port is handed out once per test process.
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|low| low.parse::<u16>().ok()))
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_start.saturating_sub(1).max(10_001));
    let span = u32::from(high - low) + 1;
    // A start that differs per process keeps parallel test binaries apart.
    let seed = std::process::id().wrapping_mul(7919).wrapping_add(handed_out.len() as u32 * 131);
    let mut candidate = low + (seed % span) as u16;
    let mut sockets = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for _ in 0..span {
        if ports.len() == count {
            break;
        }
        candidate = if candidate >= high { low } else { candidate + 1 };
        if handed_out.contains(&candidate) {
            continue;
        }
        if let Ok(socket) = TcpListener::bind(("127.0.0.1", candidate)) {
            sockets.push(socket);
            ports.push(candidate);
        }
    }
    if ports.len() < count {
        return Err(format!("cannot reserve {count} free ports on 127.0.0.1 between {low} and {high}"));
    }
    handed_out.extend_from_slice(&ports);
    Ok(ports)
}

fn check_prerequisites() -> Result<(), String> {
    let envoy = envoy_bin();
    if !envoy.is_file() {
        return Err(format!("Envoy not found at {}: run `make deps-envoy` or set ENVOY_BIN", envoy.display()));
    }
    let wasm = wasm_path();
    if !wasm.is_file() {
        return Err(format!("{} not found: run `make build`", wasm.display()));
    }
    let node = Command::new("node").arg("--version").output();
    if !matches!(&node, Ok(output) if output.status.success()) {
        return Err(format!("`node --version` failed ({node:?}): install Node.js 20 or later"));
    }
    let idp_packages = repo_root().join("envoy/idp/node_modules/oidc-provider");
    if !idp_packages.is_dir() {
        return Err(format!("{} not found: run `make deps-node`", idp_packages.display()));
    }
    Ok(())
}

/// Polls `url` until it responds with 2xx, failing early if `process` exits.
pub fn wait_until_ready(process: &ChildProcess, url: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(READY_TIMEOUT_SECONDS);
    for _ in 0..READY_POLL_MAX_ATTEMPTS {
        if let Some(status) = process.exit_status() {
            return Err(format!("{} exited with {status} before {url} responded\n{}", process.name(), process.log_tail()));
        }
        if http::answers_ok(url) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(READY_POLL_INTERVAL_MS));
    }
    Err(format!(
        "{} did not respond at {url} within {READY_TIMEOUT_SECONDS} s\n{}",
        process.name(),
        process.log_tail()
    ))
}

/// Writes `config` to the work folder and starts Envoy on it with one worker and the Wasm logs at
/// debug. `--disable-hot-restart` lets several Envoys run at once.
pub fn spawn_envoy(name: &str, config: &Value) -> Result<ChildProcess, String> {
    let config_path = work_dir().join(format!("{name}.json"));
    let config_text = serde_json::to_string_pretty(config).map_err(|error| error.to_string())?;
    std::fs::write(&config_path, config_text)
        .map_err(|error| format!("cannot write {}: {error}", config_path.display()))?;
    let mut command = Command::new(envoy_bin());
    command
        .current_dir(repo_root())
        .arg("-c")
        .arg(&config_path)
        .args(["--concurrency", "1", "--disable-hot-restart", "--component-log-level", "wasm:debug"]);
    ChildProcess::spawn(name, command, &work_dir().join(format!("{name}.log")))
}

/// Runs `envoy --mode validate` on `config_path` from the repository root, so relative paths in
/// the config resolve as they do for `make run`.
pub fn validate_envoy_config(name: &str, config_path: &Path) -> Result<(ExitStatus, String), String> {
    validate_envoy_config_with_env(name, config_path, &[])
}

/// Runs `envoy --mode validate` like `validate_envoy_config`, with `environment` added to
/// Envoy's environment (for configurations that read variables through `host_env_keys`).
pub fn validate_envoy_config_with_env(
    name: &str,
    config_path: &Path,
    environment: &[(&str, &str)],
) -> Result<(ExitStatus, String), String> {
    let mut command = Command::new(envoy_bin());
    command
        .current_dir(repo_root())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config_path)
        .envs(environment.iter().copied());
    run_to_completion(
        name,
        command,
        &work_dir().join(format!("{name}.log")),
        Duration::from_secs(ENVOY_VALIDATE_TIMEOUT_SECONDS),
    )
}

/// Listener ports of the shared Envoy, one per plugin configuration.
pub struct Listeners {
    /// `make run`'s plugin configuration against the local IdP.
    pub idp: u16,
    /// As `idp`, with `keep_token: true`.
    pub keep_token: u16,
    /// A provider with the ES256 fixture JWKS inline (`local_jwks`).
    pub local_es256: u16,
    /// The IdP's issuer with a JWKS cluster on a closed port.
    pub closed_jwks: u16,
}

/// Starts the local IdP on `idp_port` and the upstream stand-in on `upstream_port`, waits until
/// both respond, and returns them with the IdP's issuer. Logs go to `<prefix>idp.log` and
/// `<prefix>upstream.log` in the work directory.
pub fn spawn_idp_and_upstream(prefix: &str, idp_port: u16, upstream_port: u16) -> Result<(ChildProcess, ChildProcess, String), String> {
    let root = repo_root();
    let mut idp_command = Command::new("node");
    idp_command.current_dir(&root).arg("envoy/idp/idp.js").env("IDP_PORT", idp_port.to_string());
    let idp = ChildProcess::spawn(&format!("{prefix}idp"), idp_command, &work_dir().join(format!("{prefix}idp.log")))?;

    let mut upstream_command = Command::new("node");
    upstream_command
        .current_dir(&root)
        .arg("envoy/upstream/upstream.js")
        .env("UPSTREAM_PORT", upstream_port.to_string());
    let upstream = ChildProcess::spawn(
        &format!("{prefix}upstream"),
        upstream_command,
        &work_dir().join(format!("{prefix}upstream.log")),
    )?;

    let issuer = envoy_config::idp_issuer(idp_port);
    wait_until_ready(&idp, &format!("{issuer}/.well-known/openid-configuration"))?;
    wait_until_ready(&upstream, &format!("http://127.0.0.1:{upstream_port}/ready"))?;
    Ok((idp, upstream, issuer))
}

pub struct Stack {
    pub issuer: String,
    pub token_endpoint: String,
    pub listeners: Listeners,
    pub envoy: ChildProcess,
    _idp: ChildProcess,
    _upstream: ChildProcess,
}

/// Returns the shared stack, starting it on first use. Every test fails with the same message if
/// it cannot start.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Result<Stack, String>> = OnceLock::new();
    match STACK.get_or_init(Stack::start) {
        Ok(stack) => stack,
        Err(message) => panic!("the e2e stack did not start (logs in {}):\n{message}", work_dir().display()),
    }
}

impl Stack {
    fn start() -> Result<Stack, String> {
        check_prerequisites()?;
        let ports = free_ports(8)?;
        let [idp_port, upstream_port, admin_port, closed_port, idp_listener, keep_token_listener, local_es256_listener, closed_jwks_listener] =
            ports[..]
        else {
            return Err(format!("expected 8 ports, got {ports:?}"));
        };

        let (idp, upstream, issuer) = spawn_idp_and_upstream("", idp_port, upstream_port)?;

        let listener_specs = [
            ListenerSpec { name: "idp".into(), port: idp_listener, plugin_config: envoy_config::idp_plugin_config(idp_port) },
            ListenerSpec {
                name: "keep_token".into(),
                port: keep_token_listener,
                plugin_config: envoy_config::keep_token_plugin_config(idp_port),
            },
            ListenerSpec {
                name: "local_es256".into(),
                port: local_es256_listener,
                plugin_config: envoy_config::local_es256_plugin_config(),
            },
            ListenerSpec {
                name: "closed_jwks".into(),
                port: closed_jwks_listener,
                plugin_config: envoy_config::closed_jwks_plugin_config(idp_port, closed_port),
            },
        ];
        let cluster_ports = ClusterPorts { idp: idp_port, upstream: upstream_port, closed: closed_port };
        let config = envoy_config::bootstrap(admin_port, &listener_specs, &wasm_path(), &cluster_ports);
        let envoy = spawn_envoy("envoy", &config)?;
        wait_until_ready(&envoy, &format!("http://127.0.0.1:{admin_port}/ready"))?;

        Ok(Stack {
            token_endpoint: format!("{issuer}/token"),
            issuer,
            listeners: Listeners {
                idp: idp_listener,
                keep_token: keep_token_listener,
                local_es256: local_es256_listener,
                closed_jwks: closed_jwks_listener,
            },
            envoy,
            _idp: idp,
            _upstream: upstream,
        })
    }
}
