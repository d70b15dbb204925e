"""``python -m blueprintd`` runs the CLI (the node agent and DRA plugin images use this)."""

from blueprintd.cli.main import main

main()
