"""Malformed and hostile messages, published straight to a socket's queue.

Each kind comes from the hardening issue's list of messages a worker must
refuse (dead-letter once, with a reason) without looping, executing anything,
or running out of memory. Where a message would be *run* if accepted, its
arguments are a token and the ledger of the probe, so an execution of a
hostile message shows up in the ledger (tokens starting ``hostile-``).

The bodies are built by hand rather than by :class:`pyfi.message.Message`,
which would refuse to build most of them.
"""

from __future__ import annotations

import bz2
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from bench.chaos.network import EXIT, TOUCH
from pyfi.message import Message, new_id
from pyfi.naming import DEFAULT_EXCHANGE

DEEP = 20_000  # nesting levels: far beyond Python's recursion limit, in 40 KB
BIG_INT_DIGITS = 5_000  # beyond int's default 4,300-digit limit
HUGE_GROUP = 10**9
WRONG_ARGUMENTS = {"x-max-length": "unbounded"}  # a queue argument of the wrong type


@dataclass(frozen=True)
class Hostile:
    """One message to publish: what it tries, its body and its AMQP headers."""

    kind: str
    token: str
    body: bytes
    headers: dict[str, Any]


def _envelope(token: str, ledger: str, socket: str = TOUCH, **fields: Any) -> dict[str, Any]:
    data = Message.new(socket, [token, ledger]).to_dict()
    data.update(fields)
    return data


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


@cache
def _bomb(size: int) -> bytes:
    """A bz2 stream of a few hundred bytes that decompresses into ``size`` spaces."""
    compressor = bz2.BZ2Compressor(9)
    chunk = b" " * (1 << 24)
    parts = [compressor.compress(chunk) for _ in range(max(1, size >> 24))]
    return b"".join(parts) + compressor.flush()


def messages(ledger: str, serial: int, *, oversized: int, bomb: int) -> list[Hostile]:
    """One message of every hostile kind; ``serial`` makes their tokens unique."""

    def token(kind: str) -> str:
        return f"hostile-{kind}-{serial}"

    def envelope(kind: str, **fields: Any) -> bytes:
        return _json(_envelope(token(kind), ledger, **fields))

    def spliced(kind: str, raw: bytes) -> bytes:
        """An envelope carrying ``raw`` JSON text (which no encoder would write) in kwargs."""
        return envelope(kind, kwargs={"x": "@"}).replace(b'"@"', raw)

    huge_group = {"kind": "parallel", "id": "0", "index": 0, "size": HUGE_GROUP}
    route = {"socket": TOUCH, "exchange": "chaos.queue", "exchange_type": "direct",
             "durable": True, "arguments": WRONG_ARGUMENTS}  # fmt: skip
    next_step = {"kind": "call", "id": "0.1", "socket": TOUCH, "route": route,
                 "args": [token("route-next"), ledger], "kwargs": {}, "into": False}  # fmt: skip
    bodies = {
        "deep-json": spliced("deep-json", b"[" * DEEP + b"]" * DEEP),
        "5000-digit-int": spliced("5000-digit-int", b"9" * BIG_INT_DIGITS),
        "group-size-1e9": envelope("group-size-1e9", flow={"frames": [huge_group]}),
        "hostile-route": envelope(
            "hostile-route", flow={"frames": [{"kind": "pipeline", "rest": [next_step]}]}
        ),
        "socket-os.system": envelope("socket-os.system", socket="os.system"),
        "socket-__import__": envelope("socket-__import__", socket="__import__"),
        "version-0": envelope("version-0", version=0),
        "version--1": envelope("version--1", version=-1),
        "not-a-uuid": envelope("not-a-uuid", call_id="../../etc/passwd"),
        "oversized": envelope("oversized", padding="x" * oversized),  # unknown fields are ignored
        "system-exit": envelope("system-exit", socket=EXIT),
    }
    found = [Hostile(kind, token(kind), body, {}) for kind, body in bodies.items()]
    # Compressed by the sender: kombu decompresses whatever the header names.
    head = envelope("bz2-bomb")[:-1]  # without its closing brace
    headers = {"compression": "application/x-bz2"}
    found.append(Hostile("bz2-bomb", token("bz2-bomb"), _bombed(head, bomb), headers))
    return found


def _bombed(head: bytes, size: int) -> bytes:
    """An envelope (``head`` + ``}``) with ``size`` spaces before its end, bz2-compressed.

    Still valid JSON once decompressed. bz2 streams concatenate, so the
    spaces' stream is made once per size and reused.
    """
    return bz2.compress(head) + _bomb(size) + bz2.compress(b"}")


def publish(broker: Any, queue: str, hostile: Hostile) -> None:
    """Put ``hostile`` straight into ``queue`` (the default exchange routes by queue name)."""
    broker.producer.publish(
        hostile.body,
        exchange=DEFAULT_EXCHANGE,
        routing_key=queue,
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        headers=hostile.headers,
        message_id=new_id(),
    )
