"""A member session closed while helm runs (its member just moved to another replica) keeps
the kubeconfig file helm reads until the last helm command ends; bench_scale saw helm fail
with "stat …kubeconfig: no such file or directory" before."""

from __future__ import annotations

from pathlib import Path

from blueprintd.cluster.helm import HelmClient
from blueprintd.cluster.session import MemberSession
from blueprintd.devfleet.binaries import Binaries


class _Api:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_the_kubeconfig_stays_until_the_running_helm_command_ends(tmp_path: Path, kube_binaries: Binaries) -> None:
    helm = kube_binaries.helm  # pyhelm3 asks its version; no release command runs here
    kubeconfig = tmp_path / "member.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    api = _Api()
    session = MemberSession("m1", api, kubeconfig, helm)
    session._helm = HelmClient(helm, kubeconfig, api_client=api)
    with session.helm._command(), session.helm._command():  # an upgrade and a chart fetch
        session.close()
        assert api.closed and kubeconfig.exists()
    assert not kubeconfig.exists()


def test_an_idle_session_removes_its_kubeconfig_at_once(tmp_path: Path, kube_binaries: Binaries) -> None:
    helm = kube_binaries.helm
    kubeconfig = tmp_path / "member.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    session = MemberSession("m1", _Api(), kubeconfig, helm)
    _ = session.helm  # created, nothing running
    session.close()
    assert not kubeconfig.exists()
