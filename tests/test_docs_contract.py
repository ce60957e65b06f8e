"""The docs keep up with the code: every hook with its exact signature, every variable, every setting."""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

import pytest

from pendo_plugin import config
from pendo_plugin.segment import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"


def hook_names() -> list[str]:
    return [name for name, value in vars(hookspecs).items() if hasattr(value, "segment_analytics_spec")]


def test_every_hook_is_specified() -> None:
    assert sorted(hook_names()) == [
        "pendo_rollout",
        "pendo_transform",
        "segment_flush",
        "segment_message",
        "segment_shutdown",
        "segment_startup",
    ]


@pytest.mark.parametrize("name", hook_names())
def test_hook_documented_with_its_exact_signature(name: str) -> None:
    parameters = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
    assert f"### `{name}({parameters})`" in (DOCS / "hooks.md").read_text()


@pytest.mark.parametrize("variable", sorted(config.ENV_NAMES.values()))
def test_every_variable_documented(variable: str) -> None:
    assert re.search(rf"`{variable}`", (DOCS / "configuration.md").read_text())


@pytest.mark.parametrize("setting", sorted(set(config.ENV_NAMES) | config.OBJECT_SETTINGS))
def test_every_configure_setting_documented(setting: str) -> None:
    assert f"`{setting}`" in (DOCS / "configuration.md").read_text()


def cli_flags() -> list[tuple[str, str]]:
    """(command, flag or action) for every option and positional choice of ``pendo-plugin``, read from
    its argparse parser ("" as the command: a global flag; "" as the flag: the command itself)."""
    from pendo_plugin.cli import build_parser

    def named(parser: argparse.ArgumentParser) -> list[str]:
        out: list[str] = []
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            out += action.option_strings or [str(choice) for choice in action.choices or ()]
        return out

    parser = build_parser()
    found = [("", flag) for flag in named(parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                found += [(command, ""), *((command, flag) for flag in named(sub))]
    return found


def command_section(command: str) -> str:
    """The section of operations.md about ``pendo-plugin <command>`` (the whole page for global flags)."""
    text = (DOCS / "operations.md").read_text()
    if not command:
        return text
    start = text.index(f"## `pendo-plugin {command}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


@pytest.mark.parametrize(("command", "flag"), cli_flags())
def test_every_cli_command_and_flag_documented(command: str, flag: str) -> None:
    """Each command has its section in operations.md, naming each of its flags and actions."""
    section = command_section(command)
    assert not flag or re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", section), f"{flag} of {command}"


def rows_outside_tables(text: str) -> list[str]:
    """Lines that look like table rows but render as plain text: a Markdown table starts with a header row
    and a delimiter row, and a row after a paragraph line merely continues that paragraph."""
    lines, outside, in_table, fenced = text.split("\n"), [], False, False
    for index, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("|"):
            in_table = False
            continue
        if not in_table:
            delimiter = lines[index + 1] if index + 1 < len(lines) else ""
            previous = lines[index - 1] if index else ""
            in_table = not previous.strip() and re.fullmatch(r"\|[\s:|-]+\|", delimiter) is not None
            if not in_table:
                outside.append(line[:60])
    return outside


@pytest.mark.parametrize("page", sorted(path.name for path in DOCS.glob("*.md")))
def test_every_table_row_renders_in_a_table(page: str) -> None:
    assert rows_outside_tables((DOCS / page).read_text()) == []
