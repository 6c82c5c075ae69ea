#!/usr/bin/env bash
# Runs a command with a moto server on a free loopback port (AWS_ENDPOINT_URL points at it), then stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p .local
"$VENV/bin/python" scripts/moto-server.py -H 127.0.0.1 -p "$port" > .local/moto-test.log 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.2
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
"$@"
