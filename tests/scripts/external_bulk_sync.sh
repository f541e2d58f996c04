#!/bin/bash
# Times a real sync of 10,000 new users, then of the same users again (updates), through the
# linked sample_sync and through the same crate served out of process (`serve-plugin`, which
# writes back through the host service's bulk SyncUsers), on one release server and one
# SQLite file. Prints one line per call: round, plugin, HTTP status, seconds, counts.
#
#   cargo build --release -p nebula-server && tests/scripts/external_bulk_sync.sh [RUNS]
#
# Figures: docs/EXTERNAL_PLUGINS.md §14 "Measured". Needs curl and python3.
set -euo pipefail
BIN=${NEBULA_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/nebula-server}
RUNS=${1:-1}
USERS=10000

one_run() {
    local work peer server base token
    work=$(mktemp -d)
    cd "$work"
    "$BIN" serve-plugin sample_sync --listen "unix://$work/sample.sock" >peer.out 2>peer.err &
    peer=$!
    for _ in $(seq 100); do [ -S sample.sock ] && break; sleep 0.05; done
    cat >nebula.toml <<TOML
[[plugins.external]]
name = "sample_remote"
endpoint = "unix://$work/sample.sock"
scopes = ["users.read", "users.write", "roles.read", "roles.write",
          "identity_tags.read", "identity_tags.write", "events.emit"]
TOML
    NEBULA__SERVER__BIND=127.0.0.1:0 "$BIN" --config nebula.toml >server.out 2>server.err &
    server=$!
    for _ in $(seq 100); do grep -q listening server.out 2>/dev/null && break; sleep 0.05; done
    base=$(grep -o 'http://[0-9.:]*' server.out | head -1)
    token=$(cat data/installer_token)
    for tenant in linked remote; do
        python3 -c "
import json, sys
print(json.dumps({'dry_run': False, 'users': [
    {'username': f'user{i:05}', 'db_name': sys.argv[1], 'role_tag': 'staff',
     'email': f'user{i}@example.com', 'is_active': True} for i in range($USERS)]}))
" "$tenant" >"body-$tenant.json"
    done
    for round in create update; do
        for pair in sample_sync:linked sample_remote:remote; do
            local name=${pair%%:*} tenant=${pair##*:} took
            took=$(curl -s -o answer.json -w "%{http_code} %{time_total}" -X POST \
                -H "X-Nebula-Token: $token" -H "Content-Type: application/json" \
                --data-binary "@body-$tenant.json" "$base/system/plugins/$name/sync-users")
            echo "$round $name: $took $(python3 -c "
import json; r = json.load(open('answer.json'))['result']
print({k: r[k] for k in ('created', 'updated', 'failed')})")"
        done
    done
    kill "$server" "$peer"
    wait "$server" "$peer" 2>/dev/null || true
    cd / && rm -rf "$work"
}

for _ in $(seq "$RUNS"); do one_run; done
