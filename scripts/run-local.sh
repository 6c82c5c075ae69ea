#!/usr/bin/env bash
# Starts moto, the ServiceNow simulator (unless SERVICENOW_INSTANCE_URL is set) and the local runner.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .local
BIN="${CARGO_TARGET_DIR:-target}/debug"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

wait_port() {
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "port $1 did not open; see .local/*.log" >&2
  exit 1
}

"$VENV/bin/python" scripts/moto-server.py -H 127.0.0.1 -p "$MOTO_PORT" > .local/moto.log 2>&1 &
pids+=($!)
wait_port "$MOTO_PORT"
echo "moto server on http://127.0.0.1:$MOTO_PORT (log: .local/moto.log)"

if [[ -z "${SERVICENOW_INSTANCE_URL:-}" ]]; then
  SIM_ADDR="127.0.0.1:$SIM_PORT" "$BIN/servicenow-sim" > .local/servicenow-sim.log 2>&1 &
  pids+=($!)
  wait_port "$SIM_PORT"
  export SERVICENOW_INSTANCE_URL="http://127.0.0.1:$SIM_PORT"
  # The simulator exercises the OAuth path: the writer uses tokens the token-refresher stores.
  export SERVICENOW_AUTH="${SERVICENOW_AUTH:-oauth}"
  echo "ServiceNow simulator on $SERVICENOW_INSTANCE_URL (log: .local/servicenow-sim.log)"
else
  echo "Using the real ServiceNow instance at $SERVICENOW_INSTANCE_URL"
fi

GENESYS_PORT="${GENESYS_PORT:-8092}"
GENESYS_SIM_ADDR="127.0.0.1:$GENESYS_PORT" "$BIN/genesys-sim" > .local/genesys-sim.log 2>&1 &
pids+=($!)
wait_port "$GENESYS_PORT"
echo "Genesys simulator on http://127.0.0.1:$GENESYS_PORT (log: .local/genesys-sim.log)"
export GENESYS_API_URL="${GENESYS_API_URL:-http://127.0.0.1:$GENESYS_PORT}" \
  GENESYS_LOGIN_URL="${GENESYS_LOGIN_URL:-http://127.0.0.1:$GENESYS_PORT}" \
  JWT_ISSUERS="${JWT_ISSUERS:-https://billing.legacy.example,https://orders.legacy.example}" \
  JWT_AUDIENCES="${JWT_AUDIENCES:-genesys-legacy-ingest}" \
  JWT_KEYS_FILE="${JWT_KEYS_FILE:-local/dev-keys/keyset.json}" \
  GENESYS_DATATABLE_ID="${GENESYS_DATATABLE_ID:-legacy-events}"

export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 RECEIVER_ADDR="127.0.0.1:$RECEIVER_PORT" RUST_LOG="${RUST_LOG:-warn}"
"$BIN/local-runner" serve &
pids+=($!)
wait "${pids[-1]}"
