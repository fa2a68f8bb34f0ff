#!/usr/bin/env bash
# A TLS scanner against the real gateway: Debian's testssl.sh on a TLS listener with a fresh
# ECDSA P-256 certificate. Fails on any finding rated MEDIUM or worse, and unless SSLv2, SSLv3,
# TLS 1.0 and 1.1 are not offered, renegotiation is refused, and the vulnerability checks
# (Heartbleed, CCS, ROBOT, CRIME, BREACH aside, POODLE, SWEET32, FREAK, DROWN, LOGJAM, BEAST,
# LUCKY13, RC4, Ticketbleed) come out negative.
#
#   tests/tls/scan.sh            # builds the gateway (debug) unless GATEWAY_BIN is set
set -euo pipefail
# Root on a fresh machine; a runner's user goes through sudo.
APT=apt-get
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then APT="sudo -n apt-get"; fi
cd "$(dirname "$0")/../.."
command -v testssl >/dev/null || command -v testssl.sh >/dev/null || {
  $APT update -qq && $APT install -y -qq testssl.sh >/dev/null
}
TESTSSL=$(command -v testssl || command -v testssl.sh)
if [ -z "${GATEWAY_BIN:-}" ]; then
  cargo build -p gateway --quiet
  GATEWAY_BIN=$PWD/target/debug/gateway
fi
WORK=$(mktemp -d /tmp/gateway-tls-scan.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE \
  -keyout "$WORK/tls.key" -out "$WORK/tls.pem" 2> /dev/null
cat > "$WORK/gateway.toml" <<CONF
[server]
plugin_cache_dir = "$WORK/cache"
[[server.tls]]
listen = ["127.0.0.1:0"]
hsts_max_age_s = 31536000
[[server.tls.certificates]]
cert = "tls.pem"
key = "tls.key"
[[routes]]
name = "empty"
match = { path_prefix = "/" }
plugins = []
upstream = "none"
[upstreams.none]
targets = ["127.0.0.1:9"]
CONF
RUST_LOG=warn "$GATEWAY_BIN" run --config "$WORK/gateway.toml" > "$WORK/out" 2> "$WORK/err" &
PID=$!
for _ in $(seq 200); do grep -q '^ready' "$WORK/out" 2>/dev/null && break; sleep 0.05; done
ADDR=$(awk '/^listening on .* \(https\)/ {print $3}' "$WORK/out")
[ -n "$ADDR" ] || { echo "gateway did not start:"; cat "$WORK/err"; exit 1; }

"$TESTSSL" --quiet --color 0 --warnings off --sneaky -p -s -f -U -R \
  --jsonfile "$WORK/scan.json" "$ADDR" > "$WORK/scan.txt" 2>&1 || true
python3 - "$WORK/scan.json" <<'PY'
import json, sys
findings = {f["id"]: f for f in json.load(open(sys.argv[1]))}
problems = []
def finding(fid):
    return findings.get(fid, {}).get("finding", "(not reported)")
for fid in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
    if "not offered" not in finding(fid):
        problems.append(f"{fid}: {finding(fid)}")
for fid in ("TLS1_2", "TLS1_3"):
    if "offered" not in finding(fid) or "not offered" in finding(fid):
        problems.append(f"{fid}: {finding(fid)}")
if "not vulnerable" not in finding("secure_client_renego"):
    problems.append(f"client renegotiation: {finding('secure_client_renego')}")
bad = [f for f in findings.values() if f.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")
       and f["id"] != "BREACH"]  # BREACH is about HTTP compression of secrets in bodies
problems += [f"{f['id']} ({f['severity']}): {f['finding']}" for f in bad]
for fid, f in sorted(findings.items()):
    if f.get("severity") in ("OK", "LOW", "INFO", "WARN", "MEDIUM", "HIGH", "CRITICAL"):
        print(f"{fid:28} {f.get('severity', ''):8} {f.get('finding', '')}")
if problems:
    sys.exit("tls-scan: " + "; ".join(problems))
print("tls-scan: no SSLv2/SSLv3/TLS 1.0/1.1, secure suites only, no renegotiation, no known vulnerability")
PY
