"""The wire envelope: JSON only, strict about what it needs, lenient about the rest."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from pyfi.errors import MessageDecodeError
from pyfi.message import PROTOCOL_VERSION, Message, derived_id, new_id


def test_message_round_trips_through_json() -> None:
    # Given a call with arguments of every JSON type
    sent = Message.new("s", [1, "two", [3.0], None], {"k": {"nested": True}}, parent_id=None)
    # When it is encoded and decoded
    received = Message.decode(sent.encode())
    # Then nothing changed
    assert received == sent
    assert json.loads(sent.encode())["version"] == PROTOCOL_VERSION


def test_message_with_unserialisable_argument_is_refused() -> None:
    with pytest.raises(MessageDecodeError, match="not JSON-serialisable"):
        Message.new("s", [object()]).encode()


def test_message_ignores_fields_it_does_not_know() -> None:
    # Given an envelope from a newer minor revision with an extra field
    data = Message.new("s", [1]).to_dict() | {"priority": 5}
    # Then it still decodes
    assert Message.decode(json.dumps(data)).args == [1]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"tracking_id": "x", "socket": "s"}', "'call_id' is missing"),
        (b'{"call_id": "abc", "tracking_id": "abc", "socket": "s"}', "'call_id' is not a UUID"),
        (json.dumps(Message.new("s").to_dict() | {"args": {}}).encode(), "'args' is not a list"),
        (json.dumps(Message.new("s").to_dict() | {"attempt": 0}).encode(), "'attempt'"),
        (json.dumps(Message.new("s").to_dict() | {"version": 2}).encode(), "upgrade pyfi"),
    ],
)
def test_message_decode_gives_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MessageDecodeError, match=reason):
        Message.decode(body)


def test_derived_id_is_stable_and_distinct() -> None:
    # The same parts always name the same call; different parts never collide here
    assert derived_id("a", "b") == derived_id("a", "b")
    assert derived_id("a", "b") != derived_id("a", "c")
    assert derived_id("a", "b") != derived_id("a/b")


def test_new_ids_are_version_7_in_the_order_they_were_made() -> None:
    # Time-ordered ids keep the call records' indexes appending (see new_id)
    before_ms = int(time.time() * 1000)
    ids = [new_id() for _ in range(5000)]
    after_ms = int(time.time() * 1000)

    parsed = [uuid.UUID(value) for value in ids]
    assert {value.version for value in parsed} == {7}
    assert [value.int for value in parsed] == sorted(value.int for value in parsed)
    assert len(set(ids)) == len(ids)
    assert before_ms <= parsed[0].int >> 80 <= parsed[-1].int >> 80 <= after_ms


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_makes_ids_of_its_own() -> None:
    # A program that forks after importing pyfi (a pre-forking server) must
    # not give parent and child the same random bits, and so the same ids.
    new_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its ids and leave at once
        os.close(read)
        os.write(write, ",".join(new_id() for _ in range(20)).encode())
        os._exit(0)
    os.close(write)
    mine = {new_id() for _ in range(20)}
    with os.fdopen(read) as pipe:
        theirs = set(pipe.read().split(","))
    os.waitpid(pid, 0)

    assert len(theirs) == 20
    assert not {value[-12:] for value in mine} & {value[-12:] for value in theirs}


def test_an_id_derived_from_a_version_7_id_keeps_its_time_and_is_deterministic() -> None:
    call_id = new_id()

    derived = derived_id(call_id, "plug1")

    assert derived == derived_id(call_id, "plug1")
    assert derived != derived_id(call_id, "plug2")
    assert uuid.UUID(derived).version == 7
    assert uuid.UUID(derived).variant == uuid.RFC_4122
    assert uuid.UUID(derived).int >> 80 == uuid.UUID(call_id).int >> 80
    assert derived != call_id


def test_an_id_derived_from_an_older_id_is_the_uuid5_it_always_was() -> None:
    # A message sent before ids were version 7, redelivered after an upgrade,
    # must derive the same ids so that its duplicates are still recognised.
    older = "0b7a3c52-7e0f-4b8e-9d1a-2f3c4d5e6f70"

    derived = derived_id(older, "plug1")

    expected = uuid.uuid5(uuid.NAMESPACE_URL, 'pyfi:["' + older + '", "plug1"]')
    assert derived == str(expected)


def test_retried_counts_attempts() -> None:
    first = Message.new("s")
    assert first.retried().retried().attempt == 3
    assert first.retried().call_id == first.call_id
