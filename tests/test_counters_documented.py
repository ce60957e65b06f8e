"""Every counter the package can record is documented.

The vocabulary is read from :mod:`pendo_plugin.counters` and every recording call from the source with
``ast`` (``counters.record(...)`` and ``tally.add(...)``); each outcome needs a row in the vocabulary table of
docs/operations.md, each reason and kind a backticked mention in docs/*.md, and each combination a call
records its row's reasons and kinds. Counter names quoted in the docs must be in the vocabulary too.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from pendo_plugin import counters
from pendo_plugin.pendo import rollout
from pendo_plugin.segment import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = "\n".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))
VARIABLE = "<variable>"
HTTP = "http_<status>"
HOOK_PREFIXES = ("segment_", "pendo_")


@dataclass(frozen=True)
class Call:
    where: str
    outcome: str
    reason: str | None  # a constant, HTTP, VARIABLE, or None when absent
    kind: str | None  # a constant, VARIABLE, or None when absent


def _part(node: ast.expr | None) -> str | None:
    if node is None or (isinstance(node, ast.Constant) and node.value is None):
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and ast.unparse(node).startswith("f'http_{"):
        return HTTP
    return VARIABLE


def _is_recording(node: ast.Call) -> bool:
    func = node.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
        return False
    return (func.value.id, func.attr) in (("counters", "record"), ("tally", "add"))


def recording_calls() -> list[Call]:
    found = []
    for path in sorted((ROOT / "src" / "pendo_plugin").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and _is_recording(node)):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            args = dict(zip(("outcome", "reason", "kind"), node.args, strict=False))
            args.update((k.arg, k.value) for k in node.keywords if k.arg in ("outcome", "reason", "kind"))
            outcome = _part(args.get("outcome"))
            assert outcome not in (None, VARIABLE, HTTP), f"{where}: the outcome must be a literal"
            assert outcome is not None
            found.append(Call(where, outcome, _part(args.get("reason")), _part(args.get("kind"))))
    return found


CALLS = recording_calls()


def vocabulary_rows() -> dict[str, tuple[str, str]]:
    """outcome -> (its reasons cell, its kinds cell) from the table in docs/operations.md."""
    rows = {}
    for line in (ROOT / "docs" / "operations.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`\w+`(, `\w+`)*", cells[0]):
            rows.update((outcome, (cells[1], cells[2])) for outcome in re.findall(r"`(\w+)`", cells[0]))
    return rows


ROWS = vocabulary_rows()


def test_the_source_records_counters() -> None:
    recorded = {(call.outcome, call.reason, call.kind) for call in CALLS}
    assert {("sent", None, VARIABLE), ("written_ahead", None, None), ("held", VARIABLE, VARIABLE)} <= recorded
    assert {("seen", None, None), ("dropped", "internal_error", None)} <= recorded  # the router's tally
    assert len(CALLS) > 60


def test_reasons_and_kinds_never_share_a_word() -> None:
    assert not set(counters.REASONS) & set(counters.KINDS)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", word) for word in [*counters.REASONS, *counters.KINDS])


def test_every_rollout_decision_and_hook_is_a_reason() -> None:
    assert set(counters.REASONS) >= rollout.REASONS
    hooks = {name for name in vars(hookspecs) if name.startswith(HOOK_PREFIXES)}
    assert hooks and hooks <= set(counters.REASONS)


@pytest.mark.parametrize("call", CALLS, ids=lambda call: call.where)
def test_each_call_records_in_the_vocabulary(call: Call) -> None:
    assert call.outcome in counters.OUTCOMES
    assert call.reason in (None, VARIABLE, HTTP) or counters.is_reason(call.reason)
    assert call.kind in (None, VARIABLE) or call.kind in counters.KINDS


@pytest.mark.parametrize("outcome", sorted(counters.OUTCOMES))
def test_outcome_documented(outcome: str) -> None:
    assert outcome in ROWS, f"outcome {outcome!r} has no row in the counter table of docs/operations.md"


@pytest.mark.parametrize("word", sorted({*counters.REASONS, *counters.KINDS, HTTP}))
def test_reason_and_kind_documented(word: str) -> None:
    assert f"`{word}`" in DOCS, f"{word!r} is not in docs/*.md"


@pytest.mark.parametrize("call", CALLS, ids=lambda call: call.where)
def test_each_combination_documented(call: Call) -> None:
    """The outcome's row names the reason and kind recorded (a value computed at run time: any in the row)."""
    reasons, kinds = ROWS[call.outcome]
    for part, cell, what in ((call.reason, reasons, "reason"), (call.kind, kinds, "kind")):
        if part == VARIABLE:
            assert "`" in cell, f"{call.where}: the {what}s of {call.outcome} are not in its row"
        elif part is not None:
            assert f"`{part}`" in cell or (what == "kind" and "`<" in cell), (
                f"{call.where}: {call.outcome} with {what} {part!r} is not in its row"
            )


def documented_names() -> list[str]:
    """Counter names quoted in the docs (``outcome:...``), but not the old names in the rename note."""
    names = set()
    for line in DOCS.splitlines():
        if "→" in line:
            continue
        for name in re.findall(r"`([a-z_]+(?::[\w<>*|]+)+)`", line):
            if name.split(":")[0] in counters.OUTCOMES:
                names.add(name)
    return sorted(names)


@pytest.mark.parametrize("name", documented_names())
def test_names_in_the_docs_are_in_the_vocabulary(name: str) -> None:
    """Each part after the outcome is a reason, a kind, a placeholder (``<kind>``) or a wildcard."""
    for part in name.split(":")[1:]:
        placeholder = part == HTTP or part.startswith("<") or part.endswith("*")
        in_vocabulary = counters.is_reason(part) or part in counters.KINDS
        assert placeholder or in_vocabulary, f"{name!r} in docs/*.md: {part!r} is not in the vocabulary"


def _fix_or_skip(node: ast.AST) -> str | None:
    """The literal of ``fixes.add("...")`` or ``_skip("...")``, else None."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return None
    call = ast.unparse(node.func)
    return str(node.args[0].value) if call in ("fixes.add", "_skip") else None


def test_every_fix_and_skip_of_translation_is_a_reason() -> None:
    """The router records translation's fixes and skips as reasons: each literal must be in the vocabulary."""
    found = set()
    for path in sorted((ROOT / "src" / "pendo_plugin" / "pendo").glob("*.py")):
        found.update(filter(None, map(_fix_or_skip, ast.walk(ast.parse(path.read_text(), str(path))))))
    found.discard("call:unknown")  # the router counts calls it does not translate: ``skipped:call:<call>``
    assert len(found) > 20
    assert found <= set(counters.REASONS), found - set(counters.REASONS)
