#!/bin/bash
# The three ways to run one plugin, side by side on one release server: sample_sync linked,
# as a process plugin (the sample-sync-process binary in plugins.dir) and as an external
# plugin (serve-plugin on a unix socket). Prints, for each: the time a restart takes (the
# old instance stopped, the new one started and ready) and the latency of a health call
# through HTTP (p50/p99 over sequential keep-alive requests).
#
#   cargo build --release -p nebula-server && tests/scripts/plugin_runtimes.sh [CALLS]
#
# Figures: docs/PLUGIN_AUTHOR_GUIDE.md ("Three ways to run a plugin") and docs/OPERATIONS.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${NEBULA_BIN:-$ROOT/target/release/nebula-server}
PLUGIN_BIN=${NEBULA_PLUGIN_BIN:-$ROOT/target/release/sample-sync-process}
CALLS=${1:-2000}
SCOPES='["users.read", "users.write", "roles.read", "roles.write", "identity_tags.read", "identity_tags.write", "events.emit"]'

work=$(mktemp -d)
cleanup() { kill "${server:-}" "${peer:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
mkdir -p plugins/sample_process
cat >plugins/sample_process/plugin.json <<JSON
{"name": "sample_process", "version": "0.1.0", "description": "sample_sync as a process plugin",
 "api_version": "v1", "scopes": $SCOPES, "runtime": {"command": ["$PLUGIN_BIN"]}}
JSON
"$BIN" serve-plugin sample_sync --listen "unix://$work/external.sock" >peer.out 2>peer.err &
peer=$!
for _ in $(seq 100); do [ -S external.sock ] && break; sleep 0.05; done
cat >nebula.toml <<TOML
[plugins]
dir = "plugins"
health_interval_sec = 3600
[[plugins.external]]
name = "sample_external"
endpoint = "unix://$work/external.sock"
scopes = $SCOPES
TOML
NEBULA__SERVER__BIND=127.0.0.1:0 "$BIN" --config nebula.toml >server.out 2>server.err &
server=$!
for _ in $(seq 100); do grep -q listening server.out 2>/dev/null && break; sleep 0.05; done
base=$(grep -o 'http://[0-9.:]*' server.out | head -1)
python3 - "$base" "$(cat data/installer_token)" "$CALLS" <<'PY'
import http.client, json, sys, time
base, token, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
host, port = base[len("http://"):].split(":")
conn = http.client.HTTPConnection(host, int(port))
def call(method, path, body=None):
    headers = {"X-Nebula-Token": token, "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    assert answer.status == 200, (path, answer.status, data)
    return json.loads(data)
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]
print(f"{'plugin':18} {'restart p50':>12} {'health p50':>11} {'health p99':>11}")
for name in ("sample_sync", "sample_process", "sample_external"):
    call("GET", f"/system/plugins/{name}/health")
    restarts = []
    for _ in range(10):
        t = time.perf_counter()
        call("POST", f"/system/plugins/{name}/action", {"action": "restart"})
        call("GET", f"/system/plugins/{name}/health")
        restarts.append(time.perf_counter() - t)
    for _ in range(200):  # warm-up
        call("GET", f"/system/plugins/{name}/health")
    lat = []
    for _ in range(calls):
        t = time.perf_counter()
        call("GET", f"/system/plugins/{name}/health")
        lat.append(time.perf_counter() - t)
    print(f"{name:18} {pct(restarts, .5)*1000:10.1f}ms {pct(lat, .5)*1000:9.3f}ms {pct(lat, .99)*1000:9.3f}ms")
PY
