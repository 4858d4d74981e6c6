"""Leader election on PostgreSQL: one scheduler fires; cut off, another takes over."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from pyfi.db import models, schema
from pyfi.db.session import Database
from pyfi.scheduler.leader import SILENT_SESSION_S, AdvisoryLeadership, current_leader
from pyfi.scheduler.loop import Scheduler
from tests.conftest import Flow, requires_postgres
from tests.relay import TcpRelay

pytestmark = [pytest.mark.postgres, requires_postgres]


@pytest.fixture
def scheduled(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A migrated schema with socket `tick` firing every second."""
    database = Database(postgres_url)
    schema.upgrade(database)
    flow = Flow(postgres_url, monkeypatch)
    flow("add", "queue", "-n", "q")
    flow("add", "processor", "-n", "p", "-m", "m", "-g", "https://example.org/r")
    flow("add", "socket", "-n", "tick", "-q", "q", "-pn", "p", "-t", "f", "--interval", "1")
    yield database
    database.dispose()


@pytest.fixture
def relay(postgres_url: str) -> Iterator[TcpRelay]:
    url = make_url(postgres_url)
    with TcpRelay(url.host or "127.0.0.1", url.port or 5432) as relay:
        yield relay


def through(relay: TcpRelay, url: str) -> str:
    return make_url(url).set(host="127.0.0.1", port=relay.port).render_as_string(False)


class Recorder:
    """Publish functions that record (monotonic time, call id, agent) of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def for_agent(self, agent: str) -> Any:
        def publish(_socket: str, _args: Any, _kwargs: Any, call_id: str) -> None:
            with self._lock:
                self.calls.append((time.monotonic(), call_id, agent))

        return publish

    def by(self, agent: str) -> int:
        with self._lock:
            return sum(1 for call in self.calls if call[2] == agent)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def test_one_of_two_schedulers_leads_on_postgres(scheduled: Database) -> None:
    # Given two schedulers' elections on one database
    first = AdvisoryLeadership(scheduled.url, "one")
    second = AdvisoryLeadership(scheduled.url, "two")
    try:
        # When both ask to lead
        # Then the first leads and the second does not, until the first gives up
        assert first.hold()
        assert not second.hold()
        assert first.hold()  # asking again keeps it
        assert current_leader(scheduled) == "one"
        first.release()
        # (the server frees the lock once the closed session's backend exits)
        wait_until(second.hold, 5, "the second leading")
        assert current_leader(scheduled) == "two"
    finally:
        first.release()
        second.release()
    wait_until(lambda: current_leader(scheduled) is None, 5, "no leader")


@pytest.mark.parametrize("fault", ["cut", "freeze"])
def test_leader_cut_off_hands_over_without_duplicate_or_gap(
    scheduled: Database, relay: TcpRelay, fault: str
) -> None:
    # Given scheduler A leading through a relay, scheduler B following directly
    relayed = through(relay, scheduled.url)
    recorder = Recorder()
    stop = threading.Event()
    databases = [Database(relayed), Database(scheduled.url)]
    elections = [AdvisoryLeadership(relayed, "a"), AdvisoryLeadership(scheduled.url, "b")]
    schedulers = [
        Scheduler(database, recorder.for_agent(name), election, name)
        for database, election, name in zip(databases, elections, "ab", strict=True)
    ]
    threads = [threading.Thread(target=s.run, args=(stop,), daemon=True) for s in schedulers]
    try:
        threads[0].start()
        wait_until(lambda: recorder.by("a") >= 1, 15, "A leading")
        threads[1].start()
        wait_until(lambda: recorder.by("a") >= 3, 15, "three fires by A")
        assert recorder.by("b") == 0  # B follows while A leads
        # When A's connection to the database is cut (closed), or goes silent
        # (half-open: nobody hears of a close)
        relay.cut() if fault == "cut" else relay.freeze()
        cut_at = time.monotonic()
        wait_until(lambda: recorder.by("b") >= 4, 20, "four fires by B")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for election in elections:
            election.release()
        for database in databases:
            database.dispose()
    # Then B took over: A fired nothing after the cut
    calls = recorder.calls
    assert all(at < cut_at for at, _, agent in calls if agent == "a")
    # And no instant fired twice, every publish is recorded once
    ids = [call_id for _, call_id, _ in calls]
    assert len(ids) == len(set(ids))
    with scheduled.transaction() as session:
        rows = session.execute(
            select(models.ScheduleFire.id, models.ScheduleFire.instant).order_by(
                models.ScheduleFire.instant
            )
        ).all()
    claimed = {str(row.id): row.instant for row in rows}
    assert set(ids) <= set(claimed)
    # (at most the claim in flight at the cut may have gone unpublished: fires
    # are at most once)
    assert len(claimed) - len(ids) <= 1
    # And no gap longer than two intervals, in instants or in publish times
    # (a silent path first waits for the server to end the silent session)
    longest = 2.0 if fault == "cut" else SILENT_SESSION_S + 2.0
    instants = sorted(claimed[call_id] for call_id in ids)
    assert all(0 < (b - a).total_seconds() <= longest for a, b in itertools.pairwise(instants))
    times = [at for at, _, _ in calls]
    assert all(b - a <= longest for a, b in itertools.pairwise(times)), times
