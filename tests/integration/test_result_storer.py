"""ResultStorer on a real backend: outcomes of many threads stored together, then reported.

The worker acknowledges a message only from the storer's callback, so what is
checked here is the ack-late contract: a callback runs once per outcome, only
after that outcome can be read, and with the error when it could not be stored.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest

from pyfi.backend import ResultBackend, open_backend
from pyfi.errors import BackendUnavailable
from pyfi.worker.storing import ResultStorer
from tests.conftest import requires_redis

TTL = 60
pytestmark = [pytest.mark.redis, requires_redis]


@pytest.fixture
def backend(redis_url: str) -> Iterator[ResultBackend]:
    opened = open_backend(redis_url)
    yield opened
    opened.close()


class CountingBackend(ResultBackend):
    """The real backend, counting the batches it is given and failing on demand."""

    def __init__(self, real: ResultBackend) -> None:
        self.real = real
        self.batches: list[int] = []
        self.fail_next = 0
        self.slow_s = 0.0

    def store_many(self, items: Sequence[tuple[str, str, int]]) -> None:
        self.batches.append(len(items))
        time.sleep(self.slow_s)
        if self.fail_next:
            self.fail_next -= 1
            raise BackendUnavailable("the result backend is away")
        self.real.store_many(items)

    def store(self, call_id: str, outcome: str, ttl_s: int) -> None:
        self.store_many([(call_id, outcome, ttl_s)])

    def get(self, call_id: str) -> str | None:
        return self.real.get(call_id)

    def get_many(self, call_ids: Sequence[str]) -> list[str | None]:
        return self.real.get_many(call_ids)

    def wait(self, call_id: str, timeout_s: float) -> str | None:
        return self.real.wait(call_id, timeout_s)

    def join(self, *args: object) -> dict[str, str] | None:
        raise NotImplementedError

    def complete_join(self, tracking_id: str, socket: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_outcomes_of_many_threads_are_stored_in_batches_and_each_reported_once(
    backend: ResultBackend,
) -> None:
    # Given a storer whose store round trip takes a while, and 8 threads with 50 outcomes each
    counting = CountingBackend(backend)
    counting.slow_s = 0.005
    storer = ResultStorer(counting, backoff_s=0.01)
    reports: list[tuple[str, str | None, BaseException | None]] = []
    lock = threading.Lock()

    def done(call_id: str) -> object:
        def report(error: BaseException | None) -> None:
            # What a caller may see at the moment it is told: the outcome is stored.
            with lock:
                reports.append((call_id, backend.get(call_id), error))

        return report

    ids = [[str(uuid.uuid4()) for _ in range(50)] for _ in range(8)]

    def submit(mine: list[str]) -> None:
        for call_id in mine:
            storer.submit(call_id, json.dumps(call_id), TTL, done(call_id))  # type: ignore[arg-type]

    threads = [threading.Thread(target=submit, args=(mine,)) for mine in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    storer.flush()
    # Then every outcome was reported once, after it was stored, without error
    every = [call_id for mine in ids for call_id in mine]
    assert sorted(r[0] for r in reports) == sorted(every)
    assert all(stored == json.dumps(call_id) for call_id, stored, _ in reports)
    assert all(error is None for _, _, error in reports)
    # And the 400 outcomes took far fewer round trips than one each
    assert sum(counting.batches) == 400
    assert len(counting.batches) < 200
    assert storer.pending() == 0


def test_a_lone_outcome_is_stored_by_the_submitting_thread_before_submit_returns(
    backend: ResultBackend,
) -> None:
    storer = ResultStorer(backend)
    seen: list[BaseException | None] = []
    call_id = str(uuid.uuid4())
    storer.submit(call_id, "1", TTL, seen.append)
    assert seen == [None]
    assert backend.get(call_id) == "1"


def test_a_failed_store_reports_the_error_to_every_outcome_of_the_batch_after_a_pause(
    backend: ResultBackend,
) -> None:
    # Given a backend whose next store fails
    counting = CountingBackend(backend)
    counting.fail_next = 1
    storer = ResultStorer(counting, backoff_s=0.2)
    seen: list[BaseException | None] = []
    call_id = str(uuid.uuid4())
    # When an outcome is handed over
    started = time.monotonic()
    storer.submit(call_id, "1", TTL, seen.append)
    # Then its callback hears of the failure, after the back-off, and nothing is stored
    assert time.monotonic() - started >= 0.2
    assert len(seen) == 1
    assert isinstance(seen[0], BackendUnavailable)
    assert backend.get(call_id) is None
    # And the next outcome is stored again
    storer.submit(call_id, "2", TTL, seen.append)
    assert seen[1] is None
    assert backend.get(call_id) == "2"


def test_a_raising_callback_does_not_stop_the_others(
    backend: ResultBackend, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a slow backend, so that three outcomes share one batch
    counting = CountingBackend(backend)
    counting.slow_s = 0.2
    storer = ResultStorer(counting)
    seen: list[str] = []

    def boom(error: BaseException | None) -> None:
        raise RuntimeError("callback broke")

    first = threading.Thread(target=storer.submit, args=("a" * 8, "0", TTL, lambda e: None))
    first.start()
    time.sleep(0.05)  # the first store is under way; the next two wait for the next round
    storer.submit(str(uuid.uuid4()), "1", TTL, boom)
    storer.submit(str(uuid.uuid4()), "2", TTL, lambda error: seen.append("ran"))
    first.join()
    storer.flush()
    # Then the failing callback was logged and the one after it still ran
    assert seen == ["ran"]
    assert "callback failed" in caplog.text
    assert counting.batches == [1, 2]
