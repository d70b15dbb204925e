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
from blueprintd.cli.dra import dra_plugin_cmd  # noqa: E402  (blueprintd dra-plugin)

app.command("dra-plugin")(dra_plugin_cmd)
from blueprintd.cli.agent import node_agent_cmd  # noqa: E402  (blueprintd node-agent)
from blueprintd.cli.facts import facts_cmd  # noqa: E402  (blueprintd facts)

app.command("facts")(facts_cmd)
app.command("node-agent")(node_agent_cmd)
from blueprintd.cli.render import render_cmd  # noqa: E402  (blueprintd render)
from blueprintd.cli.validate import validate_cmd  # noqa: E402  (blueprintd validate)

app.command("validate")(validate_cmd)
app.command("render")(render_cmd)
from blueprintd.cli.operator import operator_cmd  # noqa: E402  (blueprintd operator)

app.command("operator")(operator_cmd)
from blueprintd.cli.fleetview import rollback_cmd, rollout_app, status_cmd  # noqa: E402

app.command("status")(status_cmd)
app.command("rollback")(rollback_cmd)
app.add_typer(rollout_app, name="rollout")
from blueprintd.cli.git import git_app  # noqa: E402  (blueprintd git status)

app.add_typer(git_app, name="git")
from blueprintd.cli.drift import drift_app  # noqa: E402  (blueprintd drift [restore])

app.add_typer(drift_app, name="drift")
from blueprintd.cli.plan import plan_cmd  # noqa: E402  (blueprintd plan)

app.command("plan")(plan_cmd)
from blueprintd.cli.diff import diff_cmd  # noqa: E402  (blueprintd diff)

app.command("diff")(diff_cmd)
# --- end COMMANDS ---


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
