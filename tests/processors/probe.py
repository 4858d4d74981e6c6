"""Socket functions for tests: each leaves a trace the test can count.

Traces go to files in the folder named by PYFI_PROBE_DIR (set by the test
for the worker process), one file per execution, so the test can tell how
many times a function really ran, across processes and crashes.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any


def _trace(kind: str, detail: str) -> None:
    folder = Path(os.environ["PYFI_PROBE_DIR"]) / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{uuid.uuid4().hex}").write_text(detail)


def identity(value: Any) -> Any:
    """Return the value unchanged (a source for plugs)."""
    return value


def tick(label: Any) -> Any:
    """Record each run (a scheduled call)."""
    _trace("tick", str(label))
    return label


def add_two(one: Any, two: Any) -> Any:
    """Record the pair, then add it."""
    _trace("add_two", f"{one}|{two}")
    return one + two


def slow_once(value: Any, seconds: float = 3.0) -> Any:
    """Record each start and each finish; sleep in between."""
    _trace("slow_started", str(value))
    time.sleep(seconds)
    _trace("slow_finished", str(value))
    return value


def flaky(value: Any) -> Any:
    """Fail until called three times for this value, then succeed."""
    _trace(f"flaky-{value}", "attempt")
    attempts = len(list((Path(os.environ["PYFI_PROBE_DIR"]) / f"flaky-{value}").iterdir()))
    if attempts < 3:
        raise RuntimeError(f"attempt {attempts} fails on purpose")
    return f"ok after {attempts}"


def broken(value: Any) -> Any:
    """Always fail."""
    raise ValueError(f"broken on {value!r}")


def handle_error(error: dict[str, Any]) -> str:
    """An ERROR plug's target: receive the failure as data."""
    return f"handled {error['type']}: {error['message']}"


def collect(values: list[Any]) -> dict[str, Any]:
    """A funnel's callback: record each execution, summarise what arrived."""
    _trace("collect", str(len(values)))
    return {"count": len(values), "sum": sum(values)}


def times(factor: Any, value: Any) -> Any:
    """Multiply: a pipeline step whose bound argument comes first."""
    return factor * value


def count_traces(kind: str) -> int:
    """How many traces of ``kind`` exist (for the test side)."""
    folder = Path(os.environ["PYFI_PROBE_DIR"]) / kind
    return len(list(folder.iterdir())) if folder.is_dir() else 0
