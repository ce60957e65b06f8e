"""A second net under the docs runner: every fenced block of README.md and docs/*.md says what it is
(a block without a language is neither run nor checked), and every ``--flag`` on a ``pendo-plugin``
command line in any block exists for that command, whatever the line's other arguments look like."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from pendo_plugin.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^ *```(?P<language>\S*)")


def blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """Each fenced block: its first line's number, its language and its lines."""
    found: list[tuple[int, str, list[str]]] = []
    opened: tuple[int, str] | None = None
    body: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        fence = FENCE.match(line)
        if fence and opened is None:
            opened, body = (number, fence["language"]), []
        elif fence:
            found.append((*opened, body))
            opened = None
        elif opened is not None:
            body.append(line)
    return found


def command_flags() -> dict[str, set[str]]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        name: {flag for action in sub._actions for flag in action.option_strings}
        for name, sub in commands.choices.items()
    }


def unknown_flags(lines: list[str], flags: dict[str, set[str]]) -> list[str]:
    """``pendo-plugin COMMAND ... --flag`` where COMMAND has no ``--flag`` (usage brackets read through)."""
    unknown = []
    for line in lines:
        command_line = line.split(" #")[0]
        for match in re.finditer(r"pendo-plugin\s+([a-z]+)([^|;&\n]*)", command_line):
            command, rest = match.group(1), match.group(2)
            if command not in flags:
                continue
            words = shlex.split(rest.replace("[", " ").replace("]", " ").replace("|", " "), posix=True)
            unknown += [f"{command} {word}" for word in words
                        if word.startswith("--") and word.split("=")[0] not in flags[command]]
    return unknown


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_block_declares_its_language(page: Path) -> None:
    unlabelled = [number for number, language, _ in blocks(page.read_text()) if not language]
    assert unlabelled == [], f"{page.name}: blocks without a language at lines {unlabelled}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_flag_on_a_command_line_exists(page: Path) -> None:
    flags = command_flags()
    unknown = [f"line {number}: {flag}" for number, _, lines in blocks(page.read_text())
               for flag in unknown_flags(lines, flags)]
    assert unknown == []


def test_a_flag_after_an_at_file_argument_is_still_checked() -> None:
    lines = ["$ pendo-plugin forget alice @erasure-requests.txt --deny-path /etc/pendo/forgotten.txt"]
    assert unknown_flags(lines, command_flags()) == ["forget --deny-path"]
