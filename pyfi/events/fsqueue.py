"""kombu's filesystem transport, with message files that sort in publish order.

Stock kombu names a message file ``<milliseconds>_<uuid4>.<queue>.msg`` and
readers take files in name order, so the events of one millisecond (a call's
``received`` and ``running`` usually share one) come out shuffled. Here the
name starts with zero-padded nanoseconds instead, and the file is written
under a name readers ignore, then renamed, so no reader sees half a message.
Everything else (exchanges, bindings, fanout, reading) is kombu's own, but
for a sender's ``compression`` header, which kombu is never let to act on
(see :func:`pyfi.limits.hold_compression`).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils import json as kombu_json

from pyfi.limits import hold_compression


class Channel(filesystem.Channel):
    """A filesystem channel whose message files sort in publish order."""

    # kombu names the second parameter "message" in one base and "payload" in
    # the other; both call it positionally.
    def _put(self, queue: Any, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        folder = self.data_folder_out
        token = uuid.uuid4().hex
        # Readers match "<anything>.<queue>.msg" after the first dot; a
        # ".part" file never matches, so the rename is what publishes.
        partial = os.path.join(folder, f"{token}.part")
        final = os.path.join(folder, f"{time.time_ns():020d}_{token}.{queue}.msg")
        try:
            with open(partial, "wb") as handle:
                handle.write(_dumps(message).encode("utf-8"))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"cannot add a message file to {folder!r}") from exc

    def _get(self, queue: Any, *args: Any) -> Any:
        payload = super()._get(queue, *args)
        if isinstance(payload, dict):
            hold_compression(payload.get("headers"))
        return payload


class Transport(filesystem.Transport):
    """kombu's filesystem transport using :class:`Channel`."""

    Channel = Channel

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        # One exchange/binding state per folder, not one per process (see
        # pyfi.broker.filesystem.Transport): else a second folder loses events.
        self.state = virtual.BrokerState()


def _dumps(message: Any) -> str:
    # kombu's own encoder, as its reader uses kombu's decoder.
    encode: Any = kombu_json.dumps
    return str(encode(message))
