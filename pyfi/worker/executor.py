"""Running one socket function and turning what happened into data."""

from __future__ import annotations

import asyncio
import inspect
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyfi.errors import Retry


@dataclass(frozen=True)
class Outcome:
    """What a call produced: a value, or a failure described as data."""

    ok: bool
    value: Any = None
    error: dict[str, Any] | None = None
    retry_delay_s: float | None = None  # set when the function raised Retry(delay=...)

    @property
    def wants_retry(self) -> bool:
        """True when the function explicitly asked for another attempt."""
        return self.error is not None and self.error.get("type") == "Retry"

    def encode(self) -> str:
        """The stored form: ``{"status": "ok", "value": ...}`` or ``{"status": "error", ...}``."""
        if self.ok:
            return json.dumps({"status": "ok", "value": self.value})
        return json.dumps({"status": "error", "error": self.error})


def describe(exc: BaseException) -> dict[str, Any]:
    """A failure as JSON-ready data: type, message, traceback (never a pickle)."""
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def execute(function: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Outcome:
    """Call ``function`` and capture its result or its exception.

    Coroutine functions run to completion in a fresh event loop. A result
    that cannot travel as JSON is a failure of the call, reported as such.
    """
    try:
        result = function(*args, **kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        json.dumps(result)
    except Retry as exc:
        return Outcome(ok=False, error=describe(exc), retry_delay_s=exc.delay)
    except (TypeError, ValueError) as exc:
        if "JSON serializable" in str(exc) or "Circular reference" in str(exc):
            return Outcome(
                ok=False,
                error={
                    **describe(exc),
                    "message": f"the result of {getattr(function, '__name__', function)} "
                    f"cannot be sent as JSON: {exc}",
                },
            )
        return Outcome(ok=False, error=describe(exc))
    except BaseException as exc:  # SystemExit, GeneratorExit...: a failure like any other
        # A pool thread runs the call: no signal is ever raised here, so any
        # BaseException is the function's own, and requeueing it would loop.
        return Outcome(ok=False, error=describe(exc))
    return Outcome(ok=True, value=result)


async def _await(awaitable: Any) -> Any:
    return await awaitable
