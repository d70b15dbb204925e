"""Real unix sockets, real gRPC: the test plays the kubelet against the plugin's servers.

Claims come from an in-memory source here; ``test_dra_fleet.py`` does the same against a
real API server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.dra import server as server_mod
from blueprintd.dra.cdi import CdiWriter
from blueprintd.dra.checkpoint import CheckpointStore
from blueprintd.dra.executor import RecordingExecutor
from blueprintd.dra.paths import PluginPaths
from blueprintd.dra.prepare import Preparer
from blueprintd.dra.proto import dra_v1_pb2, dra_v1beta1_pb2, pluginregistration_pb2
from blueprintd.dra.rpc import Client
from blueprintd.dra.server import PluginServer, ServerError


@pytest.fixture
def served(
    short_tmp: Path, memory_claims: Any, inventory: Callable[..., NodeGpuInventory]
) -> Iterator[PluginServer]:
    paths = PluginPaths(short_tmp / "kubelet", "gpu.nvidia.com")
    preparer = Preparer(
        driver_name="gpu.nvidia.com",
        node_name="node-a",
        claims=memory_claims,
        cdi=CdiWriter(short_tmp / "cdi"),
        executor=RecordingExecutor(),
        checkpoints=CheckpointStore(paths.checkpoint_file),
        mps_root=paths.mps_root,
        inventory=inventory(mig_per_gpu=7),
    )
    srv = PluginServer(paths, preparer)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _channel(path: Path) -> grpc.Channel:
    return grpc.insecure_channel(f"unix://{path}")


def test_socket_layout_and_registration(served: PluginServer, short_tmp: Path) -> None:
    root = short_tmp / "kubelet"
    assert served.paths.dra_socket == root / "plugins" / "gpu.nvidia.com" / "dra.sock"
    assert served.paths.registration_socket == root / "plugins_registry" / "gpu.nvidia.com-reg.sock"
    assert served.paths.dra_socket.is_socket() and served.paths.registration_socket.is_socket()
    with _channel(served.paths.registration_socket) as ch:
        stub = Client(ch, pluginregistration_pb2, "Registration")
        info = stub.GetInfo(pluginregistration_pb2.InfoRequest(), timeout=5)
        assert info.type == "DRAPlugin"
        assert info.name == "gpu.nvidia.com"
        assert info.endpoint == str(served.paths.dra_socket)
        assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
        stub.NotifyRegistrationStatus(
            pluginregistration_pb2.RegistrationStatus(plugin_registered=False, error="version skew"),
            timeout=5,
        )
        assert served.registration.state.registered is False
        assert served.registration.state.error == "version skew"
        stub.NotifyRegistrationStatus(
            pluginregistration_pb2.RegistrationStatus(plugin_registered=True), timeout=5
        )
        assert served.registration.state.registered is True and served.registration.state.notified.is_set()


@pytest.mark.parametrize("pb2", [dra_v1_pb2, dra_v1beta1_pb2], ids=["v1", "v1beta1"])
def test_prepare_unprepare_over_the_socket(
    served: PluginServer, memory_claims: Any, make_claim: Callable[..., Any], pb2: Any
) -> None:
    devs = [("mig", f"gpu-2-mig-1g10gb-19-{i}") for i in range(3)]
    memory_claims.add(make_claim("c", "uid-1", devs))
    with _channel(served.paths.dra_socket) as ch:
        stub = Client(ch, pb2, "DRAPlugin")
        req = pb2.NodePrepareResourcesRequest(
            claims=[
                pb2.Claim(namespace="default", name="c", uid="uid-1"),
                pb2.Claim(namespace="default", name="nope", uid="uid-2"),
            ]
        )
        resp = stub.NodePrepareResources(req, timeout=10)
        assert set(resp.claims) == {"uid-1", "uid-2"}, "every claim gets an answer"
        ok = resp.claims["uid-1"]
        assert ok.error == ""
        assert [d.device_name for d in ok.devices] == [d for _, d in devs]
        assert list(ok.devices[0].request_names) == ["mig"] and ok.devices[0].pool_name == "node-a"
        assert list(ok.devices[0].cdi_device_ids) == [
            "k8s.gpu.nvidia.com/device=gpu-2-mig-1g10gb-19-0",
            "k8s.gpu.nvidia.com/claim=uid-1-gpu-2-mig-1g10gb-19-0",
        ]
        assert "not found" in resp.claims["uid-2"].error
        assert stub.NodePrepareResources(req, timeout=10).claims["uid-1"] == ok, "idempotent"
        un = stub.NodeUnprepareResources(
            pb2.NodeUnprepareResourcesRequest(claims=[pb2.Claim(namespace="default", name="c", uid="uid-1")]),
            timeout=10,
        )
        assert dict(un.claims) == {"uid-1": pb2.NodeUnprepareResourceResponse(error="")}
    assert served.preparer.prepared_claims == {}


def test_concurrent_prepares_are_serialised(
    served: PluginServer, memory_claims: Any, make_claim: Callable[..., Any]
) -> None:
    for i in range(16):
        memory_claims.add(make_claim(f"c{i}", f"u{i}", [("g", f"gpu-{i % 8}-mig-1g10gb-19-{i // 8}")]))
    with _channel(served.paths.dra_socket) as ch:
        stub = Client(ch, dra_v1_pb2, "DRAPlugin")

        def call(i: int) -> Any:
            req = dra_v1_pb2.NodePrepareResourcesRequest(
                claims=[dra_v1_pb2.Claim(namespace="default", name=f"c{i}", uid=f"u{i}")]
            )
            return stub.NodePrepareResources(req, timeout=10).claims[f"u{i}"]

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(call, range(16)))
    assert all(r.error == "" for r in results)
    assert set(served.preparer.checkpoints.load().claims) == {f"u{i}" for i in range(16)}


def test_stop_removes_sockets(served: PluginServer) -> None:
    served.stop()
    assert not served.paths.dra_socket.exists() and not served.paths.registration_socket.exists()
    served.stop()  # idempotent


def test_dra_server_starts_before_registration(
    short_tmp: Path, memory_claims: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real_bind = server_mod._bind

    def spy(server: grpc.Server, path: Path) -> None:
        order.append(path.name)
        real_bind(server, path)

    monkeypatch.setattr(server_mod, "_bind", spy)
    paths = PluginPaths(short_tmp, "gpu.nvidia.com")
    prep = Preparer(
        driver_name="gpu.nvidia.com",
        node_name="n",
        claims=memory_claims,
        cdi=CdiWriter(short_tmp),
        executor=RecordingExecutor(),
        checkpoints=CheckpointStore(paths.checkpoint_file),
        mps_root=paths.mps_root,
    )
    paths.ensure_dirs()
    paths.registration_socket.write_text("stale")  # left over from a crash
    srv = PluginServer(paths, prep)
    srv.start()
    srv.stop()
    assert order == ["dra.sock", "gpu.nvidia.com-reg.sock"]


def test_too_long_socket_path_is_refused(tmp_path: Path, memory_claims: Any) -> None:
    paths = PluginPaths(tmp_path / ("x" * 100), "gpu.nvidia.com")
    prep = Preparer(
        driver_name="gpu.nvidia.com",
        node_name="n",
        claims=memory_claims,
        cdi=CdiWriter(tmp_path),
        executor=RecordingExecutor(),
        checkpoints=CheckpointStore(paths.checkpoint_file),
        mps_root=paths.mps_root,
    )
    with pytest.raises(ServerError, match="longer than 107 bytes"):
        PluginServer(paths, prep).start()


def test_a_servicer_missing_a_method_is_refused_when_it_is_registered() -> None:
    from blueprintd.dra.rpc import service_handler

    class Half:
        def NodePrepareResources(self, request: Any, context: Any) -> Any:
            return None

    with pytest.raises(TypeError, match="NodeUnprepareResources"):
        service_handler(dra_v1_pb2, "DRAPlugin", Half())
    with pytest.raises(KeyError, match="no service 'Nope'"):
        service_handler(dra_v1_pb2, "Nope", Half())


SHARE_A = "a671734a-e8e5-11e4-8fde-42010af09327"
SHARE_B = "b671734a-e8e5-11e4-8fde-42010af09327"


def test_device_share_id_is_the_kubelets_field_5() -> None:
    """k8s.io/kubelet/pkg/apis/dra/v1 Device: ``optional string share_id = 5`` (the kubelet reads
    ``device.ShareId`` from the v1 response); v1beta1's Device stops at cdi_device_ids = 4."""
    field = dra_v1_pb2.Device.DESCRIPTOR.fields_by_name["share_id"]
    assert field.number == 5 and field.type == field.TYPE_STRING and field.has_presence
    assert "share_id" not in dra_v1beta1_pb2.Device.DESCRIPTOR.fields_by_name


def test_shared_allocations_return_their_share_id(
    served: PluginServer, memory_claims: Any, make_claim: Callable[..., Any]
) -> None:
    """Consumable capacity: one device allocated twice (two requests, two shares) is two
    entries, each with the allocation result's shareID; an exclusive device has none."""
    claim = make_claim(
        "shared",
        "uid-s",
        [("small", "gpu-2-mig-1g10gb-19-0"), ("big", "gpu-2-mig-1g10gb-19-0"), ("own", "gpu-2-mig-1g10gb-19-1")],
    )
    results = claim["status"]["allocation"]["devices"]["results"]
    results[0]["shareID"] = SHARE_A
    results[1]["shareID"] = SHARE_B
    memory_claims.add(claim)
    req = dra_v1_pb2.NodePrepareResourcesRequest(
        claims=[dra_v1_pb2.Claim(namespace="default", name="shared", uid="uid-s")]
    )
    with _channel(served.paths.dra_socket) as ch:
        stub = Client(ch, dra_v1_pb2, "DRAPlugin")
        resp = stub.NodePrepareResources(req, timeout=10).claims["uid-s"]
        assert resp.error == ""
        got = [
            (d.device_name, list(d.request_names), d.share_id if d.HasField("share_id") else None)
            for d in resp.devices
        ]
        assert got == [
            ("gpu-2-mig-1g10gb-19-0", ["small"], SHARE_A),
            ("gpu-2-mig-1g10gb-19-0", ["big"], SHARE_B),
            ("gpu-2-mig-1g10gb-19-1", ["own"], None),
        ]
        assert stub.NodePrepareResources(req, timeout=10).claims["uid-s"] == resp, "repeat from the checkpoint"
        old = Client(ch, dra_v1beta1_pb2, "DRAPlugin")
        beta = old.NodePrepareResources(
            dra_v1beta1_pb2.NodePrepareResourcesRequest(
                claims=[dra_v1beta1_pb2.Claim(namespace="default", name="shared", uid="uid-s")]
            ),
            timeout=10,
        ).claims["uid-s"]
        assert beta.error == "" and len(beta.devices) == 3, "v1beta1 has no share_id; the devices are still there"
    (record,) = served.preparer.prepared_claims.values()
    assert [d.share_id for d in record.devices] == [SHARE_A, SHARE_B, ""]
    spec = (served.preparer.cdi.claim_spec_path("uid-s")).read_text()
    assert spec.count('"name": "uid-s-gpu-2-mig-1g10gb-19-0"') == 1, "one CDI device per physical device"
