#!/bin/bash
# One instance against two, on one database (docs/SCALING.md "Measured"). For each layout it
# starts release servers on loopback over a fresh database and measures:
#
#   reads   wrk, 10 s, 32 connections in all, on GET /system/directory/users (100 users
#           a page): requests/s summed over the instances (two instances: 16 connections each);
#   writes  two real syncs of 10,000 new users each, at once, through two plugins (sample_sync
#           linked, sample_twin the same code as a process plugin): through one instance, or
#           one through each instance; users/s over both, from the first request to the last
#           answer.
#
#   cargo build --release -p nebula-server && tests/scripts/scaling.sh postgres|sqlite [RUNS]
#
# postgres needs NEBULA_TEST_POSTGRES_URL (eval "$(.ci/postgres.sh)"); each run creates and
# drops its own database. Needs curl, python3 and wrk (Debian's package; installed when
# absent). Everything runs on this machine's cores: two instances share them with wrk and the
# database, so this measures contention on one host, not the scale-out of several hosts.
set -euo pipefail
export PGOPTIONS="-c client_min_messages=warning"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${NEBULA_BIN:-$ROOT/target/release/nebula-server}
TWIN=${NEBULA_TWIN_BIN:-$ROOT/target/release/sample-sync-process}
BACKEND=${1:?postgres or sqlite}
RUNS=${2:-1}
USERS=10000
TOKEN=scaling-installer-token-0123456789abcdef
SECRET=scaling-session-secret-0123456789abcdef
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }; }

fresh_database() { # name -> url
    if [ "$BACKEND" = postgres ]; then
        psql "$NEBULA_TEST_POSTGRES_URL" -qAt -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >&2
        echo "${NEBULA_TEST_POSTGRES_URL%/*}/$1"
    else
        echo "sqlite://$work/shared/nebula.db"
    fi
}

start_instance() { # dir url -> base URL on stdout; pid in $dir/pid
    local dir=$1 url=$2
    mkdir -p "$dir"
    (cd "$dir" && NEBULA__SERVER__BIND=127.0.0.1:0 NEBULA__DATABASE__URL=$url \
        NEBULA__SERVER__RUNTIME_DIR=$dir/rt NEBULA_INSTALLER_TOKEN=$TOKEN \
        NEBULA_SESSION_SECRET=$SECRET RUST_LOG=warn \
        exec "$BIN" --config "$work/shared/nebula.toml" >server.out 2>server.err) &
    echo $! >"$dir/pid"
    for _ in $(seq 200); do grep -q listening "$dir/server.out" 2>/dev/null && break; sleep 0.05; done
    grep -o 'http://[0-9.:]*' "$dir/server.out" | head -1
}

sync() { # base plugin tenant -> "seconds"
    curl -s -o "$work/answer-$2.json" -w "%{time_total}" -X POST -H "X-Nebula-Token: $TOKEN" \
        -H "Content-Type: application/json" --data-binary "@$work/body-$3.json" \
        "$1/system/plugins/$2/sync-users"
}

reads() { # base connections -> requests/s
    wrk -t1 -c"$2" -d10s -H "X-Nebula-Token: $TOKEN" \
        "$1/system/directory/users?db_name=t1&limit=100" | awk '/Requests\/sec/ {print $2}'
}

one_layout() { # instances(1|2) -> prints a line
    local n=$1 url a b started ended r1 r2
    work=$(mktemp -d)
    mkdir -p "$work/shared/plugins/sample_twin"
    python3 - "$ROOT/sample-sync/plugin.json" "$TWIN" >"$work/shared/plugins/sample_twin/plugin.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); m["name"] = "sample_twin"; m["runtime"] = {"command": [sys.argv[2]]}
print(json.dumps(m))
PY
    printf '[plugins]\nhealth_interval_sec = 3600\ndir = "%s"\ncall_timeout_sec = 60\n' \
        "$work/shared/plugins" >"$work/shared/nebula.toml"
    for t in t1 t2; do
        python3 -c "
import json, sys
print(json.dumps({'dry_run': False, 'users': [
    {'username': f'user{i:05}', 'db_name': sys.argv[1], 'role_tag': 'staff',
     'email': f'user{i}@example.com'} for i in range($USERS)]}))" "$t" >"$work/body-$t.json"
    done
    url=$(fresh_database nebula_scaling)
    a=$(start_instance "$work/a" "$url")
    b=$a
    [ "$n" = 2 ] && b=$(start_instance "$work/b" "$url")
    started=$(date +%s.%N)
    sync "$a" sample_sync t1 >/dev/null &
    local s1=$!
    sync "$b" sample_twin t2 >/dev/null &
    local s2=$!
    wait $s1 $s2
    ended=$(date +%s.%N)
    for p in sample_sync sample_twin; do
        python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['result']; assert r['created']==$USERS and r['failed']==0, r" \
            "$work/answer-$p.json"
    done
    if [ "$n" = 1 ]; then
        r1=$(reads "$a" 32); r2=0
    else
        reads "$a" 16 >"$work/r1" &
        local w1=$!
        reads "$b" 16 >"$work/r2" &
        local w2=$!
        wait $w1 $w2
        r1=$(cat "$work/r1"); r2=$(cat "$work/r2")
    fi
    python3 -c "
import sys
n, s, e, r1, r2, users = sys.argv[1:7]
print(f'{sys.argv[7]:8} {n} instance(s): writes {2*int(users)/(float(e)-float(s)):8.0f} users/s ({float(e)-float(s):.2f} s for 2 x {users}), reads {float(r1)+float(r2):8.0f} req/s')
" "$n" "$started" "$ended" "$r1" "$r2" "$USERS" "$BACKEND"
    for d in a b; do [ -f "$work/$d/pid" ] && kill "$(cat "$work/$d/pid")" 2>/dev/null || true; done
    for d in a b; do [ -f "$work/$d/pid" ] && while kill -0 "$(cat "$work/$d/pid")" 2>/dev/null; do sleep 0.05; done; done
    if [ "$BACKEND" = postgres ]; then
        psql "$NEBULA_TEST_POSTGRES_URL" -qAt -c "DROP DATABASE nebula_scaling WITH (FORCE)"
    fi
    rm -rf "$work"
}

for _ in $(seq "$RUNS"); do
    one_layout 1
    one_layout 2
done
