"""A plain gRPC client for nebula.plugin.v1.PluginService: calls Health and SyncUsers."""

import argparse
import json
import sys

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2

import plugin_api_v1_pb2_grpc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint", help="host:port or unix:///path")
    parser.add_argument("--token", default="")
    parser.add_argument("--request", default='{"dry_run": true}', help="SyncUsers body (JSON)")
    args = parser.parse_args()
    metadata = [("x-nebula-token", args.token)] if args.token else []
    # grpc-core sends the socket path as :authority on unix sockets, which strict HTTP/2
    # servers (hyper, under tonic) refuse; name a plain authority instead.
    options = [("grpc.default_authority", "localhost")] if args.endpoint.startswith("unix:") else []
    with grpc.insecure_channel(args.endpoint, options=options) as channel:
        stub = plugin_api_v1_pb2_grpc.PluginServiceStub(channel)
        try:
            health = stub.Health(empty_pb2.Empty(), metadata=metadata, timeout=10)
            request = struct_pb2.Struct()
            request.update(json.loads(args.request))
            sync = stub.SyncUsers(request, metadata=metadata, timeout=10)
        except grpc.RpcError as e:
            print(json.dumps({"error": e.code().name, "detail": e.details()}))
            return 1
    print(json.dumps({"health": json_format.MessageToDict(health)}))
    print(json.dumps({"sync": json_format.MessageToDict(sync)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
