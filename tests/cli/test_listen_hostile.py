"""`flow listen` against hostile publishers: bad events skipped, text cannot drive a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pyfi.cli.listen import format_event
from pyfi.config import Settings
from pyfi.errors import EventDecodeError
from pyfi.events import EventSubscriber, LiveEvent
from pyfi.events.event import events_in
from pyfi.events.transport import CHANNEL_HEADER, event_route, events_exchange, kombu_connection
from tests.conftest import requires_redis

LAUNCHER = (
    "from pyfi.cli import cli, main\n"
    "from pyfi.cli.listen import listen\n"
    "cli.commands.setdefault('listen', listen)\n"
    "main()\n"
)
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b1m\u202e"


def _event(room: str, state: str = "running", **fields: Any) -> LiveEvent:
    queue, _, processor = room.rpartition(".")
    values = {"queue": queue, "processor": processor, "socket": "s", "call_id": "c"} | fields
    return LiveEvent.create("task", state, **values)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_one_deeply_nested_message_is_one_skipped_event_not_a_crash() -> None:
    # Given a message nested past what the parser can take, between two lines of garbage
    raw = "not json\n" + "[" * 100_000 + "]" * 100_000 + "\n[1, 2]"
    # When it is read
    parts = events_in(raw)
    # Then each bad part is one decode error, and reading went on to the end
    assert [type(part) for part in parts] == [EventDecodeError] * 3
    assert "nests too deep" in str(parts[1])


def test_an_event_nested_deeper_than_the_limit_is_skipped() -> None:
    good = _event("pyfi.q.p").to_dict()
    deep = json.dumps(good | {"data": {"message": "x", "deep": _nested(150)}})
    [part] = events_in(deep)
    assert isinstance(part, EventDecodeError)
    assert "nests deeper than 100 levels" in str(part)


def test_an_event_s_text_is_printed_with_control_characters_escaped() -> None:
    # Given an event whose fields and message carry terminal escape sequences
    event = _event("pyfi.q.p", state=f"run{ESCAPES}", socket=ESCAPES, data={"message": ESCAPES})
    # When it is formatted for the terminal
    line = format_event(event)
    # Then no control character is left, and each shows as its escape
    assert line.isprintable()
    assert line.count("\\x1b]0;owned\\x07\\x1b[2J\\x9b1m\\u202e") == 3


@requires_redis
@pytest.mark.redis
@pytest.mark.slow
def test_listen_skips_hostile_messages_and_prints_the_next_event_escaped(
    redis_url: str,
) -> None:
    import redis

    # Given `flow listen` on a room's task channel, against Redis
    room = f"pyfi.t{uuid.uuid4().hex[:10]}.proc1"
    env = {**os.environ, "PYFI_BACKEND": redis_url}
    listener = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "listen", "-n", room, "-c", "task", "--count", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert listener.stderr is not None
    assert listener.stderr.readline().startswith("Listening to ")
    client = redis.Redis.from_url(redis_url)
    try:
        # When hostile messages come first: nested past the parser, nested past
        # the limit, not JSON, not an object, an object of the wrong shape
        channel = f"{room}.task"
        good = _event(room, state=f"run{ESCAPES}", data={"message": ESCAPES})
        deep = good.to_dict() | {"data": {"deep": _nested(150)}}
        for raw in (
            "[" * 100_000,
            json.dumps(deep),
            "\x00not json",
            "[1, 2]",
            json.dumps(good.to_dict() | {"pid": "x", "data": [1]}),
        ):
            client.publish(channel, raw)
        # And then an event whose text carries terminal escapes
        client.publish(channel, good.to_json())
        out, err = listener.communicate(timeout=30)
    finally:
        client.close()
        if listener.poll() is None:
            listener.kill()
    # Then the listener survived them, printed the event, escaped, and stopped
    assert listener.returncode == 0, err
    assert "Traceback" not in err
    assert err.count("skipping a live event") == 5, err
    [line] = out.splitlines()
    assert line.isprintable()
    assert "\\x1b]0;owned\\x07" in line


def test_a_listener_never_inflates_a_compressed_event(broker_url: str, tmp_path: Path) -> None:
    import bz2

    from kombu import Producer

    # Given a listener whose events travel over the broker (embedded, then RabbitMQ)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'pyfi.sqlite'}",
        broker_url=broker_url,
        backend_url=f"sqlite:///{tmp_path / 'results.sqlite'}",
        data_dir=tmp_path,
        ini_path=tmp_path / "pyfi.ini",
    )
    room = f"pyfi.t{uuid.uuid4().hex[:10]}.proc1"
    good, inflated = _event(room), _event(room, state="inflated")
    with EventSubscriber(settings) as subscriber:
        events = subscriber.subscribe([f"{room}.task"], timeout=10)
        # When a compressed event comes first (kombu would inflate it, unbounded)
        connection = kombu_connection(event_route(settings).url)
        try:
            producer = Producer(connection.channel(), exchange=events_exchange())
            for body, headers in (
                (bz2.compress(inflated.to_json().encode()), {"compression": "application/x-bz2"}),
                (good.to_json().encode(), {}),
            ):
                producer.publish(
                    body,
                    routing_key=good.channel_name,
                    headers={CHANNEL_HEADER: good.channel_name, **headers},
                    content_type="application/json",
                    content_encoding="utf-8",
                )
        finally:
            connection.release()
        # Then it is skipped unread, and the plain event after it arrives alone
        received = []
        for item in events:
            received.append(item)
            break
    assert received == [good]
