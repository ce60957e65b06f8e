"""A documented name that does not exist fails a test: the names check of every docs block
(tests/docs_examples.py) applied to the prose of README.md and docs/*.md too, and shown to catch each
kind of name (import, setting, variable, command, action, flag, counter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_examples import inline_code, problems

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_name_in_the_prose_exists(page: Path) -> None:
    assert problems(inline_code(page.read_text())) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("from pendo_plugin import metrics", "from pendo_plugin import metrics: no such name"),
        ("import pendo_plugin.nowhere",
         "import pendo_plugin.nowhere: No module named 'pendo_plugin.nowhere'"),
        ("pendo_plugin.delivery.schema.field_types(x)",
         "pendo_plugin.delivery.schema.field_types: pendo_plugin.delivery.schema has no field_types"),
        ("export PENDO_ROLLOUT_PERCENTAGE=10", "PENDO_ROLLOUT_PERCENTAGE: no such variable"),
        ("pendo_plugin.configure(rollout=10)", "configure(rollout=...): no such setting"),
        ("$ pendo-plugin status", "pendo-plugin status: no such command"),
        ("$ pendo-plugin spool flush", "pendo-plugin spool flush: no such action"),
        ("pendo-plugin spool status|drain|send", "pendo-plugin spool send: no such action"),
        ("$ pendo-plugin doctor --send-test-events", "pendo-plugin doctor --send-test-events: no such flag"),
        ("watch `skipped:no_secrets:track`", "skipped:no_secrets:track: no such counter"),
        ("watch rollout:off_page", "rollout:off_page: no such counter"),
    ],
)
def test_a_name_that_does_not_exist_is_caught(text: str, problem: str) -> None:
    assert problems(text) == [problem]


def test_names_that_exist_pass() -> None:
    text = """
    from pendo_plugin.integrations import metrics
    from pendo_plugin.pendo.rollout import bucket, in_percent
    PENDO_TRACK_SECRET=x PENDO_AUTOLOAD=0 pendo-plugin doctor --send-test-event --traits t.jsonl
    pendo_plugin.configure(rollout_percent=10, reset=True)
    pendo-plugin spool status|drain|purge; pendo-plugin rollout set --enabled false
    skipped:no_secret:track skipped:call:page rollout:off_kill_switch sent:track dropped:http_400:track
    """
    assert problems(text) == []
