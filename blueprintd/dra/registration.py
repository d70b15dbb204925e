"""The kubelet plugin-watcher Registration service.

The kubelet notices the registration socket appearing in ``plugins_registry``, asks
``GetInfo`` what the plugin is and where its DRA service listens, tries that service, and
reports the outcome through ``NotifyRegistrationStatus``. A failed registration is otherwise
silent on the node (pods just stay ``ContainerCreating``), so the outcome is logged and kept
for the plugin's health reporting.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import grpc

from blueprintd.dra.proto import pluginregistration_pb2 as reg_pb2

log = logging.getLogger(__name__)

PLUGIN_TYPE = "DRAPlugin"
# The kubelet takes the first version it speaks; v1 (Kubernetes >= 1.34) before v1beta1.
SUPPORTED_VERSIONS = ("v1.DRAPlugin", "v1beta1.DRAPlugin")


@dataclass
class RegistrationState:
    """The kubelet's latest verdict; ``registered`` is None until it has called."""

    registered: bool | None = None
    error: str = ""
    notified: threading.Event = field(default_factory=threading.Event)


class RegistrationServicer:
    """Serves ``pluginregistration.Registration`` (registered with the generated adder)."""

    def __init__(
        self, driver_name: str, endpoint: str, versions: tuple[str, ...] = SUPPORTED_VERSIONS
    ) -> None:
        self.driver_name = driver_name
        self.endpoint = endpoint
        self.versions = versions
        self.state = RegistrationState()

    def GetInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return reg_pb2.PluginInfo(
            type=PLUGIN_TYPE,
            name=self.driver_name,
            endpoint=self.endpoint,
            supported_versions=list(self.versions),
        )

    def NotifyRegistrationStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.state.registered = bool(request.plugin_registered)
        self.state.error = str(request.error)
        if self.state.registered:
            log.info("kubelet registered DRA driver %s (endpoint %s)", self.driver_name, self.endpoint)
        else:
            log.error(
                "kubelet rejected DRA driver %s: %s", self.driver_name, request.error or "no reason given"
            )
        self.state.notified.set()
        return reg_pb2.RegistrationStatusResponse()
