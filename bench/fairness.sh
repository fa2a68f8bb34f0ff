#!/usr/bin/env bash
# Fairness under a CPU-bound tenant: the p99 latency of a plugin-free route, alone and while
# 8 clients hammer a route whose plugin loops until its 50 ms timeout, on a gateway with ONE
# worker (so both routes share its event loop).
#
#   bench/fairness.sh                          # this tree's release build
#   GATEWAY_BIN=/tmp/gateway-old bench/fairness.sh
#   DURATION=10 bench/fairness.sh
#
# wrk with one connection measures the free route (p50/p99 from --latency); a second wrk with
# 8 connections is the abuse (each sends its next request when the 500 `timeout` arrives). The
# backend is nginx. Reports one markdown row per phase.
set -euo pipefail
cd "$(dirname "$0")/.."
# Root on a fresh machine; a runner's user goes through sudo.
APT=apt-get
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then APT="sudo -n apt-get"; fi
DURATION=${DURATION:-8}
WORK=$(mktemp -d /tmp/gateway-fairness.XXXXXX)
BACKEND_PORT=18091 GATEWAY_PORT=18093
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
command -v wrk >/dev/null || { $APT update -qq && $APT install -y -qq wrk >/dev/null; }
command -v nginx >/dev/null || { $APT update -qq && $APT install -y -qq nginx >/dev/null; }
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
if [ -n "${GATEWAY_BIN:-}" ]; then
  GATEWAY=$GATEWAY_BIN
else
  cargo build --release -p gateway --quiet
  GATEWAY=target/release/gateway
fi
env -u CARGO_TARGET_DIR cargo build --quiet -p test-misbehave --target wasm32-wasip2 \
  --profile wasm --target-dir target/wasm
MODULE=$PWD/target/wasm/wasm32-wasip2/wasm/test_misbehave.wasm

mkdir -p "$WORK/www" "$WORK/logs"
printf 'hello from the backend\n' > "$WORK/www/free"
cat > "$WORK/backend.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $WORK/backend.pid;
error_log $WORK/logs/backend.err warn;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$BACKEND_PORT; root $WORK/www; } }
CONF
nginx -c "$WORK/backend.conf" -e "$WORK/logs/backend.err" &
PIDS+=($!)

cat > "$WORK/gateway.toml" <<CONF
[server]
listen = ["127.0.0.1:$GATEWAY_PORT"]
workers = 1
plugin_cache_dir = "$WORK/cache"

[upstreams.backend]
targets = ["127.0.0.1:$BACKEND_PORT"]

[plugins.misbehave]
module = "$MODULE"
capabilities = ["log", "clock", "kv", "counters"]
timeout_ms = 50

[[routes]]
name = "free"
match = { path = "/free" }
upstream = "backend"

[[routes]]
name = "loop"
match = { path = "/loop" }
upstream = "backend"
plugins = [ { use = "misbehave", config = { mode = "loop" } } ]
CONF
RUST_LOG=error "$GATEWAY" run --config "$WORK/gateway.toml" 2> "$WORK/logs/gateway.err" &
PIDS+=($!)
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$GATEWAY_PORT/free" >/dev/null 2>&1 && break
  sleep 0.1
done

# "p50 p99 requests" of a wrk --latency run on the free route.
measure() {
  wrk -t1 -c1 -d"${DURATION}s" --latency "http://127.0.0.1:$GATEWAY_PORT/free" |
    awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /requests in/ {n=$1} END {print p50, p99, n}'
}
wrk -t1 -c1 -d2s "http://127.0.0.1:$GATEWAY_PORT/free" >/dev/null
read -r quiet50 quiet99 quietn < <(measure)
wrk -t1 -c8 -d"$((DURATION + 4))s" "http://127.0.0.1:$GATEWAY_PORT/loop" > "$WORK/abuse.txt" &
ABUSE=$!
sleep 1
read -r abused50 abused99 abusedn < <(measure)
wait "$ABUSE"
loops=$(awk '/requests in/ {print $1}' "$WORK/abuse.txt")
echo "| phase | free-route p50 | free-route p99 | free-route requests |"
echo "|---|---|---|---|"
echo "| alone | $quiet50 | $quiet99 | $quietn |"
echo "| beside 8 clients on a 50 ms loop ($loops loops stopped) | $abused50 | $abused99 | $abusedn |"
