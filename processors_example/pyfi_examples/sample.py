"""Sample socket functions: each is an ordinary Python function."""

from __future__ import annotations

import time
from typing import Any


def do_something(message: Any) -> str:
    """Tag a message, the first step of the sample flows."""
    return f"Message:{message}"


def do_this(message: Any) -> str:
    """Tag a message again, a second step of the sample flows."""
    return f"Do this: {message}"


def add_two(one: Any, two: Any) -> Any:
    """Add two values that arrive through two plugs, in any order."""
    return one + two


def fail(message: Any) -> None:
    """Always fail: shows retries, error plugs and the dead-letter queue."""
    raise ValueError(f"cannot process {message!r}")


def slow(message: Any, seconds: float = 1.0) -> Any:
    """Take a while: shows draining on stop and redelivery after a crash."""
    time.sleep(seconds)
    return message
