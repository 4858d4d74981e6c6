"""A processor's retry policy: whether a failed call runs again, and after how long."""

from __future__ import annotations

from pyfi.message import Message
from pyfi.outcome import Outcome
from pyfi.wiring import ProcessorSpec

# The longest a failed call waits before its next attempt.
MAX_RETRY_DELAY_S = 3600


def retry_delay(spec: ProcessorSpec, call: Message, outcome: Outcome) -> float | None:
    """Seconds until ``call``, which failed with ``outcome``, runs again; None: it does not.

    The processor's ``retries`` bound the attempts whatever the function
    asks: ``Retry(delay=...)`` chooses only the delay. Otherwise the delay
    doubles from the processor's ``retry_delay_s`` with each attempt.
    """
    if outcome.ok or call.attempt > spec.retries:
        return None
    if outcome.retry_delay_s is not None:
        return max(0.0, outcome.retry_delay_s)
    base = max(spec.retry_delay_s, 0)
    return float(min(base * 2 ** (call.attempt - 1), MAX_RETRY_DELAY_S))
