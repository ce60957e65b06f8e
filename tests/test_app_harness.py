"""The app-subprocess harness: a process tree that hangs is killed, and says where each process was stuck."""

from __future__ import annotations

import select
import subprocess
import sys

import pytest

from tests.apps import STACKS_ON_SIGUSR1, communicate, descendants

HANGING_TREE = STACKS_ON_SIGUSR1 + """
import os, threading


def stuck_in_the_child():
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()


if os.fork() == 0:
    print("child", os.getpid(), flush=True)
    stuck_in_the_child()
os.wait()
"""


def test_a_hung_process_tree_is_killed_and_dumps_every_process_stack() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", HANGING_TREE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)  # the child is about to block
    assert ready and process.stdout.readline().startswith("child")
    with pytest.raises(subprocess.TimeoutExpired) as expired:
        communicate(process, timeout=1)
    stderr = str(expired.value.stderr)
    assert "stuck_in_the_child" in stderr  # the forked child's stack
    assert "in <module>" in stderr and stderr.count("Current thread") + stderr.count("Thread 0x") >= 2
    assert process.returncode is not None and descendants(process.pid) == []
