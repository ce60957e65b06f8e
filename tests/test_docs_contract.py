"""The docs keep up with the code: every hook with its exact signature, every variable, every setting."""

from __future__ import annotations

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
    assert sorted(hook_names()) == ["pendo_rollout", "segment_flush", "segment_message", "segment_shutdown"]


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
