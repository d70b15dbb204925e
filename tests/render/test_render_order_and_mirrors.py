"""Install order and chart mirrors."""

from __future__ import annotations

import pytest

from blueprintd.api.blueprint import Addon
from blueprintd.errors import RenderError
from blueprintd.render import mirror_repo, topological_order


def addon(name: str, *deps: str) -> Addon:
    return Addon(name=name, manifests=[], depends_on=list(deps))


def test_dependencies_first_ties_by_name() -> None:
    addons = [addon("web", "db", "cache"), addon("db"), addon("cache"), addon("alpha"), addon("zeta", "alpha")]
    assert topological_order(addons) == ["alpha", "cache", "db", "web", "zeta"]


def test_cycle_is_an_error_naming_the_addons() -> None:
    with pytest.raises(RenderError, match="dependency cycle among add-ons: a, b, c"):
        topological_order([addon("a", "c"), addon("b", "a"), addon("c", "b"), addon("d")])


def test_unknown_dependency_is_an_error() -> None:
    with pytest.raises(RenderError, match="add-on 'a' depends on unknown add-on 'b'"):
        topological_order([addon("a", "b")])


@pytest.mark.parametrize(
    ("repo", "mirrors", "expected"),
    [
        ("https://charts.example.com", {}, ("https://charts.example.com", None)),
        (
            "https://charts.example.com/",
            {"https://charts.example.com": "http://m/x"},
            ("http://m/x", "https://charts.example.com/"),
        ),
        (
            "oci://ghcr.io/nvidia/kai",
            {"oci://ghcr.io": "http://m/ghcr"},
            ("http://m/ghcr/nvidia/kai", "oci://ghcr.io/nvidia/kai"),
        ),
        (
            "oci://ghcr.io/nvidia/kai",
            {"oci://ghcr.io": "http://a", "oci://ghcr.io/nvidia": "http://b"},
            ("http://b/kai", "oci://ghcr.io/nvidia/kai"),
        ),
        (
            "https://charts.example.community",
            {"https://charts.example.com": "http://m"},
            ("https://charts.example.community", None),
        ),
    ],
)
def test_mirror_matching(repo: str, mirrors: dict[str, str], expected: tuple[str, str | None]) -> None:
    assert mirror_repo(repo, mirrors) == expected
