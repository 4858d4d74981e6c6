"""Wire limits: every hostile body is refused with a reason, never raised past the decoder."""

from __future__ import annotations

import bz2
import json
import zlib
from dataclasses import replace
from typing import Any

import pytest

from pyfi.broker.topology import SocketRoute
from pyfi.config import load_settings
from pyfi.errors import ConfigurationError, MessageDecodeError
from pyfi.limits import (
    COMPRESSION_HEADER,
    DEFAULT_LIMITS,
    RAW_KEPT_BYTES,
    WireLimits,
    admit_body,
    hold_compression,
    kept_raw,
    limits_from,
)
from pyfi.message import Message, new_id
from pyfi.wiring import ProcessorSpec, SocketSpec
from pyfi.worker.admission import Admission, RouteBook
from pyfi.workflow.plan import check_frames, route_to_json


def _envelope(**fields: Any) -> dict[str, Any]:
    return Message.new("s", [1]).to_dict() | fields


def _body(**fields: Any) -> bytes:
    return json.dumps(_envelope(**fields)).encode()


def _refusal(body: bytes | str, limits: WireLimits = DEFAULT_LIMITS) -> str:
    with pytest.raises(MessageDecodeError) as refused:
        Message.decode(body, limits)
    return str(refused.value)


# -- integers and nesting -------------------------------------------------------
def test_a_5000_digit_integer_is_refused_not_raised_as_a_value_error() -> None:
    # Given a call whose argument is a 5,000-digit integer (Python's int() raises ValueError)
    body = _body(args=[]).replace(b'"args": []', b'"args": [' + b"9" * 5000 + b"]")
    # Then decoding refuses it with the limit in the reason
    assert "an integer of 5000 digits, over the limit of 1000" in _refusal(body)


def test_the_integer_limit_is_a_setting_and_counts_digits_not_the_sign() -> None:
    body = _body(args=[-(10**20)])
    assert Message.decode(body, replace(DEFAULT_LIMITS, max_int_digits=21)).args == [-(10**20)]
    assert "21 digits" in _refusal(body, replace(DEFAULT_LIMITS, max_int_digits=20))


def test_nesting_deeper_than_the_interpreter_can_parse_is_refused() -> None:
    # Given 100,000 nested arrays in 200 KB (the parser itself raises RecursionError)
    body = b'{"args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    # Then the reason says why
    assert "nests deeper than the limit of 100" in _refusal(body)


def test_nesting_the_parser_accepts_is_still_bounded_by_the_setting() -> None:
    # Given arguments nested 150 deep: parsed fine, but past the limit of 100
    deep: Any = 1
    for _ in range(150):
        deep = [deep]
    assert "nests deeper than the limit of 100" in _refusal(_body(args=[deep]))
    # And the same message within a higher limit is accepted
    assert Message.decode(_body(args=[deep]), replace(DEFAULT_LIMITS, max_depth=200)).args


def test_many_brackets_that_do_not_nest_are_accepted() -> None:
    # Given far more arrays than the depth limit, side by side, and brackets in a string
    args = [[[index]] for index in range(500)] + ["[" * 1000]
    assert Message.decode(_body(args=args)).args == args


# -- the envelope's fields ------------------------------------------------------
@pytest.mark.parametrize("version", [0, -1, True, 1.0, "1", None])
def test_only_the_known_protocol_version_is_accepted(version: Any) -> None:
    assert "is not one this worker knows (only 1)" in _refusal(_body(version=version))


def test_a_newer_protocol_version_says_to_upgrade() -> None:
    assert "upgrade pyfi on the workers" in _refusal(_body(version=2))


@pytest.mark.parametrize(
    "spelling",
    [
        lambda text: text.upper(),
        lambda text: "{" + text + "}",
        lambda text: "urn:uuid:" + text,
        lambda text: text.replace("-", ""),
    ],
)
def test_ids_must_be_canonical_uuids(spelling: Any) -> None:
    # Given a call id that uuid.UUID reads, spelled other than pyfi writes it
    call_id = spelling(new_id())
    # Then it is refused: the same call would otherwise have two names
    assert "'call_id' is not a UUID in canonical form" in _refusal(_body(call_id=call_id))


@pytest.mark.parametrize(
    "fields",
    [
        {"socket": "s" * 257},
        {"argument": "a" * 257},
        {"plug": "p" * 257},
        {"idempotency_key": "k" * 257},
        {"kwargs": {"k" * 257: 1}},
    ],
)
def test_names_and_keys_are_bounded(fields: dict[str, Any]) -> None:
    assert "257 characters, over the limit of 256" in _refusal(_body(**fields))


def test_an_attempt_beyond_any_retry_policy_is_refused() -> None:
    assert "'attempt' is not an integer from 1" in _refusal(_body(attempt=10**9))
    assert "'attempt'" in _refusal(_body(attempt=True))


# -- the body: size and compression -----------------------------------------------
def test_a_body_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    body = b"x" * (DEFAULT_LIMITS.max_message_bytes + 1)  # not even JSON: never parsed
    with pytest.raises(MessageDecodeError, match="over the limit of 1048576"):
        admit_body(body, {}, DEFAULT_LIMITS)


def test_the_transports_keep_kombu_from_inflating_a_body() -> None:
    # Given the headers of a message its sender compressed
    headers: dict[str, Any] = {"compression": "application/x-bz2", "pyfi-socket": "s"}
    # When a transport hands it over
    hold_compression(headers)
    # Then kombu sees no compression header (it would inflate the body, unbounded)
    assert headers == {COMPRESSION_HEADER: "application/x-bz2", "pyfi-socket": "s"}


def test_a_compressed_body_is_refused_unless_compression_is_accepted() -> None:
    # Given a 1 KB bz2 body that inflates to 100 MB
    bomb = bz2.compress(b"0" * 100_000_000)
    assert len(bomb) < 1024
    headers = {COMPRESSION_HEADER: "application/x-bz2"}
    # Then a worker with the defaults refuses it
    with pytest.raises(MessageDecodeError, match=r"compressed .* this worker does not accept"):
        admit_body(bomb, headers, DEFAULT_LIMITS)
    # And one accepting bzip2 inflates no further than the size limit
    accepting = replace(DEFAULT_LIMITS, compression=("bzip2",))
    with pytest.raises(MessageDecodeError, match="inflates beyond the limit of 1048576 bytes"):
        admit_body(bomb, headers, accepting)


def test_an_accepted_compression_is_inflated() -> None:
    body = _body()
    accepting = replace(DEFAULT_LIMITS, compression=("zlib",))
    headers = {COMPRESSION_HEADER: "application/x-gzip"}
    inflated = admit_body(zlib.compress(body), headers, accepting)
    assert Message.decode(inflated) == Message.decode(body)


def test_a_dead_letter_keeps_a_bounded_part_of_a_refused_body() -> None:
    assert len(kept_raw(b"x" * (RAW_KEPT_BYTES * 3))) == RAW_KEPT_BYTES


# -- settings ---------------------------------------------------------------------
def test_limits_are_read_from_the_environment_and_the_ini(tmp_path: Any) -> None:
    ini = tmp_path / "pyfi.ini"
    ini.write_text("[wire]\nmax_depth = 40\ncompression = zlib, bzip2\n")
    settings = load_settings({"ini_path": str(ini)}, {"PYFI_WIRE_MAX_MESSAGE_BYTES": "2048"})
    assert settings.wire == replace(
        DEFAULT_LIMITS, max_message_bytes=2048, max_depth=40, compression=("zlib", "bzip2")
    )


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("max_depth", "0", "expected a positive integer"),
        ("max_message_bytes", "1MB", "expected a positive integer"),
        ("compression", "zlib brotli", "unknown codecs brotli"),
    ],
)
def test_a_bad_limit_is_a_configuration_error(name: str, text: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        limits_from({name: text}.get)


# -- flows and sockets (the worker's gate) ------------------------------------------
ROUTE = SocketRoute(socket="s", exchange="q")
SIBLING_ROUTE = SocketRoute(socket="t", exchange="fan", exchange_type="fanout")
ELSEWHERE = SocketRoute(socket="elsewhere", exchange="q2", arguments={"x-max-length": 5})


def _socket(name: str, route: SocketRoute, siblings: tuple[str, ...] = ()) -> SocketSpec:
    return SocketSpec(
        name=name,
        id=new_id(),
        task="task",
        queue=route.exchange,
        route=route,
        wait=False,
        join_arguments=(),
        outgoing=(),
        siblings=siblings,
    )


SPEC = ProcessorSpec(
    name="p",
    module="m",
    retries=0,
    retry_delay_s=0,
    sockets=(_socket("s", ROUTE), _socket("t", SIBLING_ROUTE, ("u",))),
)


def _admission(model: dict[str, SocketRoute] | None = None) -> Admission:
    routes = RouteBook(SPEC, (model or {}).get, DEFAULT_LIMITS)
    return Admission(DEFAULT_LIMITS, routes)


def _call_node(socket: str, route: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "call", "id": "0.1", "socket": socket, "route": route, "args": []}


def _flow_body(frames: list[dict[str, Any]]) -> bytes:
    return _body(flow={"frames": frames})


def test_a_call_for_another_socket_is_refused_on_this_socket_s_queue() -> None:
    # Given a message naming a socket that does not share the queue it arrived on
    body = json.dumps(_envelope(socket="os.system")).encode()
    # Then it is refused: it would otherwise run as a fanout copy
    with pytest.raises(MessageDecodeError, match=r"'os\.system', which does not share the queue"):
        _admission().admit(SPEC.sockets[0], body, {})


def test_a_call_for_a_declared_fanout_sibling_is_admitted() -> None:
    body = json.dumps(_envelope(socket="u")).encode()
    assert _admission().admit(SPEC.sockets[1], body, {}).socket == "u"


def test_a_group_of_a_billion_branches_is_refused_before_anything_is_allocated() -> None:
    frames = [{"kind": "parallel", "id": "0", "index": 0, "size": 10**9}]
    with pytest.raises(MessageDecodeError, match="1000000000 branches, over the limit of 10000"):
        _admission().admit(SPEC.sockets[0], _flow_body(frames), {})
    with pytest.raises(MessageDecodeError, match="over the limit"):
        check_frames(frames)


def test_a_flow_may_only_send_calls_to_sockets_in_the_model() -> None:
    # Given a pipeline whose next step names a socket the model lacks
    node = _call_node("nowhere", route_to_json(ELSEWHERE))
    frames = [{"kind": "pipeline", "rest": [node]}]
    # Then the call is refused before it runs
    with pytest.raises(MessageDecodeError, match="'nowhere', which is not in the model"):
        _admission().admit(SPEC.sockets[0], _flow_body(frames), {})


def test_a_flow_s_next_call_goes_along_the_model_s_route_not_the_message_s() -> None:
    # Given a next step whose route on the wire has hostile queue arguments
    hostile = route_to_json(ELSEWHERE) | {"arguments": {"x-max-length": "many"}}
    node = _call_node("elsewhere", hostile)
    admission = _admission({"elsewhere": ELSEWHERE})
    frames = [{"kind": "pipeline", "rest": [node]}]
    # When the call is admitted
    assert admission.admit(SPEC.sockets[0], _flow_body(frames), {}).flow is not None
    # Then its next step is sent along the model's route
    assert admission.routes.route_of_node(node) == ELSEWHERE
