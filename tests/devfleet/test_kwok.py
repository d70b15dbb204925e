"""The kwok configuration a full member runs with, and the socket-table reader the loopback tests use."""

from __future__ import annotations

from pathlib import Path

import yaml

from blueprintd.devfleet import kwok
from blueprintd.devfleet.fleet import pod_cidr, service_cidr
from blueprintd.devfleet.testing import parse_proc_net_tcp


def _stage(name: str) -> dict:  # type: ignore[type-arg]
    return next(s for s in kwok.stages() if s["metadata"]["name"] == name)


def test_config_file_has_loopback_pod_ips_and_every_stage(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(kwok.write_config(tmp_path / "k.yaml", "127.161.0.0/16").read_text()))
    assert docs[0]["kind"] == "KwokConfiguration"
    options = docs[0]["options"]
    assert (options["cidr"], options["nodeIP"], options["manageAllNodes"]) == ("127.161.0.0/16", "127.0.0.1", True)
    assert options["nodeLeaseDurationSeconds"] == 40 and options["nodeLeaseParallelism"] > 0
    assert [d["metadata"]["name"] for d in docs[1:]] == [
        "node-initialize", "node-heartbeat", "pod-ready", "pod-unready", "pod-failed", "pod-complete", "pod-delete",
    ]
    assert all(d["apiVersion"] == "kwok.x-k8s.io/v1alpha1" and d["kind"] == "Stage" for d in docs[1:])


def test_unhealthy_annotation_selects_exactly_one_pod_stage() -> None:
    key = f'.metadata.annotations["{kwok.UNHEALTHY}"]'

    def on_annotation(name: str) -> list[dict]:  # type: ignore[type-arg]
        return [e for e in _stage(name)["spec"]["selector"]["matchExpressions"] if e["key"] == key]

    assert on_annotation("pod-ready") == [{"key": key, "operator": "DoesNotExist"}]
    assert on_annotation("pod-unready") == [{"key": key, "operator": "In", "values": ["unready"]}]
    assert on_annotation("pod-failed") == [{"key": key, "operator": "In", "values": ["failed"]}]
    assert "phase: Running" in _stage("pod-unready")["spec"]["next"]["statusTemplate"]
    assert 'Ready, status: "False"' in _stage("pod-unready")["spec"]["next"]["statusTemplate"]
    assert "phase: Failed" in _stage("pod-failed")["spec"]["next"]["statusTemplate"]
    # Only Job Pods complete on their own.
    complete = _stage("pod-complete")["spec"]["selector"]["matchExpressions"]
    assert {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]} in complete


def test_cluster_cidrs_are_loopback_and_disjoint() -> None:
    import ipaddress

    nets = [ipaddress.ip_network(f(i)) for i in range(65) for f in (service_cidr, pod_cidr)]
    assert all(n.subnet_of(ipaddress.ip_network("127.0.0.0/8")) for n in nets)
    assert len(set(nets)) == len(nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])


def test_parse_proc_net_tcp_reads_little_endian_addresses() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n"
        "   1: 0100007F:A2C4 0A0200C0:01BB 02 00000000:00000000 00:00000000 00000000     0        0 4343 1\n"
    )
    assert parse_proc_net_tcp(text) == {
        4242: ("127.0.0.1:8080", "0.0.0.0:0", "LISTEN"),
        4343: ("127.0.0.1:41668", "192.0.2.10:443", "SYN_SENT"),
    }
