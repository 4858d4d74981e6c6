"""The functions of the benchmark's pyfi processor (module ``bench.systems.pyfi_tasks``)."""

from __future__ import annotations

import os
from typing import Any

from bench.systems import counter

REDIS = os.environ.get(counter.REDIS_ENV, "")


def noop(x: Any) -> Any:
    """Return a small value at once: the per-call overhead is all that is measured."""
    return x


def count(key: str) -> None:
    """Note that one fire-and-forget call was processed."""
    counter.incr(REDIS, key)


def step(x: int) -> int:
    """One step of a pipeline."""
    return x + 1


def gather(values: list[Any]) -> int:
    """A funnel's callback."""
    return len(values)


def hop(value: dict[str, Any]) -> dict[str, Any]:
    """A middle socket of the plug chain: pass the value on."""
    return value


def last_hop(value: dict[str, Any]) -> None:
    """The end of the plug chain: count the message."""
    counter.incr(REDIS, value["key"])
