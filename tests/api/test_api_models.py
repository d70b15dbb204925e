"""Model behaviour users rely on: selectors, content hashes, revision names, wire form."""

from __future__ import annotations

from typing import Any

import pytest

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.common import LabelSelector, matches
from blueprintd.api.issues import InvalidInput
from blueprintd.api.load import parse_blueprint, parse_object
from blueprintd.api.membercluster import MemberCluster
from blueprintd.api.revision import revision_name


def sel(**data: Any) -> LabelSelector:
    return LabelSelector.model_validate(data)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"env": "prod"}}, {"env": "prod", "x": "y"}, True),
        ({"matchLabels": {"env": "prod"}}, {"env": "dev"}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["h100", "a100"]}]}, {"gpu": "a100"}, True),
        ({"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["h100"]}]}, {}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["l4"]}]}, {}, True),
        ({"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["l4"]}]}, {"gpu": "l4"}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {"gpu": ""}, True),
        ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, {"gpu": "x"}, False),
        (
            {"matchLabels": {"env": "prod"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]},
            {"env": "prod"},
            False,
        ),
    ],
)
def test_label_selector_semantics(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert sel(**selector).matches(labels) is expected


def test_missing_selector_matches_every_cluster() -> None:
    assert matches(None, {"anything": "x"})


def test_selector_operator_values_are_checked() -> None:
    with pytest.raises(ValueError, match="needs at least one value"):
        sel(matchExpressions=[{"key": "a", "operator": "In"}])
    with pytest.raises(ValueError, match="takes no 'values'"):
        sel(matchExpressions=[{"key": "a", "operator": "Exists", "values": ["x"]}])


def test_content_hash_ignores_explicit_defaults_and_key_order(small: dict[str, Any]) -> None:
    a = parse_blueprint(small)
    small["spec"]["drift"] = {"mode": "remediate"}  # the default, written out
    small["spec"] = dict(reversed(list(small["spec"].items())))
    b = parse_blueprint(small)
    assert a.content_hash() == b.content_hash()
    assert a.content_hash().startswith("sha256:")


def test_content_hash_changes_with_content(small: dict[str, Any]) -> None:
    a = parse_blueprint(small)
    small["spec"]["addons"][0]["helm"]["values"]["replicas"] = 2
    assert parse_blueprint(small).content_hash() != a.content_hash()


def test_revision_names_are_valid_object_names() -> None:
    assert revision_name("gpu-platform", "1.0.0") == "gpu-platform-v1.0.0"
    assert revision_name("gpu-platform", "1.0.0-rc.1+build.5") == "gpu-platform-v1.0.0-rc.1-build.5"


def test_member_cluster_defaults_refuse_exec_and_files() -> None:
    mc = parse_object(
        {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "MemberCluster",
            "metadata": {"name": "m1", "labels": {"env": "prod"}},
            "spec": {
                "kubeconfigSecretRef": {"name": "m1-kubeconfig"},
                "versionPins": [{"blueprint": "b", "version": "1.0.0"}],
            },
        }
    )
    assert isinstance(mc, MemberCluster)
    assert mc.spec.allow_exec_auth is False and mc.spec.allow_local_files is False
    assert mc.spec.kubeconfig_secret_ref.key == "kubeconfig"
    assert mc.to_wire()["spec"]["versionPins"] == [{"blueprint": "b", "version": "1.0.0"}]


def test_git_source_ref_needs_exactly_one() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_object(
            {
                "apiVersion": "blueprintd.io/v1alpha1",
                "kind": "GitSource",
                "metadata": {"name": "g"},
                "spec": {"url": "https://git.example.com/platform.git", "ref": {"branch": "main", "tag": "v1"}},
            }
        )
    (issue,) = info.value.issues
    assert issue.field == "spec.ref"


def test_object_read_from_api_server_with_server_fields_parses(small: dict[str, Any]) -> None:
    small["metadata"].update(
        {
            "uid": "0b7c",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
        }
    )
    small["status"] = {"matchedClusters": 2, "conditions": [{"type": "Ready", "status": "True"}]}
    bp = parse_blueprint(small)
    assert isinstance(bp, Blueprint)
    assert bp.metadata.generation == 3
    assert bp.status is not None and bp.status.conditions[0].status == "True"
