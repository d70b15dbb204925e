"""docs/benchmarks.md is rewritten by `python -m benchmarks [name ...]`: only the rows of the
benchmarks that ran change; other rows and the hand-written notes below the table stay."""

from __future__ import annotations

from benchmarks.__main__ import HEADER, render

OLD = "\n".join(
    [
        "# Benchmarks",
        "",
        "Generated on some day.",
        "",
        HEADER,
        "|---|---|---|---|---|---|",
        "| dra | prepare | p50 | 3.41 | ms | <= 50 |",
        "| scale | 10 members | converged | 90 | s |  |",
        "",
        "### A measured comparison",
        "",
        "| metric | before | after |",
        "|---|---|---|",
        "| cores | 0.04 | 0.01 |",
    ]
)


def test_only_the_rows_of_the_benchmarks_that_ran_are_replaced() -> None:
    new = render(OLD, ["| scale | 50 members | converged | 110 | s | < 120 |"], {"scale"})
    assert "| dra | prepare | p50 | 3.41 | ms | <= 50 |" in new
    assert "| scale | 50 members | converged | 110 | s | < 120 |" in new
    assert "| scale | 10 members |" not in new
    # the notes, with their own table, are kept below the generated one
    assert new.index("| scale | 50 members") < new.index("### A measured comparison")
    assert "| cores | 0.04 | 0.01 |" in new


def test_a_first_run_writes_the_table() -> None:
    new = render("", ["| dra | prepare | p50 | 3 | ms |  |"], {"dra"})
    assert new.startswith("# Benchmarks") and HEADER in new and "| dra | prepare |" in new
