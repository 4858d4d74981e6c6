"""CallRecorder against real databases: batching, merging, outages and the buffer bound.

Every test runs on SQLite and on PostgreSQL (the ``database`` fixture is
parametrized). Outages are real: for PostgreSQL a TCP relay written here sits
between the recorder and the server and refuses connections until told
otherwise; for SQLite the database's folder is a regular file until the outage
ends (then atomically replaced by a link to the real folder), which makes
opening the file fail even for root.
"""

from __future__ import annotations

import logging
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psutil
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from pyfi.db import models, schema
from pyfi.db.enums import CallState, EventName
from pyfi.db.session import Database
from pyfi.recorder import CallRecorder, CallUpdate
from tests.conftest import count_rows, requires_postgres
from tests.relay import TcpRelay

# Retry quickly so outages end within a test's patience.
RETRY_MAX_S = 0.2


@dataclass
class Outage:
    """A URL of ``database`` that cannot be used until :meth:`end` is called."""

    url: str
    end: Callable[[], None]


@pytest.fixture
def outage(database: Database, tmp_path: Path) -> Iterator[Outage]:
    """The migrated ``database``, reachable only through a URL that is down for now."""
    url = make_url(database.url)
    if database.is_sqlite:
        real_folder = Path(str(url.database)).parent
        storage = tmp_path / "storage"
        storage.write_text("not a folder")

        def end_sqlite() -> None:
            # One rename puts the link where the file was: were the file
            # removed first, the recorder (retrying all along) could create
            # the folder in the gap, and the link could not be made.
            link = tmp_path / "storage.link"
            link.symlink_to(real_folder, target_is_directory=True)
            link.replace(storage)

        yield Outage(f"sqlite:///{storage / Path(str(url.database)).name}", end_sqlite)
        return
    proxy = TcpRelay(url.host or "127.0.0.1", url.port or 5432)
    proxy.set_up(False)  # the outage begins at once
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    yield Outage(proxied, lambda: proxy.set_up(True))
    proxy.stop()


def idle_recorder(url: str) -> CallRecorder:
    """A recorder that never writes on its own: anything written came from flush()."""
    return CallRecorder(url, flush_interval_s=60.0, batch_size=1_000_000)


def received(call_id: uuid.UUID | None = None) -> CallUpdate:
    """The update that creates a call: its identity and the received state."""
    return CallUpdate(
        id=call_id or uuid.uuid4(),
        name="s.source",
        tracking_id=uuid.uuid4(),
        argument="message",
        idempotency_key="key",
        state=CallState.RECEIVED,
    )


def record_lifecycle(recorder: CallRecorder, call_id: uuid.UUID) -> None:
    """Received, running, finished: three call updates and three events."""
    now = datetime.now(UTC)
    recorder.record_call(received(call_id))
    recorder.record_event(call_id, EventName.RECEIVED, None, now)
    recorder.record_call(
        CallUpdate(id=call_id, state=CallState.RUNNING, started=now, hostname="host1")
    )
    recorder.record_event(call_id, EventName.PRERUN, None, now)
    recorder.record_call(CallUpdate(id=call_id, state=CallState.FINISHED, finished=now))
    recorder.record_event(call_id, EventName.POSTRUN, "ok", now)


def load_call(database: Database, call_id: uuid.UUID) -> models.Call:
    with database.transaction() as session:
        call = session.get(models.Call, call_id)
        assert call is not None
        return call


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_recorder_writes_records_from_many_threads_only_in_the_background(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a recorder whose writer would wait a minute before writing on its own
    with idle_recorder(database.url) as recorder:
        call_ids = [uuid.uuid4() for _ in range(1_000)]

        def work(share: list[uuid.UUID]) -> None:
            for call_id in share:
                record_lifecycle(recorder, call_id)

        # When four threads record 1,000 lifecycles (3 updates and 3 events each)
        threads = [threading.Thread(target=work, args=(call_ids[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        # Then nothing was written synchronously: every record waits in memory
        # (how cheap recording is, is measured by bench/, not asserted here)
        assert count_rows(database, models.Call) == 0
        assert count_rows(database, models.Event) == 0
        assert recorder.stats.buffered == 4_000  # 1,000 merged calls + 3,000 events

        # When the recorder is flushed
        assert recorder.flush(timeout_s=30)

        # Then every call is one finished row with its three events
        assert count_rows(database, models.Call) == 1_000
        assert count_rows(database, models.Event) == 3_000
        with database.transaction() as session:
            states = session.execute(
                select(models.Call.state, func.count()).group_by(models.Call.state)
            ).all()
        assert states == [(CallState.FINISHED, 1_000)]
        stats = recorder.stats
        assert (stats.recorded, stats.written, stats.pending, stats.dropped) == (6_000, 6_000, 0, 0)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    # When a late record arrives after close
    recorder.record_call(received())

    # Then it is counted as dropped rather than raising in the caller
    assert recorder.stats.dropped == 1


def test_recorder_writes_on_its_own_when_a_batch_fills_or_the_interval_ends(
    database: Database,
) -> None:
    # Given a recorder that writes batches of 50 and otherwise waits a minute
    with CallRecorder(database.url, batch_size=50, flush_interval_s=60.0) as recorder:
        # When 50 calls are recorded, without any flush
        for _ in range(50):
            recorder.record_call(received())

        # Then the full batch is written anyway
        wait_until(lambda: count_rows(database, models.Call) == 50)

    # Given a recorder with a short interval and large batches
    with CallRecorder(database.url, batch_size=10_000, flush_interval_s=0.05) as recorder:
        # When a single call is recorded
        recorder.record_call(received())

        # Then it is written within the interval, without any flush
        wait_until(lambda: count_rows(database, models.Call) == 51, timeout_s=5)


def test_recorder_merges_updates_of_a_call_into_one_row(database: Database) -> None:
    # Given a recorder that writes only when flushed
    with idle_recorder(database.url) as recorder:
        call_id = uuid.uuid4()
        started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        finished = started + timedelta(seconds=2)

        # When a call is received, runs and finishes within one batch
        recorder.record_call(received(call_id))
        recorder.record_call(
            CallUpdate(id=call_id, state=CallState.RUNNING, started=started, hostname="h1")
        )
        recorder.record_call(CallUpdate(id=call_id, state=CallState.FINISHED, finished=finished))

        # Then memory holds one merged entry, and the database gets one complete row
        assert recorder.stats.buffered == 1
        assert recorder.flush(timeout_s=10)
        assert count_rows(database, models.Call) == 1
        call = load_call(database, call_id)
        assert (call.state, call.started, call.finished) == (
            CallState.FINISHED,
            started,
            finished,
        )
        assert (call.name, call.argument, call.idempotency_key, call.hostname) == (
            "s.source",
            "message",
            "key",
            "h1",
        )
        assert call.owner is not None


def test_recorder_takes_a_workers_instants_as_epoch_seconds(database: Database) -> None:
    # Given a recorder, and a worker's step values: ids as text, instants as epoch seconds
    with idle_recorder(database.url) as recorder:
        call_id = str(uuid.uuid4())
        received_at = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
        finished_at = received_at + timedelta(milliseconds=1500)
        # When a call starts and finishes across two batches
        recorder.record_call_values(
            call_id,
            {
                "state": CallState.RUNNING,
                "attempt": 1,
                "name": "s.epoch",
                "tracking_id": call_id,
                "received": received_at.timestamp(),
                "started": received_at.timestamp(),
            },
        )
        assert recorder.flush(timeout_s=10)
        recorder.record_call_values(
            call_id,
            {"state": CallState.FINISHED, "attempt": 1, "finished": finished_at.timestamp()},
        )
        assert recorder.flush(timeout_s=10)
    # Then the row holds those instants, to the microsecond, and when it was first seen
    call = load_call(database, uuid.UUID(call_id))
    assert (call.state, call.received, call.started, call.finished) == (
        CallState.FINISHED,
        received_at,
        received_at,
        finished_at,
    )
    assert abs(call.created - datetime.now(UTC)) < timedelta(minutes=1)


def test_recorder_never_moves_a_final_call_backwards(database: Database) -> None:
    # Given a call written as finished on its third attempt
    with idle_recorder(database.url) as recorder:
        call_id = uuid.uuid4()
        recorder.record_call(received(call_id))
        recorder.record_call(CallUpdate(id=call_id, state=CallState.FINISHED, attempt=3))
        # (a stale update in the same batch is ignored in memory already)
        recorder.record_call(CallUpdate(id=call_id, state=CallState.RUNNING, attempt=2))
        assert recorder.flush(timeout_s=10)
        first = load_call(database, call_id)
        assert (first.state, first.attempt) == (CallState.FINISHED, 3)

        # When a late, stale update arrives in a later batch
        recorder.record_call(
            CallUpdate(id=call_id, state=CallState.RUNNING, attempt=2, hostname="late")
        )
        assert recorder.flush(timeout_s=10)

        # Then the state and attempt stay, other fields change, created is the first sighting
        last = load_call(database, call_id)
        assert (last.state, last.attempt, last.hostname) == (CallState.FINISHED, 3, "late")
        assert last.created == first.created
        assert last.updated >= first.updated

        # When a final state follows another final state
        recorder.record_call(CallUpdate(id=call_id, state=CallState.DEAD))
        assert recorder.flush(timeout_s=10)

        # Then the later final state wins
        assert load_call(database, call_id).state == CallState.DEAD


def test_recorder_merges_rows_of_different_shapes_written_in_one_batch(
    database: Database,
) -> None:
    # Given a call already written with its identity, host and start
    with idle_recorder(database.url) as recorder:
        known, newcomer, anonymous = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        recorder.record_call(received(known))
        recorder.record_call(
            CallUpdate(id=known, state=CallState.RUNNING, started=at, hostname="h1", attempt=2)
        )
        assert recorder.flush(timeout_s=10)
        tracking = load_call(database, known).tracking_id

        # When one batch holds: only the end of the known call, a stale "pending"
        # for it, a new call with its identity, and a call known by its id alone
        recorder.record_call(
            CallUpdate(id=known, state=CallState.FINISHED, finished=at + timedelta(seconds=1))
        )
        recorder.record_call(CallUpdate(id=newcomer, name="s.new", tracking_id=known,
                                        state=CallState.RECEIVED, received=at))  # fmt: skip
        recorder.record_call(CallUpdate(id=anonymous, state=CallState.RUNNING, attempt=1))
        assert recorder.flush(timeout_s=10)
        recorder.record_call(CallUpdate(id=known, state=CallState.PENDING, attempt=1))
        assert recorder.flush(timeout_s=10)

        # Then each row keeps what the batch did not set, and nothing goes backwards
        call = load_call(database, known)
        assert (call.name, call.tracking_id, call.hostname, call.started, call.attempt) == (
            "s.source",
            tracking,
            "h1",
            at,
            2,
        )
        assert (call.state, call.finished) == (CallState.FINISHED, at + timedelta(seconds=1))
        new = load_call(database, newcomer)
        assert (new.name, new.tracking_id, new.received, new.state) == (
            "s.new",
            known,
            at,
            CallState.RECEIVED,
        )
        stand_in = load_call(database, anonymous)
        assert (stand_in.name, stand_in.tracking_id) == ("(unknown)", anonymous)

        # When the anonymous call's identity arrives, then it replaces the stand-ins
        recorder.record_call(CallUpdate(id=anonymous, name="s.late", tracking_id=known))
        assert recorder.flush(timeout_s=10)
        late = load_call(database, anonymous)
        assert (late.name, late.tracking_id, late.state) == ("s.late", known, CallState.RUNNING)


def test_recorder_creates_stand_in_calls_for_orphan_events_and_keeps_gone_sockets(
    database: Database,
) -> None:
    # Given a recorder that writes only when flushed
    with idle_recorder(database.url) as recorder:
        orphan, socketless, gone_socket = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        good = [uuid.uuid4() for _ in range(5)]

        # When events arrive for a call never recorded, and a call names a socket that is gone
        recorder.record_event(orphan, EventName.RECEIVED, "first sight", datetime.now(UTC))
        recorder.record_call(
            CallUpdate(
                id=socketless,
                name="s.gone",
                tracking_id=uuid.uuid4(),
                socket_id=gone_socket,
                state=CallState.RECEIVED,
            )
        )
        for call_id in good:
            recorder.record_call(received(call_id))
        assert recorder.flush(timeout_s=10)

        # Then nothing is lost: the orphan gets a stand-in call, the other keeps its socket's id
        assert count_rows(database, models.Event) == 1
        assert count_rows(database, models.Call) == 7
        assert load_call(database, orphan).name == "(unknown)"
        assert load_call(database, socketless).socket_id == gone_socket
        assert (recorder.stats.written, recorder.stats.rejected) == (7, 0)

        # When the real identity of the orphan arrives later
        recorder.record_call(received(orphan))
        assert recorder.flush(timeout_s=10)

        # Then it replaces the stand-in
        assert load_call(database, orphan).name == "s.source"


def test_recorder_rejects_only_the_records_the_database_refuses(database: Database) -> None:
    # Given a recorder that writes only when flushed
    with idle_recorder(database.url) as recorder:
        good = [uuid.uuid4() for _ in range(10)]
        bad = uuid.uuid4()

        # When one call in the batch carries a state the column does not accept
        for call_id in good[:5]:
            recorder.record_call(received(call_id))
        recorder.record_call(CallUpdate(id=bad, state=cast(Any, "exploded")))
        recorder.record_event(bad, EventName.FAILURE, "boom", datetime.now(UTC))
        for call_id in good[5:]:
            recorder.record_call(received(call_id))
        assert recorder.flush(timeout_s=10)

        # Then only that record is rejected; the rest, its event included, is written
        stats = recorder.stats
        assert (stats.written, stats.rejected, stats.pending) == (11, 1, 0)
        assert count_rows(database, models.Call) == 11  # ten calls and the event's stand-in
        assert count_rows(database, models.Event) == 1

        # When the next batch is fine
        recorder.record_call(CallUpdate(id=good[0], state=CallState.FINISHED))
        assert recorder.flush(timeout_s=10)

        # Then it is written as one batch again
        assert load_call(database, good[0]).state == CallState.FINISHED


def test_recorder_buffers_through_an_outage_and_writes_everything_after(
    database: Database, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a recorder started while its database is unreachable
    caplog.set_level(logging.INFO, logger="pyfi.recorder")
    with CallRecorder(outage.url, flush_interval_s=0.02, retry_max_s=RETRY_MAX_S) as recorder:
        call_ids = [uuid.uuid4() for _ in range(300)]

        # When calls are recorded during the outage
        started = time.perf_counter()
        for call_id in call_ids:
            record_lifecycle(recorder, call_id)
        recording_s = time.perf_counter() - started
        wait_until(lambda: recorder.stats.failures >= 3)

        # Then recording never waited for the database, and nothing is written yet
        assert recording_s < 1.0
        assert not recorder.flush(timeout_s=0.2)
        assert count_rows(database, models.Call) == 0
        stats = recorder.stats
        assert (stats.pending, stats.dropped) == (1_800, 0)

        # When the database comes back
        outage.end()

        # Then everything recorded during the outage is written, nothing lost
        assert recorder.flush(timeout_s=20)
        assert count_rows(database, models.Call) == 300
        assert count_rows(database, models.Event) == 900
        assert load_call(database, call_ids[-1]).state == CallState.FINISHED
        stats = recorder.stats
        assert (stats.written, stats.pending, stats.dropped, stats.rejected) == (1_800, 0, 0, 0)

    # And the outage was logged once, however many retries it took
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "pyfi.recorder"]
    warnings = [m for level, m in messages if level == logging.WARNING]
    resumed = [m for level, m in messages if level == logging.INFO]
    assert len(warnings) == 1
    assert "cannot write" in warnings[0]
    assert len(resumed) == 1
    assert "1800 records were buffered" in resumed[0]


def test_recorder_calls_its_first_write_hook_once_a_batch_is_written_and_never_again(
    database: Database, outage: Outage
) -> None:
    # Given a recorder whose hook notes what was written when it ran, and where
    seen: list[tuple[int, int, str]] = []

    def hook() -> None:
        seen.append(
            (
                count_rows(database, models.Call),
                recorder.stats.written,
                threading.current_thread().name,
            )
        )

    with CallRecorder(
        outage.url, flush_interval_s=0.02, retry_max_s=RETRY_MAX_S, on_first_write=hook
    ) as recorder:
        # When writes fail during an outage
        first = [uuid.uuid4() for _ in range(5)]
        for call_id in first:
            recorder.record_call(received(call_id))
        wait_until(lambda: recorder.stats.failures >= 2)

        # Then the hook has not run
        assert seen == []

        # When the database comes back, and later batches are written too
        outage.end()
        assert recorder.flush(timeout_s=20)
        for call_id in [uuid.uuid4() for _ in range(5)]:
            recorder.record_call(received(call_id))
        assert recorder.flush(timeout_s=10)

    # Then it ran once, in the writer thread, after the first batch was committed
    assert seen == [(5, 5, "pyfi-call-recorder")]


def test_a_failing_first_write_hook_neither_rewrites_nor_stops_the_recorder(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a recorder whose first-write hook raises
    def hook() -> None:
        raise RuntimeError("hook is broken")

    with CallRecorder(database.url, flush_interval_s=0.02, on_first_write=hook) as recorder:
        # When two batches are written, one after the other
        for _ in range(2):
            recorder.record_call(received())
            assert recorder.flush(timeout_s=10)

        # Then both are written once, with no failed write counted
        stats = recorder.stats
        assert (stats.written, stats.failures, stats.pending) == (2, 0, 0)
    assert count_rows(database, models.Call) == 2
    # And the hook's failure is logged
    errors = [r for r in caplog.records if r.name == "pyfi.recorder" and r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["call recorder: the first-write hook failed"]


def test_recorder_waits_for_the_tables_to_be_created(empty_database: Database) -> None:
    # Given a reachable database without pyfi's tables
    with CallRecorder(empty_database.url, retry_max_s=RETRY_MAX_S) as recorder:
        # When calls are recorded before `flow db init`
        call_ids = [uuid.uuid4() for _ in range(20)]
        for call_id in call_ids:
            record_lifecycle(recorder, call_id)
        wait_until(lambda: recorder.stats.failures >= 2)
        assert recorder.stats.pending == 120

        # Then they are written once the tables exist
        schema.upgrade(empty_database)
        assert recorder.flush(timeout_s=20)
        assert count_rows(empty_database, models.Call) == 20
        assert count_rows(empty_database, models.Event) == 60


def test_recorder_drops_oldest_events_first_when_the_buffer_is_full(
    database: Database, outage: Outage
) -> None:
    # Given a recorder with room for 100 entries and an unreachable database
    with CallRecorder(outage.url, max_buffer=100, retry_max_s=RETRY_MAX_S) as recorder:
        calls = [uuid.uuid4() for _ in range(20)]
        for call_id in calls:
            recorder.record_call(received(call_id))
            recorder.record_call(CallUpdate(id=call_id, state=CallState.FINISHED))
        wait_until(lambda: recorder.stats.failures >= 1)

        # When far more events arrive than fit
        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            largest = 0
            for index in range(30_000):
                recorder.record_event(
                    calls[index % 20], EventName.PRERUN, str(index), datetime.now(UTC)
                )
                largest = max(largest, recorder.stats.buffered)
            grown = tracemalloc.get_traced_memory()[0] - baseline
        finally:
            tracemalloc.stop()

        # Then memory stays bounded and every discarded record is counted
        stats = recorder.stats
        assert largest <= 100
        assert grown < 2_000_000  # 30,000 kept events would take several MB
        assert stats.dropped >= 30_000 - 100
        assert stats.recorded == stats.written + stats.pending + stats.dropped == 30_040

        # When the database comes back
        outage.end()
        assert recorder.flush(timeout_s=20)

        # Then the calls' final states survived, and the surviving events were written
        with database.transaction() as session:
            states = session.scalars(select(models.Call.state)).all()
        assert states == [CallState.FINISHED] * 20
        stats = recorder.stats
        assert count_rows(database, models.Event) == stats.written - 40
        assert stats.written + stats.dropped == 30_040


@requires_postgres
@pytest.mark.postgres
def test_recorder_resumes_after_its_connections_are_cut(postgres_url: str) -> None:
    # Given a recorder writing to PostgreSQL through a relay
    database = Database(postgres_url)
    schema.upgrade(database)
    url = make_url(postgres_url)
    proxy = TcpRelay(url.host or "127.0.0.1", url.port or 5432)
    proxy.set_up(True)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        with CallRecorder(proxied, flush_interval_s=0.02, retry_max_s=RETRY_MAX_S) as recorder:
            before = [uuid.uuid4() for _ in range(50)]
            for call_id in before:
                record_lifecycle(recorder, call_id)
            assert recorder.flush(timeout_s=10)

            # When every connection is cut and refused while more calls are recorded
            proxy.set_up(False)
            for _ in range(50):
                record_lifecycle(recorder, uuid.uuid4())
            wait_until(lambda: recorder.stats.failures >= 2)
            assert count_rows(database, models.Call) == 50

            # Then, once connections are accepted again, the rest is written too
            proxy.set_up(True)
            assert recorder.flush(timeout_s=20)
            assert count_rows(database, models.Call) == 100
            assert count_rows(database, models.Event) == 300
            assert recorder.stats.dropped == 0
    finally:
        proxy.stop()
        database.dispose()


RECORDER_CONNECTIONS = (
    "SELECT pid, state FROM pg_stat_activity"
    " WHERE application_name = 'pyfi-recorder' AND datname = current_database()"
    " AND client_port = ANY(%(ports)s)"
)


def local_ports() -> list[int]:
    """The local ports of this process's TCP connections.

    Recorders of tests running beside this one (other pytest processes, other
    schemas) share the server and the application name; only the client port
    tells a connection of this process from theirs.
    """
    return [c.laddr.port for c in psutil.Process().net_connections("tcp") if c.raddr]


@requires_postgres
@pytest.mark.postgres
def test_recorder_writes_to_postgresql_on_a_connection_of_its_own_outside_transactions(
    postgres_url: str,
) -> None:
    # Given a recorder writing to PostgreSQL
    database = Database(postgres_url)
    schema.upgrade(database)

    def recorder_connections() -> dict[int, str]:
        with database.connect() as conn:
            rows = conn.exec_driver_sql(RECORDER_CONNECTIONS, {"ports": local_ports()})
            return {pid: state for pid, state in rows}

    others = recorder_connections()  # this process's other recorders, if any
    try:
        with idle_recorder(postgres_url) as recorder:
            call_ids = [uuid.uuid4() for _ in range(3)]
            for call_id in call_ids:
                recorder.record_call(received(call_id))

            # When a batch of calls is written
            assert recorder.flush(timeout_s=10)

            # Then it went over one connection, named for DBAs, left idle (no
            # transaction held open between batches)
            ours = {
                pid: state for pid, state in recorder_connections().items() if pid not in others
            }
            assert list(ours.values()) == ["idle"]

            # And each row names the database user that wrote it
            with database.connect() as conn:
                user = conn.exec_driver_sql("SELECT current_user").scalar_one()
            for call_id in call_ids:
                assert load_call(database, call_id).owner == user

        # And closing the recorder closes its connection
        assert not set(recorder_connections()) & set(ours)
    finally:
        database.dispose()
