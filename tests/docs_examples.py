"""The docs run as written: every fenced block of README.md and docs/*.md, through Sybil.

Sybil finds the blocks (its Markdown lexer) and reports each as a pytest item at its line; this module
says how each kind of block is run, with the blocks of one page sharing one work directory, one
environment and one sandbox (the Pendo stand-in) started on a free port:

- ``python``: run in a fresh interpreter in the page's work directory (``>>>`` blocks: a doctest, output
  compared); ``sh``/``bash``: run by bash; ``console``: each ``$ command`` run by bash, in order, with
  exported variables and ``$?`` carried from one command to the next, and its shown output compared
  (doctest's ELLIPSIS: ``...`` stands for any text; run-to-run details such as ports, temp paths and
  milliseconds are normalised first: :func:`normalise`).
- Every block, run or not, has its names checked (:func:`problems`): ``pendo_plugin`` imports, ``PENDO_*``
  variables, ``configure()`` settings, ``pendo-plugin`` commands and flags, counter names.

An HTML comment right before a block changes how it is handled (a new page only needs to follow them):

- ``<!-- docs: not run (why) -->``: names checked only (it needs real Pendo, a real deployment, ...).
- ``<!-- docs: file NAME -->``: the block is written to NAME in the page's work directory (a module or a
  test file that a later block imports or runs).
- ``<!-- docs: output not compared (why) -->``: a console block whose commands run and must succeed,
  but whose output changes from run to run.
- ``<!-- docs: fleet -->`` (anywhere in a page): the page's environment gets ``PENDO_REDIS_URL`` pointing
  at a real ``redis-server`` started for the page (the page is skipped where redis-server is missing).

The page's environment: the sandbox as ``PENDO_DATA_URL``/``PENDO_API_URL`` (shown in the docs as
``http://127.0.0.1:8787``, the sandbox's default), the secrets the sandbox requires (:data:`TRACK_SECRET`,
:data:`INTEGRATION_KEY`, the ones the docs show), the spool in the work directory (shown as
``/tmp/ops``), and ``SEGMENT_HOST`` (the sandbox answers Segment's ``/v1/batch`` too).
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sybil import Document, Example, Region, Sybil
from sybil.evaluators.doctest import DocTestEvaluator
from sybil.parsers.abstract.doctest import DocTestStringParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

from pendo_plugin import config, counters
from pendo_plugin.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
SHOWN_URL = "http://127.0.0.1:8787"
SHOWN_WORK = "/tmp/ops"
TRACK_SECRET = "4f1c9a0e-demo-track-secret"
INTEGRATION_KEY = "7b3e5d21-demo-integration-key"
SCHEMA = {
    "visitor": {"plan": "string", "email": "string", "logins": "number"},
    "account": {"name": "string", "plan": "string"},
}
MARKER = re.compile(r"<!--\s*docs:\s*(?P<what>.*?)\s*-->\s*\n\s*$")
COMMAND_TIMEOUT = 120
OTHER_VARIABLES = frozenset({"PENDO_AUTOLOAD"})  # read by the bootstrap, not a setting


# ----------------------------------------------------------------------------- the names a block uses


def _cli() -> dict[str, dict[str, set[str]]]:
    """``{command: {"flags": {...}, "actions": {...}}}`` read from the argparse parser ("" = global)."""
    from pendo_plugin.cli import build_parser

    def named(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
        flags: set[str] = set()
        actions: set[str] = set()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            flags.update(action.option_strings)
            if not action.option_strings:
                actions.update(str(choice) for choice in action.choices or ())
        return {"flags": flags, "actions": actions}

    parser = build_parser()
    found = {"": named(parser)}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update({command: named(sub) for command, sub in action.choices.items()})
    return found


def _import_problem(module: str, names: list[str]) -> str | None:
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        return f"import {module}: {exc}"
    missing = [name for name in names if not hasattr(imported, name)]
    for name in missing:  # a submodule: `from pendo_plugin.integrations import metrics`
        try:
            importlib.import_module(f"{module}.{name}")
        except ImportError:
            return f"from {module} import {name}: no such name"
    return None


def _dotted_problem(path: str) -> str | None:
    """``pendo_plugin.a.b.name``: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(value, attribute):
                return f"{path}: {'.'.join(parts[:cut])} has no {attribute}"
            value = getattr(value, attribute)
        return None
    return f"{path}: no such module"


def _command_problems(text: str) -> list[str]:
    found = []
    cli = _cli()
    for match in re.finditer(r"pendo-plugin((?:[ \t]+(?:--?[\w-]+|[a-z][\w-]*(?=[\s|\]`]|$)))*)", text):
        words = match.group(1).split()
        command = next((word for word in words if not word.startswith("-")), None)
        if command is None:
            continue
        if command not in cli:
            found.append(f"pendo-plugin {command}: no such command")
            continue
        known = cli[command]["flags"] | cli[""]["flags"]
        found += [f"pendo-plugin {command} {word}: no such flag" for word in words
                  if word.startswith("--") and word not in known]
        rest = [word for word in words[words.index(command) + 1 :] if not word.startswith("-")]
        actions = cli[command]["actions"]
        if actions and rest and rest[0].isalpha() and rest[0].islower() and rest[0] not in actions:
            found.append(f"pendo-plugin {command} {rest[0]}: no such action")
    for match in re.finditer(r"pendo-plugin (\w+) ([a-z]+(?:\|[a-z]+)+)", text):  # spool status|drain|purge
        command, choices = match.groups()
        actions = cli.get(command, {}).get("actions", set())
        found += [f"pendo-plugin {command} {choice}: no such action" for choice in choices.split("|")
                  if choice not in actions]
    return found


def problems(text: str) -> list[str]:
    """Every documented name in ``text`` that does not exist: imports, ``pendo_plugin.*`` paths,
    ``PENDO_*`` variables, ``configure()`` settings, ``pendo-plugin`` commands and flags, counters."""
    found = []
    for match in re.finditer(r"^\s*from (pendo_plugin[\w.]*) import \(?([\w, ]+)", text, re.MULTILINE):
        names = [name.strip().split(" as ")[0] for name in match.group(2).split(",") if name.strip()]
        found.append(_import_problem(match.group(1), names))
    for match in re.finditer(r"^\s*import (pendo_plugin[\w.]*)", text, re.MULTILINE):
        found.append(_import_problem(match.group(1), []))
    for match in re.finditer(r"(?<![\w.])pendo_plugin(?:\.\w+)+(?=\()", text):  # calls in code
        found.append(_dotted_problem(match.group(0)))
    variables = set(config.ENV_NAMES.values()) | OTHER_VARIABLES
    for match in re.finditer(r"\bPENDO_[A-Z0-9_]*[A-Z0-9]\b", text):
        if match.group(0) not in variables:
            found.append(f"{match.group(0)}: no such variable")
    settings = set(config.ENV_NAMES) | config.OBJECT_SETTINGS | {"reset"}
    for match in re.finditer(r"\bconfigure\(([^)]*)\)", text):
        for name in re.findall(r"(\w+)\s*=(?!\s*value\b)", match.group(1)):  # name=value: a placeholder
            if name not in settings:
                found.append(f"configure({name}=...): no such setting")
    found += _command_problems(text)
    outcomes = "|".join(sorted(counters.OUTCOMES, key=len, reverse=True))
    for match in re.finditer(rf"(?<![\w:/.-])(?:{outcomes})(?::[a-z0-9_]+)+(?![\w:/.<*-])", text):
        outcome, reason, kind = counters.parse(match.group(0))
        if counters.name_of(outcome, reason, kind) is None:
            found.append(f"{match.group(0)}: no such counter")
    return [problem for problem in found if problem]


def inline_code(markdown: str) -> str:
    """The backticked spans of a page's prose (fenced blocks left out), one per line; a span followed by
    ``→`` is a name this version no longer has (a list of renamed names), and is left out."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return "\n".join(re.findall(r"`([^`\n]+)`(?!\s*→)", prose))


# ----------------------------------------------------------------------------- one page's environment


@dataclass
class Page:
    """What the blocks of one page share: work directory, environment, sandbox, last exit status."""

    work: Path
    env: dict[str, str]
    sandbox: Sandbox
    redis: Any = None
    last_status: int = 0
    subs: list[tuple[str, str]] = field(default_factory=list)  # (shown, real) text

    def real(self, text: str) -> str:
        for shown, real in self.subs:
            text = text.replace(shown, real)
        return text

    def shown(self, text: str) -> str:
        for shown, real in self.subs:
            text = text.replace(real, shown)
        return text


def page_env(work: Path, sandbox: Sandbox) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PENDO_", "SEGMENT_ANALYTICS"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PENDO_DATA_URL=sandbox.url,
        PENDO_API_URL=sandbox.url,
        PENDO_TRACK_SECRET=TRACK_SECRET,
        PENDO_INTEGRATION_KEY=INTEGRATION_KEY,
        PENDO_SPOOL_DIR=str(work / "spool"),
        SEGMENT_HOST=sandbox.url,
        PYTHONPATH=str(work),
        COLUMNS="80",  # the width the docs' outputs are shown at
    )
    return env


@pytest.fixture(scope="module")
def docs_page(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """The page's work directory, environment and sandbox (and Redis, for a page marked ``fleet``)."""
    text = Path(str(request.path)).read_text()
    work = tmp_path_factory.mktemp("ops")
    with Sandbox(track_secret=TRACK_SECRET, integration_key=INTEGRATION_KEY, schema=SCHEMA) as sandbox:
        page = Page(work, page_env(work, sandbox), sandbox)
        page.subs = [(SHOWN_URL, sandbox.url), (SHOWN_WORK, str(work))]
        if "<!-- docs: fleet -->" not in text:
            yield page
            return
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        from tests.fleet_redis import RedisServer

        page.redis = RedisServer(work / "redis").start()
        page.env["PENDO_REDIS_URL"] = page.redis.url
        page.subs.append(("redis://redis.internal:6379/0", page.redis.url))  # the docs' example URL
        try:
            yield page
        finally:
            page.redis.stop()


# ----------------------------------------------------------------------------- running blocks


def normalise(text: str) -> str:
    """What changes from run to run, made the same: milliseconds, loopback ports, object addresses."""
    text = re.sub(r"\b\d+ ms\b", "<n> ms", text)
    text = re.sub(r"\bin \d+\.\d+s\b", "in <n>s", text)  # pytest's run time
    text = re.sub(r"127\.0\.0\.1:\d{4,5}\b", "127.0.0.1:<port>", text)
    text = re.sub(r"0x[0-9a-f]{6,}", "0x...", text)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip() + "\n"


def _bash(page: Page, command: str) -> subprocess.CompletedProcess[str]:
    state = page.work / ".docs-env"
    script = (
        f"cd {page.work}\n"
        f"[ -f {state} ] && . {state} 2>/dev/null\n"
        f"(exit {page.last_status})\n"
        f"{page.real(command)}\n"
        f"__status=$?; export -p > {state}; exit $__status\n"
    )
    done = subprocess.run(["bash", "-c", script], env=page.env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    page.last_status = done.returncode
    return done


def _console(source: str) -> list[tuple[str, str]]:
    """``(command, shown output)`` pairs of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        elif pairs:
            pairs[-1][1].append(line)
    return [(command, "\n".join(output)) for command, output in pairs]


def _compare(command: str, want: str, got: str) -> None:
    want, got = normalise(want), normalise(got)
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    if not checker.check_output(want, got, flags):
        raise AssertionError(f"$ {command}\n" + checker.output_difference(doctest.Example(command, want),
                                                                          got, flags))


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, source, and what the marker before it asks."""

    language: str
    source: str
    marker: str

    def run(self, example: Example) -> None:
        found = problems(self.source)
        assert not found, "names in this block that do not exist: " + "; ".join(found)
        page: Page = example.namespace["docs_page"]
        if self.marker.startswith("not run"):
            return
        if self.marker.startswith("file "):
            (page.work / self.marker.split()[1]).write_text(self.source)
            return
        if self.language == "python":
            done = subprocess.run([sys.executable, "-c", self.source], cwd=page.work, env=page.env,
                                  capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
            assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        elif self.language in ("sh", "bash"):
            self._shell(page)
        elif self.language == "console":
            for command, want in _console(self.source):
                done = _bash(page, command)
                if not self.marker.startswith("output not compared"):
                    _compare(command, want, page.shown(done.stdout + done.stderr))
                elif done.returncode:
                    raise AssertionError(f"$ {command}: exit {done.returncode}\n{done.stdout}{done.stderr}")

    def _shell(self, page: Page) -> None:
        """The block as one script; a single word shown as a comment after a command (``   # 2858``,
        ``   # False``) is what it prints, and the script's output must be those words, in order."""
        done = _bash(page, self.source)
        if done.returncode:
            raise AssertionError(f"exit {done.returncode}\n{done.stdout}{done.stderr}")
        shown = re.findall(r"   # (\S+)[ \t]*$", self.source, re.MULTILINE)
        if shown:
            assert done.stdout.split() == shown, done.stdout


RUN_LANGUAGES = frozenset({"python", "sh", "bash", "console"})
DOCTEST = DocTestStringParser(DocTestEvaluator(doctest.ELLIPSIS))


class DocsParser:
    """Every fenced block of a page as one Sybil region (doctest blocks: one region per example)."""

    lexer = FencedCodeBlockLexer(language=r"[\w-]*", mapping={"language": "language", "source": "source"})

    def __call__(self, document: Document) -> Iterator[Region]:
        for region in self.lexer(document):
            lexeme = region.lexemes["source"]
            source = str(lexeme)
            language = str(region.lexemes["language"])
            before = document.text[max(0, region.start - 300) : region.start]
            found = MARKER.search(before)
            marker = found.group("what") if found else ""
            if language == "python" and source.lstrip().startswith(">>>") and not marker:
                names = problems(source)
                assert not names, f"{document.path}: {names}"
                for doctest_region in DOCTEST(lexeme, document.path):
                    doctest_region.adjust(region, lexeme)
                    yield doctest_region
                continue
            if language not in RUN_LANGUAGES and not marker:
                marker = "not run (not a command: a listing, a synopsis or data)"
            block = Block(language, source, marker)
            region.parsed = block
            region.evaluator = lambda example: example.parsed.run(example)
            yield region


def docs_sybil() -> Sybil:
    return Sybil(parsers=[DocsParser()], patterns=["README.md", "docs/*.md"], fixtures=["docs_page"],
                 path=str(ROOT))
