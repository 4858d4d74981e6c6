"""The embedded result backend, on a SQLite file (PostgreSQL works too), via SQLAlchemy Core.

The store keeps tables of its own, apart from the meta-model database, and
creates them on first use with ``CREATE TABLE IF NOT EXISTS``: results are
scratch data with a lifetime, not schema to migrate.

``pyfi_results``
    One outcome per call id, with the wall-clock time it expires at.
``pyfi_joins``
    One row per ``(tracking id, socket)`` join: who claimed it, when it
    expires, and a *generation* token that changes when an expired join is
    restarted, so that leftovers of the expired one are never counted.
``pyfi_join_values``
    One value per argument of a join, deleted with it (``ON DELETE CASCADE``).

Atomicity of a join delivery: every write runs in one transaction that first
upserts the join's row. On SQLite the transaction starts with ``BEGIN
IMMEDIATE``, which takes the database's write lock before reading anything, so
no two deliveries interleave and none fails half-way with "database is
locked". On PostgreSQL the upsert takes the join row's lock, which serialises
deliveries to the same join while other joins proceed in parallel. Expired
rows are ignored on read and purged now and then, skipping rows that are
locked, so a purge never waits on (or deadlocks with) a delivery.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Double,
    Engine,
    ForeignKeyConstraint,
    Index,
    MetaData,
    String,
    Table,
    Text,
    case,
    create_engine,
    delete,
    event,
    null,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.schema import CreateIndex, CreateTable

from pyfi.backend.base import ResultBackend, check_join, check_ttl
from pyfi.config import mask_url
from pyfi.errors import BackendError, BackendUnavailable, ConfigurationError, first_line

SQLITE_BUSY_TIMEOUT_MS = 15_000
CONNECT_TIMEOUT_S = 5
# wait() polls SQLite, starting fast for quick calls and backing off so that
# idle waiters cost little.
POLL_FIRST_S = 0.005
POLL_MAX_S = 0.1
PURGE_INTERVAL_S = 60.0
PURGE_BATCH = 1000
# Serialises the CREATE TABLEs of concurrent first users on PostgreSQL, where
# IF NOT EXISTS alone can still collide.
_DDL_LOCK_KEY = 0x50594649  # "PYFI"
_READ_ONLY = "pyfi_read_only"

metadata = MetaData()

results = Table(
    "pyfi_results",
    metadata,
    Column("call_id", String(255), primary_key=True),
    Column("outcome", Text, nullable=False),
    Column("expires_at", Double, nullable=False),
    Index("ix_pyfi_results_expires_at", "expires_at"),
)

joins = Table(
    "pyfi_joins",
    metadata,
    Column("tracking_id", String(255), primary_key=True),
    Column("socket", String(255), primary_key=True),
    Column("generation", String(32), nullable=False),
    Column("claimant", String(255), nullable=True),
    Column("expires_at", Double, nullable=False),
    Index("ix_pyfi_joins_expires_at", "expires_at"),
)

join_values = Table(
    "pyfi_join_values",
    metadata,
    Column("tracking_id", String(255), primary_key=True),
    Column("socket", String(255), primary_key=True),
    Column("argument", String(255), primary_key=True),
    Column("generation", String(32), nullable=False),
    Column("value", Text, nullable=False),
    ForeignKeyConstraint(
        ["tracking_id", "socket"],
        ["pyfi_joins.tracking_id", "pyfi_joins.socket"],
        ondelete="CASCADE",
    ),
)

Upsert = sqlite.Insert | postgresql.Insert


class SQLBackend(ResultBackend):
    """A result backend in a SQLite file or a PostgreSQL database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = _create_engine(url)
        self._is_sqlite = self._engine.dialect.name == "sqlite"
        # Reads on SQLite start a deferred transaction: under WAL they never
        # wait for the writer.
        self._reader = self._engine.execution_options(**{_READ_ONLY: True})
        # SQLite admits one writer at a time anyway; queueing this process's
        # threads on a lock spares them the busy handler's coarse sleeps.
        self._write_lock: AbstractContextManager[Any] = (
            threading.Lock() if self._is_sqlite else nullcontext()
        )
        self._ready = False
        self._ready_lock = threading.Lock()
        self._next_purge = 0.0

    def store(self, call_id: str, outcome: str, ttl_s: int) -> None:
        check_ttl(ttl_s)
        now = time.time()
        stmt = self._insert(results).values(
            call_id=call_id, outcome=outcome, expires_at=now + ttl_s
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[results.c.call_id],
            set_={"outcome": stmt.excluded.outcome, "expires_at": stmt.excluded.expires_at},
        )
        with self._write() as conn:
            conn.execute(stmt)
        self._maybe_purge(now)

    def get(self, call_id: str) -> str | None:
        query = select(results.c.outcome).where(
            results.c.call_id == call_id, results.c.expires_at > time.time()
        )
        with self._read() as conn:
            outcome: str | None = conn.execute(query).scalar_one_or_none()
        return outcome

    def wait(self, call_id: str, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        pause = POLL_FIRST_S
        while True:
            outcome = self.get(call_id)
            remaining = deadline - time.monotonic()
            if outcome is not None or remaining <= 0:
                return outcome
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, POLL_MAX_S)

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
        now = time.time()
        this_join = (joins.c.tracking_id == tracking_id, joins.c.socket == socket)
        with self._write() as conn:
            generation, claimed_by = self._touch_join(conn, tracking_id, socket, now + ttl_s, now)
            if claimed_by is not None and claimed_by != claimant:
                return None
            if claimed_by is None:
                # Once claimed, values are frozen: a redelivered firing must
                # see exactly what the first one saw.
                put = self._insert(join_values).values(
                    tracking_id=tracking_id,
                    socket=socket,
                    argument=argument,
                    generation=generation,
                    value=value,
                )
                put = put.on_conflict_do_update(
                    index_elements=[
                        join_values.c.tracking_id,
                        join_values.c.socket,
                        join_values.c.argument,
                    ],
                    set_={"generation": put.excluded.generation, "value": put.excluded.value},
                )
                conn.execute(put)
            rows = conn.execute(
                select(join_values.c.argument, join_values.c.value).where(
                    join_values.c.tracking_id == tracking_id,
                    join_values.c.socket == socket,
                    join_values.c.generation == generation,
                    join_values.c.argument.in_(list(expected)),
                )
            ).all()
            values = {str(name): str(delivered) for name, delivered in rows}
            if any(name not in values for name in expected):
                return None
            if claimed_by is None:
                conn.execute(update(joins).where(*this_join).values(claimant=claimant))
        self._maybe_purge(now)
        return {name: values[name] for name in expected}

    def complete_join(self, tracking_id: str, socket: str) -> None:
        with self._write() as conn:
            conn.execute(
                delete(joins).where(joins.c.tracking_id == tracking_id, joins.c.socket == socket)
            )

    def close(self) -> None:
        self._engine.dispose()

    def _touch_join(
        self, conn: Connection, tracking_id: str, socket: str, expires_at: float, now: float
    ) -> tuple[str, str | None]:
        """Create or extend the join's row, locking it; return (generation, claimant).

        An expired row is restarted in place, with a new generation and no
        claimant, because the purge may not have removed it yet.
        """
        stmt = self._insert(joins).values(
            tracking_id=tracking_id,
            socket=socket,
            generation=uuid.uuid4().hex,
            claimant=None,
            expires_at=expires_at,
        )
        stale = joins.c.expires_at <= now
        stmt = stmt.on_conflict_do_update(
            index_elements=[joins.c.tracking_id, joins.c.socket],
            set_={
                "generation": case((stale, stmt.excluded.generation), else_=joins.c.generation),
                "claimant": case((stale, null()), else_=joins.c.claimant),
                "expires_at": stmt.excluded.expires_at,
            },
        )
        row = conn.execute(stmt.returning(joins.c.generation, joins.c.claimant)).one()
        return str(row.generation), None if row.claimant is None else str(row.claimant)

    def _insert(self, table: Table) -> Upsert:
        """An INSERT that can say ON CONFLICT DO UPDATE in this database's dialect."""
        return sqlite.insert(table) if self._is_sqlite else postgresql.insert(table)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success."""
        self._ensure_tables()
        with self._write_lock, self._translate(), self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._ensure_tables()
        with self._translate(), self._reader.connect() as conn:
            yield conn

    def _ensure_tables(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            with self._write_lock, self._translate(), self._engine.begin() as conn:
                if not self._is_sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK_KEY})
                for table in metadata.sorted_tables:
                    conn.execute(CreateTable(table, if_not_exists=True))
                    for index in sorted(table.indexes, key=lambda i: str(i.name)):
                        conn.execute(CreateIndex(index, if_not_exists=True))
            self._ready = True

    def _maybe_purge(self, now: float) -> None:
        """Delete a batch of expired rows, at most once a minute per backend object."""
        if now < self._next_purge:
            return
        self._next_purge = now + PURGE_INTERVAL_S
        # SKIP LOCKED (PostgreSQL; SQLite has one writer and ignores it) leaves
        # rows that a delivery holds to that delivery.
        stale_results = (
            select(results.c.call_id)
            .where(results.c.expires_at <= now)
            .limit(PURGE_BATCH)
            .with_for_update(skip_locked=True)
        )
        stale_joins = (
            select(joins.c.tracking_id, joins.c.socket)
            .where(joins.c.expires_at <= now)
            .limit(PURGE_BATCH)
            .with_for_update(skip_locked=True)
        )
        with self._write() as conn:
            conn.execute(delete(results).where(results.c.call_id.in_(stale_results)))
        with self._write() as conn:
            key = tuple_(joins.c.tracking_id, joins.c.socket)
            conn.execute(delete(joins).where(key.in_(stale_joins)))

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Turn driver errors into pyfi errors that name the (masked) URL."""
        try:
            yield
        except OperationalError as exc:
            # Refused connections, unreadable files, locks held past the busy
            # timeout: all mean "the store is not usable right now".
            raise BackendUnavailable(
                f"cannot use the result backend {mask_url(self.url)}: {first_line(exc)}"
            ) from exc
        except DBAPIError as exc:
            raise BackendError(
                f"the result backend {mask_url(self.url)} failed: {first_line(exc)}"
            ) from exc


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
        )
    if not parsed.database or parsed.database == ":memory:":
        # Each connection would get a database of its own, invisible to
        # other workers: useless as a shared store.
        raise ConfigurationError(
            f"the result backend URI {mask_url(url)!r} names no file; "
            "expected sqlite:////path/to/results.sqlite"
        )
    try:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendUnavailable(
            f"cannot create the folder of the result backend {mask_url(url)}: {exc.strerror or exc}"
        ) from exc
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _configure_sqlite)
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling would issue a plain deferred
    # BEGIN; turn it off and let _begin_sqlite choose the kind of BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    _enable_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (lasting), retrying while another process does the same.

    Changing the journal mode needs an exclusive lock, and SQLite reports a
    conflict at once instead of calling the busy handler, so the first users
    of a new file, racing here, must retry themselves.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = POLL_FIRST_S
    while True:
        try:
            (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, POLL_MAX_S)


def _begin_sqlite(conn: Connection) -> None:
    # A deferred transaction that reads and then writes fails with "database
    # is locked" if another writer got in between, without waiting; taking the
    # write lock up front makes writers queue on the busy timeout instead.
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
