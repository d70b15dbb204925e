"""Member kubeconfigs that run programs or read files are refused unless explicitly allowed."""

from __future__ import annotations

import pytest

from blueprintd.cluster.kubeconfig import KubeconfigRefused, check_kubeconfig, parse_kubeconfig, server_of
from blueprintd.errors import ClusterError

BASE = {
    "apiVersion": "v1", "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443", "certificate-authority-data": "Q0E="}}],
    "users": [{"name": "u", "user": {"token": "s3cr3t-token"}}],
    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "c",
}


def with_user(**user: object) -> dict[str, object]:
    cfg = dict(BASE)
    cfg["users"] = [{"name": "u", "user": user}]
    return cfg


def test_plain_token_kubeconfig_is_accepted() -> None:
    check_kubeconfig(BASE)
    assert server_of(BASE) == "https://10.0.0.1:6443"


@pytest.mark.parametrize("key", ["exec", "auth-provider"])
def test_programs_are_refused_unless_allowed(key: str) -> None:
    cfg = with_user(**{key: {"command": "aws"}})
    with pytest.raises(KubeconfigRefused, match=rf"users\[u\]\.user\.{key}.*allowExecAuth"):
        check_kubeconfig(cfg)
    check_kubeconfig(cfg, allow_exec=True)


@pytest.mark.parametrize("key", ["tokenFile", "client-key", "client-certificate"])
def test_local_files_are_refused_unless_allowed(key: str) -> None:
    cfg = with_user(**{key: "/var/run/secrets/x"})
    with pytest.raises(KubeconfigRefused, match=rf"users\[u\]\.user\.{key}.*allowLocalFiles"):
        check_kubeconfig(cfg)
    check_kubeconfig(cfg, allow_local_files=True)


def test_ca_file_is_a_local_file_too() -> None:
    cfg = dict(BASE, clusters=[{"name": "c", "cluster": {"server": "https://x", "certificate-authority": "/ca"}}])
    with pytest.raises(KubeconfigRefused, match=r"clusters\[c\]\.cluster\.certificate-authority"):
        check_kubeconfig(cfg)


def test_errors_never_quote_the_secret() -> None:
    with pytest.raises(ClusterError) as exc:
        parse_kubeconfig("users: [{name: u, user: {token: s3cr3t-token}]\n  bad: : indent")
    assert "s3cr3t" not in str(exc.value) and "line" in str(exc.value)
    with pytest.raises(KubeconfigRefused) as refused:
        check_kubeconfig(with_user(token="s3cr3t-token", exec={"command": "x"}))
    assert "s3cr3t" not in str(refused.value)


@pytest.mark.parametrize(
    ("key", "embedded"),
    [("tokenFile", "token"), ("client-key", "client-key-data"), ("client-certificate", "client-certificate-data")],
)
def test_file_refusal_names_the_real_embedded_field(key: str, embedded: str) -> None:
    """The suggested replacement is a field kubeconfigs have (there is no tokenFile-data)."""
    with pytest.raises(KubeconfigRefused) as refused:
        check_kubeconfig(with_user(**{key: "/var/run/secrets/x"}))
    message = str(refused.value)
    assert f"embed the data in {embedded} " in message
    assert "-data / token" not in message and "tokenFile-data" not in message
