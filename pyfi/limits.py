"""Wire limits: what a worker accepts from the broker before it acts on a message.

Every message that reaches a worker is hostile until checked. Without
bounds, a 2 KB body could hot-loop or exhaust a worker: deeply nested JSON
makes the parser raise ``RecursionError``, a 5,000-digit integer makes it
raise ``ValueError`` (and costs quadratic time below that), a ``compression``
header makes kombu inflate a 1 KB bz2 body into gigabytes. This module is the
one policy for all of them: a body is refused here, with a reason fit for the
dead-letter queue, before anything else reads it.

The checks cost little on the common path: the body's length is compared
before it is parsed, integers are bounded by a parse hook only when the body
holds a run of digits longer than the bound (a substring search finds it),
and the nesting depth is walked only when the body holds more brackets than
the depth allowed (a typical call holds two or three).

The limits are settings (``[wire]`` in the ini file, or ``PYFI_WIRE_*``
variables); ``docs/protocol.md`` documents them.
"""

from __future__ import annotations

import bz2
import json
import lzma
import zlib
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, fields
from typing import Any

from pyfi.errors import ConfigurationError, MessageDecodeError

# kombu's header naming the codec a sender compressed the body with. The
# transports move it to COMPRESSION_HEADER before kombu sees it, so kombu
# never inflates a body; the worker decides (see admit_body()).
KOMBU_COMPRESSION_HEADER = "compression"
COMPRESSION_HEADER = "pyfi-compression"

# The codecs an operator may accept, by kombu's names and their content types.
_INFLATORS: Mapping[str, tuple[str, Callable[[], Any]]] = {
    "zlib": ("application/x-gzip", zlib.decompressobj),
    "bzip2": ("application/x-bz2", bz2.BZ2Decompressor),
    "lzma": ("application/x-lzma", lzma.LZMADecompressor),
}
CODECS: tuple[str, ...] = tuple(_INFLATORS)
_CODEC_OF_CONTENT_TYPE = {content_type: name for name, (content_type, _) in _INFLATORS.items()}

# How much of a refused body a dead letter keeps, so that one is never larger
# than the limit that refused it.
RAW_KEPT_BYTES = 64 * 1024


@dataclass(frozen=True)
class WireLimits:
    """Bounds on what a message may hold; the defaults suit ordinary calls."""

    # The largest body accepted, compressed or not (bytes).
    max_message_bytes: int = 1024 * 1024
    # Nesting of JSON arrays and objects, the envelope's own levels included.
    max_depth: int = 100
    # Digits of one JSON integer (Python's own ceiling is 4,300).
    max_int_digits: int = 1000
    # Characters of a name: the socket, a plug, an argument, a keyword, the idempotency key.
    max_name_chars: int = 256
    # Branches of one parallel or funnel of a composition.
    max_group_size: int = 10_000
    # Codecs accepted in a sender's `compression` header (none by default);
    # an accepted body is inflated up to max_message_bytes, not further.
    compression: tuple[str, ...] = ()


DEFAULT_LIMITS = WireLimits()

# The ini section, and the environment variable of each setting.
INI_SECTION = "wire"
ENV_PREFIX = "PYFI_WIRE_"


def limits_from(read: Callable[[str], str | None]) -> WireLimits:
    """The limits a configuration sets; ``read(name)`` returns a setting's text or None.

    Raises
    ------
    ConfigurationError
        A limit is not a positive integer, or a codec is unknown.
    """
    values: dict[str, Any] = {}
    for spec in fields(WireLimits):
        text = read(spec.name)
        if text is None or not text.strip():
            continue
        if spec.name == "compression":
            codecs = tuple(part for part in text.replace(",", " ").split() if part)
            unknown = [codec for codec in codecs if codec not in _INFLATORS]
            if unknown:
                raise ConfigurationError(
                    f"wire setting compression names unknown codecs {', '.join(unknown)}; "
                    f"choose from {', '.join(CODECS)}"
                )
            values[spec.name] = codecs
            continue
        try:
            number = int(text)
        except ValueError:
            number = 0
        if number < 1:
            raise ConfigurationError(
                f"wire setting {spec.name} is {text.strip()!r}; expected a positive integer"
            )
        values[spec.name] = number
    return WireLimits(**values)


# -- the body ---------------------------------------------------------------
def hold_compression(headers: MutableMapping[str, Any] | None) -> None:
    """Rename a sender's ``compression`` header so that kombu does not inflate the body.

    Called by the transports on every message they hand to kombu: kombu
    decompresses whatever the sender's header names, unbounded, while it
    builds the message, before any of pyfi's code runs.
    """
    if headers and KOMBU_COMPRESSION_HEADER in headers:
        headers[COMPRESSION_HEADER] = headers.pop(KOMBU_COMPRESSION_HEADER)


def admit_body(body: bytes | str, headers: Mapping[str, Any] | None, limits: WireLimits) -> bytes:
    """The body a worker may parse: bounded in size, inflated only if allowed, with a cap.

    Raises
    ------
    MessageDecodeError
        The body is too large, compressed with a codec not accepted, or
        inflates beyond the limit.
    """
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    if len(raw) > limits.max_message_bytes:
        raise MessageDecodeError(
            f"the body is {len(raw)} bytes, over the limit of {limits.max_message_bytes}"
        )
    compression = headers.get(COMPRESSION_HEADER) if headers else None
    if compression is None:
        return raw
    codec = _CODEC_OF_CONTENT_TYPE.get(str(compression), str(compression))
    if codec not in limits.compression:
        raise MessageDecodeError(
            f"the body is compressed ({str(compression)[:40]!r}), which this worker does not "
            "accept; send it uncompressed"
        )
    return _inflate(raw, codec, limits.max_message_bytes)


def _inflate(raw: bytes, codec: str, cap: int) -> bytes:
    inflator = _INFLATORS[codec][1]()
    try:
        out: bytes = inflator.decompress(raw, cap + 1)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise MessageDecodeError(f"the {codec} body cannot be decompressed: {exc}") from exc
    if len(out) > cap:
        raise MessageDecodeError(f"the {codec} body inflates beyond the limit of {cap} bytes")
    return out


# -- JSON -------------------------------------------------------------------
# Every digit as "0", everything else as " ": a run of N digits in a body is
# then a plain substring search (C speed; a regular expression took longer
# than parsing the JSON).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))


class _Decoders:
    """The JSON decoders, made once: building one per message costs microseconds.

    ``plain`` has no hook; the bounded one of a limit checks each integer's
    digits, at the cost of a Python call per integer, and is used only for a
    body holding that many digits in a row somewhere (see :func:`parse_json`).
    """

    plain = json.JSONDecoder()
    by_digits: dict[int, tuple[bytes, json.JSONDecoder]] = {}

    @classmethod
    def bounded(cls, max_digits: int) -> tuple[bytes, json.JSONDecoder]:
        """A run of one digit more than allowed, and the decoder that refuses it."""
        found = cls.by_digits.get(max_digits)
        if found is None:

            def parse_int(text: str) -> int:
                digits = len(text) - (text[0] == "-")
                if digits > max_digits:
                    raise MessageDecodeError(
                        f"an integer of {digits} digits, over the limit of {max_digits}"
                    )
                return int(text)

            run = b"0" * (max_digits + 1)
            found = cls.by_digits[max_digits] = (run, json.JSONDecoder(parse_int=parse_int))
        return found


def parse_json(body: bytes | str, limits: WireLimits = DEFAULT_LIMITS) -> Any:
    """Parse JSON from the wire within the limits (the body's size is checked by the caller).

    Raises
    ------
    MessageDecodeError
        Not UTF-8 JSON, an integer too long, or nesting too deep.
    """
    try:
        raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
        text = raw.decode()
        run, bounded = _Decoders.bounded(limits.max_int_digits)
        # A parse hook bounds integers only where a long run of digits could
        # be one: it costs a Python call per integer.
        long_run = len(raw) >= len(run) and run in raw.translate(_DIGITS_AS_ZERO)
        data = (bounded if long_run else _Decoders.plain).decode(text)
    except MessageDecodeError:
        raise
    except UnicodeDecodeError as exc:
        raise MessageDecodeError(f"the body is not JSON (not UTF-8): {exc}") from exc
    except RecursionError as exc:
        raise MessageDecodeError(
            f"the body nests deeper than the limit of {limits.max_depth}"
        ) from exc
    except ValueError as exc:  # JSONDecodeError, and Python's own integer ceiling
        raise MessageDecodeError(f"the body is not JSON: {exc}") from exc
    # Depth can only exceed the number of opening brackets: most bodies need no walk.
    if text.count("[") + text.count("{") > limits.max_depth:
        check_depth(data, limits.max_depth)
    return data


def check_depth(data: Any, max_depth: int) -> None:
    """Refuse ``data`` if its arrays and objects nest deeper than ``max_depth``.

    Iterative: walking a hostile value must not itself recurse.
    """
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if not isinstance(value, dict | list):
            continue
        if depth > max_depth:
            raise MessageDecodeError(f"the body nests deeper than the limit of {max_depth}")
        children = value.values() if isinstance(value, dict) else value
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def check_name(field: str, value: Any, limits: WireLimits = DEFAULT_LIMITS) -> None:
    """Refuse a name (a string) longer than the limit, or not a string."""
    if not isinstance(value, str):
        raise MessageDecodeError(f"the field {field!r} is not a string")
    if len(value) > limits.max_name_chars:
        raise MessageDecodeError(
            f"the field {field!r} is {len(value)} characters, over the limit of "
            f"{limits.max_name_chars}"
        )


def kept_raw(body: bytes | str) -> bytes:
    """The part of a refused body a dead letter keeps (at most :data:`RAW_KEPT_BYTES`)."""
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    return raw[:RAW_KEPT_BYTES]
