"""Render: Blueprint + cluster facts → DesiredState (pure, deterministic, no I/O).

Entry points: ``render(blueprint, facts, options)`` and ``compile_blueprint(blueprint)``
for callers that render one Blueprint for many clusters.
"""

from blueprintd.render.compiled import CompiledBlueprint, compile_blueprint, topological_order
from blueprintd.render.desired import DesiredState, Explanation, HelmRelease, NodeLabels, Step
from blueprintd.render.engine import RenderOptions, mirror_repo, render

__all__ = [
    "CompiledBlueprint",
    "DesiredState",
    "Explanation",
    "HelmRelease",
    "NodeLabels",
    "RenderOptions",
    "Step",
    "compile_blueprint",
    "mirror_repo",
    "render",
    "topological_order",
]
