"""Every counter the package can record is documented: the names are read from the source with ``ast``
(each ``counters.incr(...)`` call), so a new counter without a line in the docs fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "<*>"


def names_in(node: ast.expr) -> list[str]:
    """The counter names an ``incr`` argument can take; ``<*>`` stands for each value computed at run time."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else PLACEHOLDER for v in node.values)]
    if isinstance(node, ast.IfExp):
        return names_in(node.body) + names_in(node.orelse)
    raise AssertionError(f"a counter name that cannot be read from the source: {ast.unparse(node)}")


def recorded_counters() -> list[str]:
    found: set[str] = set()
    for path in sorted((ROOT / "src" / "pendo_plugin").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "incr"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "counters"
            ):
                found.update(names_in(node.args[0]))
            elif (  # a tally of counters added at once: tally["seen"] += 1, then counters.add(tally)
                isinstance(node, ast.AugAssign)
                and isinstance(node.target, ast.Subscript)
                and isinstance(node.target.value, ast.Name)
                and node.target.value.id == "tally"
            ):
                found.update(names_in(node.target.slice))
    return sorted(found)


DOCS = "\n".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))


def test_the_source_records_counters() -> None:
    assert {"sent:<*>", "written_ahead", "held:<*>:<*>"} <= set(recorded_counters())


@pytest.mark.parametrize("name", recorded_counters())
def test_counter_documented(name: str) -> None:
    """Its fixed part (up to the first value computed at run time) opens a backticked name in the docs."""
    fixed = name.split(PLACEHOLDER, 1)[0].rstrip(":") if PLACEHOLDER in name else name
    assert re.search(rf"`{re.escape(fixed)}(`|:|\b)", DOCS), f"counter {name!r} is not in docs/*.md"
