"""Member-cluster kubeconfigs: refuse the dangerous ones, never leak the secret ones.

The operator holds credentials for every member cluster, and a kubeconfig is more than a
credential: ``exec`` and ``auth-provider`` entries run programs inside the operator's pod,
and file references (``tokenFile``, ``client-key``…) read its file system. A MemberCluster
must opt in explicitly (``allowExecAuth`` / ``allowLocalFiles``) before such a kubeconfig is
used. Error messages name the offending field, never its value.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from blueprintd.api import yamltext
from blueprintd.errors import ClusterError

# File field -> the field that embeds the same data (a kubeconfig has no "tokenFile-data").
_FILE_FIELDS_USER = {
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
    "tokenFile": "token",
}
_FILE_FIELDS_CLUSTER = ("certificate-authority",)


class KubeconfigRefused(ClusterError):
    """The kubeconfig asks for something the MemberCluster did not allow."""


def parse_kubeconfig(raw: str | bytes) -> dict[str, Any]:
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        # The YAML error may quote the content, which holds credentials: report the position only.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ClusterError(f"the kubeconfig is not valid YAML{where}") from None
    if not isinstance(data, dict) or not data.get("clusters") or not data.get("users"):
        raise ClusterError("the kubeconfig has no clusters or no users: expected a kubeconfig file (kind: Config)")
    return data


def check_kubeconfig(cfg: dict[str, Any], *, allow_exec: bool = False, allow_local_files: bool = False) -> None:
    """Raise ``KubeconfigRefused`` naming every disallowed field of ``cfg``."""
    problems: list[str] = []
    for i, entry in enumerate(cfg.get("users") or []):
        user = (entry or {}).get("user") or {}
        name = (entry or {}).get("name", i)
        if not allow_exec:
            for key in ("exec", "auth-provider"):
                if key in user:
                    problems.append(
                        f"users[{name}].user.{key} runs a program in the operator; "
                        "set spec.allowExecAuth: true on the MemberCluster to permit it"
                    )
        if not allow_local_files:
            for key, embedded in _FILE_FIELDS_USER.items():
                if key in user:
                    problems.append(
                        f"users[{name}].user.{key} reads a file of the operator's host; embed the data "
                        f"in {embedded} instead or set spec.allowLocalFiles: true"
                    )
    if not allow_local_files:
        for i, entry in enumerate(cfg.get("clusters") or []):
            cluster = (entry or {}).get("cluster") or {}
            name = (entry or {}).get("name", i)
            for key in _FILE_FIELDS_CLUSTER:
                if key in cluster:
                    problems.append(
                        f"clusters[{name}].cluster.{key} reads a file of the operator's host; "
                        f"use {key}-data or set spec.allowLocalFiles: true"
                    )
    if problems:
        raise KubeconfigRefused("kubeconfig refused: " + "; ".join(problems))


def server_of(cfg: dict[str, Any]) -> str:
    """The API server URL of the current context (for status and messages: not secret)."""
    contexts = {c.get("name"): c.get("context", {}) for c in cfg.get("contexts") or []}
    current = contexts.get(cfg.get("current-context")) or {}
    clusters = {c.get("name"): c.get("cluster", {}) for c in cfg.get("clusters") or []}
    cluster: dict[str, Any] = clusters.get(current.get("cluster")) or next(iter(clusters.values()), {})
    return str(cluster.get("server", ""))


def api_client(cfg: dict[str, Any]) -> Any:
    """A ``kubernetes.client.ApiClient`` for an already-checked kubeconfig dict."""
    from kubernetes import config

    from blueprintd.cluster.tls import share_tls_context

    try:
        client = config.new_client_from_config_dict(cfg)
        share_tls_context(client)
    except Exception as exc:  # the client raises ConfigException and friends, ssl an SSLError
        raise ClusterError(f"cannot build a client from the kubeconfig: {type(exc).__name__}") from None
    return client


def write_private(cfg: dict[str, Any], directory: Path | None = None) -> Path:
    """Write a kubeconfig for tools that need a file (helm), readable by this user only."""
    d = directory or Path(tempfile.mkdtemp(prefix="blueprintd-kc-"))
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    fd, name = tempfile.mkstemp(dir=d, suffix=".kubeconfig")
    with os.fdopen(fd, "w") as f:
        f.write(yamltext.dump(cfg))
    os.chmod(name, 0o600)
    return Path(name)
