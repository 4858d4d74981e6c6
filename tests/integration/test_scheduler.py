"""The scheduler on each database: claims, rounds, misfire, pause, and who leads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from pyfi.db import models
from pyfi.db.session import Database
from pyfi.scheduler.fires import claim_and_publish, fire_id
from pyfi.scheduler.leader import FileLeadership, current_leader, leadership_for, lock_path
from pyfi.scheduler.loop import Scheduler, load_planned
from tests.conftest import Flow


class Published:
    """A publish function that records each call (and can be slowed down or broken)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[tuple[str, list[Any], dict[str, Any], str]] = []
        self.delay_s = delay_s
        self.broken = False
        self._lock = threading.Lock()

    def __call__(self, socket: str, args: list[Any], kwargs: dict[str, Any], call_id: str) -> None:
        if self.broken:
            raise ConnectionError("broker away")
        time.sleep(self.delay_s)
        with self._lock:
            self.calls.append((socket, args, kwargs, call_id))

    @property
    def ids(self) -> list[str]:
        return [call[3] for call in self.calls]


class Leads:
    """A leadership that always holds: the claim alone is under test."""

    def hold(self) -> bool:
        return True

    def release(self) -> None:
        return None


@pytest.fixture
def scheduled(flow: Flow) -> Iterator[Database]:
    """A socket `tick` firing every second with input ["x"]; the database it lives in."""
    flow("add", "queue", "-n", "q")
    flow("add", "processor", "-n", "p", "-m", "m", "-g", "https://example.org/r")
    flow("add", "socket", "-n", "tick", "-q", "q", "-pn", "p", "-t", "f", "--interval", "1")
    flow("update", "socket", "-n", "tick", "--input", '["x"]')
    database = Database(flow.database_url)
    yield database
    database.dispose()


def fires(database: Database) -> list[models.ScheduleFire]:
    with database.transaction() as session:
        return list(
            session.scalars(select(models.ScheduleFire).order_by(models.ScheduleFire.instant))
        )


def clock_at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def test_two_schedulers_racing_for_one_instant_fire_it_once(scheduled: Database) -> None:
    # Given two schedulers, each with its own connections, and a publish slow
    # enough that the second claim arrives while the first is still open
    (planned,) = load_planned(scheduled)
    instant = planned.schedule.next_after(datetime.now(UTC))
    publish = Published(delay_s=0.3)
    others = [Database(scheduled.url) for _ in range(2)]
    start = threading.Barrier(2)
    results: list[bool] = []

    def race(database: Database) -> None:
        start.wait()
        results.append(claim_and_publish(database, planned, instant, publish, "a"))

    # When both claim the same instant at once
    threads = [threading.Thread(target=race, args=(db,)) for db in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for database in others:
        database.dispose()
    # Then one publishes, with the id derived from socket and instant, and one
    # row records the fire
    assert sorted(results) == [False, True]
    assert publish.calls == [("tick", ["x"], {}, fire_id(planned.socket_id, instant))]
    recorded = fires(scheduled)
    assert [(str(f.id), f.instant) for f in recorded] == [(publish.ids[0], instant)]


def test_a_failed_publish_leaves_the_instant_unclaimed(scheduled: Database) -> None:
    # Given a broker that refuses the publish
    (planned,) = load_planned(scheduled)
    instant = planned.schedule.next_after(datetime.now(UTC))
    publish = Published()
    publish.broken = True
    # When the instant is fired
    with pytest.raises(ConnectionError):
        claim_and_publish(scheduled, planned, instant, publish, "a")
    # Then nothing is claimed, and a later attempt fires it
    assert fires(scheduled) == []
    publish.broken = False
    assert claim_and_publish(scheduled, planned, instant, publish, "a")
    assert len(publish.calls) == 1


def test_a_second_scheduler_does_not_fire_what_the_first_fired(scheduled: Database) -> None:
    # Given two schedulers at the same moment
    now = datetime.now(UTC) + timedelta(seconds=5.5)
    publish = Published()
    first = Scheduler(scheduled, publish, Leads(), "a", clock_at(now))
    second = Scheduler(scheduled, publish, Leads(), "b", clock_at(now))
    # When both run a round
    upcoming = first.round()
    second.round()
    # Then the latest due instant fires once, and the next is a second later
    due = now.replace(microsecond=0)
    assert [(f.instant, f.agent) for f in fires(scheduled)] == [(due, "a")]
    assert upcoming == due + timedelta(seconds=1)


def test_misfire_skip_and_catch_up_after_an_outage(scheduled: Database, flow: Flow) -> None:
    # Given a schedule that fired, then no scheduler for ten seconds
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    publish = Published()
    Scheduler(scheduled, publish, Leads(), "a", clock_at(base)).round()
    # When a scheduler comes back under skip
    Scheduler(scheduled, publish, Leads(), "a", clock_at(base + timedelta(seconds=10.5))).round()
    # Then only the latest missed instant fires
    assert [f.instant - base for f in fires(scheduled)] == [timedelta(0), timedelta(seconds=10)]
    # Given catch-up with a bound of 3, and another outage of ten seconds
    flow("update", "socket", "-n", "tick", "--misfire", "catch-up", "--catch-up", "3")
    Scheduler(scheduled, publish, Leads(), "a", clock_at(base + timedelta(seconds=20.5))).round()
    # Then the three latest missed instants fire, oldest first
    assert [(f.instant - base).total_seconds() for f in fires(scheduled)] == [0, 10, 18, 19, 20]
    assert publish.ids == [str(f.id) for f in fires(scheduled)]


def test_a_paused_schedule_fires_nothing_and_resumes_afresh(
    scheduled: Database, flow: Flow
) -> None:
    # Given a schedule under catch-up, paused
    flow("update", "socket", "-n", "tick", "--misfire", "catch-up", "--catch-up", "10")
    flow("scheduler", "pause", "--socket", "tick")
    publish = Published()
    later = datetime.now(UTC) + timedelta(seconds=5.5)
    # When a scheduler runs a round
    Scheduler(scheduled, publish, Leads(), "a", clock_at(later)).round()
    # Then nothing fires
    assert publish.calls == []
    # When it is resumed and a round runs
    flow("scheduler", "resume", "--socket", "tick")
    with scheduled.transaction() as session:
        resumed = session.scalars(select(models.Socket.updated)).one()
    Scheduler(scheduled, publish, Leads(), "a", clock_at(later)).round()
    # Then only instants after the resume fire: none caught up from the pause
    assert publish.calls
    assert all(f.instant > resumed for f in fires(scheduled))


def test_flow_scheduler_ls_shows_schedules_fires_and_the_leader(
    scheduled: Database, flow: Flow
) -> None:
    # Given a fired schedule, a paused cron schedule, and a leading scheduler
    flow("add", "socket", "-n", "daily", "-q", "q", "-pn", "p", "-t", "g", "--cron", "30 2 * * *")
    flow("update", "socket", "-n", "daily", "--timezone", "Europe/Berlin")
    flow("scheduler", "pause", "--socket", "daily")
    now = datetime.now(UTC) + timedelta(seconds=2)
    Scheduler(scheduled, Published(), Leads(), "a", clock_at(now)).round()
    leadership = leadership_for(scheduled, "agent-7")
    try:
        assert leadership.hold()
        # When the schedules are listed
        import json

        listed = json.loads(flow("scheduler", "ls", "--json").output)
        table = flow("scheduler", "ls").output
    finally:
        leadership.release()
    # Then each shows its schedule, next and last fire, paused; and the leader is named
    assert listed["leader"] == "agent-7"
    daily, tick = listed["schedules"]
    assert daily["schedule"] == "cron 30 2 * * * (Europe/Berlin)"
    assert daily["paused"] is True
    assert daily["next"] is None
    assert tick["schedule"] == "every 1s"
    assert tick["last"] == now.replace(microsecond=0).isoformat()
    assert tick["next"] is not None
    assert "Leader: agent-7" in table
    # And with no scheduler running, no leader
    assert json.loads(flow("scheduler", "ls", "--json").output)["leader"] is None


def test_pausing_a_socket_without_a_schedule_says_so(flow: Flow) -> None:
    # Given a socket with no schedule
    flow("add", "queue", "-n", "q")
    flow("add", "processor", "-n", "p", "-m", "m", "-g", "https://example.org/r")
    flow("add", "socket", "-n", "plain", "-q", "q", "-pn", "p", "-t", "f")
    # When / Then pausing it is refused in one line
    assert "has no schedule" in flow.fails("scheduler", "pause", "--socket", "plain")
    assert "no socket named" in flow.fails("scheduler", "resume", "--socket", "nope")


def test_one_of_two_schedulers_leads_on_sqlite(sqlite_url: str) -> None:
    # Given two schedulers on one SQLite file
    database = Database(sqlite_url)
    first = FileLeadership(lock_path(sqlite_url), "one")
    second = FileLeadership(lock_path(sqlite_url), "two")
    # When both ask to lead
    # Then the first leads, the second does not, until the first gives up
    assert first.hold()
    assert not second.hold()
    assert current_leader(database) == "one"
    first.release()
    assert second.hold()
    assert current_leader(database) == "two"
    second.release()
    assert current_leader(database) is None
