"""Helpers for tests and benchmarks that run on the local fleet.

The pytest fixtures in ``tests/conftest.py`` are thin wrappers around these functions, so
benchmarks and the demo use exactly the same code paths as the tests.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import ClusterHandle, Fleet
from blueprintd.devfleet.nodes import FleetFile, MemberSpec, NodeGroupSpec

T = TypeVar("T")

# The shared test fleet: member-1 is a mixed H100 + L4 + CPU cluster, member-2 an L4 cluster.
# Both are api-only: the tests sharing it write workload status and DRA allocations themselves
# (or through the api-only stand-ins). Tests of the real control plane start ``full`` members.
TEST_FLEET = FleetFile(
    members=[
        MemberSpec(
            name="member-1",
            labels={"env": "test", "gpu": "mixed"},
            nodes=[
                NodeGroupSpec(profile="h100", count=2),
                NodeGroupSpec(profile="l4", count=2),
                NodeGroupSpec(profile="cpu", count=1),
            ],
            control_plane="api-only",
        ),
        MemberSpec(
            name="member-2",
            labels={"env": "test", "gpu": "l4"},
            nodes=[NodeGroupSpec(profile="l4", count=2)],
            control_plane="api-only",
        ),
    ]
)

# One member with the full control plane (controller-manager, scheduler, kwok kubelets), for the
# tests of what Kubernetes itself does: workloads, Helm hooks, webhooks, DRA scheduling.
FULL_FLEET = FleetFile(
    members=[
        MemberSpec(
            name="full-1",
            labels={"env": "test", "gpu": "mixed"},
            nodes=[
                NodeGroupSpec(profile="h100", count=1),
                NodeGroupSpec(profile="h100-mig", count=1),
                NodeGroupSpec(profile="l4", count=1),
                NodeGroupSpec(profile="cpu", count=1),
            ],
            control_plane="full",
        )
    ]
)


@contextlib.contextmanager
def running_fleet(directory: Path, spec: FleetFile, binaries: Binaries) -> Iterator[Fleet]:
    """Start a fleet and always stop it, whatever the test did."""
    fleet = Fleet.up(directory, spec, binaries)
    try:
        yield fleet
    finally:
        fleet.down(remove=True)


def unique_suffix() -> str:
    """Six random characters for names and label values that must not collide between runs.

    It starts with a letter: a suffix of digits only (``001935``, one run in 16 with plain hex)
    is a number to Go's YAML readers, so a label value holding it would be refused by kubectl.
    """
    return "u" + uuid.uuid4().hex[:5]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{unique_suffix()}"


def or_none(read: Callable[[], T]) -> T | None:
    """``read()``, or None when the object does not exist (the API server answered 404): a
    ``wait_for`` predicate for an object a controller creates, which is not there yet."""
    from kubernetes.client import ApiException

    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_for(
    predicate: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate!r} (last: {last!r})")


@contextlib.contextmanager
def temp_namespace(cluster: ClusterHandle, prefix: str = "t") -> Iterator[str]:
    """A namespace that exists for one test in one cluster."""
    from kubernetes import client

    name = unique_name(prefix)
    api_client = cluster.api_client()
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            core.delete_namespace(name)
        api_client.close()


def dynamic_client(cluster: ClusterHandle) -> Any:
    from blueprintd.cluster import discovery

    return discovery.dynamic_client(cluster.api_client())


class OperatorProcess:
    """``blueprintd operator …`` as a subprocess that a scenario can stop, kill and start again."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})}
            )

    def stop(self) -> None:
        """Graceful: SIGTERM, then SIGKILL after 15 s."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def kill(self) -> None:
        """No graceful shutdown: a crash at an arbitrary point."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class TcpProxy:
    """A TCP relay on 127.0.0.1 in front of a member API server, to cut the network between
    the operator and that member while everyone else still reaches it.

    TLS passes through untouched (the member's certificate names 127.0.0.1). ``cut()`` drops
    every open connection and refuses new ones until ``restore()``; the listening port stays
    the same, so the operator's kubeconfig keeps working once the link is back.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._open = True
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @classmethod
    def to(cls, server_url: str) -> TcpProxy:
        parsed = urllib.parse.urlsplit(server_url)
        return cls(parsed.hostname or "127.0.0.1", parsed.port or 443)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def cut(self) -> None:
        with self._lock:
            self._open = False
            conns, self._conns = self._conns, set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def restore(self) -> None:
        with self._lock:
            self._open = True

    def close(self) -> None:
        self._stopped = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._open:
                    client.close()
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            src.close()  # the other direction's thread closes dst
            with self._lock:
                self._conns -= {src, dst}


# --- a process's own TCP connections (what an API server dials) ---------------------------

_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "06": "TIME_WAIT", "0A": "LISTEN"}


def _ipv4(hex_ip: str) -> str:
    return ".".join(str(int(hex_ip[i : i + 2], 16)) for i in (6, 4, 2, 0))


def _ipv6(hex_ip: str) -> str:
    """Four little-endian 32-bit words; an IPv4-mapped address is shown as IPv4."""
    ip = ipaddress.IPv6Address(b"".join(bytes.fromhex(hex_ip[i : i + 8])[::-1] for i in range(0, 32, 8)))
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else f"[{ip}]"


def _parse_table(text: str, ip: Callable[[str], str]) -> dict[int, tuple[str, str, str]]:
    def addr(hexpair: str) -> str:
        ip_hex, port_hex = hexpair.split(":")
        return f"{ip(ip_hex)}:{int(port_hex, 16)}"

    rows: dict[int, tuple[str, str, str]] = {}
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        rows[int(f[9])] = (addr(f[1]), addr(f[2]), _TCP_STATES.get(f[3], f[3]))
    return rows


def parse_proc_net_tcp(text: str) -> dict[int, tuple[str, str, str]]:
    """``/proc/net/tcp`` rows by socket inode: (local "ip:port", remote "ip:port", state).

    Addresses are little-endian hex (``0100007F:1F90`` is 127.0.0.1:8080).
    """
    return _parse_table(text, _ipv4)


def tcp_connections(pid: int) -> list[tuple[str, str, str]]:
    """The IPv4 TCP sockets process ``pid`` holds: its fds' socket inodes joined with
    ``/proc/PID/net/tcp`` (the whole namespace's table). IPv6 sockets are listed from
    ``tcp6`` with IPv4-mapped addresses reduced to IPv4."""
    inodes: set[int] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else ():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    table = parse_proc_net_tcp(Path(f"/proc/{pid}/net/tcp").read_text())
    table.update(_parse_table(Path(f"/proc/{pid}/net/tcp6").read_text(), _ipv6))
    return [table[i] for i in inodes if i in table]
