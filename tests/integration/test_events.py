"""Live events over real transports: Redis pub/sub, the embedded filesystem fanout, RabbitMQ.

The contract tests run once per transport through the ``event_settings``
fixture. Redis pub/sub is shared by every database of a server, so each test
uses rooms of its own (a fresh queue name) and never depends on silence on
``global``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pyfi.config import Settings
from pyfi.errors import EventDecodeError, EventsUnavailable, FlowError, InvalidValue
from pyfi.events import (
    GLOBAL_CHANNEL,
    Channel,
    EventPublisher,
    EventSubscriber,
    LiveEvent,
    channel_name,
)
from pyfi.events import publisher as publisher_module
from pyfi.events.event import EventTemplate, events_in, join_events
from pyfi.events.transport import filesystem_folders
from tests.conftest import requires_rabbitmq, requires_redis

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def make_settings(
    tmp_path: Path, *, backend: str | None = None, broker: str | None = None
) -> Settings:
    """Settings whose events go to ``backend`` (Redis) or else to ``broker``."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'pyfi.sqlite'}",
        broker_url=broker or f"filesystem://{tmp_path / 'broker'}",
        backend_url=backend or f"sqlite:///{tmp_path / 'results.sqlite'}",
        data_dir=tmp_path,
        ini_path=tmp_path / "pyfi.ini",
    )


@pytest.fixture(
    params=[
        pytest.param("redis", marks=[pytest.mark.redis, requires_redis]),
        pytest.param("filesystem"),
    ]
)
def event_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for each live-event transport in turn."""
    if request.param == "redis":
        return make_settings(tmp_path, backend=request.getfixturevalue("redis_url"))
    return make_settings(tmp_path)


@pytest.fixture
def queue() -> str:
    """A queue name no other test (or process on the same Redis) uses."""
    return f"pyfi.t{uuid.uuid4().hex[:10]}"


def event(queue: str, state: str, channel: Channel = "task", processor: str = "proc1") -> LiveEvent:
    return LiveEvent.create(
        channel,
        state,
        queue=queue,
        processor=processor,
        socket="pyfi.processors.sample.do_something",
        call_id=f"call-{state}",
        tracking_id="track-1",
        data={"preview": [1, 2, 3]},
    )


def take(events: Iterator[LiveEvent], count: int, *, room: str | None = None) -> list[LiveEvent]:
    """Up to ``count`` events (of ``room`` only, if given) before the iterator's timeout."""
    got: list[LiveEvent] = []
    for item in events:
        if room is None or item.room == room:
            got.append(item)
        if len(got) == count:
            break
    return got


# -- the event itself ---------------------------------------------------------


def test_live_event_json_round_trip_keeps_every_field(queue: str) -> None:
    # Given an event stamped now
    original = event(queue, "received")
    # When it goes through JSON and back
    text = original.to_json()
    parsed = LiveEvent.from_json(text)
    # Then nothing is lost, and the wire form is plain JSON with the schema version
    assert parsed == original
    assert json.loads(text)["schema"] == 1
    assert parsed.room == f"{queue}.proc1"
    assert parsed.channel_name == channel_name(queue, "proc1", "task")


@pytest.mark.parametrize(
    ("channel", "template_data", "call_data"),
    [
        ("result", None, {"preview": "'x'"}),
        ("task", {"note": "Received task s1"}, None),
        ("error", None, {"type": "ValueError", "message": 'bad "quote" \\ é'}),
    ],
)
def test_template_event_is_the_json_of_the_same_live_event(
    queue: str, channel: str, template_data: Any, call_data: Any
) -> None:
    # Given a template of one socket's events (data fixed or given per call)
    where = {"queue": queue, "processor": "proc1", "socket": "s1"}
    template = EventTemplate(channel, "postrun", data=template_data, **where)  # type: ignore[arg-type]
    # When it is encoded for two calls, as workers do
    encoded = [template.encode(f"c{i}", f"t{i}", call_data) for i in (1, 2)]
    # Then each reads back as the event LiveEvent.create makes, and writes back to the same text
    for index, (name, payload) in enumerate(encoded, start=1):
        decoded = LiveEvent.from_json(payload)
        created = LiveEvent.create(
            channel,  # type: ignore[arg-type]
            "postrun",
            call_id=f"c{index}",
            tracking_id=f"t{index}",
            data=call_data if call_data is not None else template_data,
            **where,
        )
        assert decoded == replace(created, date=decoded.date)
        assert decoded.data == created.data
        assert decoded.to_json() == payload
        assert name == created.channel_name == f"{queue}.proc1.{channel}"


def test_a_message_of_several_events_reads_back_each_and_skips_only_a_bad_one(
    queue: str,
) -> None:
    # Given a message joining three events, the middle line garbled, and a
    # single event pretty-printed by another publisher
    first, last = event(queue, "received"), event(queue, "running")
    joined = join_events([first.to_json(), '{"channel": "task", oops', last.to_json()])
    pretty = json.dumps(json.loads(first.to_json()), indent=2)
    # When they are read
    read = events_in(joined.encode())
    # Then the good events come back in order, with an error in place of the bad line
    assert len(read) == 3
    assert read[0] == first
    assert read[2] == last
    assert isinstance(read[1], EventDecodeError)
    assert events_in(pretty) == [first]
    assert [type(e) for e in events_in(b"[1, 2]")] == [EventDecodeError]
    assert [type(e) for e in events_in(b"\xff")] == [EventDecodeError]


def test_template_refuses_an_unknown_channel(queue: str) -> None:
    with pytest.raises(InvalidValue, match="unknown event channel 'nope'"):
        EventTemplate("nope", "x", queue=queue, processor="p")  # type: ignore[arg-type]


def test_live_event_from_json_ignores_unknown_fields(queue: str) -> None:
    # Given an event from a newer pyfi, with fields this version does not know
    raw = json.loads(event(queue, "running").to_json())
    raw.update(schema=2, gpu="A100", cost={"ms": 3})
    # When it is parsed
    parsed = LiveEvent.from_json(json.dumps(raw))
    # Then the known fields are read and the rest ignored
    assert (parsed.state, parsed.schema) == ("running", 2)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"channel": "task"}', "state must be a string"),
        ("channel=bogus", "not valid JSON"),
    ],
)
def test_live_event_from_json_malformed_raises_decode_error(
    text: str | bytes, complaint: str
) -> None:
    # When malformed input is parsed
    with pytest.raises(EventDecodeError) as caught:
        LiveEvent.from_json(text)
    # Then it is a pyfi error whose one line says what is wrong
    assert isinstance(caught.value, FlowError)
    assert complaint in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("channel", "metrics", "channel 'metrics' is not one of"),
        ("pid", True, "pid must be an integer"),
        ("date", "yesterday", "not ISO-8601"),
        ("data", [1], "data must be an object"),
        ("call_id", 7, "call_id must be a string or null"),
    ],
)
def test_live_event_from_json_wrong_field_type_raises_decode_error(
    queue: str, field: str, value: object, complaint: str
) -> None:
    # Given a well-formed event with one field of the wrong kind
    raw = json.loads(event(queue, "received").to_json())
    raw[field] = value
    # When it is parsed, then the error names the field
    with pytest.raises(EventDecodeError, match=complaint):
        LiveEvent.from_json(json.dumps(raw))


def test_live_event_unencodable_data_travels_as_repr(queue: str) -> None:
    # Given a result preview JSON cannot hold
    odd = LiveEvent.create("result", "postrun", queue=queue, processor="p", data={"v": {1, 2}})
    # When it is encoded, then it becomes the value's repr instead of an error
    assert LiveEvent.from_json(odd.to_json()).data == {"v": "{1, 2}"}


# -- publish and subscribe, on every transport -----------------------------------


def test_events_round_trip_reaches_channel_and_global(event_settings: Settings, queue: str) -> None:
    # Given one listener on the processor's task channel and one on global
    room = f"{queue}.proc1"
    with EventSubscriber(event_settings) as on_channel, EventSubscriber(event_settings) as on_all:
        specific = on_channel.subscribe([channel_name(queue, "proc1", "task")], timeout=5)
        everything = on_all.subscribe([GLOBAL_CHANNEL], timeout=5)
        # When a worker publishes one task event
        sent = event(queue, "received")
        with EventPublisher(event_settings) as publisher:
            publisher.publish(sent)
        # Then both listeners receive it, intact
        assert take(specific, 1) == [sent]
        assert take(everything, 1, room=room) == [sent]


@requires_rabbitmq
@pytest.mark.rabbitmq
def test_events_round_trip_on_rabbitmq_fanout(amqp_url: str, tmp_path: Path, queue: str) -> None:
    # Given a RabbitMQ broker and a non-Redis backend, and a listener on global
    settings = make_settings(tmp_path, broker=amqp_url)
    with EventSubscriber(settings) as subscriber:
        events = subscriber.subscribe([GLOBAL_CHANNEL, f"{queue}.proc1.*"], timeout=5)
        # When one event is published
        sent = event(queue, "failure", channel="error")
        with EventPublisher(settings) as publisher:
            publisher.publish(sent)
        # Then it arrives once, though both patterns match it
        assert take(events, 2) == [sent]


def test_events_pattern_filters_other_rooms(event_settings: Settings, queue: str) -> None:
    # Given a listener on every channel of room A only
    with EventSubscriber(event_settings) as subscriber:
        events = subscriber.subscribe([f"{queue}.procA.*"], timeout=10)
        # When room B publishes first and room A after it
        with EventPublisher(event_settings) as publisher:
            publisher.publish(event(queue, "received", processor="procB"))
            publisher.publish(event(queue, "log-b", channel="log", processor="procB"))
            publisher.publish(event(queue, "running", processor="procA"))
            publisher.publish(event(queue, "info", channel="log", processor="procA"))
        # Then the first two to arrive are room A's: room B's, sent before them, were
        # filtered out (events arrive in publish order; a loaded host may take seconds)
        got = take(events, 2)
    assert [(e.processor, e.state) for e in got] == [("procA", "running"), ("procA", "info")]


def test_publisher_close_flushes_queued_events_in_order(
    event_settings: Settings, queue: str
) -> None:
    # Given a listener and a publisher with many events still queued
    count = 300
    with EventSubscriber(event_settings) as subscriber:
        events = subscriber.subscribe([channel_name(queue, "proc1", "task")], timeout=10)
        publisher = EventPublisher(event_settings, batch_size=50)
        for number in range(count):
            publisher.publish(event(queue, f"s{number}"))
        # When it is closed straight away
        assert publisher.close(timeout=10)
        # Then every event was sent, and arrives in publish order
        assert (publisher.sent, publisher.pending, publisher.dropped) == (count, 0, 0)
        got = take(events, count)
    assert [e.state for e in got] == [f"s{number}" for number in range(count)]


@requires_redis
@pytest.mark.redis
def test_publisher_sends_a_channels_ready_events_as_one_message(
    redis_url: str, tmp_path: Path, queue: str
) -> None:
    import redis

    # Given a raw Redis listener on two channels of one room
    settings = make_settings(tmp_path, backend=redis_url)
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.psubscribe(f"{queue}.proc1.*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    try:
        # When a worker publishes 100 task and 100 result events, interleaved, at once
        publisher = EventPublisher(settings, batch_size=1_000)
        for number in range(100):
            publisher.publish(event(queue, f"s{number}"))
            publisher.publish(event(queue, f"r{number}", channel="result"))
        assert publisher.close(timeout=10)
        messages = []
        while (message := pubsub.get_message(timeout=1)) is not None:
            messages.append(message)
    finally:
        pubsub.close()
        client.close()
    # Then they travel as a few messages, each holding one channel's events in order
    by_channel: dict[str, list[str]] = {}
    for message in messages:
        channel = message["channel"].decode()
        for read in events_in(message["data"]):
            assert isinstance(read, LiveEvent)
            assert read.channel_name == channel
            by_channel.setdefault(read.channel, []).append(read.state)
    assert len(messages) < 20
    assert by_channel == {
        "task": [f"s{number}" for number in range(100)],
        "result": [f"r{number}" for number in range(100)],
    }
    assert publisher.sent == 200


@requires_redis
@pytest.mark.redis
def test_a_full_batch_is_sent_at_once_and_the_rest_waits_for_the_linger(
    redis_url: str, tmp_path: Path, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    # Given a publisher that lingers far longer than this test waits, in batches of 10
    monkeypatch.setattr(publisher_module, "LINGER_S", 60.0)
    settings = make_settings(tmp_path, backend=redis_url)
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.psubscribe(f"{queue}.proc1.*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    publisher = EventPublisher(settings, batch_size=10)
    try:
        # When a first event starts the linger, and then a full batch is queued
        publisher.publish(event(queue, "first"))
        time.sleep(0.2)  # the thread has taken up its linger
        for number in range(9):
            publisher.publish(event(queue, f"s{number}"))
        # Then the batch is sent without waiting out the linger
        message = pubsub.get_message(timeout=10)
        assert message is not None
        assert [e.state for e in events_in(message["data"])] == ["first"] + [
            f"s{n}" for n in range(9)
        ]
        # And an event that does not fill a batch waits (the linger is not over)
        publisher.publish(event(queue, "last"))
        assert pubsub.get_message(timeout=1) is None
        # Until close sends it
        assert publisher.close(timeout=10)
        message = pubsub.get_message(timeout=5)
        assert message is not None
        assert [e.state for e in events_in(message["data"])] == ["last"]
    finally:
        publisher.close(timeout=1)
        pubsub.close()
        client.close()


def test_publisher_full_queue_drops_oldest_without_blocking(
    tmp_path: Path, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a publisher whose Redis is down and whose queue holds 10 events
    settings = make_settings(tmp_path, backend=UNREACHABLE_REDIS)
    publisher = EventPublisher(settings, max_pending=10, batch_size=5)
    total = 5_000
    caplog.set_level(logging.WARNING, logger="pyfi.events")
    # When a busy worker publishes far more than that
    started = time.perf_counter()
    for number in range(total):
        publisher.publish(event(queue, f"s{number}"))
    elapsed = time.perf_counter() - started
    # Then publishing never waited for the transport, and the overflow is counted
    assert elapsed < 1.0, f"{total} publishes took {elapsed:.2f}s"
    assert publisher.dropped >= total - 10 - 5 * 10
    assert publisher.dropped + publisher.failed + publisher.pending == total
    # And closing gives up on what cannot be sent, with one warning, not one per batch
    assert publisher.close(timeout=10)
    assert publisher.sent == 0
    assert publisher.dropped + publisher.failed == total
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "live events cannot reach Redis at redis://127.0.0.1:1/0" in warnings[0].getMessage()


def test_publisher_after_close_drops_instead_of_raising(
    event_settings: Settings, queue: str
) -> None:
    # Given a closed publisher
    publisher = EventPublisher(event_settings)
    assert publisher.close()
    # When a late event is published, then it is counted, not raised
    publisher.publish(event(queue, "late"))
    assert (publisher.dropped, publisher.sent) == (1, 0)


@requires_redis
@pytest.mark.redis
def test_subscriber_skips_malformed_messages(redis_url: str, tmp_path: Path, queue: str) -> None:
    import redis

    # Given a listener on a channel where something else publishes garbage
    settings = make_settings(tmp_path, backend=redis_url)
    name = channel_name(queue, "proc1", "log")
    client = redis.Redis.from_url(redis_url)
    try:
        with EventSubscriber(settings) as subscriber:
            events = subscriber.subscribe([name], timeout=5)
            client.publish(name, b"\x00not json")
            client.publish(name, json.dumps({"channel": "log"}))
            # When a real event follows
            good = event(queue, "info", channel="log")
            client.publish(name, good.to_json())
            # Then only the real event is yielded
            assert take(events, 1) == [good]
    finally:
        client.close()


def test_subscriber_unreachable_redis_raises_events_unavailable(tmp_path: Path) -> None:
    # Given settings whose Redis is down
    subscriber = EventSubscriber(make_settings(tmp_path, backend=UNREACHABLE_REDIS))
    # When subscribing, then one pyfi error names the transport
    with pytest.raises(EventsUnavailable, match=r"Redis at redis://127\.0\.0\.1:1/0"):
        subscriber.subscribe(["global"])
    subscriber.close()


def test_subscriber_timeout_ends_iteration(event_settings: Settings, queue: str) -> None:
    # Given a listener with a short timeout and nothing published
    with EventSubscriber(event_settings) as subscriber:
        started = time.monotonic()
        # When it is iterated, then it ends empty at the timeout
        assert list(subscriber.subscribe([f"{queue}.proc1.task"], timeout=0.5)) == []
    assert 0.4 < time.monotonic() - started < 2.5


def test_subscriber_close_from_another_thread_ends_iteration(
    event_settings: Settings, queue: str
) -> None:
    # Given a listener iterating with no timeout
    subscriber = EventSubscriber(event_settings)
    events = subscriber.subscribe([f"{queue}.proc1.task"])
    stopper = threading.Timer(0.3, subscriber.close)
    started = time.monotonic()
    stopper.start()
    # When another thread closes it, then the iteration ends promptly and empty
    assert list(events) == []
    assert time.monotonic() - started < 2.0
    stopper.join()


LISTENER = """
import sys
import threading
from pyfi.config import Settings
from pathlib import Path
from pyfi.events import EventSubscriber
root = Path(sys.argv[1])
settings = Settings(database_url="sqlite://", broker_url=f"filesystem://{root / 'broker'}",
                    backend_url="sqlite://", data_dir=root, ini_path=root / "pyfi.ini")
events = EventSubscriber(settings).subscribe(["global"])
print("ready", flush=True)
for _ in events:
    pass
"""


def test_filesystem_listener_killed_without_closing_is_pruned(tmp_path: Path, queue: str) -> None:
    # Given a listener process on the embedded broker, killed before it could unbind
    child = subprocess.Popen(
        [sys.executable, "-c", LISTENER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    data, control = filesystem_folders(f"filesystem://{tmp_path / 'broker'}")
    table = control / "pyfi.events.exchange"
    assert f".{child.pid}." in table.read_text()
    settings = make_settings(tmp_path)
    # When a new listener subscribes
    with EventSubscriber(settings) as subscriber:
        events = subscriber.subscribe([f"{queue}.proc1.task"], timeout=3)
        # Then the dead listener's binding is gone, and events reach only the live one
        assert f".{child.pid}." not in table.read_text()
        with EventPublisher(settings) as publisher:
            publisher.publish(event(queue, "received"))
        assert [e.state for e in take(events, 1)] == ["received"]
    assert not [p for p in data.iterdir() if f".{child.pid}." in p.name]
