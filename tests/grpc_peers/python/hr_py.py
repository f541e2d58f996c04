"""hr_py: syncs users through the core's host service (nebula.host.v1.HostService).

The Python example of docs/EXTERNAL_PLUGINS.md §14 (quoted there; run by
nebula-server/tests/host_service_e2e.rs). Usage: hr_py.py [127.0.0.1:PORT]
"""
import signal
import sys
from concurrent import futures

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2

import host_api_v1_pb2 as host_pb
import host_api_v1_pb2_grpc as host_grpc
import plugin_api_v1_pb2_grpc

MAX_MESSAGE = 8 * 1024 * 1024  # the core's server.max_body_bytes
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]


def to_struct(obj):
    answer = struct_pb2.Struct()
    answer.update(obj)
    return answer


def host_channel(endpoint):
    if endpoint.startswith("http://"):  # grpcio wants "host:port"
        return grpc.insecure_channel(endpoint[len("http://"):], options=OPTIONS)
    # "unix:///abs/path" as it is, but name the authority: grpcio would send the
    # percent-encoded socket path, which the core refuses (RST_STREAM, see below).
    return grpc.insecure_channel(
        endpoint, options=OPTIONS + [("grpc.default_authority", "localhost")]
    )


class HrPy(plugin_api_v1_pb2_grpc.PluginServiceServicer):
    def Health(self, request, context):
        return to_struct({"status": "ok"})

    def SyncUsers(self, request, context):
        metadata = dict(context.invocation_metadata())
        endpoint = metadata.get("x-nebula-host-endpoint")
        auth = (("x-nebula-host-token", metadata.get("x-nebula-host-token", "")),)
        if not endpoint:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no host service endpoint")
        body = json_format.MessageToDict(request)
        users = body.get("users") or []
        if body.get("dry_run", True):
            return to_struct({"status": "dry_run", "count": len(users)})
        # Leave the core some of its own deadline to receive the answer.
        timeout = max(0.5, (context.time_remaining() or 10.0) - 0.5)
        try:
            with host_channel(endpoint) as channel:
                host = host_grpc.HostServiceStub(channel)
                # [plugins.settings.hr_py] (secrets included); no scope needed. Never log it.
                settings = json_format.MessageToDict(
                    host.GetSettings(empty_pb2.Empty(), metadata=auth, timeout=timeout)
                )
                batch = host_pb.SyncUsersRequest()
                for u in users:
                    item = batch.users.add(
                        username=u["username"],
                        # the tenant configured for this plugin, else the request's
                        db_name=settings.get("db_name") or u.get("db_name", ""),
                        role_tag=u.get("role_tag") or "",
                        is_active=bool(u.get("is_active", True)),
                    )
                    if u.get("email") is not None:
                        item.email = u["email"]
                # users.write + identity_tags.write; one user's failure never fails the call.
                reply = host.SyncUsers(batch, metadata=auth, timeout=timeout)
                synced = sum(1 for r in reply.results if r.outcome)
                host.Log(
                    host_pb.LogRequest(level="info", message=f"hr_py synced {synced} users"),
                    metadata=auth,
                    timeout=timeout,
                )
        except grpc.RpcError as error:
            # UNAUTHENTICATED: no or a stale token; PERMISSION_DENIED names the missing scope.
            # Passed on, the admin sees it in the 502 (422 for INVALID_ARGUMENT).
            context.abort(error.code(), f"host service: {error.details()}")
        items = [
            {"username": r.username, "outcome": r.outcome or "failed", "error": r.error}
            for r in reply.results
        ]
        failed = len(items) - synced
        return to_struct(
            {"status": "ok" if not failed else "partial", "count": len(items),
             "synced": synced, "failed": failed, "items": items}
        )


def main():
    listen = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50052"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTIONS)
    plugin_api_v1_pb2_grpc.add_PluginServiceServicer_to_server(HrPy(), server)
    port = server.add_insecure_port(listen)  # port 0 picks one
    server.start()
    print(f"hr_py listening on 127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


if __name__ == "__main__":
    main()
