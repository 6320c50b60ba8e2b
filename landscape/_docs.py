"""Parts of ``docs/schema.md`` generated from the measure registry.

``python -m landscape._docs`` rewrites the block between the ``measures`` markers
of ``docs/schema.md``; ``tests/test_docs.py`` checks that it is current.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

BEGIN, END = "<!-- measures:begin (python -m landscape._docs) -->", "<!-- measures:end -->"
SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "schema.md"


def measures_table() -> str:
    """The markdown table of every registered measure.

    Returns:
        The table.
    """
    from landscape.sharpness import specs

    rows = ["| measure | what | headline attrs | datasets | parameters (default) |",
            "|---|---|---|---|---|"]
    for name, s in specs().items():
        heads = ", ".join(f"`{h.key}`" + (f" (± `{h.sem}`)" if h.sem else "")
                          for h in s.headline) or "—"
        data = ", ".join(f"`{d}`" for d in s.datasets) or "—"
        params = ", ".join(f"`{f.name}`={f.default}" for f in dataclasses.fields(s.params))
        what = s.summary.replace("|", "\\|")
        rows.append(f"| `{name}` | {what} | {heads} | {data} | {params} |")
    return "\n".join(rows)


def render(text: str) -> str:
    """``text`` with the generated block replaced.

    Returns:
        The new text.

    Raises:
        ValueError: If the markers are missing.
    """
    if BEGIN not in text or END not in text:
        raise ValueError(f"{SCHEMA} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{measures_table()}\n{END}{tail}"


if __name__ == "__main__":
    SCHEMA.write_text(render(SCHEMA.read_text()))
    print(f"wrote {SCHEMA}", file=sys.stderr)
