"""Consoles and tables for the CLI's human output that never cut a name short.

Rich lays tables out for an 80-column screen when stdout is not a terminal (a CI log, a pipe,
``make demo``'s captured output) and then shortens cells with an ellipsis, so "l4-inference"
came out as "l4-infer…". A name cut short is a name a user cannot copy into the next command,
so two rules hold for every table ``status``, ``drift``, ``facts``, ``plan`` and ``diff`` print:

- Not a terminal: the console is as wide as the content needs (``WIDE``); rich then gives
  every column its natural width and wraps nothing. An explicit ``COLUMNS`` still wins, as
  it does for every rich program.
- A terminal: the terminal's width, but name columns (cluster, add-on, pool, blueprint) never
  wrap or shorten; the free-text columns (messages, values) fold instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

WIDE = 4096
"""Width of the console when stdout is not a terminal: wider than any table we print."""


def stdout_console(soft_wrap: bool = False) -> Console:
    """The console for a command's human output on stdout (see the module rules)."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console(soft_wrap=soft_wrap)
    return Console(width=WIDE, soft_wrap=soft_wrap)


def name_column(table: Table, header: str, names: Iterable[str]) -> None:
    """Add a column holding names: as wide as its longest entry, never wrapped or cut."""
    width = max([len(header), *(len(n) for n in names)])
    table.add_column(header, no_wrap=True, min_width=width)
