"""The two gRPC servers on unix sockets: the DRA service and the kubelet registration.

Order matters and is enforced here:

* **start**: DRA server first, registration second. The kubelet dials the DRA endpoint as soon
  as it has read it from ``GetInfo``; if the registration socket appeared first the kubelet
  could try a socket that does not exist yet and give up on the plugin.
* **stop**: registration first (the kubelet sees the plugin leave and stops sending work),
  then the DRA server with a grace period for calls in flight, then the socket files are
  removed so a stale socket never makes the kubelet dial a dead plugin.

Stale socket files from a crashed run are removed before binding (bind fails on an existing
path). Unix socket paths are limited to 107 bytes; a longer plugin root is refused with a
clear message rather than an opaque bind error.
"""

from __future__ import annotations

import logging
from concurrent import futures
from pathlib import Path

import grpc

from blueprintd.dra.paths import PluginPaths
from blueprintd.dra.prepare import Preparer
from blueprintd.dra.proto import pluginregistration_pb2
from blueprintd.dra.registration import RegistrationServicer
from blueprintd.dra.rpc import service_handler
from blueprintd.dra.service import add_dra_services
from blueprintd.errors import BlueprintdError

log = logging.getLogger(__name__)

MAX_SOCKET_PATH = 107


class ServerError(BlueprintdError):
    """A socket could not be served."""


def _bind(server: grpc.Server, path: Path) -> None:
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise ServerError(
            f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes; use a shorter plugin root"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    try:
        port = server.add_insecure_port(f"unix://{path}")
    except RuntimeError as exc:
        raise ServerError(f"cannot listen on {path}: {exc}") from exc
    if port == 0:
        raise ServerError(f"cannot listen on {path}")


class PluginServer:
    """Owns both servers and their sockets for one driver instance."""

    def __init__(self, paths: PluginPaths, preparer: Preparer, *, max_workers: int = 8) -> None:
        self.paths = paths
        self.preparer = preparer
        self.max_workers = max_workers
        self.registration = RegistrationServicer(paths.driver_name, str(paths.dra_socket))
        self._dra: grpc.Server | None = None
        self._reg: grpc.Server | None = None

    @property
    def running(self) -> bool:
        return self._dra is not None

    def start(self) -> None:
        self.paths.ensure_dirs()
        dra = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="dra"))
        add_dra_services(dra, self.preparer)
        _bind(dra, self.paths.dra_socket)
        dra.start()
        self._dra = dra
        try:
            reg = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="dra-reg"))
            reg.add_generic_rpc_handlers(
                (service_handler(pluginregistration_pb2, "Registration", self.registration),)
            )
            _bind(reg, self.paths.registration_socket)
            reg.start()
            self._reg = reg
        except BaseException:
            self.stop()
            raise
        log.info(
            "serving DRA on %s, registration on %s", self.paths.dra_socket, self.paths.registration_socket
        )

    def stop(self, grace_s: float = 5.0) -> None:
        """Idempotent; waits up to ``grace_s`` for in-flight calls."""
        if self._reg is not None:
            self._reg.stop(grace=None).wait()
            self._reg = None
        self.paths.registration_socket.unlink(missing_ok=True)
        if self._dra is not None:
            self._dra.stop(grace=grace_s).wait()
            self._dra = None
        self.paths.dra_socket.unlink(missing_ok=True)
