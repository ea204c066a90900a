#!/usr/bin/env python3
"""Benchmark idaas_jwt_filter against an empty Wasm filter and Envoy's native jwt_authn.

Run from anywhere with `make bench` or `python3 bench/run.py`. The script

1. builds the filter (`make build`) and bench/empty-filter, and mints tokens with node;
2. starts one Envoy (`--concurrency 1`) whose listeners on 127.0.0.1 each end in a
   `direct_response` 200, one listener per case in LISTENERS;
3. checks that every JWT listener returns 401 without a token and 200 with a valid one;
4. drives each listener with wrk (one thread, a few connections), listeners alternating, for
   ROUNDS rounds after a warm-up, and parses requests/s, p50 and p99;
5. sends distinct tokens to the distinct-token listener and reads Envoy's VmRSS after the first
   MEMORY_FIRST tokens and after MEMORY_TOTAL;
6. starts a second Envoy, BENCH_COLD_STARTS times, whose filter fetches its JWKS from a local
   HTTP server, and times the first request after Envoy reports ready;
7. prints the results and writes them to docs/benchmarks.md.

With two CPUs or more, Envoy is pinned to the last CPU and wrk to the first (taskset), so the
load generator does not compete with the worker it measures.

Everything listens on 127.0.0.1 only. Environment variables override the run length:
BENCH_SECONDS (per listener and round, default 3), BENCH_ROUNDS (4), BENCH_WARMUP_SECONDS (1),
BENCH_CONNECTIONS (4), BENCH_DISTINCT_TOKENS (5000), BENCH_MEMORY_TOKENS (100000),
BENCH_COLD_STARTS (3); BENCH_PIN=0 turns the CPU pinning off.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
WORK_DIR = REPO / "target" / "bench"
TOKEN_DIR = WORK_DIR / "tokens"
DOC_PATH = REPO / "docs" / "benchmarks.md"

ENVOY = REPO / ".venv" / "bin" / "envoy"
FILTER_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "idaas_jwt_filter.wasm"
EMPTY_FILTER_TARGET_DIR = WORK_DIR / "empty-filter"
EMPTY_WASM = EMPTY_FILTER_TARGET_DIR / "wasm32-wasip1" / "release" / "bench_empty_filter.wasm"
FLOOR_FILTER_TARGET_DIR = WORK_DIR / "floor-filter"
FLOOR_WASM = FLOOR_FILTER_TARGET_DIR / "wasm32-wasip1" / "release" / "bench_floor_filter.wasm"
ED25519_KEY = BENCH_DIR / "keys" / "bench-ed25519-1.key.pem"
ROTATE_SCRIPT = BENCH_DIR / "rotate_tokens.lua"

ISSUER = "https://bench.idaas.invalid/oauth2"
AUDIENCE = "api://model-studio"
SCOPE = "model.invoke"
CACHE_SIZE = 1000


def env_int(name: str, default: int, minimum: int) -> int:
    """Read a positive integer setting from the environment."""
    text = os.environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        sys.exit(f"{name}={text!r} is not an integer")
    if value < minimum:
        sys.exit(f"{name}={value} is below the minimum {minimum}")
    return value


SECONDS = env_int("BENCH_SECONDS", 3, 1)
ROUNDS = env_int("BENCH_ROUNDS", 4, 1)
WARMUP_SECONDS = env_int("BENCH_WARMUP_SECONDS", 1, 0)
CONNECTIONS = env_int("BENCH_CONNECTIONS", 4, 1)
# More distinct tokens than the filter's cache holds, so with LRU every request misses.
DISTINCT_TOKENS = env_int("BENCH_DISTINCT_TOKENS", 5 * CACHE_SIZE, CACHE_SIZE + 1)
MEMORY_TOTAL = env_int("BENCH_MEMORY_TOKENS", 100_000, 20)
MEMORY_FIRST = MEMORY_TOTAL // 10
COLD_STARTS = env_int("BENCH_COLD_STARTS", 3, 1)


def cpu_pinning() -> tuple[int, int] | None:
    """Return (Envoy's CPU, wrk's CPU), or None to let the kernel place both.

    With two CPUs or more, Envoy runs on one and wrk on another, so the load generator does not
    take turns with the worker it measures. On a 2-CPU machine this narrowed the spread between
    rounds. BENCH_PIN=0 turns it off.
    """
    if os.environ.get("BENCH_PIN", "1") == "0" or shutil.which("taskset") is None:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return cpus[-1], cpus[0]


PINNING = cpu_pinning()


def pinned(args: list[str], cpu_index: int) -> list[str]:
    """Prefix `args` with taskset for Envoy's (0) or wrk's (1) CPU, when pinning is on."""
    if PINNING is None:
        return args
    return ["taskset", "-c", str(PINNING[cpu_index])] + args

# Upper bounds for single steps, so a stuck process cannot hang the run.
ENVOY_READY_TIMEOUT_S = 60.0
MEMORY_PHASE_TIMEOUT_S = 300
HTTP_TIMEOUT_S = 10.0
# Our filter adds its cache hits and misses to the counters on each 250 ms tick, so the counters
# are read this long after wrk ends.
COUNTER_SETTLE_S = 0.6


# ---------------------------------------------------------------------------------------------
# Listeners


@dataclass
class Listener:
    """One benchmark case: an Envoy listener and the token wrk sends to it."""

    key: str
    description: str
    filter_kind: str  # "none", "empty", "floor", "native" or "ours"
    algorithm: str | None = None  # the token's alg; None sends no Authorization header
    distinct_tokens: bool = False
    native_cache: bool = False
    plugin_settings: dict = field(default_factory=dict)
    floor_mode: str = ""  # the floor filter's configuration words (bench/floor-filter)
    port: int = 0

    @property
    def requires_jwt(self) -> bool:
        return self.filter_kind in ("native", "ours") or any(
            word.startswith("verify") for word in self.floor_mode.split())

    @property
    def stat_prefix(self) -> str:
        return "bench_" + self.key.replace("-", "_")


def ours(key: str, description: str, algorithm: str, **settings) -> Listener:
    return Listener(key, description, "ours", algorithm, plugin_settings=settings)


def floor(key: str, description: str, mode: str, algorithm: str = "RS256") -> Listener:
    return Listener(key, description, "floor", algorithm, floor_mode=mode)


LISTENERS = [
    Listener("1", "passthrough: router only", "none"),
    Listener("2", "empty Rust proxy-wasm filter", "empty"),
    floor("2-strip", "floor: reads Authorization, removes it", "strip"),
    floor("2-strip-sha", "floor: reads Authorization, SHA-256 of it, removes it", "strip sha256"),
    floor("2-read-sha", "floor: reads Authorization, SHA-256 of it, keeps it", "read sha256"),
    Listener("3-rs256", "native jwt_authn, no JWT cache, RS256", "native", "RS256"),
    Listener("3-es256", "native jwt_authn, no JWT cache, ES256", "native", "ES256"),
    Listener("4-rs256", "native jwt_authn, jwt_cache_config, RS256", "native", "RS256", native_cache=True),
    Listener("4-es256", "native jwt_authn, jwt_cache_config, ES256", "native", "ES256", native_cache=True),
    ours("5-rs256", "ours, cache on, RS256, one token", "RS256",
         jwt_cache_size=CACHE_SIZE, signature_backend="auto"),
    ours("5-es256", "ours, cache on, ES256, one token", "ES256",
         jwt_cache_size=CACHE_SIZE, signature_backend="auto"),
    ours("6-rs256-host", "ours, cache off, host backend, RS256", "RS256",
         jwt_cache_size=0, signature_backend="host"),
    floor("6-floor-rs256", "floor: reads Authorization, verify_signature on the host, removes it", "strip verify"),
    floor("6-floor-es256", "floor: as 6-floor-rs256 for ES256", "strip verify-es256", "ES256"),
    ours("6-rs256-wasm", "ours, cache off, wasm backend, RS256", "RS256",
         jwt_cache_size=0, signature_backend="wasm"),
    ours("6-es256-host", "ours, cache off, host backend, ES256", "ES256",
         jwt_cache_size=0, signature_backend="host"),
    ours("6-es256-wasm", "ours, cache off, wasm backend, ES256", "ES256",
         jwt_cache_size=0, signature_backend="wasm"),
    ours("6-ps256-wasm", "ours, cache off, wasm backend, PS256", "PS256",
         jwt_cache_size=0, signature_backend="wasm"),
    ours("6-eddsa-wasm", "ours, cache off, wasm backend, EdDSA", "EdDSA",
         jwt_cache_size=0, signature_backend="wasm"),
    Listener("8-rs256", f"ours, cache on, {DISTINCT_TOKENS} distinct RS256 tokens rotated", "ours", "RS256",
             distinct_tokens=True,
             plugin_settings={"jwt_cache_size": CACHE_SIZE, "signature_backend": "auto"}),
]

# (numerator, denominator, minimum target or None, label)
RATIOS = [
    ("5-rs256", "2", 0.95, "5/2 RS256: cached token vs empty Wasm filter"),
    ("5-rs256", "4-rs256", None, "5/4 RS256: cached token vs native jwt_authn with cache"),
    ("5-es256", "4-es256", None, "5/4 ES256: cached token vs native jwt_authn with cache"),
    ("6-rs256-host", "3-rs256", 1.0, "6host/3 RS256: host signature check vs native, no caches"),
    ("6-es256-host", "3-es256", 1.0, "6host/3 ES256: host signature check vs native, no caches"),
    ("6-rs256-wasm", "3-rs256", None, "6wasm/3 RS256: ring in the VM vs native, no caches"),
    ("6-es256-wasm", "3-es256", None, "6wasm/3 ES256: ring in the VM vs native, no caches"),
    ("8-rs256", "3-rs256", 0.9, "8/3 RS256: distinct tokens (cache misses) vs native, no cache"),
    # Where the time goes: the floor filter makes only the host calls any such filter must make.
    ("2-strip", "2", None, "floor 2-strip/2: reading and removing Authorization vs empty Wasm filter"),
    ("2-read-sha", "2", None, "floor 2-read-sha/2: the least a cache hit costs (read, SHA-256, no header change) vs empty Wasm filter"),
    ("5-rs256", "2-strip-sha", None, "5/2-strip-sha RS256: cached token vs the floor of a cache hit"),
    ("6-floor-rs256", "3-rs256", None, "6floor/3 RS256: the floor of a host signature check vs native, no caches"),
    ("6-rs256-host", "6-floor-rs256", None, "6host/6floor RS256: our host-backend path vs its floor"),
    ("6-floor-es256", "3-es256", None, "6floor/3 ES256: the floor of a host signature check vs native, no caches"),
    ("6-es256-host", "6-floor-es256", None, "6host/6floor ES256: our host-backend path vs its floor"),
]


# ---------------------------------------------------------------------------------------------
# Helpers


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_checked(args: list[str], **kwargs) -> None:
    log("$ " + " ".join(str(arg) for arg in args))
    subprocess.run(args, check=True, **kwargs)


def free_ports(count: int) -> list[int]:
    """Reserve `count` distinct free TCP ports on 127.0.0.1 (released before Envoy binds them)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def http_get(port: int, path: str = "/", headers: dict | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def read_load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def read_vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"VmRSS not found in /proc/{pid}/status")


def describe_machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} CPUs (nproc), {model}"


def envoy_version() -> str:
    output = subprocess.run([str(ENVOY), "--version"], check=True, capture_output=True, text=True).stdout
    match = re.search(r"version: (\S+)", output)
    return match.group(1) if match else output.strip()


# ---------------------------------------------------------------------------------------------
# Build and tokens


def build() -> None:
    if not ENVOY.exists():
        sys.exit(f"{ENVOY} not found: run `make deps-envoy` (or `make bench`, which installs it)")
    for tool in ("wrk", "node", "openssl", "cargo"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found on PATH: run `make bench`, which installs wrk and Node.js")
    run_checked(["make", "--no-print-directory", "build"], cwd=REPO)
    for crate, target_dir in (("empty-filter", EMPTY_FILTER_TARGET_DIR), ("floor-filter", FLOOR_FILTER_TARGET_DIR)):
        run_checked(
            ["cargo", "build", "--release", "--target", "wasm32-wasip1",
             "--manifest-path", str(BENCH_DIR / crate / "Cargo.toml")],
            env={**os.environ, "CARGO_TARGET_DIR": str(target_dir)},
        )
    if not ED25519_KEY.exists():
        # A public test-only key, described in bench/keys/README.md.
        run_checked(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(ED25519_KEY)])


def mint_tokens() -> tuple[dict, dict]:
    """Mint the tokens and JWKS with node and return (jwks, one token per algorithm)."""
    run_checked(["node", str(BENCH_DIR / "mint_tokens.mjs"), str(TOKEN_DIR), ISSUER, AUDIENCE, SCOPE,
                 str(DISTINCT_TOKENS), str(MEMORY_TOTAL)])
    jwks = json.loads((TOKEN_DIR / "jwks.json").read_text())
    tokens = json.loads((TOKEN_DIR / "tokens.json").read_text())

    # The memory phase sends the first MEMORY_FIRST tokens, then the rest, as two wrk runs.
    lines = (TOKEN_DIR / "memory-es256.txt").read_text().splitlines()
    (TOKEN_DIR / "memory-first.txt").write_text("\n".join(lines[:MEMORY_FIRST]) + "\n")
    (TOKEN_DIR / "memory-rest.txt").write_text("\n".join(lines[MEMORY_FIRST:]) + "\n")
    return jwks, tokens


# ---------------------------------------------------------------------------------------------
# Envoy configuration


def router_filter() -> dict:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }


def wasm_filter(vm_id: str, wasm_path: Path, configuration: dict | str | None, name: str | None = None) -> dict:
    config = {
        "name": name or vm_id,
        "root_id": vm_id,
        "vm_config": {
            "vm_id": vm_id,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(wasm_path)}},
        },
    }
    if configuration is not None:
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": configuration if isinstance(configuration, str) else json.dumps(configuration),
        }
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                         "config": config},
    }


def native_jwt_filter(jwks: dict, with_cache: bool) -> dict:
    """Envoy's jwt_authn with the same issuer, audience and inline JWKS as our filter.

    jwt_authn checks signature, iss, aud, exp and nbf (60 s clock skew by default) but not scope.
    """
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": json.dumps(jwks)},
        "forward": False,
    }
    if with_cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": CACHE_SIZE}
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


def plugin_configuration(provider_keys: dict, settings: dict) -> dict:
    """Our filter's configuration: the token requirements of the native listeners plus a scope."""
    return {
        "providers": [{"name": "bench", "issuer": ISSUER, "audiences": [AUDIENCE], **provider_keys}],
        "required_scopes": [SCOPE],
        "clock_skew_seconds": 60,
        "keep_token": False,
        **settings,
    }


def http_listener(name: str, port: int, http_filters: list[dict]) -> dict:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                         ".HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{
                    "name": "direct",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"},
                                "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}],
                }]},
                "http_filters": http_filters + [router_filter()],
            },
        }]}],
    }


def listener_filters(listener: Listener, jwks: dict) -> list[dict]:
    if listener.filter_kind == "none":
        return []
    if listener.filter_kind == "empty":
        return [wasm_filter("bench_empty_filter", EMPTY_WASM, None)]
    if listener.filter_kind == "native":
        return [native_jwt_filter(jwks, listener.native_cache)]
    if listener.filter_kind == "floor":
        words = listener.floor_mode.split()
        if "verify" in words:
            words.insert(words.index("verify") + 1, (TOKEN_DIR / "rs256-spki.b64").read_text().strip())
        if "verify-es256" in words:
            words.insert(words.index("verify-es256") + 1, (TOKEN_DIR / "es256-spki.b64").read_text().strip())
        mode = " ".join(words)
        return [wasm_filter("bench_floor_filter", FLOOR_WASM, mode, name="bench_floor_" + listener.stat_prefix)]
    configuration = plugin_configuration({"local_jwks": jwks}, listener.plugin_settings)
    return [wasm_filter("idaas_jwt_filter", FILTER_WASM, configuration)]


def bench_envoy_config(admin_port: int, jwks: dict) -> dict:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                http_listener(listener.stat_prefix, listener.port, listener_filters(listener, jwks))
                for listener in LISTENERS
            ],
        },
    }


def cold_start_envoy_config(admin_port: int, listener_port: int, jwks_port: int) -> dict:
    """Build a configuration with one listener whose filter gets its keys only from the JWKS server on jwks_port."""
    remote_jwks = {
        "cluster": "bench_jwks",
        "uri": f"http://127.0.0.1:{jwks_port}/jwks",
        "timeout_ms": 1500,
        "cache_duration_seconds": 600,
    }
    configuration = plugin_configuration({"remote_jwks": remote_jwks}, {})
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [http_listener("bench_cold_start", listener_port,
                                        [wasm_filter("idaas_jwt_filter", FILTER_WASM, configuration)])],
            "clusters": [{
                "name": "bench_jwks",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "bench_jwks", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                                "port_value": jwks_port}}},
                }]}]},
            }],
        },
    }


# ---------------------------------------------------------------------------------------------
# Envoy process


class Envoy:
    """An Envoy process with one worker thread, stopped by stop()."""

    def __init__(self, name: str, config: dict, admin_port: int):
        self.name = name
        self.admin_port = admin_port
        self.config_path = WORK_DIR / f"{name}.json"
        self.log_path = WORK_DIR / f"{name}.log"
        self.config_path.write_text(json.dumps(config, indent=1))
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> None:
        args = pinned([str(ENVOY), "-c", str(self.config_path), "--concurrency", "1", "--disable-hot-restart",
                       "--log-level", "warn", "--log-path", str(self.log_path)], 0)
        log("$ " + " ".join(args))
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, poll_interval_s: float = 0.05) -> float:
        """Poll the admin /ready endpoint and return the monotonic time at which it first returned 200."""
        assert self.process is not None
        deadline = time.monotonic() + ENVOY_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Envoy {self.name} exited with status {self.process.returncode}; "
                                   f"see {self.log_path}")
            try:
                status, _ = http_get(self.admin_port, "/ready")
                if status == 200:
                    return time.monotonic()
            except OSError:
                pass
            time.sleep(poll_interval_s)
        raise RuntimeError(f"Envoy {self.name} not ready after {ENVOY_READY_TIMEOUT_S:.0f} s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def counters(self, pattern: str) -> dict[str, int]:
        """Return the admin counters whose names match the regular expression `pattern`."""
        status, body = http_get(self.admin_port, "/stats?filter=" + urllib.parse.quote(pattern, safe=""))
        if status != 200:
            raise RuntimeError(f"admin /stats returned {status}")
        counters = {}
        for line in body.decode().splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                counters[name] = int(value)
        return counters

    def ignored_fields_warnings(self) -> list[str]:
        if not self.log_path.exists():
            return []
        return sorted({line.split("ignoring unknown configuration fields: ", 1)[1].strip()
                       for line in self.log_path.read_text(errors="replace").splitlines()
                       if "ignoring unknown configuration fields: " in line})

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# Authentication check


def tamper_signature(token: str) -> str:
    """Return `token` with one character in the middle of its signature changed.

    A middle character, because the last one may carry only padding bits.
    """
    signing_input, _, signature = token.rpartition(".")
    middle = len(signature) // 2
    replacement = "B" if signature[middle] == "A" else "A"
    return f"{signing_input}.{signature[:middle]}{replacement}{signature[middle + 1:]}"


def check_authentication(tokens: dict) -> list[str]:
    """Check every listener and return one line per check; raise RuntimeError if one does not authenticate.

    A JWT listener must return 401 without a token, 401 with a tampered signature (our filter with
    the reason code signature_invalid) and 200 with the valid token.
    """
    failures = []
    report = []
    distinct_first = (TOKEN_DIR / "distinct-rs256.txt").read_text().split("\n", 1)[0]
    for listener in LISTENERS:
        if not listener.requires_jwt:
            status, _ = http_get(listener.port)
            report.append(f"{listener.key}: no token -> {status}")
            if status != 200:
                failures.append(f"listener {listener.key}: expected 200 without a token, got {status}")
            continue

        token = distinct_first if listener.distinct_tokens else tokens[listener.algorithm]
        missing_status, _ = http_get(listener.port)
        tampered_status, tampered_body = http_get(listener.port, headers=bearer(tamper_signature(token)))
        valid_status, body = http_get(listener.port, headers=bearer(token))
        report.append(f"{listener.key}: no token -> {missing_status}, tampered {listener.algorithm} -> "
                      f"{tampered_status}, valid {listener.algorithm} -> {valid_status}")

        if missing_status != 401:
            failures.append(f"listener {listener.key}: expected 401 without a token, got {missing_status}")
        if tampered_status != 401:
            failures.append(f"listener {listener.key}: expected 401 with a tampered signature, got {tampered_status}")
        elif listener.filter_kind == "ours" and b'"signature_invalid"' not in tampered_body:
            failures.append(f"listener {listener.key}: expected reason signature_invalid for a tampered "
                            f"signature, got {tampered_body[:200]!r}")
        if valid_status != 200:
            failures.append(f"listener {listener.key}: expected 200 with a valid {listener.algorithm} token, "
                            f"got {valid_status}: {body[:200]!r}")
    if failures:
        raise RuntimeError("authentication check failed:\n  " + "\n  ".join(failures))
    return report


# ---------------------------------------------------------------------------------------------
# wrk


@dataclass
class WrkResult:
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: str


LATENCY_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_latency_ms(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk output has no {percentile}% latency line:\n{output}")
    return float(match.group(1)) * LATENCY_UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    if rate is None or total is None:
        raise RuntimeError(f"wrk output has no request rate:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return WrkResult(
        requests=int(total.group(1)),
        requests_per_second=float(rate.group(1)),
        p50_ms=parse_latency_ms(output, "50"),
        p99_ms=parse_latency_ms(output, "99"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors.group(1).strip() if socket_errors else "",
    )


def wrk_args(port: int, seconds: int, headers: dict | None = None, token_file: Path | None = None,
             request_limit: int = 0) -> list[str]:
    args = pinned(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "5s"], 1)
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    if token_file is not None:
        args += ["-s", str(ROTATE_SCRIPT)]
    args.append(f"http://127.0.0.1:{port}/")
    if token_file is not None:
        args += ["--", str(token_file), str(request_limit)]
    return args


def run_wrk(port: int, seconds: int, headers: dict | None = None, token_file: Path | None = None) -> WrkResult:
    args = wrk_args(port, seconds, headers, token_file)
    completed = subprocess.run(args, check=True, capture_output=True, text=True, timeout=seconds + 60)
    return parse_wrk(completed.stdout)


def send_each_token_once(envoy: Envoy, listener: Listener, token_file: Path, count: int) -> WrkResult:
    """Send the first `count` tokens of `token_file` to `listener`, each once, with wrk.

    wrk always runs for its full duration, even after rotate_tokens.lua has stopped its thread at
    the request limit. So this function watches the listener's completed-request counter and ends
    wrk with SIGINT, after which wrk prints its summary, as soon as all `count` responses are out.
    """
    counter = f"http.{listener.stat_prefix}.downstream_rq_completed"
    pattern = "^" + re.escape(counter) + "$"
    start = envoy.counters(pattern)[counter]
    args = wrk_args(listener.port, MEMORY_PHASE_TIMEOUT_S, token_file=token_file, request_limit=count)
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + MEMORY_PHASE_TIMEOUT_S
        completed = 0
        while time.monotonic() < deadline and process.poll() is None:
            completed = envoy.counters(pattern)[counter] - start
            if completed >= count:
                break
            time.sleep(0.2)
        if completed < count:
            raise RuntimeError(f"listener {listener.key} completed {completed} of {count} requests "
                               f"within {MEMORY_PHASE_TIMEOUT_S} s")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with status {process.returncode}: {stderr}")
    return parse_wrk(stdout)


def run_listener(listener: Listener, tokens: dict, seconds: int) -> WrkResult:
    if listener.distinct_tokens:
        return run_wrk(listener.port, seconds, token_file=TOKEN_DIR / "distinct-rs256.txt")
    headers = bearer(tokens[listener.algorithm]) if listener.algorithm else None
    return run_wrk(listener.port, seconds, headers=headers)


# ---------------------------------------------------------------------------------------------
# Phases


def cache_counter_prefix(listener: Listener) -> str | None:
    """Return the stats prefix of the listener's JWT cache counters, if its filter has a cache."""
    if listener.filter_kind == "native":
        return f"http.{listener.stat_prefix}.jwt_authn."
    if listener.filter_kind == "ours":
        # Our filter's counters are per filter, not per listener. The other listeners are idle
        # while this one runs, so the difference over a run belongs to this listener.
        return "wasmcustom.idaas_jwt_filter."
    return None


def cache_counters(envoy: Envoy, listener: Listener) -> tuple[int, int] | None:
    """Return (hits, misses) of the listener's JWT cache, or None if its filter has no cache.

    Our filter defines each counter at its first increment, so a counter not defined yet is 0.
    """
    prefix = cache_counter_prefix(listener)
    if prefix is None:
        return None
    counters = envoy.counters("^" + re.escape(prefix) + r"jwt_cache_(hit|miss)$")
    return counters.get(prefix + "jwt_cache_hit", 0), counters.get(prefix + "jwt_cache_miss", 0)


@dataclass
class ListenerResults:
    rounds: list[WrkResult] = field(default_factory=list)
    cache_hits: int = 0
    cache_misses: int = 0
    cache_counted: bool = False

    @property
    def requests_per_second(self) -> float:
        # The median, so one round slowed by a neighbour on the shared machine does not move it.
        return statistics.median(result.requests_per_second for result in self.rounds)


def measure_listeners(envoy: Envoy, tokens: dict) -> dict[str, ListenerResults]:
    results = {listener.key: ListenerResults() for listener in LISTENERS}
    if WARMUP_SECONDS:
        log(f"warm-up: {WARMUP_SECONDS} s per listener")
        for listener in LISTENERS:
            run_listener(listener, tokens, WARMUP_SECONDS)
    for round_number in range(1, ROUNDS + 1):
        # Odd rounds go forward, even rounds backward, so no listener always runs last.
        order = LISTENERS if round_number % 2 else list(reversed(LISTENERS))
        log(f"round {round_number}/{ROUNDS}: {SECONDS} s per listener, load average {read_load_average()}")
        for listener in order:
            before = cache_counters(envoy, listener)
            result = run_listener(listener, tokens, SECONDS)
            if before is not None:
                time.sleep(COUNTER_SETTLE_S)
            after = cache_counters(envoy, listener)
            entry = results[listener.key]
            entry.rounds.append(result)
            if before is not None and after is not None:
                entry.cache_counted = True
                entry.cache_hits += after[0] - before[0]
                entry.cache_misses += after[1] - before[1]
            socket_errors = f"  socket errors: {result.socket_errors}" if result.socket_errors else ""
            log(f"  {listener.key:<13} {result.requests_per_second:9.0f} req/s  p50 {result.p50_ms:7.3f} ms  "
                f"p99 {result.p99_ms:7.3f} ms  non-2xx {result.non_2xx}{socket_errors}")
    # A filter build without cache counters never defines them: show "-" rather than 0 / 0.
    for listener in LISTENERS:
        prefix = cache_counter_prefix(listener)
        if prefix is not None and not envoy.counters("^" + re.escape(prefix) + r"jwt_cache_(hit|miss)$"):
            results[listener.key].cache_counted = False
    return results


@dataclass
class MemoryResult:
    rss_before_kib: int
    rss_first_kib: int
    rss_total_kib: int
    responses: int
    non_2xx: int


def measure_memory(envoy: Envoy, listener: Listener) -> MemoryResult:
    """Send MEMORY_TOTAL distinct ES256 tokens to `listener` and read VmRSS after the first tenth and at the end."""
    rss_before = read_vm_rss_kib(envoy.pid)
    log(f"memory: {MEMORY_FIRST} distinct tokens to listener {listener.key}")
    first = send_each_token_once(envoy, listener, TOKEN_DIR / "memory-first.txt", MEMORY_FIRST)
    rss_first = read_vm_rss_kib(envoy.pid)
    log(f"memory: {MEMORY_TOTAL - MEMORY_FIRST} more distinct tokens")
    rest = send_each_token_once(envoy, listener, TOKEN_DIR / "memory-rest.txt", MEMORY_TOTAL - MEMORY_FIRST)
    rss_total = read_vm_rss_kib(envoy.pid)

    # wrk counts only the responses it read; Envoy's counter showed that all requests completed.
    responses = first.requests + rest.requests
    return MemoryResult(rss_before, rss_first, rss_total, responses, first.non_2xx + rest.non_2xx)


class JwksServer:
    """HTTP server on 127.0.0.1 that serves the JWKS at /jwks and records when it was fetched."""

    def __init__(self, jwks: dict):
        body = json.dumps(jwks).encode()
        fetch_times = self.fetch_times = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fetch_times.append(time.monotonic())
                if self.path != "/jwks":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@dataclass
class ColdStartResult:
    start_to_ready_ms: float
    ready_to_first_200_ms: float
    first_fetch_after_start_ms: float | None
    second_request_ms: float


def measure_cold_start(jwks: dict, token: str) -> ColdStartResult:
    """Time the first authenticated request after an Envoy start whose keys come only from a remote JWKS."""
    with JwksServer(jwks) as server:
        admin_port, listener_port = free_ports(2)
        envoy = Envoy("envoy-cold-start", cold_start_envoy_config(admin_port, listener_port, server.port),
                      admin_port)
        try:
            envoy.start()
            ready_at = envoy.wait_ready(poll_interval_s=0.005)
            status, body = http_get(listener_port, headers=bearer(token))
            first_done = time.monotonic()
            if status != 200:
                raise RuntimeError(f"cold start: first request returned {status}: {body[:200]!r}")
            second_start = time.monotonic()
            status, _ = http_get(listener_port, headers=bearer(token))
            second_done = time.monotonic()
            if status != 200:
                raise RuntimeError(f"cold start: second request returned {status}")
        finally:
            envoy.stop()
        first_fetch = server.fetch_times[0] - envoy.started_at if server.fetch_times else None
        return ColdStartResult(
            start_to_ready_ms=(ready_at - envoy.started_at) * 1000,
            ready_to_first_200_ms=(first_done - ready_at) * 1000,
            first_fetch_after_start_ms=first_fetch * 1000 if first_fetch is not None else None,
            second_request_ms=(second_done - second_start) * 1000,
        )


# ---------------------------------------------------------------------------------------------
# Report


def ratio_lines(results: dict[str, ListenerResults]) -> list[tuple[str, float, str]]:
    lines = []
    for numerator, denominator, target, label in RATIOS:
        value = results[numerator].requests_per_second / results[denominator].requests_per_second
        if target is None:
            verdict = "no target"
        else:
            verdict = f"target ≥ {target:.2f}: {'met' if value >= target else 'missed'}"
        lines.append((label, value, verdict))
    return lines


# (minuend, subtrahend, label): differences of time per request that split the cost into parts.
COST_PARTS = [
    ("2", "1", "calls into the Wasm VM on each request (empty filter vs router only)"),
    ("2-strip", "2", "reading and removing `Authorization` (host calls)"),
    ("2-strip-sha", "2-strip", "SHA-256 of the header inside the VM"),
    ("2-strip-sha", "2-read-sha", "removing `Authorization` (and the route match it causes)"),
    ("5-rs256", "2-strip-sha", "our cache-hit work beyond that floor"),
    ("6-floor-rs256", "2-strip", "one `verify_signature` call, RS256"),
    ("6-floor-es256", "2-strip", "one `verify_signature` call, ES256"),
    ("6-rs256-host", "6-floor-rs256", "our cache-miss work beyond that floor"),
    ("3-rs256", "1", "everything native jwt_authn does without its cache, RS256"),
]


def cost_table(results: dict[str, ListenerResults]) -> list[str]:
    """Return the COST_PARTS rows: the difference of 1 / (req/s) between two listeners, in µs."""
    rows = ["| part | listeners | µs per request |", "|---|---|---:|"]
    for minuend, subtrahend, label in COST_PARTS:
        difference = 1e6 / results[minuend].requests_per_second - 1e6 / results[subtrahend].requests_per_second
        rows.append(f"| {label} | {minuend} − {subtrahend} | {difference:.1f} |")
    return rows


def results_table(results: dict[str, ListenerResults]) -> list[str]:
    rows = ["| listener | case | req/s (median) | req/s per round | p50 ms | p99 ms | non-2xx | cache hit / miss |",
            "|---|---|---:|---|---:|---:|---:|---|"]
    for listener in LISTENERS:
        entry = results[listener.key]
        per_round = ", ".join(f"{result.requests_per_second:.0f}" for result in entry.rounds)
        p50 = statistics.mean(result.p50_ms for result in entry.rounds)
        p99 = statistics.mean(result.p99_ms for result in entry.rounds)
        non_2xx = sum(result.non_2xx for result in entry.rounds)
        cache = f"{entry.cache_hits} / {entry.cache_misses}" if entry.cache_counted else "-"
        rows.append(f"| {listener.key} | {listener.description} | {entry.requests_per_second:.0f} | {per_round} | "
                    f"{p50:.3f} | {p99:.3f} | {non_2xx} | {cache} |")
    return rows


NOTES_HEADING = "## Notes"


def existing_notes() -> str:
    """Return the hand-written section from NOTES_HEADING on, which every run keeps."""
    if not DOC_PATH.exists():
        return ""
    text = DOC_PATH.read_text()
    index = text.find("\n" + NOTES_HEADING + "\n")
    return text[index + 1:] if index >= 0 else ""


def cold_start_table(colds: list[ColdStartResult]) -> list[str]:
    rows = [
        "| start | process start to ready | first JWKS fetch after start | ready to the first 200 | second request |",
        "|---:|---:|---:|---:|---:|",
    ]
    for number, cold in enumerate(colds, start=1):
        fetch = f"{cold.first_fetch_after_start_ms:.0f} ms" if cold.first_fetch_after_start_ms is not None else "never"
        rows.append(f"| {number} | {cold.start_to_ready_ms:.0f} ms | {fetch} | {cold.ready_to_first_200_ms:.1f} ms "
                    f"| {cold.second_request_ms:.1f} ms |")
    return rows


def write_document(context: dict, results: dict[str, ListenerResults], memory: MemoryResult,
                   colds: list[ColdStartResult], ignored_fields: list[str]) -> str:
    ratios = ratio_lines(results)
    kib_to_mib = 1 / 1024
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run.py); each run replaces everything above the Notes section.",
        "",
        "Absolute numbers depend on the machine and on whatever else runs on it. Compare ratios",
        "between listeners of one run: every listener runs in the same Envoy process, in alternating",
        "order, within a few minutes.",
        "",
        "## Last run",
        "",
        f"- date: {context['date']}",
        f"- machine: {context['machine']}",
        f"- Envoy: {context['envoy_version']}, `--concurrency 1`, Wasm runtime V8",
        f"- load average (1, 5, 15 min) at the start: {context['load_start']}; at the end: {context['load_end']}",
        f"- wrk: 1 thread, {CONNECTIONS} connections, HTTP/1.1 keep-alive on 127.0.0.1, "
        f"{WARMUP_SECONDS} s warm-up per listener, then {ROUNDS} rounds of {SECONDS} s per listener",
        (f"- CPUs: Envoy pinned to CPU {PINNING[0]} and wrk to CPU {PINNING[1]} with taskset"
         if PINNING is not None else "- CPUs: not pinned; the kernel placed Envoy and wrk"),
        f"- filter: `{FILTER_WASM.relative_to(REPO)}`, {context['wasm_bytes']} bytes",
    ]
    if ignored_fields:
        lines.append("- the filter ignored these configuration fields as unknown, so those listeners ran "
                     "with its defaults: " + "; ".join(f"`{fields}`" for fields in ignored_fields))
    lines += [
        "",
        "### Throughput and latency",
        "",
        "req/s is the median of the rounds; p50 and p99 are the means of the rounds' values. The cache",
        "column adds up the increase of the filter's `jwt_cache_hit` and `jwt_cache_miss` counters",
        "over the measured rounds (jwt_authn's own counters on the native listeners; \"-\" where the",
        "filter has no such counters).",
        "",
        *results_table(results),
        "",
        "### Ratios",
        "",
        "| ratio | value | target |",
        "|---|---:|---|",
        *(f"| {label} | {value:.2f} | {verdict} |" for label, value, verdict in ratios),
        "",
        "### Cost per request",
        "",
        "With Envoy's one worker busy all the time, 1 / (req/s) approximates the worker's time per",
        "request, so the difference between two listeners estimates what the extra work costs. These",
        "are estimates from the medians above; two runs can differ by several µs.",
        "",
        *cost_table(results),
        "",
        "### Memory",
        "",
        f"Envoy's VmRSS (from `/proc/<pid>/status`) while listener 8-rs256 (cache of {CACHE_SIZE} entries)",
        "receives distinct valid ES256 tokens, each once, after the throughput rounds:",
        "",
        "| point | VmRSS MiB |",
        "|---|---:|",
        f"| before | {memory.rss_before_kib * kib_to_mib:.1f} |",
        f"| after {MEMORY_FIRST} tokens | {memory.rss_first_kib * kib_to_mib:.1f} |",
        f"| after {MEMORY_TOTAL} tokens | {memory.rss_total_kib * kib_to_mib:.1f} |",
        "",
        f"Growth from {MEMORY_FIRST} to {MEMORY_TOTAL} tokens: "
        f"{(memory.rss_total_kib - memory.rss_first_kib) * kib_to_mib:+.1f} MiB. Envoy completed every request;",
        f"wrk read {memory.responses} of the responses (it stops reading the last few in flight when",
        f"the script reaches the token count), and {memory.non_2xx} of them were other than 2xx.",
        "",
        "### First request after start-up",
        "",
        "A second Envoy whose filter has only a `remote_jwks`, served by an HTTP server on 127.0.0.1 in",
        "bench/run.py. The admin `/ready` endpoint is polled every 5 ms; the first request with a valid",
        f"RS256 token is sent as soon as it returns 200. Envoy is started {len(colds)} times, one row each.",
        "",
        *cold_start_table(colds),
        "",
        "## Listeners",
        "",
        "Every listener ends in a `direct_response` 200, so no upstream is involved. The JWT listeners",
        f"accept tokens with `iss` `{ISSUER}` and `aud` `{AUDIENCE}`, signed by keys from one inline",
        "JWKS: the RSA-2048 key `idp-rs256-1` for RS256 (and, under the kid `bench-ps256-1`, for PS256),",
        "the P-256 key `local-es256-1` and the Ed25519 key `bench-ed25519-1`. Our filter also requires",
        f"the scope `{SCOPE}`, which every token carries, but jwt_authn has no scope check. Before",
        "measuring, the script checks that each JWT listener returns 401 without a token and with a",
        "tampered signature, and 200 with the valid token.",
        "",
        "Listeners 2-strip, 2-strip-sha, 2-read-sha, 6-floor-rs256 and 6-floor-es256 run bench/floor-filter,",
        "which checks no claims. It reads `Authorization` and removes it, the host calls any bearer-token",
        "filter in Envoy must make. Listener 2-strip-sha also hashes the header with SHA-256, as our cache",
        "does on each request, and 6-floor-rs256 and 6-floor-es256 check the signature with `verify_signature`.",
        "Listener 2-read-sha reads and hashes the header but leaves it in place, as a filter that forwards",
        "the token does (ours with `keep_token`); it is the least any cache hit can cost. They show how much",
        "of our filter's cost is those calls and how much is its own work.",
        "",
        "Tokens are minted by bench/mint_tokens.mjs (node:crypto) and expire in 2100. Listener 8-rs256",
        f"rotates {DISTINCT_TOKENS} distinct RS256 tokens with bench/rotate_tokens.lua, more than its cache",
        f"of {CACHE_SIZE} entries holds, so with LRU eviction every request misses. The memory phase uses",
        "ES256 tokens only because node signs them about ten times faster than RS256.",
        "",
    ]
    text = "\n".join(lines)
    notes = existing_notes()
    if notes:
        text += "\n" + notes
    DOC_PATH.write_text(text if text.endswith("\n") else text + "\n")
    return text


def print_summary(results: dict[str, ListenerResults]) -> None:
    print()
    print(f"{'listener':<14}{'req/s':>9}{'p50 ms':>10}{'p99 ms':>10}  case")
    for listener in LISTENERS:
        entry = results[listener.key]
        p50 = statistics.mean(result.p50_ms for result in entry.rounds)
        p99 = statistics.mean(result.p99_ms for result in entry.rounds)
        print(f"{listener.key:<14}{entry.requests_per_second:9.0f}{p50:10.3f}{p99:10.3f}  {listener.description}")
    print()
    for label, value, verdict in ratio_lines(results):
        print(f"{value:6.2f}  {label} ({verdict})")
    print()


# ---------------------------------------------------------------------------------------------


def main() -> int:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    context = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe_machine(),
        "load_start": read_load_average(),
    }
    log(f"load average at start: {context['load_start']}")
    build()
    context["envoy_version"] = envoy_version()
    context["wasm_bytes"] = FILTER_WASM.stat().st_size
    jwks, tokens = mint_tokens()

    ports = free_ports(len(LISTENERS) + 1)
    admin_port = ports[0]
    for listener, port in zip(LISTENERS, ports[1:]):
        listener.port = port
    envoy = Envoy("envoy-bench", bench_envoy_config(admin_port, jwks), admin_port)
    try:
        envoy.start()
        envoy.wait_ready()
        for line in check_authentication(tokens):
            log("check " + line)
        results = measure_listeners(envoy, tokens)
        distinct_listener = next(listener for listener in LISTENERS if listener.distinct_tokens)
        memory = measure_memory(envoy, distinct_listener)
        ignored_fields = envoy.ignored_fields_warnings()
    finally:
        envoy.stop()

    colds = []
    for attempt in range(COLD_STARTS):
        log(f"cold start {attempt + 1} of {COLD_STARTS}: Envoy with a remote JWKS on 127.0.0.1")
        colds.append(measure_cold_start(jwks, tokens["RS256"]))
    context["load_end"] = read_load_average()

    print_summary(results)
    log(f"memory: VmRSS {memory.rss_before_kib} KiB before, {memory.rss_first_kib} KiB after "
        f"{MEMORY_FIRST} tokens, {memory.rss_total_kib} KiB after {MEMORY_TOTAL}")
    for cold in colds:
        log(f"cold start: ready after {cold.start_to_ready_ms:.0f} ms, first 200 after another "
            f"{cold.ready_to_first_200_ms:.1f} ms")
    if ignored_fields:
        log("the filter ignored unknown configuration fields: " + "; ".join(ignored_fields))
    write_document(context, results, memory, colds, ignored_fields)
    log(f"wrote {DOC_PATH.relative_to(REPO)}")

    bad = [key for key, entry in results.items() if any(result.non_2xx for result in entry.rounds)]
    if bad or memory.non_2xx:
        log("FAILED: responses other than 2xx during measurement on " + ", ".join(bad or ["the memory phase"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
