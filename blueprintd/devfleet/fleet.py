"""The local fleet: one etcd, one management API server and N member clusters.

This is the envtest model (real ``kube-apiserver`` + ``etcd`` processes) stretched to several
clusters: every API server has its own etcd prefix and loopback port, so each is a separate
Kubernetes API as far as any client can tell. Tests, benchmarks and ``make demo`` all run on it.

A member's control plane has one of two shapes (``controlPlane`` in a fleet file):

* ``full`` (default): the API server plus Kubernetes' own ``kube-controller-manager`` and
  ``kube-scheduler`` and ``kwok`` playing the kubelets of the simulated nodes, so Deployments,
  DaemonSets and Jobs run, Pods are scheduled (DRA claims included) and Helm hooks finish as on
  a cluster;
* ``api-only``: the API server alone (what a large-fleet benchmark needs; nothing runs Pods).

Every address a member uses stays on loopback: Service ClusterIPs come from
``127.<64+i>.0.0/16`` and Pod IPs from ``127.<160+i>.0.0/16`` (i: the cluster's index, at most 64), so an
API server dialling a webhook's Service never leaves 127.0.0.0/8 and members never collide.

Everything needed to find and stop the fleet again is written to ``DIR/fleet.json``; ``down``
stops exactly the PIDs recorded there (after checking they still are our processes) and
removes the data, so a run leaves nothing behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from blueprintd.api import yamltext
from blueprintd.api.base import ApiModel
from blueprintd.devfleet import certs, kwok
from blueprintd.devfleet.audit import AuditLog
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.nodes import PROFILES, ControlPlane, FleetFile, MemberSpec, node_names, node_object
from blueprintd.errors import DevFleetError

STATE_FILE = "fleet.json"
ADMIN_USER = "blueprintd-admin"
MANAGEMENT = "management"
READY_TIMEOUT_S = 90.0
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
KWOK_USER = "devfleet:kwok"

# The controllers a full member runs: what charts and the operator rely on (service accounts and
# their tokens, namespace deletion, garbage collection, the workload controllers, EndpointSlices,
# DRA claims from templates, RBAC aggregation, PodDisruptionBudget status, node taints).
CONTROLLERS = (
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "daemonset-controller",
    "statefulset-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "resourceclaim-controller",
    "clusterrole-aggregation-controller",
    "disruption-controller",
    "pod-garbage-collector-controller",
    # Lifts the not-ready taint the API server puts on every new Node once kwok reports it Ready
    # (and taints/evicts, as on a cluster, if kwok stops heart-beating).
    "node-lifecycle-controller",
)


def service_cidr(index: int) -> str:
    """Service ClusterIPs of cluster ``index`` (0: management): loopback, one /16 per cluster."""
    return f"127.{64 + index}.0.0/16"


def pod_cidr(index: int) -> str:
    """Pod IPs kwok hands out in cluster ``index``: loopback, one /16 per cluster."""
    return f"127.{160 + index}.0.0/16"

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}

Progress = Callable[[str], None]
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class ProcessState(ApiModel):
    pid: int
    cmd: str = Field(description="binary path; checked before a signal is sent")
    log: str


class ClusterState(ApiModel):
    name: str
    role: str
    port: int
    etcd_prefix: str
    kubeconfig: str
    audit_log: str
    labels: dict[str, str] = Field(default_factory=dict)
    nodes: list[str] = Field(default_factory=list)
    process: ProcessState | None = None
    control_plane: ControlPlane = "api-only"
    index: int = 0
    components: dict[str, ProcessState] = Field(
        default_factory=dict, description="kube-controller-manager, kube-scheduler, kwok of a full member"
    )


class FleetState(ApiModel):
    version: int = 1
    directory: str
    etcd_port: int
    etcd: ProcessState | None = None
    clusters: list[ClusterState] = Field(default_factory=list)
    extra_processes: dict[str, ProcessState] = Field(
        default_factory=dict, description="helpers started with the fleet, e.g. the chart repository"
    )
    chart_repo_url: str = ""


@dataclass
class ClusterHandle:
    """What a test or the demo needs to talk to one cluster of the fleet."""

    name: str
    role: str
    server: str
    kubeconfig: Path
    audit: AuditLog
    labels: dict[str, str]
    nodes: list[str]
    control_plane: ControlPlane = "api-only"
    service_cidr: str = ""
    pod_cidr: str = ""
    pid: int | None = None

    def api_client(self) -> Any:
        """A fresh ``kubernetes.client.ApiClient`` authenticated as the fleet admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))


def _free_ports(n: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _alive(proc: ProcessState | None) -> bool:
    """True while the recorded process runs and still is the program we started.

    /proc/PID/stat gives the command name (first 15 bytes of the executable's name) and the
    state; a zombie (Z) or dead (X) process counts as gone, and a PID reused by another
    program is not ours. (cmdline is unreliable: it is empty for an instant during exec.)
    """
    if proc is None:
        return False
    try:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
    except OSError:
        return False
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    state = stat[stat.rfind(")") + 2 : stat.rfind(")") + 3]
    return state not in ("Z", "X") and comm == Path(proc.cmd).name[:15]


def _log_tail(path: str | Path, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def kubeconfig_yaml(name: str, server: str, ca_pem: bytes, client: certs.KeyPair, user: str) -> str:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert_pem),
                    "client-key-data": b64(client.key_pem),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }
    return yamltext.dump(doc, sort_keys=False)


class Fleet:
    """A running (or stopped) local fleet rooted at one directory."""

    def __init__(self, directory: Path, state: FleetState, binaries: Binaries | None = None) -> None:
        self.directory = directory
        self.state = state
        self.binaries = binaries
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # --- lookup -------------------------------------------------------------------------

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    def _ca(self) -> certs.CertificateAuthority:
        return certs.CertificateAuthority.load(self.pki / "ca.crt", self.pki / "ca.key")

    def _handle(self, c: ClusterState) -> ClusterHandle:
        return ClusterHandle(
            name=c.name,
            role=c.role,
            server=f"https://127.0.0.1:{c.port}",
            kubeconfig=Path(c.kubeconfig),
            audit=AuditLog(Path(c.audit_log)),
            labels=dict(c.labels),
            nodes=list(c.nodes),
            control_plane=c.control_plane,
            service_cidr=service_cidr(c.index),
            pod_cidr=pod_cidr(c.index),
            pid=c.process.pid if c.process else None,
        )

    @property
    def management(self) -> ClusterHandle:
        return self.cluster(MANAGEMENT)

    @property
    def members(self) -> list[ClusterHandle]:
        return [self._handle(c) for c in self.state.clusters if c.role == "member"]

    def cluster(self, name: str) -> ClusterHandle:
        for c in self.state.clusters:
            if c.name == name:
                return self._handle(c)
        raise DevFleetError(f"no cluster {name!r} in the fleet at {self.directory}")

    @property
    def chart_repo_url(self) -> str:
        return self.state.chart_repo_url

    # --- persistence ----------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> Fleet:
        path = directory / STATE_FILE
        if not path.exists():
            raise DevFleetError(
                f"no fleet in {directory} ({STATE_FILE} not found): start one with `blueprintd dev up`"
            )
        try:
            state = FleetState.model_validate_json(path.read_text())
        except ValueError as exc:
            raise DevFleetError(f"{path} is corrupt ({exc}); remove the directory and start again") from exc
        return cls(directory, state)

    def save(self) -> None:
        (self.directory / STATE_FILE).write_text(self.state.model_dump_json(by_alias=True, indent=2))

    # --- start ----------------------------------------------------------------------------

    @classmethod
    def up(
        cls,
        directory: Path,
        fleet: FleetFile,
        binaries: Binaries,
        progress: Progress | None = None,
    ) -> Fleet:
        """Start etcd + management + members, wait for readiness, create simulated nodes."""
        say = progress or (lambda _m: None)
        directory = directory.resolve()
        state_path = directory / STATE_FILE
        if state_path.exists():
            existing = cls.load(directory)
            running = existing.running_processes()
            if running:
                raise DevFleetError(
                    f"a fleet is already running in {directory} ({len(running)} processes); "
                    f"use it, or stop it with `blueprintd dev down --dir {directory}`"
                )
            raise DevFleetError(
                f"{directory} holds a stale fleet (its processes are gone); "
                f"clean it with `blueprintd dev down --dir {directory}` and start again"
            )
        names = _member_names(fleet.members)
        directory.mkdir(parents=True, exist_ok=True)
        for sub in ("pki", "logs", "audit", "etcd"):
            (directory / sub).mkdir(exist_ok=True)
        ports = _free_ports(2 + 1 + len(names))
        etcd_port, etcd_peer, api_ports = ports[0], ports[1], ports[2:]
        state = FleetState(directory=str(directory), etcd_port=etcd_port)
        self = cls(directory, state, binaries)
        self._write_pki()
        self._write_policy()
        state.clusters = [self._cluster_state(MANAGEMENT, "management", api_ports[0], {})]
        for i, ((name, member), port) in enumerate(zip(names, api_ports[1:], strict=True), start=1):
            c = self._cluster_state(name, "member", port, member.labels)
            c.index, c.control_plane = i, member.control_plane
            state.clusters.append(c)
        self.save()
        try:
            self._start_etcd_with_retry(etcd_peer, say)
            say(f"starting {len(state.clusters)} API servers (management + {len(names)} members)")
            started = time.monotonic()
            # In waves: fifty API servers starting at once against one etcd on a 2-core machine
            # time etcd out and crash at their post-start hooks.
            wave = max(8, 4 * (os.cpu_count() or 1))
            for first in range(0, len(state.clusters), wave):
                batch = state.clusters[first : first + wave]
                for c in batch:
                    c.process = self._start_apiserver(c)
                self.save()
                for c in batch:
                    self._wait_ready_with_retry(c)
            say(f"all API servers ready in {time.monotonic() - started:.1f}s")
            full = [c for c in state.clusters if c.control_plane == "full"]
            if full:
                say(f"starting controller-manager, scheduler and kwok for {len(full)} full members")
                for c in full:
                    self._start_components(c)
                self.save()
            # Nodes are created while the components start (kwok and the node-lifecycle
            # controller pick them up whenever they come); only then is their start awaited.
            for name, member in names:
                c = next(x for x in state.clusters if x.name == name)
                c.nodes = self._create_nodes(c, member)
                if c.nodes:
                    say(f"{name}: created {len(c.nodes)} simulated nodes")
            self.save()
            for c in full:
                self._wait_components(c)
        except BaseException:
            self.down(remove=False)
            raise
        return self

    def _write_pki(self) -> None:
        ca = certs.CertificateAuthority.create()
        ca.write(self.pki / "ca.crt", self.pki / "ca.key")
        ca.serving(["127.0.0.1", "localhost", "::1"]).write(
            self.pki / "apiserver.crt", self.pki / "apiserver.key"
        )
        ca.client(ADMIN_USER, ["system:masters"]).write(self.pki / "admin.crt", self.pki / "admin.key")
        # Kubernetes' bootstrap RBAC knows the controller-manager and scheduler by these names;
        # the controller-manager then acts through one service account per controller.
        for who, user, groups in (
            ("controller-manager", CONTROLLER_MANAGER_USER, []),
            ("scheduler", SCHEDULER_USER, []),
            ("kwok", KWOK_USER, ["system:masters"]),
        ):
            ca.client(user, groups).write(self.pki / f"{who}.crt", self.pki / f"{who}.key")
        certs.service_account_keys().write(self.pki / "sa.pub", self.pki / "sa.key")

    def _write_policy(self) -> None:
        (self.directory / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))

    def _pki_pair(self, who: str) -> certs.KeyPair:
        """A client certificate ``_write_pki`` wrote (admin, controller-manager, ...)."""
        return certs.KeyPair((self.pki / f"{who}.crt").read_bytes(), (self.pki / f"{who}.key").read_bytes())

    def _write_kubeconfig(self, path: Path, cluster: str, port: int, pair: certs.KeyPair, user: str) -> Path:
        """Every kubeconfig of the fleet: one cluster, one client certificate, owner-only."""
        path.parent.mkdir(exist_ok=True)
        ca_pem = (self.pki / "ca.crt").read_bytes()
        path.write_text(kubeconfig_yaml(cluster, f"https://127.0.0.1:{port}", ca_pem, pair, user))
        path.chmod(0o600)
        return path

    def _cluster_state(self, name: str, role: str, port: int, labels: dict[str, str]) -> ClusterState:
        kubeconfig = self._write_kubeconfig(
            self.directory / f"{name}.kubeconfig", name, port, self._pki_pair("admin"), ADMIN_USER
        )
        return ClusterState(
            name=name,
            role=role,
            port=port,
            etcd_prefix=f"/blueprintd-devfleet/{name}",
            kubeconfig=str(kubeconfig),
            audit_log=str(self.directory / "audit" / f"{name}.log"),
            labels=labels,
        )

    def _spawn(self, argv: list[str], log: Path) -> ProcessState:
        # No proxy variables: an API server would send webhook and aggregated-API calls through
        # an HTTP(S) proxy from its environment, i.e. off this machine.
        env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARIABLES}
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env
            )
        self._children[proc.pid] = proc
        return ProcessState(pid=proc.pid, cmd=argv[0], log=str(log))

    def _exit_status(self, proc: ProcessState | None) -> str:
        child = self._children.get(proc.pid) if proc else None
        code = child.poll() if child else None
        if code is None:
            return ""
        return f" (killed by signal {-code})" if code < 0 else f" (exit code {code})"

    def _require(self) -> Binaries:
        if self.binaries is None:
            raise DevFleetError("internal: binaries were not resolved before starting processes")
        return self.binaries

    def _start_etcd(self, port: int, peer: int) -> ProcessState:
        bins = self._require()
        data = self.directory / "etcd" / "data"
        argv = [
            str(bins.etcd),
            "--name=devfleet",
            f"--data-dir={data}",
            f"--listen-client-urls=http://127.0.0.1:{port}",
            f"--advertise-client-urls=http://127.0.0.1:{port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=devfleet=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
            "--quota-backend-bytes=4294967296",
        ]
        return self._spawn(argv, self.directory / "logs" / "etcd.log")

    def _start_etcd_with_retry(self, peer: int, say: Progress, attempts: int = 3) -> None:
        # Ports are picked free but another process may grab one before etcd binds it
        # (parallel test runs do); a bind failure is retried on fresh ports, anything else is fatal.
        for attempt in range(attempts):
            say(f"starting etcd on 127.0.0.1:{self.state.etcd_port}")
            self.state.etcd = self._start_etcd(self.state.etcd_port, peer)
            self.save()
            try:
                self._wait_etcd()
                return
            except DevFleetError as exc:
                if "address already in use" not in str(exc) or attempt == attempts - 1:
                    raise
                self.state.etcd_port, peer = _free_ports(2)

    def _wait_ready_with_retry(self, c: ClusterState, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                self._wait_ready(c)
                return
            except DevFleetError as exc:
                busy = "address already in use" in str(exc)
                crashed = "exited during start-up" in str(exc)  # e.g. etcd timed out under load
                if not (busy or crashed) or attempt == attempts - 1:
                    raise
                if busy:
                    c.port = _free_ports(1)[0]
                    self._rewrite_kubeconfig(c)
                c.process = self._start_apiserver(c)
                self.save()

    def _rewrite_kubeconfig(self, c: ClusterState) -> None:
        fresh = self._cluster_state(c.name, c.role, c.port, c.labels)
        c.kubeconfig = fresh.kubeconfig

    def _wait_etcd(self) -> None:
        deadline = time.monotonic() + 30
        url = f"http://127.0.0.1:{self.state.etcd_port}/health"
        while time.monotonic() < deadline:
            if not _alive(self.state.etcd):
                raise DevFleetError(
                    f"etcd exited during start-up{self._exit_status(self.state.etcd)}:\n"
                    f"{_log_tail(self.directory / 'logs/etcd.log')}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=2) as r,
            ):
                if b'"health":"true"' in r.read():
                    return
            time.sleep(0.1)
        raise DevFleetError(
            f"etcd did not become healthy in 30s:\n{_log_tail(self.directory / 'logs/etcd.log')}"
        )

    def _start_apiserver(self, c: ClusterState) -> ProcessState:
        bins = self._require()
        pki = self.pki
        argv = [
            str(bins.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.state.etcd_port}",
            f"--etcd-prefix={c.etcd_prefix}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={c.port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-issuer=https://{c.name}.devfleet.blueprintd.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={service_cidr(c.index)}",
            "--authorization-mode=RBAC",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            f"--audit-policy-file={self.directory / 'audit-policy.yaml'}",
            f"--audit-log-path={c.audit_log}",
            "--audit-log-maxsize=0",
            "--cert-dir=" + str(self.directory / "pki" / f"{c.name}-generated"),
            "--v=0",
        ]
        if c.control_plane != "full":
            # Nothing creates the "default" service account without a controller-manager, and
            # the admission plugin would refuse every Pod for want of it.
            argv.append("--disable-admission-plugins=ServiceAccount")
        return self._spawn(argv, self.directory / "logs" / f"{c.name}.log")

    # --- the rest of a full member's control plane ----------------------------------------

    def _component_kubeconfig(self, c: ClusterState, who: str) -> Path:
        path = self.directory / "components" / f"{c.name}-{who}.kubeconfig"
        return self._write_kubeconfig(path, c.name, c.port, self._pki_pair(who), who)

    def _start_components(self, c: ClusterState) -> None:
        """kube-controller-manager, kube-scheduler and kwok for one full member.

        None of them serves a port (``--secure-port=0``; kwok without ``--server-address``), so
        a member adds no listener beyond its API server.
        """
        bins = self._require()
        logs = self.directory / "logs"
        cm = [
            str(bins.kube_controller_manager),
            f"--kubeconfig={self._component_kubeconfig(c, 'controller-manager')}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--controllers={','.join(CONTROLLERS)}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            f"--cluster-name={c.name}",
            f"--service-cluster-ip-range={service_cidr(c.index)}",
            "--concurrent-gc-syncs=5",
            "--v=1",
        ]
        scheduler = [
            str(bins.kube_scheduler),
            f"--kubeconfig={self._component_kubeconfig(c, 'scheduler')}",
            "--leader-elect=false",
            "--secure-port=0",
            "--v=1",
        ]
        config = kwok.write_config(self.directory / "components" / f"{c.name}-kwok.yaml", pod_cidr(c.index))
        kwok_argv = kwok.argv(bins.kwok, self._component_kubeconfig(c, "kwok"), config)
        c.components = {
            "kube-controller-manager": self._spawn(cm, logs / f"{c.name}-controller-manager.log"),
            "kube-scheduler": self._spawn(scheduler, logs / f"{c.name}-scheduler.log"),
            "kwok": self._spawn(kwok_argv, logs / f"{c.name}-kwok.log"),
        }

    def _wait_components(self, c: ClusterState, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the controller-manager has created the ``default`` service account (Pods are
        admitted from then on); any component exiting first is an error with its log."""
        from kubernetes import client, config

        api = client.CoreV1Api(config.new_client_from_config(config_file=c.kubeconfig))
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for name, proc in c.components.items():
                    if not _alive(proc):
                        raise DevFleetError(
                            f"{name} of {c.name} exited during start-up{self._exit_status(proc)}:\n"
                            f"{_log_tail(proc.log)}"
                        )
                with contextlib.suppress(Exception):
                    api.read_namespaced_service_account("default", "default")
                    return
                time.sleep(0.2)
        finally:
            api.api_client.close()
        raise DevFleetError(
            f"the controller-manager of {c.name} created no 'default' service account in {timeout:.0f}s:\n"
            f"{_log_tail(c.components['kube-controller-manager'].log)}"
        )

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _readyz(self, c: ClusterState, ctx: ssl.SSLContext) -> bool:
        url = f"https://127.0.0.1:{c.port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _wait_ready(self, c: ClusterState, timeout: float = READY_TIMEOUT_S) -> None:
        ctx = self._ssl_context()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(c.process):
                raise DevFleetError(
                    f"the API server of {c.name} exited during start-up (port {c.port})"
                    f"{self._exit_status(c.process)}:\n"
                    f"{_log_tail(self.directory / 'logs' / f'{c.name}.log')}"
                )
            if self._readyz(c, ctx):
                return
            time.sleep(0.1)
        raise DevFleetError(
            f"the API server of {c.name} was not ready after {timeout:.0f}s:\n"
            f"{_log_tail(self.directory / 'logs' / f'{c.name}.log')}"
        )

    def _create_nodes(self, c: ClusterState, member: MemberSpec) -> list[str]:
        from kubernetes import client, config

        if not member.nodes:
            return []
        api = client.CoreV1Api(config.new_client_from_config(config_file=c.kubeconfig))
        created = []
        try:
            for name, group in node_names(c.name, member.nodes):
                body = node_object(name, PROFILES[group.profile], group.labels)
                status = body.pop("status")
                api.create_node(body)
                api.patch_node_status(name, {"status": status})
                created.append(name)
        finally:
            api.api_client.close()
        return created

    def start_helper(self, name: str, module: str, *args: str) -> ProcessState:
        """Start a detached Python helper (chart server, workload simulator) that lives as long
        as the fleet: recorded in fleet.json so ``down`` stops it with the API servers."""
        import sys

        log = self.directory / "logs" / f"{name}.log"
        proc = self._spawn([sys.executable, "-m", module, *args], log)
        self.state.extra_processes[name] = proc
        self.save()
        return proc

    def helper_exit_status(self, name: str) -> str | None:
        """None while the helper runs; otherwise why it stopped (for error messages)."""
        proc = self.state.extra_processes.get(name)
        if proc is not None and _alive(proc):
            return None
        return self._exit_status(proc) or " (not running)"

    # --- partial outages (drift tests cut a member off and bring it back) ---------------

    def stop_cluster(self, name: str) -> None:
        c = self._state_of(name)
        _terminate([*c.components.values(), *([c.process] if c.process else [])])
        c.process = None
        c.components = {}
        self.save()

    def start_cluster(self, name: str) -> None:
        c = self._state_of(name)
        if c.process and _alive(c.process):
            return
        if self.binaries is None:
            from blueprintd.devfleet.binaries import ensure

            self.binaries = ensure()
        c.process = self._start_apiserver(c)
        self.save()
        self._wait_ready(c)
        if c.control_plane == "full":
            self._start_components(c)
            self.save()
            self._wait_components(c)

    def stop_etcd(self) -> None:
        """Stop the fleet's one etcd: every API server loses its storage until ``start_etcd``."""
        if self.state.etcd is not None:
            _terminate([self.state.etcd])
            self.state.etcd = None
            self.save()

    def start_etcd(self) -> None:
        """Start etcd again on its client port with the same data (the chaos suite restarts it)."""
        if self.state.etcd is not None and _alive(self.state.etcd):
            return
        self.state.etcd = self._start_etcd(self.state.etcd_port, _free_ports(1)[0])
        self.save()
        self._wait_etcd()

    def _state_of(self, name: str) -> ClusterState:
        for c in self.state.clusters:
            if c.name == name:
                return c
        raise DevFleetError(f"no cluster {name!r} in the fleet at {self.directory}")

    # --- identities ---------------------------------------------------------------------

    def mint_kubeconfig(self, cluster: str, user: str, groups: list[str] | None = None) -> Path:
        """A kubeconfig for a new identity (client certificate) on one cluster.

        RBAC decides what it may do, exactly as on a real cluster; the audit log records its
        writes under ``user``.
        """
        c = self._state_of(cluster)
        pair = self._ca().client(user, groups or [])
        path = self.directory / "identities" / f"{cluster}-{user.replace(':', '_')}.kubeconfig"
        return self._write_kubeconfig(path, cluster, c.port, pair, user)

    # --- status / stop --------------------------------------------------------------------

    def all_processes(self) -> Iterator[tuple[str, ProcessState]]:
        for c in self.state.clusters:
            for name, proc in c.components.items():
                yield f"{name}/{c.name}", proc
        for c in self.state.clusters:
            if c.process:
                yield f"kube-apiserver/{c.name}", c.process
        yield from self.state.extra_processes.items()
        if self.state.etcd:
            yield "etcd", self.state.etcd

    def running_processes(self) -> list[tuple[str, ProcessState]]:
        return [(n, p) for n, p in self.all_processes() if _alive(p)]

    def status(self) -> list[dict[str, Any]]:
        """One row per cluster: name, role, server, process alive, /readyz answer, nodes."""
        ctx = self._ssl_context()
        rows = []
        for c in self.state.clusters:
            alive = _alive(c.process)
            rows.append(
                {
                    "name": c.name,
                    "role": c.role,
                    "server": f"https://127.0.0.1:{c.port}",
                    "pid": c.process.pid if c.process else None,
                    "running": alive,
                    "ready": alive and self._readyz(c, ctx) and all(_alive(p) for p in c.components.values()),
                    "nodes": len(c.nodes),
                    "controlPlane": c.control_plane,
                    "components": {n: _alive(p) for n, p in c.components.items()},
                    "labels": c.labels,
                    "kubeconfig": c.kubeconfig,
                }
            )
        return rows

    def down(self, remove: bool = True) -> list[str]:
        """Stop every process this fleet started (by recorded PID); remove data if asked.

        etcd is stopped only after everything else has exited: an API server shutting down
        still writes to etcd (it removes its endpoint lease) and, with etcd gone, waits for
        that write until SIGKILL; etcd itself exits at once when no API server watches it.
        """
        etcd = self.state.etcd
        stopped = _terminate([p for _, p in self.all_processes() if p is not etcd])
        stopped += _terminate([etcd] if etcd else [])
        for c in self.state.clusters:
            c.process = None
            c.components = {}
        self.state.extra_processes = {}
        self.state.etcd = None
        if remove:
            _remove_tree(self.directory / "etcd")
            (self.directory / STATE_FILE).unlink(missing_ok=True)
        else:
            self.save()
        return stopped


def _terminate(procs: list[ProcessState], timeout: float = 15.0) -> list[str]:
    stopped: list[str] = []
    live = [p for p in procs if _alive(p)]
    for p in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGTERM)
        stopped.append(f"{Path(p.cmd).name}[{p.pid}]")
    deadline = time.monotonic() + timeout
    for p in live:
        while _alive(p) and time.monotonic() < deadline:
            _reap(p.pid)
            time.sleep(0.05)
        if _alive(p):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            while _alive(p):
                _reap(p.pid)
                time.sleep(0.05)
        _reap(p.pid)
    return stopped


def _reap(pid: int) -> None:
    # Processes we spawned in this interpreter become zombies until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _member_names(members: list[MemberSpec]) -> list[tuple[str, MemberSpec]]:
    out: list[tuple[str, MemberSpec]] = []
    seen: set[str] = set()
    for i, m in enumerate(members, start=1):
        name = m.name or f"member-{i}"
        if name in seen or name == MANAGEMENT:
            raise DevFleetError(
                f"members[{i - 1}].name: {name!r} is used twice (or is reserved); pick unique names"
            )
        seen.add(name)
        out.append((name, m))
    return out


def read_state_json(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
    return data
