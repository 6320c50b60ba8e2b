"""The documentation that is generated from code is current."""

from __future__ import annotations

from landscape._docs import SCHEMA, measures_table, render
from landscape.sharpness import specs


def test_schema_measures_table_is_generated_from_the_registry() -> None:
    text = SCHEMA.read_text()
    assert render(text) == text, "run `python -m landscape._docs` to update docs/schema.md"
    for name in specs():
        assert f"| `{name}` |" in measures_table()
