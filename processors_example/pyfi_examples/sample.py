"""Sample socket functions: each is an ordinary Python function."""

from __future__ import annotations

import time
from typing import Any


def do_something(message: Any, previous: Any = None) -> Any:
    """Tag a message, the first step of the sample flows.

    Inside a pipeline or funnel the result of the step before arrives as
    ``previous``; it is kept next to this step's own result, so the final
    value shows the whole path the data took.
    """
    return _tagged(f"Message:{message}", previous)


def do_this(message: Any, previous: Any = None) -> Any:
    """Tag a message again, a second step of the sample flows."""
    return _tagged(f"Do this: {message}", previous)


def _tagged(text: str, previous: Any) -> Any:
    return text if previous is None else {"message": text, "after": previous}


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
