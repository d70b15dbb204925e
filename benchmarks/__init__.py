"""blueprintd benchmarks: ``python -m benchmarks`` runs them all and writes docs/benchmarks.md.

Each ``bench_*.py`` module exposes ``run() -> list[dict]`` with rows
``{name, metric, value, unit, goal}``. Speed and memory targets live here, never as timed
assertions in the tests.
"""
