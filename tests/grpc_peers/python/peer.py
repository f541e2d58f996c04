"""A Nebula Core external plugin in Python (grpcio), for the end-to-end tests.

Modes: ok (answers), slow (SyncUsers sleeps 30 s), fail (SyncUsers answers INTERNAL),
unhealthy (Health reports status "degraded").
"""

import argparse
import signal
import sys
import time
from concurrent import futures

import grpc
from google.protobuf import json_format, struct_pb2

import plugin_api_v1_pb2_grpc


class Peer(plugin_api_v1_pb2_grpc.PluginServiceServicer):
    def __init__(self, mode):
        self.mode = mode
        self.calls = 0

    def Health(self, request, context):
        answer = struct_pb2.Struct()
        answer.update(
            {
                "status": "degraded" if self.mode == "unhealthy" else "ok",
                "peer": "python",
                "mode": self.mode,
                "answer": 42,
                "ratio": 0.25,
                "nested": {"list": [1, 2.5, None, {"deep": True}]},
            }
        )
        return answer

    def SyncUsers(self, request, context):
        self.calls += 1
        metadata = dict(context.invocation_metadata())
        if self.mode == "slow":
            time.sleep(30)
        if self.mode == "fail":
            context.abort(grpc.StatusCode.INTERNAL, "python peer failure")
        received = json_format.MessageToDict(request)
        users = received.get("users") or []
        answer = struct_pb2.Struct()
        answer.update(
            {
                "status": "ok",
                "count": len(users),
                "calls": self.calls,
                "received": received,
                "token": metadata.get("x-nebula-token", ""),
            }
        )
        return answer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="ok", choices=["ok", "slow", "fail", "unhealthy"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    # Match the core's default body limit (8 MiB) instead of grpcio's 4 MiB.
    limit = 8 * 1024 * 1024
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
    )
    plugin_api_v1_pb2_grpc.add_PluginServiceServicer_to_server(Peer(args.mode), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"python peer ({args.mode}) listening on 127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
