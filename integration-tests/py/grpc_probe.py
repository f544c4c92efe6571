"""A gRPC client this project did not write (Python grpcio), used like grpcurl:
list a daemon's services by server reflection, ask grpc.health.v1, and call
GetStatus with request/response types learned from reflection alone.

Usage: grpc_probe.py UNIX_SOCKET_PATH   -> prints one JSON object on stdout.
"""
import json
import sys

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main(socket_path: str) -> None:
    # grpc C-core (Python, Ruby, C++) sends the percent-encoded socket path as
    # :authority over Unix sockets; hyper's h2 rejects that as malformed
    # (hyperium/h2#487, grpc/grpc#38142). "localhost" is the UDS convention.
    channel = grpc.insecure_channel(
        f"unix://{socket_path}", options=[("grpc.default_authority", "localhost")]
    )
    grpc.channel_ready_future(channel).result(timeout=10)
    reflection = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(reflection.get_services())

    health = health_pb2_grpc.HealthStub(channel)
    overall = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    resource = health.Check(
        health_pb2.HealthCheckRequest(service="tandem.resource.v1.Resource"), timeout=5
    )

    pool = DescriptorPool(reflection)
    method = pool.FindServiceByName("tandem.resource.v1.Resource").methods_by_name["GetStatus"]
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    get_status = channel.unary_unary(
        "/tandem.resource.v1.Resource/GetStatus",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    status = get_status(request_type(), timeout=5)
    state_enum = method.output_type.fields_by_name["state"].enum_type

    print(
        json.dumps(
            {
                "services": services,
                "health": health_pb2.HealthCheckResponse.ServingStatus.Name(overall.status),
                "resource_health": health_pb2.HealthCheckResponse.ServingStatus.Name(
                    resource.status
                ),
                "name": status.name,
                "state": state_enum.values_by_number[status.state].name,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
