#!/usr/bin/env bash
# `make run`: an aggregator with its journal in ./data, and an agent profiling
# this host in all modes and pushing to it. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
GRPC=${APERTURE_AGGREGATOR_LISTEN:-127.0.0.1:50051}
HTTP=${APERTURE_ADMIN_LISTEN:-127.0.0.1:9090}
mkdir -p data out

# Its own session: Ctrl-C reaches the agent first, which flushes to a live
# aggregator; the aggregator is stopped after that.
setsid $BIN/aperture-aggregator --listen "$GRPC" --admin-listen "$HTTP" --data-dir data &
AGG=$!
AGENT=
stop() {
  [ -n "$AGENT" ] && kill -TERM "$AGENT" 2>/dev/null && wait "$AGENT" 2>/dev/null || true
  kill -TERM "$AGG" 2>/dev/null && wait "$AGG" 2>/dev/null || true
}
trap stop EXIT INT TERM

for _ in $(seq 1 100); do
  curl -fs "http://$HTTP/readyz" >/dev/null 2>&1 && break
  kill -0 "$AGG" 2>/dev/null || { echo "the aggregator did not start (see above)"; exit 1; }
  sleep 0.2
done
echo
echo "  Aperture is running: dashboard and API at http://$HTTP  (Ctrl-C stops)"
echo "  the agent also writes out/profile.{cpu.svg,lock.svg,syscalls.txt} when stopped"
echo
$BIN/aperture-agent --mode all --aggregator "http://$GRPC" --push-interval 10s \
  --spool-dir data/agent-spool --cache-dir data/agent-cache --output out/profile.svg ${APERTURE_RUN_ARGS:-} &
AGENT=$!
wait "$AGENT" || true
AGENT=
