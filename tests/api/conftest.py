"""Fixtures for API tests: a small valid Blueprint to break in specific ways."""

from __future__ import annotations

import copy
from typing import Any

import pytest

SMALL: dict[str, Any] = {
    "apiVersion": "blueprintd.io/v1alpha1",
    "kind": "Blueprint",
    "metadata": {"name": "small"},
    "spec": {
        "version": "1.0.0",
        "parameters": {"replicas": {"type": "integer", "default": 2, "minimum": 1}},
        "addons": [
            {
                "name": "operator",
                "namespace": "ops",
                "helm": {
                    "repo": "https://charts.example.com/stable",
                    "chart": "operator",
                    "version": "1.2.3",
                    "values": {"feature": {"enabled": False}, "replicas": 1},
                },
            },
            {
                "name": "objects",
                "namespace": "ops",
                "dependsOn": ["operator"],
                "manifests": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}
                ],
            },
        ],
        "overlays": [
            {
                "name": "gpu",
                "scope": "nodePool",
                "when": "pool.gpuCount > 0",
                "patches": [{"addon": "operator", "values": {"feature": {"enabled": True}}}],
                "nodeLabels": {"example.com/gpu": "true"},
            }
        ],
    },
}


@pytest.fixture
def small() -> dict[str, Any]:
    """A fresh copy of a small valid Blueprint (as parsed YAML)."""
    return copy.deepcopy(SMALL)
