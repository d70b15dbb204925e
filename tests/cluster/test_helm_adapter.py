"""The Helm adapter against a real API server and the local chart repository."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from pathlib import Path

import pytest
from kubernetes import client

from blueprintd.cluster.helm import HelmClient, HelmError
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import ClusterHandle
from blueprintd.devfleet.testing import unique_name

pytestmark = pytest.mark.fleet


def _set_release_status(member: ClusterHandle, ns: str, name: str, status: str) -> None:
    """Rewrite the latest release record as a crashed helm would have left it."""
    core = client.CoreV1Api(member.api_client())
    secrets = core.list_namespaced_secret(ns, label_selector=f"owner=helm,name={name}").items
    latest = max(secrets, key=lambda s: int(s.metadata.labels["version"]))
    raw = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(latest.data["release"]))))
    raw["info"]["status"] = status
    encoded = base64.b64encode(gzip.compress(json.dumps(raw).encode())).decode()
    latest.data["release"] = base64.b64encode(encoded.encode()).decode()
    latest.metadata.labels["status"] = status
    core.replace_namespaced_secret(latest.metadata.name, ns, latest)


def test_install_upgrade_and_recover_a_pending_release(member: ClusterHandle, kube_binaries: Binaries,
                                                       chart_repo: str, tmp_path: Path) -> None:
    helm = HelmClient(kube_binaries.helm, member.kubeconfig)
    ns, name = unique_name("helm-ns"), unique_name("kai")

    async def scenario() -> None:
        assert await helm.release(name, ns) is None
        first = await helm.install_or_upgrade(name, ns, chart_repo, "kai-scheduler", "v0.10.2",
                                              {"global": {"gpuSharing": False}})
        assert (first.status, first.revision, first.values) == ("deployed", 1, {"global": {"gpuSharing": False}})
        second = await helm.install_or_upgrade(name, ns, chart_repo, "kai-scheduler", "v0.10.2",
                                               {"global": {"gpuSharing": True}})
        assert second.revision == 2 and second.values == {"global": {"gpuSharing": True}}
        # An operator crash in the middle of an upgrade leaves the release pending-upgrade;
        # helm refuses to touch it until it is recovered.
        _set_release_status(member, ns, name, "pending-upgrade")
        stuck = await helm.release(name, ns)
        assert stuck is not None and stuck.pending
        recovered = await helm.install_or_upgrade(name, ns, chart_repo, "kai-scheduler", "v0.10.2",
                                                  {"global": {"gpuSharing": True}})
        assert recovered.status == "deployed" and recovered.revision > 2
        kinds = {o["kind"] for o in await helm.manifest(name, ns)}
        assert "Deployment" in kinds
        # Read from the storage Secret, it is exactly what `helm get manifest` prints.
        printed = await helm._client._command.get_resources(name, namespace=ns)
        assert await helm.manifest(name, ns) == [d for d in printed if isinstance(d, dict)]
        with pytest.raises(HelmError, match="not found"):
            await helm.install_or_upgrade(name, ns, chart_repo, "kai-scheduler", "9.9.9", {})
        await helm.uninstall(name, ns)
        assert await helm.release(name, ns) is None

    asyncio.run(scenario())
