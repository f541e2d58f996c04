"""A Nebula Core external plugin in Python (grpcio), for the end-to-end tests.

Modes: ok (answers), slow (SyncUsers sleeps 30 s), fail (SyncUsers answers INTERNAL),
unhealthy (Health reports status "degraded"), huge (Health answers a message of almost 8 MiB:
a 4 MiB key holding a list of about a million nulls).

Health reports the port the peer listens on; SyncUsers reports the encoded size of the
request it received (`request_bytes`) and echoes it (`received`).
"""

import argparse
import signal
import sys
import time
from concurrent import futures

import grpc
from google.protobuf import json_format, struct_pb2

import plugin_api_v1_pb2_grpc


# grpcio's own limit is 4 MiB; the core's default body limit is 8 MiB.
MAX_MESSAGE = 8 * 1024 * 1024


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload):
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def huge_answer(total):
    """{"status": "ok", "k…k" (half of `total`): [null, null, …]}, about `total` bytes encoded.

    Built on the wire format directly: adding a million values one by one takes seconds.
    """
    key = b"k" * (total // 2)
    null = _field(1, b"\x08\x00")  # ListValue.values += Value{null_value: NULL_VALUE}
    count = (total - len(key) - 64) // len(null)
    list_value = _field(6, null * count)  # Value.list_value
    entry = _field(1, key) + _field(2, list_value)  # map<string, Value> entry
    status = _field(1, b"status") + _field(2, _field(3, b"ok"))  # "status": "ok"
    data = _field(1, status) + _field(1, entry)  # Struct.fields
    assert len(data) <= total, len(data)
    return struct_pb2.Struct.FromString(data)


class Peer(plugin_api_v1_pb2_grpc.PluginServiceServicer):
    def __init__(self, mode):
        self.mode = mode
        self.calls = 0
        self.port = 0
        self.huge = huge_answer(MAX_MESSAGE - 1024) if mode == "huge" else None

    def Health(self, request, context):
        if self.huge is not None:
            return self.huge
        answer = struct_pb2.Struct()
        answer.update(
            {
                "status": "degraded" if self.mode == "unhealthy" else "ok",
                "peer": "python",
                "mode": self.mode,
                "port": self.port,
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
                "request_bytes": request.ByteSize(),
                "token": metadata.get("x-nebula-token", ""),
            }
        )
        return answer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--mode", default="ok", choices=["ok", "slow", "fail", "unhealthy", "huge"]
    )
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    # Match the core's default body limit (8 MiB) instead of grpcio's 4 MiB.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    peer = Peer(args.mode)
    plugin_api_v1_pb2_grpc.add_PluginServiceServicer_to_server(peer, server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    peer.port = port
    server.start()
    print(f"python peer ({args.mode}) listening on 127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
