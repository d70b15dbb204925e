"""gRPC services and clients built from the protobuf service descriptors.

grpcio-tools' ``*_pb2_grpc.py`` modules are boilerplate: a servicer base class whose every
method raises, an ``add_…_to_server`` function and a client stub, written again for each
service and version. The ``*_pb2`` modules already describe every service (method names,
request and response types), so one function serves any of them and one class calls any of
them: the registration service and DRAPlugin v1 / v1beta1 alike.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import message_factory


def _service(pb2: ModuleType, service: str) -> Any:
    try:
        return pb2.DESCRIPTOR.services_by_name[service]
    except KeyError:
        raise KeyError(f"{pb2.__name__} defines no service {service!r}") from None


def service_handler(pb2: ModuleType, service: str, servicer: object) -> grpc.GenericRpcHandler:
    """The handler serving every method of ``service`` (as defined in ``pb2``) with the
    method of the same name on ``servicer``; a missing method is an error now, not a call
    that fails later."""
    desc = _service(pb2, service)
    handlers = {}
    for method in desc.methods:
        impl = getattr(servicer, method.name, None)
        if impl is None:
            raise TypeError(f"{type(servicer).__name__} does not implement {desc.full_name}.{method.name}")
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            impl,
            request_deserializer=message_factory.GetMessageClass(method.input_type).FromString,
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString,
        )
    return grpc.method_handlers_generic_handler(desc.full_name, handlers)


class Client:
    """Calls the methods of one service over ``channel``: ``Client(ch, pb2, "DRAPlugin").NodePrepareResources(req)``."""

    def __init__(self, channel: grpc.Channel, pb2: ModuleType, service: str) -> None:
        desc = _service(pb2, service)
        self._calls: dict[str, Callable[..., Any]] = {
            m.name: channel.unary_unary(
                f"/{desc.full_name}/{m.name}",
                request_serializer=message_factory.GetMessageClass(m.input_type).SerializeToString,
                response_deserializer=message_factory.GetMessageClass(m.output_type).FromString,
            )
            for m in desc.methods
        }

    def __getattr__(self, name: str) -> Callable[..., Any]:
        try:
            return self._calls[name]
        except KeyError:
            raise AttributeError(name) from None
