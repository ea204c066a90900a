#!/usr/bin/env bash
# Starts the local stack on 127.0.0.1 and keeps it running until Ctrl-C:
#   IdP (envoy/idp, :9000), Model Studio stand-in (envoy/upstream, :9100),
#   Envoy with the built filter (envoy/envoy.yaml, :10000, admin :9901).
# Logs go to .run/*.log. `make run` installs the prerequisites and builds the .wasm first.
set -euo pipefail

cd "$(dirname "$0")/.."

ENVOY_BIN=${ENVOY_BIN:-.venv/bin/envoy}
WASM=target/wasm32-wasip1/release/idaas_jwt_filter.wasm
LOG_DIR=.run
ISSUER=http://127.0.0.1:9000/api/v2/iauths_system/oauth2
READY_POLL_ATTEMPTS=100
READY_POLL_INTERVAL_SECONDS=0.1

child_pids=()

stop_children() {
  trap - EXIT INT TERM
  if ((${#child_pids[@]} > 0)); then
    echo
    echo "stopping IdP, upstream and Envoy (pids ${child_pids[*]})"
    kill -TERM "${child_pids[@]}" 2>/dev/null || true
    wait "${child_pids[@]}" 2>/dev/null || true
  fi
}
interrupted=0
trap stop_children EXIT
trap 'interrupted=1' INT TERM

fail() {
  echo "run.sh: $*" >&2
  exit 1
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Polls URL until it responds with a 2xx status, at most READY_POLL_ATTEMPTS times.
wait_until_ready() {
  local name=$1 url=$2 log=$3
  for ((attempt = 1; attempt <= READY_POLL_ATTEMPTS; attempt++)); do
    if curl -sf -o /dev/null --max-time 1 "$url"; then
      echo "$name is ready ($url)"
      return 0
    fi
    sleep "$READY_POLL_INTERVAL_SECONDS"
  done
  echo "run.sh: $name did not respond at $url in time; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
}

[[ -x $ENVOY_BIN ]] || fail "Envoy not found at $ENVOY_BIN; run 'make deps-envoy' or set ENVOY_BIN"
[[ -f $WASM ]] || fail "$WASM not found; run 'make build'"
[[ -d envoy/idp/node_modules ]] || fail "IdP packages missing; run 'make deps-node'"
command -v node >/dev/null || fail "node not found on PATH"
command -v curl >/dev/null || fail "curl not found on PATH"
for port in 9000 9100 10000 9901; do
  if port_in_use "$port"; then
    fail "127.0.0.1:$port is already in use; stop whatever listens there (is another 'make run' active?)"
  fi
done

mkdir -p "$LOG_DIR"

# Each child runs in its own session, so Ctrl-C reaches only this script, whose traps stop the
# children with SIGTERM. (Children that see SIGINT themselves and exit cleanly make bash skip its
# INT trap.)
IDP_PORT=9000 setsid node envoy/idp/idp.js >"$LOG_DIR/idp.log" 2>&1 &
child_pids+=($!)
UPSTREAM_PORT=9100 setsid node envoy/upstream/upstream.js >"$LOG_DIR/upstream.log" 2>&1 &
child_pids+=($!)
wait_until_ready IdP "$ISSUER/.well-known/openid-configuration" "$LOG_DIR/idp.log"
wait_until_ready upstream http://127.0.0.1:9100/ "$LOG_DIR/upstream.log"

# Envoy starts after the IdP so that the filter's first JWKS fetch succeeds. One worker thread is
# enough here, and --disable-hot-restart lets another Envoy on this machine run at the same time.
setsid "$ENVOY_BIN" -c envoy/envoy.yaml --concurrency 1 --disable-hot-restart \
  --component-log-level wasm:debug >"$LOG_DIR/envoy.log" 2>&1 &
child_pids+=($!)
wait_until_ready Envoy http://127.0.0.1:9901/ready "$LOG_DIR/envoy.log"

cat <<EOF

The stack is up. Logs: $LOG_DIR/idp.log, $LOG_DIR/upstream.log, $LOG_DIR/envoy.log
Paste these into another shell:

# 1. Get an access token for the ci-pipeline client. The scope is named as IDaaS names it:
#    <Resource Server Identifier>|<Scope Value>
TOKEN=\$(curl -s -u ci-pipeline:ci-pipeline-secret -d grant_type=client_credentials \\
  --data-urlencode 'scope=api://model-studio|model.invoke' \\
  $ISSUER/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')

# 2. Call through Envoy with the token: 200, and the echo shows no authorization header
curl -i -H "Authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
  -d '{"model":"qwen-plus","messages":[{"role":"user","content":"hello"}]}' \\
  http://127.0.0.1:10000/v1/chat/completions

# 3. Without a token: 401 token_missing
curl -i http://127.0.0.1:10000/v1/chat/completions

# 4. With the no-scope client's token: 403 scope_empty
NO_SCOPE_TOKEN=\$(curl -s -u no-scope:no-scope-secret -d grant_type=client_credentials \\
  --data-urlencode 'scope=api://model-studio|model.invoke' \\
  $ISSUER/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -i -H "Authorization: Bearer \$NO_SCOPE_TOKEN" http://127.0.0.1:10000/v1/chat/completions

Press Ctrl-C to stop all three.
EOF

# Returns when a child exits or a signal arrives.
set +e
wait -n "${child_pids[@]}"
status=$?
set -e
if ((interrupted)); then
  exit 0
fi
echo "run.sh: a process of the stack exited with status $status; see $LOG_DIR/*.log" >&2
exit 1
