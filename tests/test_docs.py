"""The documentation that is generated from code is current."""

from __future__ import annotations

import re
from pathlib import Path

from landscape._docs import SCHEMA, measures_table, render
from landscape.sharpness import specs


def test_schema_measures_table_is_generated_from_the_registry() -> None:
    text = SCHEMA.read_text()
    assert render(text) == text, "run `python -m landscape._docs` to update docs/schema.md"
    for name in specs():
        assert f"| `{name}` |" in measures_table()


def test_every_figure_command_is_listed_in_experiments_readme() -> None:
    """The top-level experiments/ says how each folder of figures/ is made: every command
    in the first code block of every report is in its list."""
    root = Path(__file__).resolve().parents[1]
    listed = (root / "experiments" / "README.md").read_text()
    reports = sorted((root / "figures").glob("*/*.md"))
    assert reports
    for report in reports:
        block = re.search(r"```\n(.*?)```", report.read_text(), re.S)
        assert block, report
        for line in block.group(1).splitlines():
            command = line.split("    #")[0].strip()
            if command:
                assert command in listed, f"{report}: {command!r} not in experiments/README.md"
