"""The operator's CEL and size limits come from its settings, defaults from the code, overrides from env."""

from __future__ import annotations

import pytest

from blueprintd.api.cel import CelBudget
from blueprintd.api.limits import BlueprintLimits
from blueprintd.operator.settings import OperatorSettings


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("BLUEPRINTD_CEL_COST_LIMIT", "BLUEPRINTD_CEL_COST_BUDGET", "BLUEPRINTD_RENDER_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    settings = OperatorSettings.from_env()
    assert settings.blueprint_limits == BlueprintLimits() and settings.blueprint_limits.cel_cost == 50_000
    assert settings.cel_budget == CelBudget(cost=50_000, timeout_seconds=5.0)


def test_environment_raises_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUEPRINTD_CEL_COST_LIMIT", "1000000")
    monkeypatch.setenv("BLUEPRINTD_CEL_COST_BUDGET", "2000000")
    monkeypatch.setenv("BLUEPRINTD_RENDER_TIMEOUT", "12.5")
    settings = OperatorSettings.from_env()
    assert settings.blueprint_limits.cel_cost == 1_000_000
    assert settings.blueprint_limits.values_bytes == BlueprintLimits().values_bytes  # the rest stay default
    assert settings.cel_budget == CelBudget(cost=2_000_000, timeout_seconds=12.5)


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("BLUEPRINTD_CEL_COST_LIMIT", "lots", "a whole number"),
        ("BLUEPRINTD_CEL_COST_BUDGET", "1e6", "a whole number"),
        ("BLUEPRINTD_RENDER_TIMEOUT", "5s", "a number of seconds"),
    ],
)
def test_a_bad_limit_names_the_variable(var: str, value: str, expected: str) -> None:
    with pytest.raises(ValueError, match=f"{var}={value!r}: expected {expected}"):
        OperatorSettings.from_env({var: value})
