"""When a schedule fires: interval and cron instants, time zones and DST, misfire policies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pyfi.db.enums import Misfire
from pyfi.errors import InvalidValue
from pyfi.objects.validate import check_input
from pyfi.scheduler.fires import Planned, fire_id
from pyfi.scheduler.timing import Schedule


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_interval_fires_on_multiples_of_the_interval_since_the_epoch() -> None:
    # Given a 15-second interval
    schedule = Schedule(interval=15)
    # When asked for the next instant after a moment, and after an instant itself
    # Then each is the next multiple of 15 s, strictly after
    assert schedule.next_after(utc(2026, 1, 1, 12, 0, 7)) == utc(2026, 1, 1, 12, 0, 15)
    assert schedule.next_after(utc(2026, 1, 1, 12, 0, 15)) == utc(2026, 1, 1, 12, 0, 30)


def test_interval_latest_instants_in_a_window() -> None:
    # Given a 1-second interval
    schedule = Schedule(interval=1)
    start = utc(2026, 1, 1, 12, 0, 0)
    # When asked for the latest instants in (start, start + 5.5 s], at most 3 of them
    found = schedule.latest(start, start + timedelta(seconds=5.5), 3)
    # Then they are the three latest, oldest first, and the start itself is excluded
    assert found == [start + timedelta(seconds=s) for s in (3, 4, 5)]
    assert schedule.latest(start, start + timedelta(seconds=2), 10) == [
        start + timedelta(seconds=1),
        start + timedelta(seconds=2),
    ]


def test_cron_is_read_in_its_time_zone() -> None:
    # Given a daily 09:00 schedule in New York (UTC-5 in winter)
    schedule = Schedule(cron="0 9 * * *", timezone="America/New_York")
    # When asked for the next instant after 12:00 UTC on 10 January
    # Then it is 14:00 UTC that day
    assert schedule.next_after(utc(2026, 1, 10, 12, 0)) == utc(2026, 1, 10, 14, 0)


def test_cron_on_the_spring_forward_day_fires_the_skipped_time_once_after_the_change() -> None:
    # Given a daily 02:30 schedule in Berlin, where 29 March 2026 skips 02:00-03:00
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    # When the instants around the change are listed
    first = schedule.next_after(utc(2026, 3, 28, 12, 0))
    second = schedule.next_after(first)
    third = schedule.next_after(second)
    # Then 28 March fires at 02:30 CET (01:30 UTC); 29 March, with no 02:30, at
    # 03:00 CEST (01:00 UTC), once; 30 March at 02:30 CEST (00:30 UTC)
    assert [first, second, third] == [
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 30, 0, 30),
        utc(2026, 3, 31, 0, 30),
    ]
    assert schedule.next_after(utc(2026, 3, 27, 12, 0)) == utc(2026, 3, 28, 1, 30)


def test_cron_on_the_fall_back_day_fires_a_repeated_time_once() -> None:
    # Given a daily 02:30 schedule in Berlin, where 25 October 2026 repeats 02:00-03:00
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    # When the instants of that day and the next are listed
    day = schedule.latest(utc(2026, 10, 24, 12, 0), utc(2026, 10, 26, 12, 0), 10)
    # Then 25 October fires once, at the first 02:30 (CEST, 00:30 UTC), and
    # 26 October at 02:30 CET (01:30 UTC)
    assert day == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_cron_with_a_wildcard_hour_fires_in_both_repeated_hours() -> None:
    # Given a half-hourly schedule in Berlin on the fall-back day
    schedule = Schedule(cron="*/30 * * * *", timezone="Europe/Berlin")
    # When the instants between 23:30 and 02:00 UTC are listed
    found = schedule.latest(utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2, 0), 10)
    # Then every half hour of real time fires once: 02:00 and 02:30 local
    # twice (CEST at 00:00 and 00:30 UTC, then CET at 01:00 and 01:30 UTC)
    assert found == [utc(2026, 10, 24, 23, 30) + timedelta(minutes=30 * k) for k in range(1, 6)]


def test_cron_latest_matches_next_after_backwards() -> None:
    # Given a weekday schedule in Tokyo
    schedule = Schedule(cron="15 8-18/5 * * MON-FRI", timezone="Asia/Tokyo")
    start = utc(2026, 5, 1, 0, 0)
    forward = [schedule.next_after(start)]
    for _ in range(9):
        forward.append(schedule.next_after(forward[-1]))
    # When the latest instants up to the tenth are listed
    backward = schedule.latest(start, forward[-1], 10)
    # Then they are the same ten instants
    assert backward == forward


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 5, "cron": "* * * * *"}, "exactly one"),
        ({}, "exactly one"),
        ({"cron": "* * * *"}, "five fields"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_schedule_refuses_what_cannot_fire(kwargs: dict[str, object], message: str) -> None:
    # Given a schedule with both, neither, a bad expression or an unknown zone
    # When / Then it is refused with one line saying what was wrong
    with pytest.raises(InvalidValue, match=message):
        Schedule(**kwargs)  # type: ignore[arg-type]


def _planned(misfire: Misfire, catch_up: int, anchor: datetime) -> Planned:
    return Planned(uuid.uuid4(), "s", Schedule(interval=60), misfire, catch_up, None, anchor)


def test_misfire_skip_fires_only_the_latest_missed_instant() -> None:
    # Given a minutely schedule last fired at 12:00 and a scheduler back at 12:10:30
    planned = _planned(Misfire.SKIP, 10, utc(2026, 1, 1, 12, 0))
    # When its due instants are asked for
    # Then only 12:10 is due; the nine before it are dropped
    assert planned.due(utc(2026, 1, 1, 12, 10, 30)) == [utc(2026, 1, 1, 12, 10)]


def test_misfire_catch_up_fires_at_most_its_bound_oldest_first() -> None:
    # Given the same outage under catch-up with a bound of 3, and of 20
    bounded = _planned(Misfire.CATCH_UP, 3, utc(2026, 1, 1, 12, 0))
    roomy = _planned(Misfire.CATCH_UP, 20, utc(2026, 1, 1, 12, 0))
    now = utc(2026, 1, 1, 12, 10, 30)
    # When / Then the 3 latest are due; with room for 20, all ten missed ones
    assert bounded.due(now) == [utc(2026, 1, 1, 12, m) for m in (8, 9, 10)]
    assert roomy.due(now) == [utc(2026, 1, 1, 12, m) for m in range(1, 11)]


def test_nothing_is_due_before_the_next_instant() -> None:
    # Given a schedule that fired at 12:00, asked again at 12:00:59
    planned = _planned(Misfire.CATCH_UP, 10, utc(2026, 1, 1, 12, 0))
    # When / Then nothing is due
    assert planned.due(utc(2026, 1, 1, 12, 0, 59)) == []


def test_fire_id_is_derived_from_the_socket_and_the_instant() -> None:
    # Given a socket and an instant
    socket = uuid.uuid4()
    instant = utc(2026, 1, 1, 12, 0)
    # When its id is derived twice, once from the same instant in another zone
    same = fire_id(socket, instant.astimezone(datetime.now().astimezone().tzinfo))
    # Then the id is a stable UUID; another instant or socket gives another id
    assert fire_id(socket, instant) == same
    assert str(uuid.UUID(same)) == same
    assert fire_id(socket, instant + timedelta(seconds=1)) != same
    assert fire_id(uuid.uuid4(), instant) != same


def test_input_passes_positional_or_keyword_arguments() -> None:
    # Given inputs written as a JSON array, a JSON object, and none
    base = _planned(Misfire.SKIP, 1, utc(2026, 1, 1))
    positional = Planned(*[*vars(base).values()][:5], '[1, "a"]', base.anchor)
    keyword = Planned(*[*vars(base).values()][:5], '{"n": 3}', base.anchor)
    # When / Then they become the call's arguments
    assert positional.arguments() == ([1, "a"], {})
    assert keyword.arguments() == ([], {"n": 3})
    assert base.arguments() == ([], {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3", "JSON array"),
        ("[1,", "not JSON"),
        ("[" * 200 + "]" * 200, "nests deeper"),
        ("[" + "9" * 2000 + "]", "digits"),
    ],
)
def test_input_is_held_to_the_wire_limits(text: str, message: str) -> None:
    # Given an input that is not an array or object, not JSON, or past a wire limit
    # When / Then it is refused when the socket is written, not when it fires
    with pytest.raises(InvalidValue, match=message):
        check_input(text)
