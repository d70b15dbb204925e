"""Overlay semantics: precedence, conflicts, templates, JSON patch, manifests, errors."""

from __future__ import annotations

from typing import Any

import pytest
from render_helpers import H100, L4, blueprint, facts, pool

from blueprintd.errors import RenderError
from blueprintd.render import RenderOptions, compile_blueprint, render


def values(state: Any, addon: str = "op") -> dict[str, Any]:
    helm = state.step(addon).helm
    assert helm is not None
    result: dict[str, Any] = helm.values
    return result


def mixed() -> Any:
    return facts(pool("h100", H100, 8, mig=True), pool("l4", L4, 2), pool("cpu"))


def test_conflicting_overlays_name_both_and_the_path() -> None:
    bp = blueprint(
        [
            {"name": "fast", "when": "true", "patches": [{"addon": "op", "values": {"config": {"mode": "fast"}}}]},
            {"name": "safe", "when": "true", "patches": [{"addon": "op", "values": {"config": {"mode": "safe"}}}]},
        ]
    )
    with pytest.raises(RenderError) as info:
        render(bp, mixed())
    message = str(info.value)
    assert "overlay 'fast'" in message and "overlay 'safe'" in message
    assert "/config/mode" in message
    assert '"fast" vs "safe"' in message


def test_conflict_between_pools_of_one_overlay() -> None:
    bp = blueprint(
        [
            {
                "name": "per-pool",
                "scope": "nodePool",
                "when": "pool.gpuCount > 0",
                "patches": [{"addon": "op", "values": {"config": {"mode": "${ pool.name }"}}}],
            }
        ]
    )
    with pytest.raises(RenderError, match=r"overlay 'per-pool' \(pool h100\) and overlay 'per-pool' \(pool l4\)"):
        render(bp, mixed())


def test_conflict_with_a_subtree_another_overlay_replaced() -> None:
    bp = blueprint(
        [
            {"name": "a", "patches": [{"addon": "op", "values": {"config": None}}]},
            {"name": "b", "patches": [{"addon": "op", "values": {"config": {"mode": "x"}}}]},
        ]
    )
    with pytest.raises(RenderError, match="overlay 'a' and overlay 'b' both set add-on op values /config"):
        render(bp, mixed())


def test_equal_values_from_several_overlays_are_not_a_conflict() -> None:
    bp = blueprint(
        [
            {"name": "a", "patches": [{"addon": "op", "values": {"config": {"mode": "gpu"}}}]},
            {
                "name": "b",
                "scope": "nodePool",
                "when": "pool.gpuCount > 0",
                "patches": [{"addon": "op", "values": {"config": {"mode": "gpu", "extra": "${ 'x-' + pool.name }"}}}],
            },
        ]
    )
    with pytest.raises(RenderError):  # extra differs per pool
        render(bp, mixed())
    bp = blueprint(
        [
            {"name": "a", "patches": [{"addon": "op", "values": {"config": {"mode": "gpu"}}}]},
            {
                "name": "b",
                "scope": "nodePool",
                "when": "pool.gpuCount > 0",
                "patches": [{"addon": "op", "values": {"config": {"mode": "gpu", "pools": {"${ pool.name }": True}}}}],
            },
        ]
    )
    state = render(bp, mixed())
    assert values(state)["config"] == {"mode": "gpu", "list": [1], "pools": {"h100": True, "l4": True}}


def test_conflicting_node_labels() -> None:
    bp = blueprint(
        [
            {"name": "a", "scope": "nodePool", "when": "pool.gpuCount > 0", "nodeLabels": {"example.com/x": "1"}},
            {"name": "b", "scope": "nodePool", "when": "pool.migCapable", "nodeLabels": {"example.com/x": "2"}},
        ]
    )
    with pytest.raises(
        RenderError, match="overlay 'a' \\(pool h100\\) and overlay 'b' \\(pool h100\\) both set node label"
    ):
        render(bp, mixed())


def test_precedence_cluster_before_pool_then_priority_then_name() -> None:
    def appender(name: str, **extra: Any) -> dict[str, Any]:
        op = {"op": "add", "path": "/config/list/-", "value": name}
        return {"name": name, "patches": [{"addon": "op", "valuesJsonPatch": [op]}], **extra}

    bp = blueprint(
        [
            appender("z-pool", scope="nodePool", when="pool.name == 'h100'"),
            appender("b-late", priority=10),
            appender("c-cluster"),
            appender("a-cluster"),
            appender("early", priority=-5),
        ]
    )
    state = render(bp, mixed())
    assert values(state)["config"]["list"] == [1, "early", "a-cluster", "c-cluster", "b-late", "z-pool"]
    order = [e.overlay for e in state.explanations]
    assert order == ["early", "a-cluster", "c-cluster", "b-late", "z-pool", "z-pool", "z-pool"]


def test_templated_values_and_keys_use_the_pool() -> None:
    bp = blueprint(
        [
            {
                "name": "mig",
                "scope": "nodePool",
                "when": "pool.migCapable",
                "nodeLabels": {"example.com/profile": "${ 'all-' + pool.migProfile }"},
                "patches": [
                    {
                        "addon": "op",
                        "values": {
                            "profiles": {"${ pool.name }": "${ pool.migProfiles }"},
                            "count": "${ pool.migProfileCount * size(pool.nodes) }",
                        },
                    }
                ],
            }
        ]
    )
    state = render(bp, mixed())
    out = values(state)
    assert out["profiles"]["h100"][:2] == ["1g.10gb", "1g.20gb"]
    assert out["count"] == 14
    assert state.node_labels[0].labels == {"example.com/profile": "all-1g.10gb"}


def test_json_patch_replace_on_missing_path_is_a_clear_render_error() -> None:
    bp = blueprint(
        [
            {
                "name": "tune",
                "scope": "nodePool",
                "when": "pool.gpuCount > 0",
                "patches": [
                    {"addon": "op", "values": {"tuning": {"level": 1}}},
                    {
                        "addon": "op",
                        "valuesJsonPatch": [{"op": "replace", "path": "${ '/tuning/' + pool.name }", "value": 2}],
                    },
                ],
            }
        ]
    )
    with pytest.raises(RenderError) as info:
        render(bp, mixed())
    message = str(info.value)
    assert "overlay 'tune' (pool h100) patch 1 on add-on 'op'" in message
    assert "path /tuning/h100 does not exist: /tuning has no field 'h100'" in message


def test_json_patch_ops() -> None:
    ops = [
        {"op": "test", "path": "/replicas", "value": 1},
        {"op": "replace", "path": "/replicas", "value": 3},
        {"op": "copy", "from": "/config/mode", "path": "/modeCopy"},
        {"op": "move", "from": "/modeCopy", "path": "/config/previous"},
        {"op": "remove", "path": "/config/list/0"},
        {"op": "add", "path": "/config/list/0", "value": "first"},
    ]
    state = render(blueprint([{"name": "ops", "patches": [{"addon": "op", "valuesJsonPatch": ops}]}]), mixed())
    assert values(state) == {"config": {"mode": "default", "list": ["first"], "previous": "default"}, "replicas": 3}


def test_json_patch_test_failure() -> None:
    ops = [{"op": "test", "path": "/replicas", "value": True}]
    with pytest.raises(RenderError, match="test failed: /replicas is 1, not true"):
        render(blueprint([{"name": "t", "patches": [{"addon": "op", "valuesJsonPatch": ops}]}]), mixed())


def test_manifest_patches_target_one_object() -> None:
    bp = blueprint(
        [
            {
                "name": "cm",
                "patches": [
                    {
                        "addon": "objs",
                        "target": {"kind": "ConfigMap", "name": "cm"},
                        "mergePatch": {"data": {"b": "2"}},
                    },
                    {
                        "addon": "objs",
                        "target": {"kind": "ConfigMap", "name": "cm", "namespace": "apps"},
                        "jsonPatch": [{"op": "add", "path": "/metadata/labels", "value": {"team": "ml"}}],
                    },
                ],
            }
        ]
    )
    manifests = render(bp, mixed()).step("objs").manifests
    assert manifests == [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "apps", "labels": {"team": "ml"}},
            "data": {"a": "1", "b": "2"},
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}},
    ]


def test_condition_that_fails_to_evaluate_is_an_error_naming_overlay_and_pool() -> None:
    bp = blueprint([{"name": "lbl", "scope": "nodePool", "when": "pool.labels['tier'] == 'a'"}])
    with pytest.raises(RenderError) as info:
        render(bp, mixed())
    assert "overlay 'lbl' (pool cpu): condition" in str(info.value)
    assert "no such field or key" in str(info.value)


def test_condition_must_be_boolean() -> None:
    bp = blueprint([{"name": "num", "scope": "nodePool", "when": "pool.gpuCount"}])
    with pytest.raises(RenderError, match="must be true or false, got 0"):
        render(bp, mixed())


def test_templated_label_must_be_a_valid_label_value() -> None:
    bp = blueprint(
        [{"name": "l", "scope": "nodePool", "when": "true", "nodeLabels": {"example.com/p": "${ 'x/' + pool.name }"}}]
    )
    with pytest.raises(RenderError, match="label value 'x/cpu' is invalid"):
        render(bp, mixed())


def test_nodepool_overlay_on_cluster_without_pools_is_explained() -> None:
    state = render(blueprint([{"name": "p", "scope": "nodePool", "when": "pool.gpuCount > 0"}]), facts())
    (e,) = state.explanations
    assert (e.fired, e.pool, e.reason) == (False, None, "cluster has no node pools")


def test_cluster_overlay_reads_cluster_facts_and_params() -> None:
    bp = blueprint(
        [
            {
                "name": "big",
                "when": "size(cluster.pools.filter(p, p.gpuCount > 0)) >= params.minGpuPools",
                "patches": [{"addon": "op", "values": {"replicas": "${ params.minGpuPools + 1 }"}}],
            }
        ],
        parameters={"minGpuPools": {"type": "integer", "default": 2, "minimum": 0}},
    )
    assert values(render(bp, mixed()))["replicas"] == 3
    assert values(render(bp, mixed(), RenderOptions(parameters={"minGpuPools": 3})))["replicas"] == 1


def test_unknown_parameter_override_is_refused() -> None:
    bp = blueprint([], parameters={"a": {"type": "integer", "default": 1}})
    with pytest.raises(RenderError, match="parameter 'b' is not declared by Blueprint 'test' \\(declared: a\\)"):
        render(bp, facts(), RenderOptions(parameters={"b": 2}))


def files_addon(files: dict[str, Any]) -> list[dict[str, Any]]:
    """One Helm add-on 'op' whose ``files`` values are config files embedded as YAML text."""
    return [
        {
            "name": "op",
            "namespace": "ops",
            "helm": {
                "repo": "oci://registry.example.com/charts",
                "chart": "op",
                "version": "v2.0.0",
                "encodeAsYaml": ["/files/*"],
                "values": {"files": files},
            },
        }
    ]


def test_encode_as_yaml_applies_after_overlays() -> None:
    bp = blueprint(
        [{"name": "f", "patches": [{"addon": "op", "values": {"files": {"extra.yaml": {"b": [1, 2]}}}}]}],
        addons=files_addon({"base.yaml": {"a": 1}, "raw": "kept: as-is\n"}),
    )
    out = values(render(bp, facts()))["files"]
    assert out == {"base.yaml": "a: 1\n", "extra.yaml": "b:\n- 1\n- 2\n", "raw": "kept: as-is\n"}


def test_encoded_yaml_keeps_digit_strings_strings_for_go_readers() -> None:
    """A config file embedded as YAML text is read by Go (the device plugin): a string such as
    a zero-padded ID must be quoted there, or Go reads a number where the blueprint wrote text."""
    addons = files_addon({"c.yaml": {"id": "001935", "scale": "1e3", "n": 7, "name": "a100"}})
    out = values(render(blueprint([], addons=addons), facts()))["files"]["c.yaml"]
    assert out == "id: '001935'\n'n': 7\nname: a100\nscale: '1e3'\n"


def test_render_does_not_change_the_blueprint_or_share_output() -> None:
    bp = blueprint([{"name": "a", "patches": [{"addon": "op", "values": {"config": {"mode": "x"}}}]}])
    before = bp.model_dump()
    first = render(bp, mixed())
    values(first)["config"]["mode"] = "mutated by a consumer"
    (first.step("objs").manifests or [])[0]["data"]["a"] = "mutated"
    second = render(bp, mixed())
    assert values(second)["config"]["mode"] == "x"
    assert (second.step("objs").manifests or [])[0]["data"]["a"] == "1"
    assert bp.model_dump() == before


def test_compiled_blueprint_is_cached_and_reusable() -> None:
    bp = blueprint([])
    assert compile_blueprint(bp) is compile_blueprint(bp.model_copy(deep=True))
    compiled = compile_blueprint(bp)
    assert render(compiled, mixed()).to_json() == render(bp, mixed()).to_json()
    assert render(compiled, mixed()).revision == bp.content_hash()
