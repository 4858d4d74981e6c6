"""Result backend contract, written once and run against every backend.

The ``backend_url`` fixture is parametrized over real Redis, a SQLite file and
real PostgreSQL; every contract test runs on each. Cross-process behaviour is
checked with real child processes (``python -c``) that open the same URL,
because threads alone share a connection pool and a GIL and would hide races.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from pyfi.backend import ResultBackend, open_backend
from pyfi.errors import BackendUnavailable, ConfigurationError, InvalidValue
from tests.conftest import requires_postgres, requires_redis

SOCKET = "proc1.do_this"
EXPECTED = ("a", "b")
TTL = 60

# A child process: "store <call id> <outcome> <delay>" stores after a delay;
# "join" prints "ready", then reads [tracking id, argument, value, claimant]
# deliveries from stdin, makes them, and prints the joins that fired as JSON.
CHILD = """
import json, sys, time
from pyfi.backend import open_backend

backend = open_backend(sys.argv[1])
if sys.argv[2] == "store":
    time.sleep(float(sys.argv[5]))
    backend.store(sys.argv[3], sys.argv[4], 60)
else:
    backend.get("warm-up")
    print("ready", flush=True)
    fired = []
    for tracking_id, argument, value, claimant in json.load(sys.stdin):
        values = backend.join(tracking_id, sys.argv[3], argument, value, ["a", "b"], claimant, 60)
        if values is not None:
            fired.append([tracking_id, values])
    json.dump(fired, sys.stdout)
backend.close()
"""


@pytest.fixture(
    params=[
        pytest.param("redis", marks=[pytest.mark.redis, requires_redis]),
        pytest.param("sqlite"),
        pytest.param("postgres", marks=[pytest.mark.postgres, requires_postgres]),
    ]
)
def backend_url(request: pytest.FixtureRequest) -> str:
    """An empty store of each kind, in turn."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def backend(backend_url: str) -> Iterator[ResultBackend]:
    """A backend opened on ``backend_url``, closed after the test."""
    opened = open_backend(backend_url)
    yield opened
    opened.close()


def new_id() -> str:
    return str(uuid.uuid4())


def child(url: str, *args: str) -> subprocess.Popen[str]:
    """Start ``CHILD`` on ``url`` with ``args``."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def outcome(value: object) -> str:
    return json.dumps({"status": "ok", "value": value})


# --- store and get -------------------------------------------------------------------------


def test_store_then_get_round_trips(backend: ResultBackend) -> None:
    # Given an outcome stored for a call
    call_id = new_id()
    backend.store(call_id, outcome({"x": [1, "é"]}), TTL)
    # When it is read back
    # Then it is the very same string
    assert backend.get(call_id) == outcome({"x": [1, "é"]})


def test_store_overwrites_earlier_outcome(backend: ResultBackend) -> None:
    # Given a call whose outcome was stored twice
    call_id = new_id()
    backend.store(call_id, outcome(1), TTL)
    backend.store(call_id, outcome(2), TTL)
    # Then the later one is kept, by get and by wait alike
    assert backend.get(call_id) == outcome(2)
    assert backend.wait(call_id, 1) == outcome(2)


def test_store_many_stores_each_and_wakes_its_waiter(backend: ResultBackend) -> None:
    # Given a waiter on one of several calls
    ids = [new_id() for _ in range(300)]
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(backend.wait, ids[150], 10)
        # When their outcomes are stored together
        backend.store_many([(call_id, outcome(i), TTL) for i, call_id in enumerate(ids)])
        # Then every one reads back, and the waiter woke with its own
        assert waiting.result(10) == outcome(150)
    assert backend.get_many(ids) == [outcome(i) for i in range(300)]


def test_store_many_refuses_a_bad_ttl_before_storing_any(backend: ResultBackend) -> None:
    first, second = new_id(), new_id()
    with pytest.raises(InvalidValue):
        backend.store_many([(first, outcome(1), TTL), (second, outcome(2), 0)])
    assert backend.get(first) is None


@requires_redis
@pytest.mark.redis
@pytest.mark.parametrize("count", [1, 3], ids=["alone", "together"])
def test_redis_store_many_survives_a_server_that_forgot_its_scripts(
    redis_url: str, count: int
) -> None:
    # Given a backend whose store script the server no longer has (restart, SCRIPT FLUSH)
    with open_backend(redis_url) as backend:
        backend.store(new_id(), outcome(0), TTL)
        import redis

        redis.Redis.from_url(redis_url).script_flush()
        # When outcomes are stored, one alone (a plain command) or together (a pipeline)
        ids = [new_id() for _ in range(count)]
        backend.store_many([(call_id, outcome(call_id), TTL) for call_id in ids])
        # Then the script was loaded again and every outcome is there
        assert backend.get_many(ids) == [outcome(call_id) for call_id in ids]


def test_get_unknown_call_is_none(backend: ResultBackend) -> None:
    # Given nothing stored
    # When an unknown call is read
    # Then there is no outcome
    assert backend.get(new_id()) is None


def test_store_expires_after_ttl(backend: ResultBackend) -> None:
    # Given an outcome stored for one second, and another for a minute
    short, long = new_id(), new_id()
    backend.store(short, outcome(1), 1)
    backend.store(long, outcome(2), TTL)
    # When the second has passed
    time.sleep(1.1)
    # Then only the short-lived outcome is gone
    assert backend.get(short) is None
    assert backend.wait(short, 0.05) is None
    assert backend.get(long) == outcome(2)


def test_store_refuses_ttl_below_one_second(backend: ResultBackend) -> None:
    # When a store asks for no lifetime at all
    # Then it is refused before reaching the server
    with pytest.raises(InvalidValue, match="at least 1 second"):
        backend.store(new_id(), outcome(1), 0)


# --- wait ----------------------------------------------------------------------------------


def test_wait_returns_at_once_when_already_stored(backend: ResultBackend) -> None:
    # Given an outcome stored before anyone waits
    call_id = new_id()
    backend.store(call_id, outcome(1), TTL)
    # When a waiter comes
    started = time.monotonic()
    got = backend.wait(call_id, 5)
    # Then it gets the outcome without blocking
    assert got == outcome(1)
    assert time.monotonic() - started < 0.5


def test_wait_wakes_when_another_thread_stores(backend: ResultBackend, backend_url: str) -> None:
    # Given three waiters on a call, in threads of their own
    call_id = new_id()
    with ThreadPoolExecutor(3) as pool:
        waiters = [pool.submit(backend.wait, call_id, 10) for _ in range(3)]
        time.sleep(0.2)
        # When another backend object stores the outcome
        with open_backend(backend_url) as other:
            started = time.monotonic()
            other.store(call_id, outcome("done"), TTL)
        # Then every waiter wakes promptly with it
        assert [waiter.result(timeout=10) for waiter in waiters] == [outcome("done")] * 3
        assert time.monotonic() - started < 1


@pytest.mark.slow
def test_wait_wakes_when_another_process_stores(backend: ResultBackend, backend_url: str) -> None:
    # Given a child process that will store the outcome in 0.3 s
    call_id = new_id()
    proc = child(backend_url, "store", call_id, outcome("from child"), "0.3")
    try:
        # When this process waits for it
        got = backend.wait(call_id, 20)
    finally:
        proc.communicate(timeout=20)
    # Then the child's outcome arrives
    assert proc.returncode == 0
    assert got == outcome("from child")


def test_wait_times_out_with_none(backend: ResultBackend) -> None:
    # Given a call that never gets an outcome
    started = time.monotonic()
    # When a waiter gives it 0.3 s
    got = backend.wait(new_id(), 0.3)
    elapsed = time.monotonic() - started
    # Then it gives up with None, close to the timeout
    assert got is None
    assert 0.3 <= elapsed < 1.0


@pytest.mark.redis
@requires_redis
def test_redis_wait_blocks_instead_of_polling(redis_url: str) -> None:
    # Given a waiter on a call that gets no outcome for a while
    import redis

    from pyfi.backend.redis import CLIENT_NAME

    call_id = new_id()
    with open_backend(redis_url) as backend, ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(backend.wait, call_id, 5)
        time.sleep(0.3)
        # When the server's clients are listed
        admin = redis.Redis.from_url(redis_url, decode_responses=True)
        clients = admin.client_list()
        # Then the waiter sits in one blocking command rather than issuing GETs
        blocked = [c for c in clients if c["name"] == CLIENT_NAME and c["cmd"] == "brpoplpush"]
        assert blocked, clients
        backend.store(call_id, outcome(1), TTL)
        assert waiter.result(timeout=5) == outcome(1)
        admin.close()


def test_wait_sees_a_stored_again_outcome_not_the_first(backend: ResultBackend) -> None:
    # Given a call whose outcome was stored, then stored again (a flow's failure kept)
    call_id = new_id()
    backend.store(call_id, outcome("first"), TTL)
    backend.store(call_id, outcome("second"), TTL)
    # When a waiter comes
    # Then it gets the outcome stored last
    assert backend.wait(call_id, 1) == outcome("second")


def test_wait_with_no_time_left_still_looks(backend: ResultBackend) -> None:
    # Given a stored outcome
    call_id = new_id()
    backend.store(call_id, outcome(3), TTL)
    # When a waiter gives it no time at all
    # Then it still gets what is already there
    assert backend.wait(call_id, 0) == outcome(3)


@pytest.mark.parametrize("size", [10, 1024, 1025, 100_000])
def test_wait_wakes_every_waiter_with_small_and_large_outcomes(
    backend: ResultBackend, size: int
) -> None:
    # Given five waiters on one call, whose outcome is small (it may ride in
    # the wake-up) or large (it is fetched after it)
    call_id = new_id()
    stored = outcome("x" * size)
    with ThreadPoolExecutor(5) as pool:
        waiters = [pool.submit(backend.wait, call_id, 10) for _ in range(5)]
        time.sleep(0.2)
        # When the outcome is stored
        backend.store(call_id, stored, TTL)
        # Then every waiter gets it whole, and a later one too
        assert [waiter.result(timeout=10) for waiter in waiters] == [stored] * 5
    assert backend.wait(call_id, 1) == stored


@pytest.mark.redis
@requires_redis
def test_redis_wait_reads_wake_up_tokens_of_earlier_releases(redis_url: str) -> None:
    # Given an outcome stored as releases before inline outcomes stored it:
    # the value, and a bare "1" as its wake-up token
    import redis

    call_id = new_id()
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    admin.set(f"pyfi:result:{call_id}", outcome(7), ex=TTL)
    admin.rpush(f"pyfi:result:{call_id}:notify", "1")
    admin.close()
    # When a waiter of this release waits for it
    with open_backend(redis_url) as backend:
        # Then it fetches the value instead of taking the token for it
        assert backend.wait(call_id, 1) == outcome(7)


@pytest.mark.redis
@requires_redis
def test_redis_wait_finds_an_outcome_whose_token_is_gone(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stored outcome whose wake-up list was deleted (evicted, or by hand)
    import redis

    from pyfi.backend import redis as redis_backend

    monkeypatch.setattr(redis_backend, "WAIT_SLICE_S", 0.2)
    call_id = new_id()
    with open_backend(redis_url) as backend:
        backend.store(call_id, outcome(8), TTL)
        admin = redis.Redis.from_url(redis_url)
        admin.delete(f"pyfi:result:{call_id}:notify")
        admin.close()
        # When a waiter waits longer than one blocking slice
        started = time.monotonic()
        got = backend.wait(call_id, 5)
        # Then it finds the outcome after that slice, not at its timeout
        assert got == outcome(8)
        assert time.monotonic() - started < 2


# --- join ----------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_join_fires_once_when_all_arguments_arrive(
    backend: ResultBackend, order: tuple[str, str]
) -> None:
    # Given a socket waiting for arguments a and b
    tracking_id = new_id()
    first, second = order
    # When the first argument arrives
    fired_first = backend.join(tracking_id, SOCKET, first, f'"{first}"', EXPECTED, "m1", TTL)
    # Then the join does not fire yet
    assert fired_first is None
    # When the second arrives
    fired_second = backend.join(tracking_id, SOCKET, second, f'"{second}"', EXPECTED, "m2", TTL)
    # Then it fires with both values
    assert fired_second == {"a": '"a"', "b": '"b"'}


def test_join_after_claim_by_another_claimant_is_none(backend: ResultBackend) -> None:
    # Given a join that fired for claimant m2
    tracking_id = new_id()
    backend.join(tracking_id, SOCKET, "a", "1", EXPECTED, "m1", TTL)
    assert backend.join(tracking_id, SOCKET, "b", "2", EXPECTED, "m2", TTL) is not None
    # When a third delivery, by someone else, arrives
    late = backend.join(tracking_id, SOCKET, "a", "99", EXPECTED, "m3", TTL)
    # Then it does not fire again
    assert late is None


def test_join_same_claimant_redelivery_fires_again(backend: ResultBackend) -> None:
    # Given a join that fired for claimant m2, then got a stray delivery
    tracking_id = new_id()
    backend.join(tracking_id, SOCKET, "a", "1", EXPECTED, "m1", TTL)
    backend.join(tracking_id, SOCKET, "b", "2", EXPECTED, "m2", TTL)
    backend.join(tracking_id, SOCKET, "a", "99", EXPECTED, "m3", TTL)
    # When m2's message is redelivered (its worker crashed before acking)
    again = backend.join(tracking_id, SOCKET, "b", "2", EXPECTED, "m2", TTL)
    # Then it fires again with the values frozen at the claim
    assert again == {"a": "1", "b": "2"}


def test_join_first_claimant_is_not_the_one_that_fired(backend: ResultBackend) -> None:
    # Given a join fired by m2
    tracking_id = new_id()
    backend.join(tracking_id, SOCKET, "a", "1", EXPECTED, "m1", TTL)
    backend.join(tracking_id, SOCKET, "b", "2", EXPECTED, "m2", TTL)
    # When m1, which only contributed a value, is redelivered
    # Then it does not fire: only the claimant may
    assert backend.join(tracking_id, SOCKET, "a", "1", EXPECTED, "m1", TTL) is None


def test_complete_join_removes_state(backend: ResultBackend) -> None:
    # Given a join that fired and was completed
    tracking_id = new_id()
    backend.join(tracking_id, SOCKET, "a", "1", EXPECTED, "m1", TTL)
    backend.join(tracking_id, SOCKET, "b", "2", EXPECTED, "m2", TTL)
    backend.complete_join(tracking_id, SOCKET)
    # When the claimant is redelivered after completion
    after = backend.join(tracking_id, SOCKET, "b", "2", EXPECTED, "m2", TTL)
    # Then it starts a fresh join, which lacks a
    assert after is None
    # And completing an unknown join is harmless
    backend.complete_join(new_id(), SOCKET)


def test_join_values_of_different_tracking_ids_never_mix(backend: ResultBackend) -> None:
    # Given a for run 1 and b for run 2, on the same socket
    run1, run2 = new_id(), new_id()
    assert backend.join(run1, SOCKET, "a", '"1a"', EXPECTED, "m1", TTL) is None
    assert backend.join(run2, SOCKET, "b", '"2b"', EXPECTED, "m2", TTL) is None
    # When each run gets its missing argument
    fired1 = backend.join(run1, SOCKET, "b", '"1b"', EXPECTED, "m3", TTL)
    fired2 = backend.join(run2, SOCKET, "a", '"2a"', EXPECTED, "m4", TTL)
    # Then each fires with its own values only
    assert fired1 == {"a": '"1a"', "b": '"1b"'}
    assert fired2 == {"a": '"2a"', "b": '"2b"'}


def test_join_of_different_sockets_never_mix(backend: ResultBackend) -> None:
    # Given a for one socket of a run
    run = new_id()
    backend.join(run, "s1", "a", "1", EXPECTED, "m1", TTL)
    # When b arrives for another socket of the same run
    # Then neither fires
    assert backend.join(run, "s2", "b", "2", EXPECTED, "m2", TTL) is None


def test_join_refuses_unexpected_argument(backend: ResultBackend) -> None:
    # When a value arrives for an argument the socket does not wait for
    # Then it is refused
    with pytest.raises(InvalidValue, match="'c'"):
        backend.join(new_id(), SOCKET, "c", "1", EXPECTED, "m1", TTL)


def test_join_incomplete_state_expires_after_ttl(backend: ResultBackend) -> None:
    # Given a join that got a, kept for one second
    tracking_id = new_id()
    backend.join(tracking_id, SOCKET, "a", "1", EXPECTED, "m1", 1)
    # When b arrives after the second has passed
    time.sleep(1.1)
    late = backend.join(tracking_id, SOCKET, "b", "2", EXPECTED, "m2", TTL)
    # Then a was forgotten and nothing fires
    assert late is None
    # And a fresh a completes the restarted join
    assert backend.join(tracking_id, SOCKET, "a", "3", EXPECTED, "m3", TTL) == {
        "a": "3",
        "b": "2",
    }


@pytest.mark.slow
def test_join_interleaved_runs_fire_exactly_once(backend: ResultBackend, backend_url: str) -> None:
    # Given both arguments of 1,000 runs, shuffled and dealt to 8 threads and
    # 2 child processes, so that most runs are completed by two deliverers
    runs = [new_id() for _ in range(1000)]
    deliveries = [
        (run, argument, json.dumps([run, argument]), f"{run}/{argument}")
        for run in runs
        for argument in EXPECTED
    ]
    rng = random.Random(20240613)
    rng.shuffle(deliveries)
    shares: list[list[tuple[str, str, str, str]]] = [[] for _ in range(10)]
    for delivery in deliveries:
        shares[rng.randrange(10)].append(delivery)
    fired: list[tuple[str, dict[str, str]]] = []
    lock = threading.Lock()

    def deliver(share: list[tuple[str, str, str, str]]) -> None:
        for run, argument, value, claimant in share:
            values = backend.join(run, SOCKET, argument, value, EXPECTED, claimant, TTL)
            if values is not None:
                with lock:
                    fired.append((run, values))

    with ExitStack() as stack:  # closes the children's pipes and reaps them
        children = [stack.enter_context(child(backend_url, "join", SOCKET)) for _ in range(2)]
        for proc in children:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        # When all of them deliver at once
        with ThreadPoolExecutor(8) as pool:
            for proc, share in zip(children, shares[8:], strict=True):
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(share))
                proc.stdin.close()
            for future in [pool.submit(deliver, share) for share in shares[:8]]:
                future.result(timeout=60)
        for proc in children:
            assert proc.stdout is not None
            fired.extend((run, values) for run, values in json.load(proc.stdout))
            assert proc.wait(timeout=60) == 0
    # Then every run fired exactly once, with its own two values
    assert sorted(run for run, _ in fired) == sorted(runs)
    for run, values in fired:
        assert values == {argument: json.dumps([run, argument]) for argument in EXPECTED}


# --- opening and failures ------------------------------------------------------------------


def test_open_backend_refuses_unknown_scheme() -> None:
    # When a URL of an unsupported kind is opened
    # Then the error names the scheme and hides the password
    with pytest.raises(ConfigurationError, match="'amqp'") as caught:
        open_backend("amqp://user:secret@host/")
    assert "secret" not in str(caught.value)


def test_open_backend_refuses_sqlite_without_file() -> None:
    # When SQLite is asked for a database no other process could share
    # Then it is refused
    with pytest.raises(ConfigurationError, match="names no file"):
        open_backend("sqlite://")


def test_redis_unreachable_raises_backend_unavailable_with_masked_url() -> None:
    # Given a Redis URL with a password, where nothing listens
    # When it is used
    with (
        open_backend("redis://user:secret@127.0.0.1:1/0") as backend,
        pytest.raises(BackendUnavailable) as caught,
    ):
        backend.get(new_id())
    # Then the one-line error names the URL without its password
    message = str(caught.value)
    assert "redis://user:***@127.0.0.1:1/0" in message
    assert "secret" not in message
    assert "\n" not in message


def test_postgres_unreachable_raises_backend_unavailable_with_masked_url() -> None:
    # Given a PostgreSQL URL with a password, where nothing listens
    # When it is used
    with (
        open_backend("postgresql://user:secret@127.0.0.1:1/db") as backend,
        pytest.raises(BackendUnavailable) as caught,
    ):
        backend.store(new_id(), outcome(1), TTL)
    # Then the error hides the password
    assert "secret" not in str(caught.value)
    assert "***" in str(caught.value)
