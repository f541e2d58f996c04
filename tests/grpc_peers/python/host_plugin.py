"""A Nebula Core external plugin in Python (grpcio) that calls the core's host service back.

The end-to-end proof of SPEC §8 for a plugin in another language
(nebula-server/tests/host_service_e2e.rs). It serves nebula.plugin.v1.PluginService and, from
its SyncUsers, calls nebula.host.v1.HostService at the endpoint and with the token the core
sent in the call's metadata (`x-nebula-host-endpoint`, `x-nebula-host-token`).

Every PluginService call reads both metadata entries; the first host token the plugin ever saw
is remembered, to prove that the core refuses a stale one after a restart.

`SyncUsers` (with `"dry_run": false`) calls, with the *current* call's token:
GetSettings, SyncUser (the first user), SyncUsers (the others), UpsertIdentityRole
("py_role"), EmitEvent ("imported", {"count": n}), Log ("python plugin synced N users"); then
Log with the first token it ever saw (`LogWithFirstToken`), GetSettings without any token
(`NoToken`) and GetSettings with a made-up token (`WrongToken`). A dry run calls only
GetSettings, NoToken and WrongToken. Every gRPC error is caught and reported per call:

    {"status": "ok", "dry_run": false, "count": 3, "synced": 3,
     "host_endpoint": "unix:///…/data/host.sock", "host_token_length": 43,
     "token_same_as_first": true,
     "calls": {
       "GetSettings": {"code": "OK", "settings": {...}},
       "SyncUser": {"code": "OK", "username": "ann", "outcome": "created"},
       "SyncUsers": {"code": "OK", "results": [{"username", "outcome", "error", "code"}…]},
       "UpsertIdentityRole": {"code": "OK"}, "EmitEvent": {"code": "OK"}, "Log": {"code": "OK"},
       "LogWithFirstToken": {"code": "OK"}, "NoToken": {"code": "UNAUTHENTICATED", ...},
       "WrongToken": {"code": "UNAUTHENTICATED", ...}}}

A failed call reads {"code": "PERMISSION_DENIED", "details": "plugin 'pyhost' lacks scope
'users.write'", "error_kind": "missing_scope", "error_scope": "users.write"} (`error_kind` and
`error_scope` from the status's `x-nebula-error` metadata, when present). `N` and `n` count
the users the host reported `created` or `updated`.

Usage: host_plugin.py [--port N] [--token-env VAR]. Port 0 picks a free one; the first line
printed ends with the endpoint. With --token-env, every PluginService call must carry `$VAR` as
`x-nebula-token` (UNAUTHENTICATED otherwise).
"""

import argparse
import hmac
import os
import signal
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2

import host_api_v1_pb2
import host_api_v1_pb2_grpc
import plugin_api_v1_pb2_grpc

# grpcio's own limit is 4 MiB; the core's default body limit is 8 MiB.
MAX_MESSAGE = 8 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]
# Upper bound of one host call; never beyond what is left of the core's own deadline.
HOST_CALL_TIMEOUT = 10.0


def to_struct(obj):
    answer = struct_pb2.Struct()
    answer.update(obj)
    return answer


def host_channel(endpoint):
    """A channel to `unix:///abs/path` (a target grpcio takes as is) or `http://HOST:PORT`.

    On a unix socket grpcio (since 1.57) sends the percent-encoded socket path as `:authority`
    (grpc/grpc#38142), which the core's HTTP/2 server (h2) refuses as malformed: every call
    would fail with INTERNAL "Received RST_STREAM with error code 1". So name the authority.
    """
    if endpoint.startswith("http://"):
        target = endpoint[len("http://"):].rstrip("/")
        return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    options = CHANNEL_OPTIONS + [("grpc.default_authority", "localhost")]
    return grpc.insecure_channel(endpoint, options=options)


def call_timeout(context):
    remaining = context.time_remaining()
    if remaining is None:
        return HOST_CALL_TIMEOUT
    return max(0.2, min(HOST_CALL_TIMEOUT, remaining - 0.5))


def record(call):
    """Runs `call()` (which returns a dict of extra fields) and reports its status."""
    try:
        entry = {"code": "OK"}
        entry.update(call())
        return entry
    except grpc.RpcError as error:
        entry = {"code": error.code().name, "details": error.details() or ""}
        trailing = dict(error.trailing_metadata() or ())
        if "x-nebula-error" in trailing:
            entry["error_kind"] = trailing["x-nebula-error"]
        if "x-nebula-error-scope" in trailing:
            entry["error_scope"] = trailing["x-nebula-error-scope"]
        return entry
    except Exception as error:  # a bug on this side: reported, never a failed PluginService call
        return {"code": "CLIENT_ERROR", "details": repr(error)}


def sync_user_request(user):
    request = host_api_v1_pb2.SyncUserRequest(
        username=user["username"],
        db_name=user.get("db_name") or "",
        role_tag=user.get("role_tag") or "",
        is_active=bool(user.get("is_active", True)),
    )
    if user.get("email") is not None:
        request.email = user["email"]
    return request


class HostPlugin(plugin_api_v1_pb2_grpc.PluginServiceServicer):
    def __init__(self, token):
        self.token = token
        self.lock = threading.Lock()
        self.first_host_token = None

    def _enter(self, context):
        """Checks x-nebula-token; returns (host endpoint, host token) of this call."""
        metadata = dict(context.invocation_metadata())
        if self.token:
            sent = metadata.get("x-nebula-token", "")
            if not hmac.compare_digest(sent.encode(), self.token.encode()):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong x-nebula-token")
        endpoint = metadata.get("x-nebula-host-endpoint", "")
        token = metadata.get("x-nebula-host-token", "")
        with self.lock:
            if self.first_host_token is None and token:
                self.first_host_token = token
        return endpoint, token

    def Health(self, request, context):
        self._enter(context)
        return to_struct({"status": "ok"})

    def SyncUsers(self, request, context):
        endpoint, token = self._enter(context)
        body = json_format.MessageToDict(request)  # numbers arrive as floats
        dry_run = bool(body.get("dry_run", True))
        users = body.get("users") or []
        limit = int(body.get("limit") or 0)
        if limit:
            users = users[:limit]
        with self.lock:
            first = self.first_host_token
        answer = {
            "status": "ok",
            "dry_run": dry_run,
            "count": len(users),
            "host_endpoint": endpoint,
            "host_token_length": len(token),
            "token_same_as_first": bool(token) and token == first,
        }
        if not endpoint:
            answer["status"] = "no_host_endpoint"
            return to_struct(answer)

        timeout = call_timeout(context)
        calls = {}
        synced = 0
        with host_channel(endpoint) as channel:
            host = host_api_v1_pb2_grpc.HostServiceStub(channel)
            auth = (("x-nebula-host-token", token),)

            def settings(metadata):
                reply = host.GetSettings(empty_pb2.Empty(), metadata=metadata, timeout=timeout)
                return {"settings": json_format.MessageToDict(reply)}

            calls["GetSettings"] = record(lambda: settings(auth))
            if not dry_run:
                if users:
                    first_user = users[0]

                    def sync_one():
                        reply = host.SyncUser(
                            sync_user_request(first_user), metadata=auth, timeout=timeout
                        )
                        return {"username": first_user["username"], "outcome": reply.outcome}

                    calls["SyncUser"] = record(sync_one)
                    if calls["SyncUser"].get("outcome") in ("created", "updated"):
                        synced += 1
                if users[1:]:

                    def sync_many():
                        reply = host.SyncUsers(
                            host_api_v1_pb2.SyncUsersRequest(
                                users=[sync_user_request(u) for u in users[1:]]
                            ),
                            metadata=auth,
                            timeout=timeout,
                        )
                        return {
                            "results": [
                                {
                                    "username": r.username,
                                    "outcome": r.outcome,
                                    "error": r.error,
                                    "code": r.code,
                                }
                                for r in reply.results
                            ]
                        }

                    calls["SyncUsers"] = record(sync_many)
                    for result in calls["SyncUsers"].get("results", []):
                        if result["outcome"] in ("created", "updated"):
                            synced += 1

                def upsert_role():
                    host.UpsertIdentityRole(
                        host_api_v1_pb2.Role(
                            name="py_role", description="from python", is_staff=False
                        ),
                        metadata=auth,
                        timeout=timeout,
                    )
                    return {}

                calls["UpsertIdentityRole"] = record(upsert_role)

                def emit():
                    host.EmitEvent(
                        host_api_v1_pb2.EmitEventRequest(
                            name="imported", payload=to_struct({"count": synced})
                        ),
                        metadata=auth,
                        timeout=timeout,
                    )
                    return {}

                calls["EmitEvent"] = record(emit)

                def log(metadata, message):
                    host.Log(
                        host_api_v1_pb2.LogRequest(level="info", message=message),
                        metadata=metadata,
                        timeout=timeout,
                    )
                    return {}

                calls["Log"] = record(
                    lambda: log(auth, f"python plugin synced {synced} users")
                )
                calls["LogWithFirstToken"] = record(
                    lambda: log(
                        (("x-nebula-host-token", first or ""),),
                        "python plugin: a call with the first host token it saw",
                    )
                )
            calls["NoToken"] = record(lambda: settings(()))
            calls["WrongToken"] = record(
                lambda: settings((("x-nebula-host-token", "not-a-token-" + "0" * 40),))
            )
        answer["synced"] = synced
        answer["calls"] = calls
        return to_struct(answer)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--token-env",
        default=None,
        help="require $VAR as x-nebula-token on every PluginService call",
    )
    args = parser.parse_args()
    token = ""
    if args.token_env is not None:
        token = os.environ.get(args.token_env, "")
        if not token:
            print(f"--token-env {args.token_env}: the variable is unset or empty", file=sys.stderr)
            return 2
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=CHANNEL_OPTIONS)
    plugin_api_v1_pb2_grpc.add_PluginServiceServicer_to_server(HostPlugin(token), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"python host plugin listening on 127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
