"""The JSON spoken between a worker and the child processes of its time-limited calls."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from pyfi.broker.topology import SocketRoute
from pyfi.errors import InvalidValue
from pyfi.wiring import ProcessorSpec, SocketSpec, spec_from_json, spec_to_json
from pyfi.worker.child import decode_reply, encode_reply
from pyfi.worker.executor import Outcome

SPEC = ProcessorSpec(
    name="p",
    module="m",
    retries=0,
    retry_delay_s=0,
    sockets=(
        SocketSpec(
            name="s",
            id="00000000-0000-0000-0000-000000000001",
            task="f",
            queue="q",
            route=SocketRoute(socket="s", exchange="q", exchange_type="direct", durable=True),
            wait=False,
            join_arguments=(),
            outgoing=(),
        ),
    ),
    timelimit_s=30,
)


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(ok=True, value={"nested": [1, "two", None, 2.5]}),
        Outcome(ok=False, error={"type": "ValueError", "message": "bad", "traceback": "..."}),
        Outcome(ok=False, error={"type": "Retry", "message": "later"}, retry_delay_s=2.5),
    ],
)
def test_a_reply_carries_the_outcome_whole(outcome: Outcome) -> None:
    line = encode_reply(outcome)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert decode_reply(line.rstrip(b"\n")) == outcome


@pytest.mark.parametrize(
    ("line", "refusal"),
    [
        (b"not json", "not JSON"),
        (b"[true]", "boolean 'ok'"),
        (b'{"ok": "yes"}', "boolean 'ok'"),
        (b'{"ok": false, "error": "text"}', "error as an object"),
        (b'{"ok": false, "error": {}, "retry_delay_s": "1"}', "not a number"),
    ],
)
def test_a_reply_of_another_shape_is_refused(line: bytes, refusal: str) -> None:
    with pytest.raises(ValueError, match=refusal):
        decode_reply(line)


def test_a_spec_handed_to_a_worker_keeps_its_time_limit() -> None:
    assert spec_from_json(spec_to_json(SPEC)).timelimit_s == 30
    assert spec_from_json(spec_to_json(replace(SPEC, timelimit_s=None))).timelimit_s is None


@pytest.mark.parametrize("bad", [0, -1, "30", True, 1.5])
def test_a_spec_with_a_time_limit_that_is_not_whole_positive_seconds_is_refused(
    bad: object,
) -> None:
    text = spec_to_json(SPEC).replace('"timelimit_s":30', f'"timelimit_s":{json.dumps(bad)}')
    with pytest.raises(InvalidValue, match="timelimit_s must be a whole number of seconds"):
        spec_from_json(text)
