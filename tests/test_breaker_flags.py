"""An outside review of issue 22's second round: the bounded flag read still read the value of every
field that is no flag (up to 64 fields of 1 MB each, every 2 s, in every process). Real parts: a real
``redis-server``, the flag script as every worker runs it, and ``pendo-plugin rollout show``."""

from __future__ import annotations

import pytest

from pendo_plugin import cli
from pendo_plugin.delivery.fleet.flags import FLAGS_KEY, MAX_FIELDS, READ_SCRIPT, read_flags, script_args
from tests.fleet_redis import RedisServer

JUNK_BYTES = 1024 * 1024 - 16  # each under the 1 MB bound of one value


def test_fields_that_are_no_flag_never_leave_redis_with_their_values(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = redis_server.client()
    client.hset(FLAGS_KEY, mapping={f"junk{n}": b"x" * JUNK_BYTES for n in range(MAX_FIELDS - 1)})
    client.hset(FLAGS_KEY, "shadow", "true")

    reply = client.register_script(READ_SCRIPT)(keys=[FLAGS_KEY], args=script_args())
    assert sum(len(part) for part in reply if isinstance(part, bytes)) < 4096  # 63 MB before
    flags, problems = read_flags(reply)
    assert flags == {"shadow": "true"}
    assert len(problems) == MAX_FIELDS - 1 and all("unknown flag 'junk" in problem for problem in problems)

    monkeypatch.setenv("PENDO_REDIS_URL", redis_server.url)
    assert cli.main(["rollout", "show"]) == 0
    shown = capsys.readouterr().out
    assert "shadow           true" in shown and "unknown flag 'junk0'" in shown
    assert len(shown) < 64 * 1024
