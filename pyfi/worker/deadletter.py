"""The body of a dead letter: why a call ended up there, and the call itself."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyfi.message import Message

# Header naming why a message was set aside, for whoever reads the queue.
REASON_HEADER = "pyfi-reason"


@dataclass(frozen=True)
class Letter:
    """A message set aside for good, and why: it is never run (again) where it was.

    ``kind`` is the short reason in the letter's header (``undecodable``,
    ``failed``, ``worker-error``); ``reason`` is the sentence `flow dlq`
    shows.
    """

    kind: str
    reason: str
    call: Message | None = None
    error: dict[str, Any] | None = None
    raw: bytes | None = None

    def body(self) -> bytes:
        """The letter as it goes into the dead-letter queue."""
        return dead_letter_body(self.call, reason=self.reason, error=self.error, raw=self.raw)

    @property
    def headers(self) -> dict[str, Any]:
        """The letter's headers."""
        return {REASON_HEADER: self.kind}


def dead_letter_body(
    call: Message | None,
    *,
    reason: str,
    error: dict[str, Any] | None = None,
    raw: bytes | None = None,
) -> bytes:
    """A JSON dead letter that `flow dlq` can show and replay.

    ``message`` holds the original envelope when it could be read; ``raw``
    holds the undecodable bytes (as text, replaced where not UTF-8) when not.
    """
    letter: dict[str, Any] = {
        "id": call.call_id if call is not None else str(uuid.uuid4()),
        "reason": reason,
        "dead_at": datetime.now(UTC).isoformat(),
        "error": error,
        "message": call.to_dict() if call is not None else None,
        "raw": raw.decode("utf-8", errors="replace") if raw is not None else None,
    }
    return json.dumps(letter).encode()


def read_dead_letter(body: bytes | str) -> dict[str, Any]:
    """Parse a dead letter, tolerating one that is not JSON (it is shown raw)."""
    try:
        letter = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        return {"reason": "not a pyfi dead letter", "raw": text, "message": None, "error": None}
    return (
        letter
        if isinstance(letter, dict)
        else {"reason": "not a pyfi dead letter", "raw": str(letter), "message": None}
    )
