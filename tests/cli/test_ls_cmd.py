"""`flow ls`: tables, JSON, one object with its relations, and paginated calls."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pyfi.db import models
from pyfi.db.enums import AgentStatus, CallState, EventName
from pyfi.db.session import Database
from tests.conftest import Flow

LISTS = "processors sockets plugs queues nodes agents workers users roles schedulers privileges"


@pytest.mark.parametrize("plural", LISTS.split())
def test_ls_every_list_speaks_json(first_flow: Flow, plural: str) -> None:
    # When any listing is asked for JSON
    records = json.loads(first_flow("ls", plural, "--json").output)
    # Then it is a JSON list (with the first flow's objects where it has them)
    assert isinstance(records, list)
    if plural in ("processors", "sockets", "plugs", "queues"):
        assert records


def test_ls_processors_table_masks_credentials(flow: Flow) -> None:
    # Given a processor whose repository URL carries a token
    flow("add", "processor", "-n", "p", "-m", "m", "-g", "https://bot:tok3n@example.org/r.git")
    # When processors are listed, as a table and as JSON
    table = flow("ls", "processors").output
    records = json.loads(flow("ls", "processors", "--json").output)
    # Then the token never appears
    assert "tok3n" not in table
    assert "tok3n" not in json.dumps(records)
    assert "https://bot:***@example.org/r.git" in table


def test_ls_empty_list_says_so(flow: Flow) -> None:
    # When nothing has been added
    result = flow("ls", "queues")
    # Then the user is told, and --json gives an empty list
    assert "No queues yet." in result.output
    assert json.loads(flow("ls", "queues", "--json").output) == []


def test_ls_processor_shows_sockets_and_plugs(first_flow: Flow) -> None:
    # When one processor is shown as a table
    output = first_flow("ls", "processor", "-n", "proc1").output
    # Then its fields, sockets and plugs appear
    assert "pyfi.processors.sample" in output
    assert "Sockets" in output
    assert "plug1" in output


def test_ls_unknown_object_is_user_error(first_flow: Flow) -> None:
    # When a missing object is shown, the listing to look at is named
    assert "see `flow ls sockets`" in first_flow.fails("ls", "socket", "-n", "nope")


def _record_calls(database: Database, socket_name: str, count: int) -> list[uuid.UUID]:
    """Insert ``count`` calls a minute apart, newest last, the last one unfinished."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    tracking = uuid.uuid4()
    ids = []
    with database.transaction() as session:
        for index in range(count):
            finished = index < count - 1
            call = models.Call(
                name=socket_name,
                tracking_id=tracking,
                state=CallState.FINISHED if finished else CallState.RUNNING,
                created=start + timedelta(minutes=index),
                started=start + timedelta(minutes=index),
                finished=start + timedelta(minutes=index, seconds=1) if finished else None,
            )
            call.events.append(models.Event(name=EventName.RECEIVED, note=f"received {index}"))
            session.add(call)
            session.flush()
            ids.append(call.id)
    return ids


def test_ls_calls_pages_newest_first(first_flow: Flow, database: Database) -> None:
    # Given 25 calls
    ids = _record_calls(database, "pyfi.processors.sample.do_this", 25)
    # When the second page of 10 is listed
    page = json.loads(first_flow("ls", "calls", "-p", "2", "-r", "10", "--json").output)
    # Then it holds calls 15..6 (newest first) out of 25
    assert page["total"] == 25
    assert [c["id"] for c in page["calls"]] == [str(i) for i in reversed(ids[5:15])]
    table = first_flow("ls", "calls", "-p", "3").output
    assert "Page 3 of 3 of 25 total records" in table


def test_ls_calls_filters_unfinished_and_socket(first_flow: Flow, database: Database) -> None:
    # Given finished calls and one running call on one socket, and a call on another
    ids = _record_calls(database, "pyfi.processors.sample.do_this", 3)
    _record_calls(database, "pyfi.processors.sample.do_something", 1)
    # When unfinished calls of the first socket are listed
    page = json.loads(
        first_flow(
            "ls", "calls", "--unfinished", "--socket", "pyfi.processors.sample.do_this", "--json"
        ).output
    )
    # Then only the running one is there
    assert [c["id"] for c in page["calls"]] == [str(ids[-1])]


def test_ls_call_shows_events_from_rows_and_timestamps(
    first_flow: Flow, database: Database
) -> None:
    # Given a call that was received, failed once (a stored retry event) and then finished
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with database.transaction() as session:
        call = models.Call(
            name="pyfi.processors.sample.do_this",
            tracking_id=uuid.uuid4(),
            state=CallState.FINISHED,
            received=at,
            started=at + timedelta(seconds=2),
            finished=at + timedelta(seconds=3),
        )
        retry = models.Event(
            name=EventName.RETRY, note="ValueError on attempt 1", created=at + timedelta(seconds=1)
        )
        call.events.append(retry)
        session.add(call)
        session.flush()
        call_id = call.id
    # When it is shown
    shown = json.loads(first_flow("ls", "call", "--id", str(call_id), "--json").output)
    table = first_flow("ls", "call", "--id", str(call_id)).output
    # Then the stored event and the steps its timestamps record come in time order
    assert [e["name"] for e in shown["events"]] == ["received", "retry", "prerun", "postrun"]
    assert [e["id"] is None for e in shown["events"]] == [True, False, True, True]
    assert "Provenance" in table
    assert "ValueError on attempt 1" in table
    assert "Postrun for task pyfi.processors.sample.do_this" in table


def test_ls_call_of_a_failed_call_has_no_postrun(first_flow: Flow, database: Database) -> None:
    # Given a call that ran and failed for good
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with database.transaction() as session:
        call = models.Call(
            name="pyfi.processors.sample.do_this",
            tracking_id=uuid.uuid4(),
            state=CallState.DEAD,
            received=at,
            started=at,
            finished=at + timedelta(seconds=1),
        )
        call.events.append(
            models.Event(name=EventName.FAILURE, note="boom", created=at + timedelta(seconds=1))
        )
        session.add(call)
        session.flush()
        call_id = call.id
    # When it is shown
    shown = json.loads(first_flow("ls", "call", "--id", str(call_id), "--json").output)
    # Then its end is the failure, not a postrun
    assert [e["name"] for e in shown["events"]] == ["received", "prerun", "failure"]


def test_ls_call_unknown_id_is_user_error(first_flow: Flow) -> None:
    call_id = uuid.uuid4()
    error = first_flow.fails("ls", "call", "--id", str(call_id))
    assert f"no call with id '{call_id}'" in error
    assert "not a valid call id" in first_flow.fails("ls", "call", "--id", "xyz")


def test_ls_agents_shows_stale_heartbeat_as_offline(flow: Flow, database: Database) -> None:
    # Given two agents that say they are online, one of which stopped reporting a minute ago
    now = datetime.now(UTC)
    with database.transaction() as session:
        for name, heartbeat in (("fresh", now), ("stale", now - timedelta(minutes=1))):
            node = models.Node(name=name, hostname=name)
            session.add(
                models.Agent(
                    name=name,
                    hostname=name,
                    node=node,
                    status=AgentStatus.ONLINE,
                    heartbeat=heartbeat,
                )
            )
    # When agents and nodes are listed
    agents = {a["name"]: a["status"] for a in json.loads(flow("ls", "agents", "--json").output)}
    nodes = {n["name"]: n["status"] for n in json.loads(flow("ls", "nodes", "--json").output)}
    # Then only the fresh one counts as online
    assert agents == {"fresh": "online", "stale": "offline (no heartbeat)"}
    assert nodes == agents


def test_ls_calls_stops_counting_past_the_cap(
    first_flow: Flow, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 25 calls, and a count that stops at 20
    from pyfi.cli import listing

    monkeypatch.setattr(listing, "COUNT_CAP", 20)
    _record_calls(database, "pyfi.processors.sample.do_this", 25)
    # When the first page is listed
    page = json.loads(first_flow("ls", "calls", "-r", "10", "--json").output)
    # Then the total is only known to be more than the cap
    assert (page["total"], page["more_than"], len(page["calls"])) == (None, 20, 10)
    shown = first_flow("ls", "calls").output
    assert "Page 1 of more than 2 (more than 20 records)" in shown, shown
    # And a page past the cap counts up to its own end, and is exact when it gets there
    last = json.loads(first_flow("ls", "calls", "-p", "3", "-r", "10", "--json").output)
    assert (last["total"], "more_than" in last, len(last["calls"])) == (25, False, 5)
