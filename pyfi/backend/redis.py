"""The production result backend, on Redis.

Keys (all under ``pyfi:``):

``pyfi:result:<call id>``
    The outcome string, with the call's TTL.
``pyfi:result:<call id>:notify``
    A list holding one wake-up token while the outcome exists. Waiters block
    on it with ``BRPOPLPUSH`` from the list onto itself, instead of polling:
    the token is read and stays for every other waiter, in one command. A
    small outcome travels in the token itself (``=`` and the outcome), so a
    waiter has it in the round trip that woke it; a large one is fetched.
``pyfi:join:<tracking id>:<socket>``
    A hash of ``arg:<name>`` to value, plus ``claimant`` once the join fired.

A join delivery is one Lua script, so recording the value, checking
completeness and claiming happen atomically across every worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import redis

from pyfi.backend.base import ResultBackend, check_join, check_ttl
from pyfi.config import mask_url
from pyfi.errors import BackendError, BackendUnavailable, first_line

PREFIX = "pyfi:"
CONNECT_TIMEOUT_S = 5
# Every command but the waiters' BRPOPLPUSH answers at once; that one is
# issued in slices shorter than this, so a dead server is noticed instead of
# blocking a waiter forever.
SOCKET_TIMEOUT_S = 15
WAIT_SLICE_S = 10.0
# Outcomes up to this size (bytes) ride in their wake-up token: the common
# small result costs its waiter no second round trip, and a large one is
# not kept twice.
INLINE_OUTCOME_BYTES = 1024
# A token carrying its outcome starts with this; any other token (the empty
# one, or the "1" of releases before inline outcomes) means "fetch it".
INLINE_MARK = "="
MGET_SLICE = 1000
HEALTH_CHECK_INTERVAL_S = 30
# Shown by CLIENT LIST, so operators can tell pyfi's connections apart.
CLIENT_NAME = "pyfi-backend"

# KEYS[1] join hash. ARGV: argument, value, claimant, ttl_s, expected names...
# Values are frozen once claimed, so a late or repeated delivery cannot change
# what a redelivered firing sees.
_JOIN = """
local claimed = redis.call('HGET', KEYS[1], 'claimant')
if not claimed then
  redis.call('HSET', KEYS[1], 'arg:' .. ARGV[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
if claimed and claimed ~= ARGV[3] then
  return false
end
local out = {}
for i = 5, #ARGV do
  local value = redis.call('HGET', KEYS[1], 'arg:' .. ARGV[i])
  if not value then
    return false
  end
  out[#out + 1] = ARGV[i]
  out[#out + 1] = value
end
if not claimed then
  redis.call('HSET', KEYS[1], 'claimant', ARGV[3])
end
return out
"""

# KEYS[1] result, KEYS[2] its notify list. ARGV: outcome, ttl_s. One command
# where MULTI/SET/RPUSH/EXPIRE/EXEC were five: a worker stores one result per
# call, and the client side of those round trips was most of its cost.
# Atomic like the transaction was: a waiter never sees the token without the
# value. The list is replaced, not appended to, so a stored-again outcome
# never leaves its predecessor's token behind.
_STORE = f"""
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[2])
if #ARGV[1] <= {INLINE_OUTCOME_BYTES} then
  redis.call('RPUSH', KEYS[2], '{INLINE_MARK}' .. ARGV[1])
else
  redis.call('RPUSH', KEYS[2], '')
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
"""


class RedisBackend(ResultBackend):
    """A result backend on one Redis database, with a connection pool of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool = redis.ConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            client_name=CLIENT_NAME,
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._join = self._client.register_script(_JOIN)
        self._store = self._client.register_script(_STORE)

    def store(self, call_id: str, outcome: str, ttl_s: int) -> None:
        self.store_many([(call_id, outcome, ttl_s)])

    def store_many(self, items: Sequence[tuple[str, str, int]]) -> None:
        # One pipelined round trip of the store script by its digest: a
        # pipeline given the script object would first ask SCRIPT EXISTS,
        # a second round trip per batch.
        for _, _, ttl_s in items:
            check_ttl(ttl_s)
        if not items:
            return
        with self._translate():
            try:
                self._pipelined_store(items)
            except redis.exceptions.NoScriptError:  # the server lost its scripts (restart, FLUSH)
                self._client.script_load(_STORE)
                self._pipelined_store(items)

    def _pipelined_store(self, items: Sequence[tuple[str, str, int]]) -> None:
        digest = self._store.sha
        if len(items) == 1:
            # A lone outcome (an idle worker's, which its caller is waiting
            # for): a plain command costs half a pipeline's CPU and time.
            ((call_id, outcome, ttl_s),) = items
            keys = (_result_key(call_id), _notify_key(call_id))
            self._client.evalsha(digest, 2, *keys, outcome, ttl_s)
            return
        pipeline = self._client.pipeline(transaction=False)
        for call_id, outcome, ttl_s in items:
            pipeline.evalsha(digest, 2, _result_key(call_id), _notify_key(call_id), outcome, ttl_s)
        pipeline.execute()

    def get(self, call_id: str) -> str | None:
        with self._translate():
            return _text(self._client.get(_result_key(call_id)))

    def get_many(self, call_ids: Sequence[str]) -> list[str | None]:
        # MGET in slices, so one huge list is not one huge reply.
        out: list[str | None] = []
        with self._translate():
            for start in range(0, len(call_ids), MGET_SLICE):
                keys = [_result_key(call_id) for call_id in call_ids[start : start + MGET_SLICE]]
                out.extend(_text(value) for value in self._client.mget(keys))
        return out

    def wait(self, call_id: str, timeout_s: float) -> str | None:
        # One command per wake-up: BRPOPLPUSH from the notify list onto itself
        # returns at once when the outcome is stored, blocks until it is, and
        # leaves the token for other waiters. Only a large outcome needs a GET.
        if timeout_s <= 0:
            return self.get(call_id)
        deadline = time.monotonic() + timeout_s
        result, notify = _result_key(call_id), _notify_key(call_id)
        with self._translate():
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                # Blocking commands treat 0 as "forever": never ask for less than 10 ms.
                blocking = max(min(remaining, WAIT_SLICE_S), 0.01)
                token = _text(self._client.brpoplpush(notify, notify, timeout=blocking))
                if token is not None and token.startswith(INLINE_MARK):
                    return token[len(INLINE_MARK) :]
                # A large outcome; or, after a slice without a token, one whose
                # token is gone (its list evicted or deleted): waiting must not
                # miss it for longer than a slice.
                outcome = _text(self._client.get(result))
                if outcome is not None or token is not None:
                    return outcome  # with a token but no outcome, it expired

    def join(
        self,
        tracking_id: str,
        socket: str,
        argument: str,
        value: str,
        expected: Sequence[str],
        claimant: str,
        ttl_s: int,
    ) -> dict[str, str] | None:
        check_join(argument, expected, ttl_s)
        with self._translate():
            reply = self._join(
                keys=[_join_key(tracking_id, socket)],
                args=[argument, value, claimant, ttl_s, *expected],
            )
        if reply is None:
            return None
        pairs = [str(_text(item)) for item in reply]
        return dict(zip(pairs[::2], pairs[1::2], strict=True))

    def complete_join(self, tracking_id: str, socket: str) -> None:
        with self._translate():
            self._client.delete(_join_key(tracking_id, socket))

    def close(self) -> None:
        self._client.close()
        self._pool.disconnect()

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Turn redis-py errors into pyfi errors that name the (masked) URL."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(
                f"cannot reach the result backend {mask_url(self.url)}: {first_line(exc)}"
            ) from exc
        except redis.RedisError as exc:
            raise BackendError(
                f"the result backend {mask_url(self.url)} failed: {first_line(exc)}"
            ) from exc


def _result_key(call_id: str) -> str:
    return f"{PREFIX}result:{call_id}"


def _notify_key(call_id: str) -> str:
    return f"{PREFIX}result:{call_id}:notify"


def _join_key(tracking_id: str, socket: str) -> str:
    # Quoting keeps "a:b" + "c" and "a" + "b:c" apart; UUIDs pass unchanged.
    return f"{PREFIX}join:{quote(tracking_id, safe='')}:{socket}"


def _text(reply: Any) -> str | None:
    # The pool decodes replies, but redis-py's types also allow bytes.
    if reply is None or isinstance(reply, str):
        return reply
    return bytes(reply).decode()
