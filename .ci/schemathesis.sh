#!/usr/bin/env bash
# Contract fuzzing (issue 14): schemathesis, pinned, in a virtualenv of its own, against the
# release binary on loopback with the installer token; every route of GET /openapi.json,
# bounded in examples and time. Fails on a 5xx, an undocumented status code, content type or
# header, an answer that does not match its schema, or a route that answers without the
# credentials its document says it needs. Prints schemathesis' summary.
#
# Not run: `positive_data_acceptance` and `negative_data_rejection`. A sync's 422 may come from
# the plugin rather than the request (csv_import, unconfigured here, refuses every sync as
# invalid input), and the server trims usernames before checking them, which a JSON Schema
# pattern cannot say exactly; both answers are documented, which is what the checks below hold.
set -euo pipefail
bin=$(realpath "$1")
venv=${SCHEMATHESIS_VENV:-$PWD/target/schemathesis-venv}
work=$(mktemp -d)
port=18010
token=schemathesis-token-0123456789abcdef0123456789
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
cd "$work"
env -i PATH="$PATH" HOME="$HOME" NEBULA__SERVER__BIND="127.0.0.1:$port" \
  NEBULA_INSTALLER_TOKEN="$token" RUST_LOG=warn "$bin" >out.log 2>err.log &
pid=$!
for _ in $(seq 1 100); do grep -q listening out.log 2>/dev/null && break; sleep 0.1; done
grep -q "listening on http://127.0.0.1:$port" out.log || { cat out.log err.log; exit 1; }
status=0
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --header "X-Nebula-Token: $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,ignored_auth,unsupported_method,missing_required_header \
  --max-examples 25 --max-time 45 --seed 14 --no-color --generation-database none \
  >st.log 2>&1 || status=$?
# The summary: from schemathesis' SUMMARY banner to the end.
sed -n '/= SUMMARY =/,$p' st.log
if [ "$status" -ne 0 ]; then
  cat st.log
  echo "schemathesis: failed (exit $status)"
  exit 1
fi
kill -0 "$pid" || { echo "the server died under the fuzzer"; cat err.log; exit 1; }
kill -TERM "$pid"
wait "$pid"
pid=
