"""The agent's outage bookkeeping: one line when a service goes, one when it is back."""

from __future__ import annotations

import logging
import signal

import pytest

from pyfi.agent.outage import MAX_RETRY_S, Outage
from pyfi.agent.supervisor import describe_exit
from pyfi.errors import DatabaseUnavailable


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pyfi.agent")
    outage = Outage("database")
    # When ten attempts in a row fail
    delays = [outage.failed(DatabaseUnavailable("connection refused")) for _ in range(10)]
    # Then one warning says so, and the waits grow to a bound
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "the database is unreachable (connection refused)" in warnings[0].getMessage()
    assert delays == sorted(delays)
    assert delays[-1] == MAX_RETRY_S
    assert outage.down
    # When an attempt succeeds, one line says it is back; the next success says nothing
    assert outage.recovered()
    assert not outage.recovered()
    back = [r.getMessage() for r in caplog.records if "is back after" in r.getMessage()]
    assert len(back) == 1
    assert "10 attempts" in back[0]
    # And the next outage starts again from the shortest wait
    assert outage.failed(OSError("reset")) == delays[0]


def test_a_worker_exit_is_described_by_its_code_or_signal() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert describe_exit(-signal.SIGTERM) == "signal SIGTERM"
