"""kwok plays the kubelets of a ``full`` member's simulated GPU nodes.

kwok ("Kubernetes WithOut Kubelet", sigs.k8s.io/kwok) watches Nodes and the Pods the real
scheduler bound to them and moves them through their lifecycle by *Stages*: a Stage selects
objects with jq expressions and writes the status its template renders. This module writes
the one configuration file a member's kwok runs with: the KwokConfiguration (Pod IPs from a
loopback CIDR, every node managed, node leases) and these Stages:

========================  =============================================================
``node-initialize``       a node that is not Ready becomes Ready (conditions, addresses)
``node-heartbeat``        a Ready node's conditions get a fresh heartbeat every ~20 s
                          (with ``--node-lease-duration-seconds`` kwok also renews leases)
``pod-ready``             a bound Pod becomes Running and Ready with a loopback Pod IP
``pod-unready``           a Pod annotated ``devfleet.blueprintd.io/unhealthy: unready`` runs
                          but never becomes Ready (a readiness gate stays closed)
``pod-failed``            a Pod annotated ``devfleet.blueprintd.io/unhealthy: failed`` fails
                          (exit code 1), so a Job fails and a Deployment never gets ready
``pod-complete``          a running Pod owned by a Job succeeds, so Jobs (and the Helm hooks
                          that wait on them) complete
``pod-delete``            a Pod being deleted without finalizers is removed
========================  =============================================================

The unhealthy annotation goes on the Pod (a workload's ``spec.template.metadata``), because
that is what kwok sees; the Deployment/DaemonSet/Job controllers then report the failure the
way they would on a cluster. Field names and template functions (``Now``, ``Quote``,
``NodeIPWith``, ``PodIPWith``, ``NodeConditions``) are kwok's Stage API (kwok.x-k8s.io/v1alpha1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

UNHEALTHY = "devfleet.blueprintd.io/unhealthy"
UNREADY = "unready"
FAILED = "failed"
NODE_IP = "127.0.0.1"
LEASE_SECONDS = 40

_ANNOTATION = f'.metadata.annotations["{UNHEALTHY}"]'
_NOT_DELETED = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_PENDING = {"key": ".status.phase", "operator": "In", "values": ["Pending"]}
_READY_STATUS = '.status.conditions.[] | select( .type == "Ready" ) | .status'
_NOT_READY = {"key": _READY_STATUS, "operator": "NotIn", "values": ["True"]}
_NODE_READY = {"key": _READY_STATUS, "operator": "In", "values": ["True"]}

# Both node templates report the same addresses (kwok's NodeIP: ``NODE_IP``).
_NODE_ADDRESSES = """\
addresses:
- type: InternalIP
  address: {{ NodeIP | Quote }}
- type: Hostname
  address: {{ .metadata.name | Quote }}
"""

_NODE_STATUS = (
    """\
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- type: {{ .type | Quote }}
  status: {{ .status | Quote }}
  reason: {{ .reason | Quote }}
  message: {{ .message | Quote }}
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
"""
    + _NODE_ADDRESSES
    + "phase: Running\n"
)

_HEARTBEAT = (
    """\
{{ $now := Now }}
conditions:
{{ range .status.conditions }}
- type: {{ .type | Quote }}
  status: {{ .status | Quote }}
  reason: {{ or .reason "" | Quote }}
  message: {{ or .message "" | Quote }}
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ or .lastTransitionTime $now | Quote }}
{{ end }}
"""
    + _NODE_ADDRESSES
)

# Pod IP (and host IP) for a Pod on its node; hostNetwork Pods get the node's IP.
_POD_IPS = """\
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) \
( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
startTime: {{ $now | Quote }}
"""


def _pod_running(ready: bool) -> str:
    flag = "true" if ready else "false"
    cond = '"True"' if ready else '"False"'
    return (
        "{{ $now := Now }}\n"
        "phase: Running\n"
        "conditions:\n"
        '- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}\n'
        f"- {{type: Ready, status: {cond}, lastTransitionTime: {{{{ $now | Quote }}}}}}\n"
        f"- {{type: ContainersReady, status: {cond}, lastTransitionTime: {{{{ $now | Quote }}}}}}\n"
        "{{ range .spec.readinessGates }}\n"
        '- {type: {{ .conditionType | Quote }}, status: "True", lastTransitionTime: {{ $now | Quote }}}\n'
        "{{ end }}\n"
        "containerStatuses:\n"
        "{{ range .spec.containers }}\n"
        f"- name: {{{{ .name | Quote }}}}\n  image: {{{{ .image | Quote }}}}\n  ready: {flag}\n"
        f"  started: true\n  restartCount: 0\n"
        "  state: {running: {startedAt: {{ $now | Quote }}}}\n"
        "{{ end }}\n"
        "initContainerStatuses:\n"
        "{{ range .spec.initContainers }}\n"
        "- name: {{ .name | Quote }}\n  image: {{ .image | Quote }}\n  ready: true\n  restartCount: 0\n"
        "  state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, "
        "finishedAt: {{ $now | Quote }}}}\n"
        "{{ end }}\n" + _POD_IPS
    )


def _pod_terminated(phase: str, exit_code: int, reason: str) -> str:
    return (
        "{{ $now := Now }}\n"
        f"phase: {phase}\n"
        "conditions:\n"
        '- {type: Ready, status: "False", reason: PodCompleted, lastTransitionTime: {{ $now | Quote }}}\n'
        '- {type: ContainersReady, status: "False", reason: PodCompleted, '
        "lastTransitionTime: {{ $now | Quote }}}\n"
        "containerStatuses:\n"
        "{{ range .spec.containers }}\n"
        "- name: {{ .name | Quote }}\n  image: {{ .image | Quote }}\n  ready: false\n  started: false\n"
        "  restartCount: 0\n"
        f"  state: {{terminated: {{exitCode: {exit_code}, reason: {reason}, "
        "startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}\n"
        "{{ end }}\n" + _POD_IPS
    )


def _stage(name: str, kind: str, selector: list[dict[str, Any]], next_: dict[str, Any],
           delay_ms: int | None = None, jitter_ms: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": selector},
        "next": next_,
    }
    if delay_ms is not None:
        spec["delay"] = {"durationMilliseconds": delay_ms, "jitterDurationMilliseconds": jitter_ms or delay_ms}
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def stages() -> list[dict[str, Any]]:
    """The Stages of a member's kwok (see the module docstring for what each one plays)."""
    healthy = {"key": _ANNOTATION, "operator": "DoesNotExist"}
    return [
        _stage("node-initialize", "Node", [_NOT_READY], {"statusTemplate": _NODE_STATUS}),
        _stage("node-heartbeat", "Node", [_NODE_READY], {"statusTemplate": _HEARTBEAT}, 20_000, 25_000),
        _stage("pod-ready", "Pod", [_NOT_DELETED, _PENDING, healthy], {"statusTemplate": _pod_running(True)}),
        _stage(
            "pod-unready",
            "Pod",
            [_NOT_DELETED, _PENDING, {"key": _ANNOTATION, "operator": "In", "values": [UNREADY]}],
            {"statusTemplate": _pod_running(False)},
        ),
        _stage(
            "pod-failed",
            "Pod",
            [_NOT_DELETED, _PENDING, {"key": _ANNOTATION, "operator": "In", "values": [FAILED]}],
            {"statusTemplate": _pod_terminated("Failed", 1, "Error")},
        ),
        _stage(
            "pod-complete",
            "Pod",
            [
                _NOT_DELETED,
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
            ],
            {"statusTemplate": _pod_terminated("Succeeded", 0, "Completed")},
        ),
        _stage(
            "pod-delete",
            "Pod",
            [
                {"key": ".metadata.deletionTimestamp", "operator": "Exists"},
                {"key": ".metadata.finalizers", "operator": "DoesNotExist"},
            ],
            {"delete": True},
        ),
    ]


def configuration(pod_cidr: str) -> list[dict[str, Any]]:
    """The documents of a member's kwok ``--config`` file."""
    options = {
        "cidr": pod_cidr,
        "nodeIP": NODE_IP,
        "manageAllNodes": True,
        "nodeLeaseDurationSeconds": LEASE_SECONDS,
        # kwok defaults these only when it writes its own configuration; a file must say them.
        "nodeLeaseParallelism": 4,
        "podPlayStageParallelism": 4,
        "nodePlayStageParallelism": 4,
        "podsOnNodeSyncParallelism": 1,
    }
    return [
        {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration", "options": options},
        *stages(),
    ]


def write_config(path: Path, pod_cidr: str) -> Path:
    path.write_text(yaml.safe_dump_all(configuration(pod_cidr), sort_keys=False))
    return path


def argv(kwok: Path, kubeconfig: Path, config: Path) -> list[str]:
    """kwok's command line: no kubelet port is served (nothing may listen beyond the fleet)."""
    return [str(kwok), f"--kubeconfig={kubeconfig}", f"--config={config}", "--manage-all-nodes=true"]
