"""The DRAPlugin gRPC service, served as v1 and v1beta1 from one implementation.

The two API versions have the same messages in different proto packages (v1's Device adds
``share_id`` for shared allocations), so the servicer is parameterised by the generated
module of its version: it converts that version's messages to
:class:`~blueprintd.dra.prepare.ClaimRef`, calls the shared
:class:`~blueprintd.dra.prepare.Preparer`, and builds that version's response. No method
ever raises to gRPC: the kubelet discards a whole response on a gRPC error, so every
failure is reported per claim.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import grpc

from blueprintd.dra.prepare import ClaimRef, Preparer
from blueprintd.dra.proto import dra_v1_pb2, dra_v1beta1_pb2
from blueprintd.dra.rpc import service_handler

log = logging.getLogger(__name__)

SERVICE = "DRAPlugin"
# (API version, messages and service module) for every version served.
VERSIONS: tuple[tuple[str, ModuleType], ...] = (("v1", dra_v1_pb2), ("v1beta1", dra_v1beta1_pb2))


def _refs(request: Any) -> list[ClaimRef]:
    return [ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid) for c in request.claims]


class DraServicer:
    """``DRAPlugin`` for one API version, delegating to a shared Preparer."""

    def __init__(self, preparer: Preparer, pb2: ModuleType) -> None:
        self.preparer = preparer
        self.pb2 = pb2
        # v1 only: v1beta1 kubelets predate shared (consumable capacity) allocations.
        self._has_share_id = "share_id" in pb2.Device.DESCRIPTOR.fields_by_name

    def NodePrepareResources(self, request: Any, context: grpc.ServicerContext) -> Any:
        refs = _refs(request)
        try:
            results = self.preparer.prepare(refs)
        except Exception as exc:  # Preparer already isolates claims; this is a last resort
            log.exception("NodePrepareResources")
            results = {}
            error = f"internal error: {exc}"
        else:
            error = "internal error: no result"
        response = self.pb2.NodePrepareResourcesResponse()
        for ref in refs:
            entry = response.claims[ref.uid]
            result = results.get(ref.uid)
            if result is None:
                entry.error = error
                continue
            if result.error:
                entry.error = result.error
                continue
            for dev in result.devices:
                device = self.pb2.Device(
                    request_names=list(dev.request_names),
                    pool_name=dev.pool_name,
                    device_name=dev.device_name,
                    cdi_device_ids=list(dev.cdi_device_ids),
                )
                if dev.share_id and self._has_share_id:
                    device.share_id = dev.share_id
                entry.devices.append(device)
        return response

    def NodeUnprepareResources(self, request: Any, context: grpc.ServicerContext) -> Any:
        refs = _refs(request)
        try:
            errors = self.preparer.unprepare(refs)
        except Exception as exc:
            log.exception("NodeUnprepareResources")
            errors = {ref.uid: f"internal error: {exc}" for ref in refs}
        response = self.pb2.NodeUnprepareResourcesResponse()
        for ref in refs:
            response.claims[ref.uid].error = errors.get(ref.uid, "internal error: no result")
        return response


def add_dra_services(server: grpc.Server, preparer: Preparer) -> list[str]:
    """Register the DRAPlugin service of every supported version; returns the versions."""
    for _, pb2 in VERSIONS:
        server.add_generic_rpc_handlers((service_handler(pb2, SERVICE, DraServicer(preparer, pb2)),))
    return [v for v, _ in VERSIONS]
