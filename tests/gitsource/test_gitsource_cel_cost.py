"""A commit carrying a CEL bomb is refused by the GitSource sync, like by ``blueprintd validate``."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprintd.api.issues import InvalidInput
from blueprintd.gitsource.content import validate_files

BOMB = Path(__file__).resolve().parents[1] / "api" / "data" / "bomb.yaml"


def test_the_bomb_refuses_the_commit_with_file_line_field_and_cost() -> None:
    good = BOMB.read_text().replace("name: bomb\n", "name: fine\n", 1).split("  overlays:")[0]
    with pytest.raises(InvalidInput) as info:  # the whole commit is refused, nothing is applied
        validate_files([("blueprints/fine.yaml", good.encode()), ("blueprints/bomb.yaml", BOMB.read_bytes())])
    (issue,) = info.value.issues
    assert (issue.source, issue.line, issue.field) == ("blueprints/bomb.yaml", 17, "spec.overlays[0].when")
    assert "estimated CEL cost" in issue.message
