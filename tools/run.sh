#!/usr/bin/env bash
# `make run`: an aggregator with its journal in ./data, and an agent profiling
# this host in all modes and pushing to it. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
GRPC=${APERTURE_AGGREGATOR_LISTEN:-127.0.0.1:50051}
HTTP=${APERTURE_ADMIN_LISTEN:-127.0.0.1:9090}

fail() {
  echo "make run: $*" >&2
  exit 1
}

# Whether something accepts connections at HOST:PORT ([V6]:PORT too).
in_use() {
  local host=${1%:*} port=${1##*:}
  host=${host#[}
  host=${host%]}
  case $host in
    0.0.0.0 | "") host=127.0.0.1 ;;
    ::) host=::1 ;;
  esac
  timeout 2 bash -c ': <>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# Another process on either port would answer the readiness check below, or take
# the agent's pushes: refuse to start next to it.
for pair in "APERTURE_ADMIN_LISTEN=$HTTP" "APERTURE_AGGREGATOR_LISTEN=$GRPC"; do
  variable=${pair%%=*} address=${pair#*=}
  if in_use "$address"; then
    fail "$address is already in use by another process: stop it, or set $variable to a free address."
  fi
done
mkdir -p data out

# /readyz tells this name back, so a process that took the port after the check
# above is not mistaken for the aggregator started here.
INSTANCE=make-run-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')

# Its own session: Ctrl-C reaches the agent first, which flushes to a live
# aggregator; the aggregator is stopped after that.
setsid $BIN/aperture-aggregator --listen "$GRPC" --admin-listen "$HTTP" --data-dir data \
  --instance-id "$INSTANCE" &
AGG=$!
AGENT=
stop() {
  [ -n "$AGENT" ] && kill -TERM "$AGENT" 2>/dev/null && wait "$AGENT" 2>/dev/null || true
  kill -TERM "$AGG" 2>/dev/null && wait "$AGG" 2>/dev/null || true
}
trap stop EXIT INT TERM

ready=
for _ in $(seq 1 150); do
  if headers=$(curl -fs -D - -o /dev/null --max-time 2 "http://$HTTP/readyz" 2>/dev/null); then
    answer=$(printf '%s\n' "$headers" | tr -d '\r' | sed -n 's/^x-aperture-instance: *//Ip')
    if [ "$answer" = "$INSTANCE" ]; then
      ready=1
      break
    fi
    fail "another process answers at http://$HTTP, not the aggregator started here: stop it, or set APERTURE_ADMIN_LISTEN and APERTURE_AGGREGATOR_LISTEN to free addresses."
  fi
  kill -0 "$AGG" 2>/dev/null || fail "the aggregator did not start: see its error above."
  sleep 0.2
done
[ -n "$ready" ] || fail "the aggregator did not become ready at http://$HTTP/readyz in 30 s: see its log above."
echo
echo "  Aperture is running: dashboard and API at http://$HTTP  (Ctrl-C stops)"
echo "  the agent also writes out/profile.{cpu.svg,lock.svg,offcpu.svg,syscalls.txt} when stopped"
echo
$BIN/aperture-agent --mode all --aggregator "http://$GRPC" --push-interval 10s \
  --spool-dir data/agent-spool --cache-dir data/agent-cache --output out/profile.svg ${APERTURE_RUN_ARGS:-} &
AGENT=$!
wait "$AGENT" || true
AGENT=
