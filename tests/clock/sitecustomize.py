"""Moves the wall clock of a test's child Python process ahead, as the parent test run's was.

Only on the PATH of child processes started by a test run given ``--clock-ahead-days``
(see ``tests/conftest.py``); the monotonic clock is left alone.
"""

import os

_days = os.environ.get("TEST_CLOCK_AHEAD_DAYS")
if _days:
    try:
        import datetime as _dt

        import time_machine as _time_machine
    except ImportError:  # a throwaway venv without time-machine: that child keeps the real clock
        pass
    else:
        _traveller = _time_machine.travel(
            _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=float(_days)), tick=True
        )
        _traveller.start()
