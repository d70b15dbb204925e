"""Fixtures for render tests: the default Blueprint, example facts, and small builders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.facts import ClusterFacts
from blueprintd.api.load import load_blueprints, load_model_file

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "facts"


@pytest.fixture(scope="session")
def default_blueprint() -> Blueprint:
    (bp,) = load_blueprints([REPO_ROOT / "blueprints" / "gpu-platform"])
    return bp


@pytest.fixture
def example_facts() -> Callable[[str], ClusterFacts]:
    """``example_facts("mixed")`` → examples/facts/mixed.yaml as ClusterFacts."""

    def load(name: str) -> ClusterFacts:
        return load_model_file(EXAMPLES / f"{name}.yaml", ClusterFacts)

    return load
