#!/usr/bin/env bash
# Starts the release binary the way the README says (no config, no environment) in a scratch
# directory, runs the seed's curl examples, checks sample_sync, csv_import and ldap_sync are linked
# (csv_import and ldap_sync unconfigured: listed, health ok with "configured": false), stops it
# with SIGTERM.
set -euo pipefail
bin=$(realpath "$1")
work=$(mktemp -d)
port=18000
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
env -i PATH="$PATH" HOME="$HOME" NEBULA__SERVER__BIND="127.0.0.1:$port" "$bin" >out.log 2>err.log &
pid=$!
for _ in $(seq 1 100); do grep -q listening out.log 2>/dev/null && break; sleep 0.1; done
grep -q "listening on http://127.0.0.1:$port" out.log || { cat out.log err.log; exit 1; }
NEBULA_INSTALLER_TOKEN=$(cat data/installer_token)
list=$(curl -sf -H "X-Nebula-Token: $NEBULA_INSTALLER_TOKEN" "http://127.0.0.1:$port/system/plugins")
dry=$(curl -sf -X POST -H "Content-Type: application/json" -H "X-Nebula-Token: $NEBULA_INSTALLER_TOKEN" \
  -d '{"dry_run":true}' "http://127.0.0.1:$port/system/plugins/sample_sync/sync-users")
csv_health=$(curl -sf -H "X-Nebula-Token: $NEBULA_INSTALLER_TOKEN" "http://127.0.0.1:$port/system/plugins/csv_import/health")
ldap_health=$(curl -sf -H "X-Nebula-Token: $NEBULA_INSTALLER_TOKEN" "http://127.0.0.1:$port/system/plugins/ldap_sync/health")
python3 - "$list" "$dry" "$csv_health" "$ldap_health" <<'PY'
import json, sys
plugins = json.loads(sys.argv[1])["plugins"]
for name in ("sample_sync", "csv_import", "ldap_sync"):
    found = [p for p in plugins if p["name"] == name]
    assert found and found[0]["source"] == "in_process", (name, plugins)
result = json.loads(sys.argv[2])["result"]
assert result["status"] == "dry_run" and result["count"] == 2, result
for answer in sys.argv[3:5]:
    health = json.loads(answer)["health"]
    assert health["status"] == "ok" and health["configured"] is False, health
PY
if grep -q "$NEBULA_INSTALLER_TOKEN" err.log out.log; then echo "the token was logged"; exit 1; fi
kill -TERM "$pid"
wait "$pid"
pid=
echo "smoke: 1 passed, 0 failed"
