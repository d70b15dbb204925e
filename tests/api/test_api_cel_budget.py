"""The runtime CEL budget: every evaluation is metered and stops at its cost or its deadline."""

from __future__ import annotations

import threading
import time

import pytest

from blueprintd.api.cel import CelBudgetExceeded, CelError, Meter, compile_cel, to_cel

THIRTY = "[" + ",".join(str(i) for i in range(30)) + "]"
BOMB = f"{THIRTY}.all(a, {THIRTY}.all(b, {THIRTY}.all(c, {THIRTY}.all(d, {THIRTY}.all(e, a+b+c+d+e >= 0)))))"


def test_cost_budget_stops_the_bomb() -> None:
    program = compile_cel(BOMB, {})
    with pytest.raises(CelBudgetExceeded) as info:
        program.evaluate({}, Meter(2_000))
    assert info.value.what == "cost"
    assert "exceeded its cost budget of 2000" in str(info.value)


def test_deadline_stops_an_evaluation_the_cost_budget_would_allow() -> None:
    program = compile_cel(BOMB, {})
    started = time.monotonic()
    with pytest.raises(CelBudgetExceeded) as info:
        program.evaluate({}, Meter(10**12, started + 0.3, 0.3))
    assert info.value.what == "deadline"
    assert "render deadline of 0.3s" in str(info.value)
    assert time.monotonic() - started < 5  # checked at every charge, not after the fact


@pytest.mark.parametrize(
    "text",
    [
        f"{BOMB} || true",  # a short-circuit branch cannot swallow the budget error
        f"true && {BOMB}",
        f"has({THIRTY}.map(a, {THIRTY}.map(b, {THIRTY}.map(c, {THIRTY}.map(d, a)))).size)",
        f"[1, 2].exists(x, x == 2 || {BOMB})",
    ],
)
def test_the_budget_error_escapes_every_construct(text: str) -> None:
    with pytest.raises(CelBudgetExceeded):
        compile_cel(text, {}).evaluate({}, Meter(3_000))


def test_string_doubling_is_refused_before_it_allocates() -> None:
    program = compile_cel('["ab"]' + ".map(x, x + x)" * 60 + "[0].size()", {})
    with pytest.raises(CelBudgetExceeded):
        program.evaluate({}, Meter(50_000))


def test_an_ordinary_expression_is_unaffected() -> None:
    program = compile_cel("pool.gpuCount > 0 && !pool.sandbox", {"pool": None})
    assert program.evaluate({"pool": to_cel({"gpuCount": 8, "sandbox": False})}, Meter(10)) is True


def test_evaluation_errors_stay_evaluation_errors() -> None:
    with pytest.raises(CelError) as info:
        compile_cel("pool.missing > 1", {"pool": None}).evaluate({"pool": to_cel({"a": 1})})
    assert not isinstance(info.value, CelBudgetExceeded)


def test_deeply_nested_expressions_are_refused_at_compile_time() -> None:
    with pytest.raises(CelError, match="nested too deeply"):
        compile_cel(" + ".join(["1"] * 400), {})


def test_meters_are_per_thread() -> None:
    """A bomb in one thread runs out of its own budget; an evaluation in another thread, at
    the same time, is charged to its own meter (the operator renders in worker threads)."""
    results: dict[str, object] = {}

    def bomb() -> None:
        try:
            compile_cel(BOMB, {}).evaluate({}, Meter(20_000))
        except CelBudgetExceeded as exc:
            results["bomb"] = exc.what

    def small() -> None:
        total, used = 0, 0
        for _ in range(50):
            meter = Meter(1_000)
            total += compile_cel(f"{THIRTY}.filter(x, x > 14).size()", {}).evaluate({}, meter)
            used = max(used, meter.used)
        results["small"] = (total, used)

    threads = [threading.Thread(target=bomb), threading.Thread(target=small)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["bomb"] == "cost"
    total, used = results["small"]  # type: ignore[misc]
    assert total == 50 * 15
    assert 0 < used < 1_000
