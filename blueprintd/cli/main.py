"""The ``blueprintd`` command line: one Typer app, each sub-command in its own module.

Sub-command modules register themselves on ``app`` here so ``blueprintd --help`` lists the
whole tool in one place. Commands exit 0 on success, 1 when the answer is "no" (invalid
input, open drift) and 2 on usage errors, so they compose in CI pipelines.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="blueprintd",
    help=(
        "GitOps fleet operator for GPU platforms.\n\n"
        "Blueprints are versioned platform standards (Helm add-ons, policies, overlays); "
        "blueprintd renders them per cluster from node hardware facts, rolls them out across "
        "member clusters and keeps them from drifting."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# --- COMMANDS: each module adds its commands to `app` when imported ---------------------
from blueprintd.cli import dev  # noqa: E402,F401  (blueprintd dev up|status|down)
# --- end COMMANDS ---


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
