"""Running one socket function and turning what happened into data."""

from __future__ import annotations

import asyncio
import inspect
import json
import traceback
from collections.abc import Callable
from typing import Any

from pyfi.errors import Retry
from pyfi.outcome import Outcome

__all__ = ["Outcome", "describe", "execute"]


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
