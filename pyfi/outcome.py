"""The stored outcome of a call or a flow run: what a caller reads back, JSON only.

A worker stores one per call it finishes, a flow stores one per run, and a
caller reads them (:func:`pyfi.client.calls.unwrap`). The form is one of::

    {"status": "ok", "value": <any JSON>}
    {"status": "error", "error": {"type": ..., "message": ..., "traceback": ...}}

This module is the only place that writes or reads it, as
:mod:`pyfi.message` is for the envelope on the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

OK, ERROR = "ok", "error"


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
        """The stored form (see :func:`encode_outcome`)."""
        return encode_outcome(self)


def encode_outcome(outcome: Outcome) -> str:
    """``outcome`` in its stored form; a retry delay is the worker's own and not stored."""
    if outcome.ok:
        return succeeded(outcome.value)
    return failed(outcome.error)


def succeeded(value: Any) -> str:
    """The stored form of a success with ``value``."""
    return json.dumps({"status": OK, "value": value})


def failed(error: dict[str, Any] | None) -> str:
    """The stored form of a failure described by ``error``."""
    return json.dumps({"status": ERROR, "error": error})


def decode_outcome(stored: str | bytes) -> Outcome:
    """An outcome from its stored form; anything but ``"ok"`` reads as a failure."""
    data = json.loads(stored)
    if data.get("status") == OK:
        return Outcome(ok=True, value=data.get("value"))
    return Outcome(ok=False, error=data.get("error"))
