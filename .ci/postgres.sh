#!/usr/bin/env bash
# A PostgreSQL server on loopback for the tests (issue 12), on a machine that may have none:
# installs Debian's `postgresql` when absent, creates (once) and starts a cluster of its own
# on 127.0.0.1:${NEBULA_PG_PORT:-54329}, trusting loopback connections, with a superuser role
# `nebula`. Prints the URL the tests read, for example:
#
#   eval "$(.ci/postgres.sh)"    # sets NEBULA_TEST_POSTGRES_URL
#
# `.ci/postgres.sh stop` stops the cluster (`.ci/run` does, if it started it). Each test run creates and drops its own database on
# it. A developer runs the same script. Needs root (apt-get, and the `postgres` system user).
set -euo pipefail
PORT=${NEBULA_PG_PORT:-54329}
CLUSTER=nebula_test

if ! command -v pg_createcluster >/dev/null; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
# The cluster's own version when it exists (an upgrade may have added a newer one), else the
# newest installed.
VERSION=$(pg_lsclusters -h | awk -v c="$CLUSTER" '$2 == c {print $1}')
VERSION=${VERSION:-$(ls /usr/lib/postgresql | sort -V | tail -1)}

if [ "${1:-start}" = stop ]; then
  pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" stop >&2 || true
  exit 0
fi

if ! pg_lsclusters -h | awk '{print $2}' | grep -qx "$CLUSTER"; then
  pg_createcluster "$VERSION" "$CLUSTER" --port "$PORT" -- --auth-local=peer --auth-host=scram-sha-256 >&2
fi
conf=/etc/postgresql/$VERSION/$CLUSTER
# Each step below checks before it writes, so a run that died half-way is completed by the
# next one. Loopback only; the role `nebula` without a password (trust): a throw-away cluster
# for tests, never one holding data (any local user may connect as `nebula`).
grep -qx "listen_addresses = '127.0.0.1'" "$conf/postgresql.conf" \
  || echo "listen_addresses = '127.0.0.1'" >>"$conf/postgresql.conf"
if ! grep -qx 'host all nebula 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
  printf 'host all nebula 127.0.0.1/32 trust\n' | cat - "$conf/pg_hba.conf" >"$conf/pg_hba.conf.new"
  mv "$conf/pg_hba.conf.new" "$conf/pg_hba.conf"
  chown postgres:postgres "$conf/pg_hba.conf"
  pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" reload >&2 2>/dev/null || true
fi
# A test cluster: durability is traded for speed (each test creates a database), and there are
# enough connections for two servers' pools and the tests' own; no TLS on loopback. Rewritten
# on every run; a running cluster whose settings changed is restarted.
online() { pg_lsclusters -h | awk -v c="$CLUSTER" '$2 == c {print $4}' | grep -qx online; }
was_online=0
online && was_online=1
settings=/etc/postgresql/$VERSION/$CLUSTER/conf.d/nebula-test.conf
wanted=$'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\nssl = off'
if [ "$(cat "$settings" 2>/dev/null)" != "$wanted" ]; then
  printf '%s\n' "$wanted" >"$settings"
  chown postgres:postgres "$settings"
  pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" stop >&2 2>/dev/null || true
fi
if ! online; then
  pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" start >&2
fi
started=$((1 - was_online))
for _ in $(seq 50); do
  su postgres -c "psql -p $PORT -tAc 'select 1'" >/dev/null 2>&1 && break
  sleep 0.2
done
su postgres -c "psql -p $PORT -tAc \"select 1 from pg_roles where rolname = 'nebula'\"" | grep -q 1 \
  || su postgres -c "psql -p $PORT -qc 'create role nebula login superuser'" >&2
echo "export NEBULA_TEST_POSTGRES_URL=postgres://nebula@127.0.0.1:$PORT/postgres"
# Whether this call started the cluster (so that only such a caller stops it again).
echo "export NEBULA_TEST_POSTGRES_STARTED=$started"
