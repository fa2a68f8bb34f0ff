#!/usr/bin/env bash
# Side-by-side benchmark: the gateway vs nginx as a reverse proxy, on one machine.
#
#   bench/run.sh            # all scenarios, 2 interleaved rounds of 5 s each
#   SCENARIOS="tls tls-h2 handshake resume" bench/run.sh   # the HTTPS scenarios
#   DURATION=10 ROUNDS=3 bench/run.sh
#   SCENARIOS="none big" MEMORY=0 bench/run.sh   # a subset, without the memory runs
#   MODE=instructions bench/run.sh                # user-space instructions per request
#   GATEWAY_BIN=/tmp/gateway-old bench/run.sh     # measure another build of the gateway
#
# MODE=instructions runs each proxy under valgrind's callgrind instead (wrk with 4 connections,
# or h2load with 16 connections x 10 streams, 8 s after a warm-up) and prints user-space
# instructions per request and the gateway/nginx ratio: exact and repeatable on a noisy
# machine, but blind to kernel time.
#
# CPU 0 runs the proxy under test (gateway with one worker thread, or nginx with one worker
# process); CPU 1 runs the backend (nginx) and the load generator (wrk for HTTP/1.1, h2load for
# HTTP/2). Scenario `workers2` instead gives both proxies two workers (gateway `workers = 2`,
# nginx `worker_processes 2`) on both CPUs, sharing them with wrk (two threads) and the backend:
# requests per CPU-second then compares how each scales past one core.
# Rounds interleave gateway / nginx / gateway / nginx so drift hits both. For each run
# it reports requests/s, p50 and p99 latency, and requests per CPU-second of the proxy process
# (utime+stime from /proc, stable even on a busy machine); RSS idle and with 1,000 idle
# keep-alive connections (read once RSS has stopped falling, 3–12 s after the last one is open, so after the gateway parked them and trimmed its heap). Everything it starts is stopped on exit; the whole run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
# Root on a fresh machine; a runner's user goes through sudo.
APT=apt-get
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then APT="sudo -n apt-get"; fi
ROOT=$PWD
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-64}
SCENARIOS=${SCENARIOS:-none metrics access-log plugin tracing chain chain-request big h2 workers2 tls tls-h2 handshake resume round-robin least-request consistent-hash resilience canary mirror}
MEMORY=${MEMORY:-1}
WORK=$(mktemp -d /tmp/gateway-bench.XXXXXX)
BACKEND_PORT=18081 NGINX_PORT=18082 GATEWAY_PORT=18083 NGINX_H2_PORT=18084
NGINX_TLS_PORT=18085 GATEWAY_TLS_PORT=18086 GATEWAY_ADMIN_PORT=18087 BACKEND_PORT2=18088
PIDS=()
cleanup() {
  # Children first: the time-limit watchdog is a subshell whose `sleep` holds our stdout.
  # The proxy under test too: a run that failed mid-scenario leaves it running, and `wait`
  # would wait for it forever.
  for pid in "${PIDS[@]}" ${PROXY_PID:-}; do pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
# Bound the whole run, whatever happens.
( sleep "${BENCH_TIMEOUT_S:-1800}"; echo "bench: time limit reached" >&2; kill -TERM $$ ) 2>/dev/null &
PIDS+=($!)

need() { command -v "$1" >/dev/null || { $APT update -qq && $APT install -y -qq "$2" >/dev/null; }; }
need nginx nginx
need wrk wrk
need h2load nghttp2-client
need taskset util-linux
need pgrep procps
[ "${MODE:-throughput}" = instructions ] && need valgrind valgrind
python3 -c "import jwt" 2>/dev/null || python3 -m pip install --quiet "pyjwt[crypto]==2.15.1"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
# GATEWAY_BIN=path runs another build (an earlier commit's, for a before/after comparison).
if [ -n "${GATEWAY_BIN:-}" ]; then
  GATEWAY=$GATEWAY_BIN
else
  cargo build --release -p gateway --quiet
  GATEWAY=$ROOT/target/release/gateway
fi

# --- backend: nginx on CPU 1 answering a small body and a 16 KiB body ------------------------
mkdir -p "$WORK/www" "$WORK/logs"
printf 'hello from the backend\n' > "$WORK/www/small"
head -c 16384 /dev/zero | tr '\0' 'x' > "$WORK/www/big"
# One nginx worker in the foreground: $1 = name (pid and error log), $2 = the `http` block's
# contents.
nginx_conf() {
  local workers="master_process off; worker_processes 1;"
  [ "$1" = nginx2 ] && workers="master_process on; worker_processes 2;"
  cat <<CONF
daemon off; $workers pid $WORK/$1.pid;
error_log $WORK/logs/$1.err warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
$2
}
CONF
}
nginx_conf backend "  server { listen 127.0.0.1:$BACKEND_PORT; listen 127.0.0.1:$BACKEND_PORT2; root $WORK/www; location / { default_type text/plain; } location = /v1/traces { return 200; } }" \
  > "$WORK/backend.conf"
taskset -c 1 nginx -c "$WORK/backend.conf" -e "$WORK/logs/backend.err" &
PIDS+=($!)

# --- one certificate for both proxies' HTTPS: ECDSA P-256, TLS 1.2 and 1.3 -------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE \
  -keyout "$WORK/tls.key" -out "$WORK/tls.pem" 2> /dev/null

# --- reference: nginx reverse proxy, one worker, upstream keep-alive, on CPU 0 ----------------
# Its HTTPS as the gateway's: TLS 1.2 and 1.3, AEAD suites with forward secrecy, tickets and a
# session cache for resumption, HTTP/2 by ALPN.
proxy_block="  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 256; }
  ssl_certificate $WORK/tls.pem; ssl_certificate_key $WORK/tls.key;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:tls:10m; ssl_session_tickets on;
  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    listen 127.0.0.1:$NGINX_H2_PORT http2;   # cleartext HTTP/2 (prior knowledge) only
    listen 127.0.0.1:$NGINX_TLS_PORT ssl http2;   # HTTP/2 or HTTP/1.1 by ALPN
    location / {
      proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }"
nginx_conf nginx "$proxy_block" > "$WORK/nginx.conf"
nginx_conf nginx2 "$proxy_block" > "$WORK/nginx2.conf"

# --- gateway configs per scenario -------------------------------------------------------------
SECRET="bench-only-hmac-secret-of-at-least-32-bytes!"
TOKEN=$(python3 -c "import jwt,time; print(jwt.encode({'sub':'bench','exp':int(time.time())+86400}, '$SECRET', algorithm='HS256'))")
gateway_config() { # $1 = scenario
  local plugins="" isolation="pooled" workers=1 observe=""
  [ "$1" = workers2 ] && workers=2
  # `metrics`: the admin listener on, so every request is counted (nginx: its access log off,
  # as in every scenario). `access-log`: one JSON line per request to a file (nginx logs
  # nothing: this row's ratio against `none`'s is the log's cost).
  case "$1" in
    metrics) observe="[admin]
listen = \"127.0.0.1:$GATEWAY_ADMIN_PORT\"" ;;
    access-log) observe="[access_log]
to = \"$WORK/access.log\"" ;;
    # `tracing`: every request starts a sampled trace whose spans (request, plugin call,
    # upstream call) are exported over OTLP/HTTP to the backend nginx, which discards them; against
    # `plugin`'s row its ratio is the export's cost.
    tracing) observe="[tracing]
traceparent = \"always\"
otlp_endpoint = \"http://127.0.0.1:$BACKEND_PORT/v1/traces\"" ;;
  esac
  # The balancing scenarios: two targets (the backend's two ports). `round-robin` is their
  # baseline; `least-request` and `consistent-hash` (on the client IP) its alternatives;
  # `resilience` is round robin with active health checks and both breakers on.
  local targets="\"127.0.0.1:$BACKEND_PORT\"" upstream_extra=""
  case "$1" in
    round-robin|least-request|consistent-hash|resilience)
      targets="\"127.0.0.1:$BACKEND_PORT\", \"127.0.0.1:$BACKEND_PORT2\"" ;;
  esac
  case "$1" in
    least-request) upstream_extra='balance = "least_request"' ;;
    consistent-hash) upstream_extra='balance = "consistent_hash"
hash_on = "client_ip"' ;;
    resilience) upstream_extra='health_check = { path = "/small", interval_ms = 1000, timeout_ms = 500 }
breaker = { max_requests = 100000, max_pending = 1000, error_rate = 0.5 }' ;;
  esac
  # `canary`: the route splits 50/50 between two upstreams of one target each (the backend's
  # two ports), against `round-robin`'s one upstream of two targets. `mirror`: a copy of 10%
  # of the requests to the second port, against `none`.
  local route_to='upstream = "backend"' second=""
  case "$1" in
    canary) route_to='upstreams = [{ upstream = "backend", weight = 50 }, { upstream = "backend2", weight = 50 }]' ;;
    mirror) route_to='upstream = "backend"
mirror = { upstream = "backend2", share = 0.1 }' ;;
  esac
  case "$1" in
    canary|mirror) second="[upstreams.backend2]
targets = [\"127.0.0.1:$BACKEND_PORT2\"]" ;;
  esac
  case "$1" in
    plugin|tracing) plugins='{ use = "rt", config = {} }' ;;
    chain|chain-request)
      plugins='{ use = "jwt", config = { key_set = "bench", algorithms = ["HS256"] } },
  { use = "rl", config = { second = 100000000, limit_by = "consumer" } },
  { use = "rt", config = { add = { headers = { "x-gateway" = "bench" } } } }'
      [ "$1" = chain-request ] && isolation="request" ;;
  esac
  cat <<CONF
[server]
listen = ["127.0.0.1:$GATEWAY_PORT"]
workers = $workers
plugin_cache_dir = "$WORK/cache"

[[server.tls]]
listen = ["127.0.0.1:$GATEWAY_TLS_PORT"]
[[server.tls.certificates]]
cert = "$WORK/tls.pem"
key = "$WORK/tls.key"

[upstreams.backend]
targets = [$targets]
$upstream_extra

$second

$observe

[keys.bench]
secrets = [ { value = "$SECRET" } ]

[plugins.rt]
module = "builtin:request-transformer"
isolation = "$isolation"

[plugins.jwt]
module = "builtin:jwt-auth"
capabilities = ["crypto", "clock", "log"]
isolation = "$isolation"

[plugins.rl]
module = "builtin:rate-limit"
capabilities = ["counters", "log"]
isolation = "$isolation"

[[routes]]
name = "all"
match = { path_prefix = "/" }
$route_to
plugins = [ $plugins ]
CONF
}

wait_port() { for _ in $(seq "${WAIT_TRIES:-200}"); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
# CPU time of a process and its children (nginx's workers under its master).
cpu_ticks() { cat "/proc/$1/stat" $(pgrep -P "$1" | sed 's|.*|/proc/&/stat|') | awk '{s += $14 + $15} END {print s}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
TICKS=$(getconf CLK_TCK)

start_proxy() { # $1 = gateway|nginx, $2 = scenario; sets PROXY_PID PORT
  local cpus=0 conf=nginx
  [ "$2" = workers2 ] && cpus=0,1 conf=nginx2
  if [ "$1" = nginx ]; then
    taskset -c "$cpus" nginx -c "$WORK/$conf.conf" -e "$WORK/logs/nginx.err" & PROXY_PID=$!; PORT=$NGINX_PORT
  else
    gateway_config "$2" > "$WORK/gateway.toml"
    RUST_LOG=warn taskset -c "$cpus" "$GATEWAY" run --config "$WORK/gateway.toml" > /dev/null 2> "$WORK/logs/gateway.err" & PROXY_PID=$!
    PORT=$GATEWAY_PORT
  fi
  wait_port "$PORT"
}
stop_proxy() { kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; }

# The scenario's URL scheme and port on the proxy whose cleartext port is $2.
is_tls() { case "$1" in tls|tls-h2|handshake|resume) return 0 ;; esac; return 1; }
target_port() { # $1 = scenario, $2 = cleartext port
  if is_tls "$1"; then
    if [ "$2" = "$GATEWAY_PORT" ]; then echo "$GATEWAY_TLS_PORT"; else echo "$NGINX_TLS_PORT"; fi
  else
    echo "$2"
  fi
}

# One load run; prints "rps p50_ms p99_ms req_per_cpu_s".
load() { # $1 = scenario, $2 = port
  local path=/small headers=() scheme=http port
  [ "$1" = big ] && path=/big
  case "$1" in chain|chain-request) headers=(-H "authorization: Bearer $TOKEN") ;; esac
  [ "$1" = handshake ] && headers=(-H "connection: close")
  is_tls "$1" && scheme=https
  port=$(target_port "$1" "$2")
  local before after out
  before=$(cpu_ticks "$PROXY_PID")
  if [ "$1" = resume ]; then
    # Sequential resumed handshakes (tickets, TLS 1.3), no request: handshakes per CPU-second.
    out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -reuse -time "$DURATION" 2>&1)
    after=$(cpu_ticks "$PROXY_PID")
    python3 - "$before" "$after" "$TICKS" "$DURATION" <<PY
import re, sys
out = """$out"""
before, after, ticks, duration = map(int, sys.argv[1:])
found = re.findall(r"(\d+) connections in", out)
if not found:
    sys.exit("s_time failed:\n" + out)
total = int(found[-1])
cpu = (after - before) / ticks
print(f"{total / duration:.0f} - - {total / cpu if cpu else 0:.0f}")
PY
    return
  fi
  if [ "$1" = h2 ] || [ "$1" = tls-h2 ]; then
    out=$(taskset -c 1 h2load -c 64 -m 10 -D "$DURATION" "${headers[@]}" "$scheme://127.0.0.1:$port$path" 2>&1)
    after=$(cpu_ticks "$PROXY_PID")
    local rps total mean
    rps=$(awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out")
    total=$(awk '/^requests:/ {print $8}' <<<"$out")
    mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
    python3 - "$rps" "$total" "$before" "$after" "$TICKS" "$mean" <<'PY'
import sys
rps, total, before, after, ticks, mean = sys.argv[1:]
cpu = (int(after) - int(before)) / int(ticks)
m = mean
ms = float(m[:-2]) if m.endswith("ms") else float(m[:-2]) / 1000 if m.endswith("us") else float(m[:-1]) * 1000
print(f"{float(rps):.0f} {ms:.2f} - {int(total) / cpu if cpu else 0:.0f}")
PY
  else
    local cpus=1 threads=1
    [ "$1" = workers2 ] && cpus=0,1 threads=2
    out=$(taskset -c "$cpus" wrk -t"$threads" -c"$CONNS" -d"${DURATION}s" --latency "${headers[@]}" "$scheme://127.0.0.1:$port$path")
    after=$(cpu_ticks "$PROXY_PID")
    python3 - "$before" "$after" "$TICKS" <<PY
import re, sys
out = """$out"""
before, after, ticks = map(int, sys.argv[1:])
def ms(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
total = int(re.search(r"(\d+) requests in", out).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
if total == 0:
    sys.exit("no requests completed:\n" + out)
# Errors are reported; above 1% of the requests they fail the run (a broken proxy), below it
# they are a finding to look at, not a reason to lose the round's numbers.
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
if non2xx:
    errors = int(non2xx.group(1))
    if errors * 100 > total:
        sys.exit(f"{errors} of {total} responses were not 2xx")
    print(f"warning: {errors} of {total} responses were not 2xx", file=sys.stderr)
cpu = (after - before) / ticks
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {total / cpu if cpu else 0:.0f}")
PY
  fi
}

# Requests one load run under callgrind completed: wrk for HTTP/1.1, h2load for HTTP/2.
counted_load() { # $1 = scenario, $2 = url, $3 = seconds, then extra headers
  local scenario=$1 url=$2 seconds=$3; shift 3
  if [ "$scenario" = h2 ]; then
    h2load -c 16 -m 10 -D "$seconds" "$@" "$url" | awk '/^requests:/ {print $8}'
  else
    wrk -t1 -c4 -d"${seconds}s" "$@" "$url" | awk '/requests in/ {print $1}'
  fi
}

# One callgrind run; prints user-space instructions per request.
instructions() { # $1 = gateway|nginx, $2 = scenario
  local out="$WORK/callgrind.$1.$2" path=/small headers=() port
  [ "$2" = big ] && path=/big
  case "$2" in chain|chain-request) headers=(-H "authorization: Bearer $TOKEN") ;; esac
  if [ "$1" = nginx ]; then
    port=$NGINX_PORT
    [ "$2" = h2 ] && port=$NGINX_H2_PORT
    valgrind --tool=callgrind --callgrind-out-file="$out" nginx -c "$WORK/nginx.conf" \
      -e "$WORK/logs/nginx.err" 2> "$WORK/logs/valgrind.err" & PROXY_PID=$!
  else
    start_proxy gateway "$2"; stop_proxy   # compiles the plugins into the cache natively
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" "$GATEWAY" run \
      --config "$WORK/gateway.toml" > /dev/null 2> "$WORK/logs/valgrind.err" & PROXY_PID=$!
    port=$GATEWAY_PORT
  fi
  WAIT_TRIES=1200 wait_port "$port"
  counted_load "$2" "http://127.0.0.1:$port$path" 2 "${headers[@]}" > /dev/null
  callgrind_control -z "$PROXY_PID" > /dev/null 2>&1
  local requests total
  requests=$(counted_load "$2" "http://127.0.0.1:$port$path" 8 "${headers[@]}")
  callgrind_control -d "$PROXY_PID" > /dev/null 2>&1
  sleep 1
  total=$(callgrind_annotate "$out".* 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  stop_proxy
  echo $((total / requests))
}

wait_port "$BACKEND_PORT"
if [ "${MODE:-throughput}" = instructions ]; then
  nginx_small=$(instructions nginx none)
  nginx_big=$(instructions nginx big)
  nginx_h2=
  case " $SCENARIOS " in *" h2 "*) nginx_h2=$(instructions nginx h2) ;; esac
  echo "| scenario | gateway instructions/request | nginx (no plugins, same body and protocol) | ratio |"
  echo "|---|---|---|---|"
  for scenario in $SCENARIOS; do
    # callgrind runs one thread at a time: a per-thread count says nothing new. HTTPS is
    # measured in throughput mode only.
    [ "$scenario" = workers2 ] && continue
    is_tls "$scenario" && continue
    ir=$(instructions gateway "$scenario")
    reference=$nginx_small
    [ "$scenario" = big ] && reference=$nginx_big
    [ "$scenario" = h2 ] && reference=$nginx_h2
    python3 -c "import sys; g, n = map(int, sys.argv[2:]); print(f'| {sys.argv[1]} | {g:,} | {n:,} | {n / g:.2f}x |')" "$scenario" "$ir" "$reference"
  done
  exit 0
fi
RESULTS=$WORK/results.txt
: > "$RESULTS"
for scenario in $SCENARIOS; do
  for round in $(seq "$ROUNDS"); do
    for proxy in gateway nginx; do
      start_proxy "$proxy" "$scenario"
      port=$PORT
      [ "$proxy" = nginx ] && [ "$scenario" = h2 ] && port=$NGINX_H2_PORT
      [ "$round" = 1 ] && load "$scenario" "$port" > /dev/null   # warm-up: pools, caches
      echo "$scenario $proxy $(load "$scenario" "$port")" | tee -a "$RESULTS" >&2
      stop_proxy
    done
  done
done

# Memory: idle, and with 1,000 idle keep-alive connections (cleartext, then HTTPS).
for run in gateway nginx gateway:tls nginx:tls; do
  [ "$MEMORY" = 1 ] || break
  proxy=${run%:tls}; tls=; [ "$run" != "$proxy" ] && tls=tls
  # Once before measuring, so the plugins come from the compiled cache as they do in
  # production, not from a compilation that leaves the compiler's pages resident.
  [ "$proxy" = gateway ] && { start_proxy "$proxy" chain; stop_proxy; }
  start_proxy "$proxy" chain
  sleep 0.5
  idle=$(rss_kb "$PROXY_PID")
  conn_port=$PORT
  [ -n "$tls" ] && conn_port=$(target_port tls "$PORT")
  python3 "$ROOT/bench/idle_conns.py" "$conn_port" 1000 "$WORK/held" $tls &
  holder=$!
  for _ in $(seq 300); do [ -e "$WORK/held" ] && break; sleep 0.1; done
  # The gateway parks a keep-alive connection once it has idled through a 1 s check (1.5-2.5
  # s), then trims its heap within a second: read RSS once it has stopped falling for 2 s
  # (3 s at least, 12 s at most), so the row never catches connections before parking.
  sleep 3
  held=$(rss_kb "$PROXY_PID"); steady=0
  for _ in $(seq 9); do
    sleep 1
    now=$(rss_kb "$PROXY_PID")
    if [ "$now" -lt "$held" ]; then held=$now; steady=0; else steady=$((steady + 1)); fi
    [ "$steady" -ge 2 ] && break
  done
  kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true; rm -f "$WORK/held"
  echo "memory $run $idle $held" | tee -a "$RESULTS" >&2
  stop_proxy
done

python3 "$ROOT/bench/report.py" "$RESULTS" "$(git rev-parse --short HEAD)" "$DURATION" "$ROUNDS"
