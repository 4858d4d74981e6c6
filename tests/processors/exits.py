"""Socket functions for the wire-limit tests: one echoes, one raises SystemExit."""

from __future__ import annotations

from typing import Any


def echo(value: Any) -> Any:
    """Return the value unchanged."""
    return value


def exit_now(code: Any) -> None:
    """End the process, as a careless function might: the worker must treat it as a failure."""
    raise SystemExit(code)
