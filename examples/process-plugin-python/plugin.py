"""hello_py: a Nebula Core process plugin (SPEC §9) in Python.

The core starts it from the plugins directory (working directory = this directory, stdin
closed, a clean environment) and tells it, in the environment:

  NEBULA_PLUGIN_NAME    its name (the directory's)
  NEBULA_PLUGIN_SOCKET  the unix socket path to serve nebula.plugin.v1.PluginService on
  NEBULA_PLUGIN_TOKEN   the token every call from the core carries as `x-nebula-token`
  NEBULA_HOST_ENDPOINT  the core's host service (`unix:///…/host.sock` or `http://…`)
  NEBULA_HOST_TOKEN     this instance's host token (`x-nebula-host-token`)
  NEBULA_PLUGIN_MAX_MESSAGE_BYTES  the largest message either way (the core's limit)

What it prints on stdout lands in the plugin's log ring (info; stderr: warn).
Stubs: generated from plugin_api_v1.proto and host_api_v1.proto (see README.md).
"""
import hmac
import os
import signal
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import json_format, struct_pb2

import host_api_v1_pb2 as host_pb
import host_api_v1_pb2_grpc as host_grpc
import plugin_api_v1_pb2_grpc

NAME = os.environ.get("NEBULA_PLUGIN_NAME", "hello_py")
SOCKET = os.environ.get("NEBULA_PLUGIN_SOCKET", "")
TOKEN = os.environ.get("NEBULA_PLUGIN_TOKEN", "")
HOST_ENDPOINT = os.environ.get("NEBULA_HOST_ENDPOINT", "")
HOST_TOKEN = os.environ.get("NEBULA_HOST_TOKEN", "")

# The core's server.max_body_bytes, so both sides accept the same messages.
MAX_MESSAGE = int(os.environ.get("NEBULA_PLUGIN_MAX_MESSAGE_BYTES") or 8 * 1024 * 1024)
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]

# Set once the core's first Health call was answered: the plugin is ready.
READY = threading.Event()
# What the memory test hook keeps.
HOG = []


def to_struct(obj):
    answer = struct_pb2.Struct()
    answer.update(obj)
    return answer


def host_channel(endpoint):
    if endpoint.startswith("http://"):  # grpcio wants "host:port"
        return grpc.insecure_channel(endpoint[len("http://"):], options=OPTIONS)
    # "unix:///abs/path" as it is, but name the authority: grpcio would send the
    # percent-encoded socket path, which the core refuses (RST_STREAM).
    return grpc.insecure_channel(
        endpoint, options=OPTIONS + [("grpc.default_authority", "localhost")]
    )


class HelloPy(plugin_api_v1_pb2_grpc.PluginServiceServicer):
    def _check_token(self, context):
        sent = dict(context.invocation_metadata()).get("x-nebula-token", "")
        if not TOKEN or not hmac.compare_digest(sent.encode(), TOKEN.encode()):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong x-nebula-token")

    def Health(self, request, context):
        self._check_token(context)
        READY.set()
        return to_struct({"status": "ok"})

    def SyncUsers(self, request, context):
        self._check_token(context)
        body = json_format.MessageToDict(request)  # numbers arrive as floats
        users = body.get("users") or []
        limit = int(body.get("limit") or 0)
        if limit:
            users = users[:limit]
        if body.get("dry_run", True):
            items = [
                {
                    "action": "would_sync",
                    "username": u["username"],
                    "db_name": u.get("db_name") or "system.db",
                    "role_tag": u.get("role_tag") or "user",
                }
                for u in users
            ]
            return to_struct({"status": "dry_run", "count": len(items), "items": items})

        # The host service of this instance; the metadata of the call says the same.
        metadata = dict(context.invocation_metadata())
        endpoint = HOST_ENDPOINT or metadata.get("x-nebula-host-endpoint", "")
        token = HOST_TOKEN or metadata.get("x-nebula-host-token", "")
        if not endpoint:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no host service endpoint")
        auth = (("x-nebula-host-token", token),)
        # Leave the core some of its own deadline to receive the answer.
        timeout = max(0.5, (context.time_remaining() or 10.0) - 0.5)
        batch = host_pb.SyncUsersRequest()
        for u in users:
            item = batch.users.add(
                username=u["username"],
                db_name=u.get("db_name") or "system.db",  # refused for writes, per item
                role_tag=u.get("role_tag") or "user",
                is_active=bool(u.get("is_active", True)),
            )
            if u.get("email") is not None:
                item.email = u["email"]
        try:
            with host_channel(endpoint) as channel:
                host = host_grpc.HostServiceStub(channel)
                # users.write + identity_tags.write; one user's failure never fails the call.
                reply = host.SyncUsers(batch, metadata=auth, timeout=timeout)
                created = sum(1 for r in reply.results if r.outcome == "created")
                updated = sum(1 for r in reply.results if r.outcome == "updated")
                host.Log(
                    host_pb.LogRequest(
                        level="info",
                        message=f"{NAME} synced {created + updated} of {len(users)} users",
                    ),
                    metadata=auth,
                    timeout=timeout,
                )
        except grpc.RpcError as error:
            # UNAUTHENTICATED: no or a stale token; PERMISSION_DENIED names the missing scope.
            context.abort(error.code(), f"host service: {error.details()}")
        items = []
        for u, r in zip(users, reply.results):
            item = {
                "username": r.username,
                "db_name": u.get("db_name") or "system.db",
                "role_tag": u.get("role_tag") or "user",
                "action": r.outcome or "failed",
            }
            if not r.outcome:
                item["error"] = r.error
                item["code"] = r.code
            items.append(item)
        failed = len(items) - created - updated
        print(f"{NAME}: sync of {len(items)} users: {created} created, {updated} updated, "
              f"{failed} failed", flush=True)
        return to_struct(
            {"status": "ok" if not failed else "partial", "count": len(items),
             "created": created, "updated": updated, "failed": failed, "items": items}
        )


def test_hooks():
    """For testing the core's limits only: once ready, use memory or CPU on request."""
    allocate_mb = int(os.environ.get("HELLO_PY_ALLOCATE_MB", "0") or 0)
    spin = os.environ.get("HELLO_PY_SPIN", "") == "1"
    if not allocate_mb and not spin:
        return

    def run():
        READY.wait()
        if allocate_mb:
            print(f"{NAME}: allocating {allocate_mb} MiB", flush=True)
            HOG.append(b"x" * (allocate_mb * 1024 * 1024))  # filled, so resident
        if spin:
            print(f"{NAME}: spinning", flush=True)
            while True:
                pass

    threading.Thread(target=run, daemon=True).start()


def main():
    if not SOCKET:
        sys.exit("NEBULA_PLUGIN_SOCKET is not set: hello_py is started by Nebula Core")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTIONS)
    plugin_api_v1_pb2_grpc.add_PluginServiceServicer_to_server(HelloPy(), server)
    server.add_insecure_port("unix:" + SOCKET)
    server.start()
    print(f"{NAME} serving on unix:{SOCKET} (pid {os.getpid()})", flush=True)
    # SIGTERM from the core: finish the calls in flight (at most 2 s), then exit 0.
    signal.signal(signal.SIGTERM, lambda *_: server.stop(2))
    test_hooks()
    server.wait_for_termination()
    print(f"{NAME} stopped", flush=True)


if __name__ == "__main__":
    main()
