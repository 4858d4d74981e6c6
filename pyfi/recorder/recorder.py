"""The recorder object: the cheap recording path, the writer thread, outages and flush.

One lock guards the buffer and the counters. Callers hold it only to append;
the writer holds it only to take a batch out, put one back or count what was
written, never while it talks to the database. Two conditions share the lock:
the writer sleeps on ``_wake`` and ``flush()`` sleeps on ``_settled``, so a
recording thread's nudge never wakes a flusher by mistake.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pyfi.config import mask_url, normalise_database_url
from pyfi.db.enums import EventName
from pyfi.errors import InvalidValue
from pyfi.recorder.buffer import Batch, Buffer, CallUpdate, PendingCall, PendingEvent, values_of
from pyfi.resources import Closeable

# The database side (SQLAlchemy, the models, the statements) is imported by the
# writer thread when it first writes: a worker starts consuming without it.
if TYPE_CHECKING:
    from pyfi.recorder.writer import BatchWriter

log = logging.getLogger("pyfi.recorder")

# The first pause after a failed write; it doubles up to ``retry_max_s``.
RETRY_INITIAL_S = 0.05


@dataclass(frozen=True)
class RecorderStats:
    """Counters of a recorder, in records (one ``record_*`` call each), not rows.

    ``recorded == written + pending + dropped + rejected`` at any instant.
    ``buffered`` is how many entries memory holds (merged updates of a call
    count once): the quantity ``max_buffer`` bounds. ``failures`` counts failed
    write attempts, retries included.
    """

    recorded: int
    written: int
    pending: int
    buffered: int
    dropped: int
    rejected: int
    failures: int


class CallRecorder(Closeable):
    """Records call lifecycles into ``calls`` and ``events`` without blocking the caller.

    Parameters
    ----------
    database_url:
        Where to write. The database need not be reachable yet.
    batch_size:
        The most entries (merged calls plus events) written in one transaction;
        reaching it wakes the writer before ``flush_interval_s`` is up.
    flush_interval_s:
        How long records may wait for a batch to fill.
    max_buffer:
        The most entries held in memory while the database is away.
    retry_max_s:
        The longest pause between two write attempts during an outage.
    on_first_write:
        Called once, in the writer thread, after the first batch is written:
        by then everything writing needs is imported and connected. A
        worker uses it to exempt those objects from garbage collection.

    Raises
    ------
    ConfigurationError
        ``database_url`` is not a PostgreSQL or SQLite URL.
    InvalidValue
        A size or interval is not positive.
    """

    def __init__(
        self,
        database_url: str,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        max_buffer: int = 100_000,
        retry_max_s: float = 5.0,
        on_first_write: Callable[[], None] | None = None,
    ) -> None:
        for label, value in (
            ("batch_size", batch_size),
            ("flush_interval_s", flush_interval_s),
            ("max_buffer", max_buffer),
            ("retry_max_s", retry_max_s),
        ):
            if value <= 0:
                raise InvalidValue(f"{label} must be positive, not {value!r}")
        normalise_database_url(database_url, "the recorder's database_url")
        self.database_url = database_url
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_max_s = retry_max_s
        self._on_first_write = on_first_write
        self._writer: BatchWriter | None = None
        self._buffer = Buffer(max_buffer)
        lock = threading.Lock()
        # The recording path takes the lock itself (a C call) rather than
        # through a condition (a Python one): it runs twice per call.
        self._lock = lock
        self._wake = threading.Condition(lock)
        self._settled = threading.Condition(lock)
        self._flush_target = 0
        self._written = 0
        self._rejected = 0
        self._failures = 0
        self._closed = False
        self._delay = 0.0
        self._retry_at: float | None = None
        self._outage_since: float | None = None
        self._dropped_before_outage = 0
        self._warned_dropping = False
        self._thread = threading.Thread(target=self._run, name="pyfi-call-recorder", daemon=True)
        self._thread.start()

    # -- the recording path: memory only ---------------------------------------

    def record_call(self, update: CallUpdate) -> None:
        """Queue ``update``, merging it into any queued update of the same call.

        Raises
        ------
        ValueError
            ``started`` or ``finished`` is a naive datetime.
        """
        for stamp in (update.received, update.started, update.finished):
            if stamp is not None and stamp.tzinfo is None:
                raise ValueError(f"naive datetime {stamp!r}: pass a timezone-aware value")
        self.record_call_values(str(update.id), values_of(update))

    def record_call_values(self, call_id: str, values: dict[str, Any]) -> None:
        """:meth:`record_call` for a caller that has the changed columns as a dict already.

        The worker's path: a :class:`CallUpdate` per step, and reading its
        fields back, cost more than the rest of recording. ``values`` holds
        only :class:`CallUpdate` fields (ids as text, instants as seconds
        since the epoch); the recorder keeps the dict, so the caller must
        not reuse it.
        """
        with self._lock:
            if self._closed:
                dropped = self._buffer.discard()
            else:
                dropped = self._buffer.add_call(call_id, values)
                self._nudge()
        if dropped:
            self._warn_dropping()

    def record_event(
        self, call_id: uuid.UUID | str, name: EventName, note: str | None, at: datetime
    ) -> None:
        """Queue one lifecycle event of ``call_id`` that happened at ``at``.

        Raises
        ------
        ValueError
            ``at`` is a naive datetime.
        """
        if at.tzinfo is None:
            raise ValueError(f"naive datetime {at!r}: pass a timezone-aware value")
        with self._wake:
            if self._closed:
                dropped = self._buffer.discard()
            else:
                dropped = self._buffer.add_event(str(call_id), name, note, at)
                self._nudge()
        if dropped:
            self._warn_dropping()

    def _nudge(self) -> None:
        # Wake the writer only on the transitions it acts on, so most records
        # cost no notification: the first entry (start the interval) and a
        # full batch (write now).
        if self._buffer.waiting() in (1, self.batch_size):
            self._wake.notify()

    def _warn_dropping(self) -> None:
        # Once per episode; the count at the end of an outage tells the rest.
        with self._wake:
            if self._warned_dropping:
                return
            self._warned_dropping = True
        log.warning(
            "call recorder: memory full (max_buffer=%d) or recorder closed; "
            "dropping the oldest records",
            self._buffer.max_size,
        )

    # -- waiting and stopping --------------------------------------------------

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every record made before this call is written (or discarded).

        Returns
        -------
        bool
            True if all of it settled within ``timeout_s``; False if the
            database stayed away (the records stay buffered and will be written).
        """
        deadline = time.monotonic() + timeout_s
        with self._wake:
            target = self._buffer.seq
            self._flush_target = max(self._flush_target, target)
            self._wake.notify()
            while self._buffer.low_water() <= target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._settled.wait(remaining)
        return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush for up to ``timeout_s``, then stop the writer thread.

        Records still buffered after the timeout are lost (logged, and left in
        ``stats.pending``); ``record_*`` calls after this one count as dropped.

        Returns
        -------
        bool
            True if everything was written and the thread stopped.
        """
        deadline = time.monotonic() + timeout_s
        flushed = self.flush(timeout_s)
        with self._wake:
            self._closed = True
            self._wake.notify()
            unwritten = self._buffer.pending_records
        if unwritten:
            log.warning("call recorder: closing with %d records never written", unwritten)
        self._thread.join(max(deadline - time.monotonic(), 0.1))
        if self._thread.is_alive():  # stuck in a connect; it is a daemon, let it be
            return False
        if self._writer is not None:
            self._writer.close()
        return flushed

    @property
    def stats(self) -> RecorderStats:
        """A consistent snapshot of the counters."""
        with self._wake:
            buffer = self._buffer
            return RecorderStats(
                recorded=buffer.seq,
                written=self._written,
                pending=buffer.pending_records,
                buffered=len(buffer),
                dropped=buffer.dropped,
                rejected=self._rejected,
                failures=self._failures,
            )

    # -- the writer thread -----------------------------------------------------

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        while True:
            with self._wake:
                batch = self._next_batch(next_flush)
            if batch is None:
                return
            try:
                self._write_batch(batch)
            except Exception as exc:  # the writer must not die: keep the data, retry
                from pyfi.recorder.writer import is_transient

                if not is_transient(exc):
                    log.exception("call recorder: unexpected error while writing")
                self._on_failure(batch, exc)
            next_flush = time.monotonic() + self.flush_interval_s

    def _next_batch(self, next_flush: float) -> Batch | None:
        """Wait, lock held, until a batch is due; take it. None when closing."""
        buffer = self._buffer
        while not self._closed:
            now = time.monotonic()
            waiting = buffer.waiting()
            due: float | None
            if self._retry_at is not None:
                due = self._retry_at
            elif waiting >= self.batch_size or self._flush_target >= buffer.low_water():
                due = now
            else:
                due = next_flush if waiting else None
            if due is not None and now >= due:
                if waiting:
                    return buffer.take(self.batch_size)
                self._retry_at = None  # the bound dropped everything meanwhile
                continue
            self._wake.wait(None if due is None else due - now)
        return None

    def _connect(self) -> BatchWriter:
        # Built here, lazily, in the writer thread: building one may fail
        # while the storage is away, and that is an outage too.
        if self._writer is None:
            from pyfi.recorder.writer import open_writer

            self._writer = open_writer(self.database_url)
        return self._writer

    def _write_batch(self, batch: Batch) -> None:
        from pyfi.recorder.writer import describe, is_transient

        records = batch.records
        writer = self._connect()
        try:
            writer.write(batch.calls, batch.events)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning(
                "call recorder: the database refused a batch of %d records (%s); "
                "writing them one by one",
                batch.records,
                describe(exc),
            )
            self._write_each(writer, batch)
        with self._wake:
            self._written += self._buffer.finish(batch)
            resumed = self._end_outage(records)
        if resumed:
            log.info(*resumed)
        first, self._on_first_write = self._on_first_write, None
        if first is not None:
            try:
                first()
            except Exception:  # the batch is written: a hook must not have it rewritten
                log.exception("call recorder: the first-write hook failed")

    def _write_each(self, writer: BatchWriter, batch: Batch) -> None:
        """Write a refused batch one record per transaction, rejecting the bad ones.

        Each record leaves the batch once settled, so a transient error midway
        (re-raised) puts back only what is left.
        """
        while batch.calls:
            refusal = self._try_write(writer, batch.calls[:1], [])
            self._settle_first(batch, refusal, call=True)
        while batch.events:
            refusal = self._try_write(writer, [], batch.events[:1])
            self._settle_first(batch, refusal, call=False)

    def _try_write(
        self, writer: BatchWriter, calls: list[PendingCall], events: list[PendingEvent]
    ) -> Exception | None:
        """Write in a transaction of its own; the error if the database refuses the content."""
        from pyfi.recorder.writer import is_transient

        try:
            writer.write(calls, events)
        except Exception as exc:
            if is_transient(exc):
                raise
            return exc
        return None

    def _settle_first(self, batch: Batch, refusal: Exception | None, *, call: bool) -> None:
        with self._wake:
            records = self._buffer.settle_first(batch, call=call)
            if refusal is None:
                self._written += records
            else:
                self._rejected += records
            self._settled.notify_all()
        if refusal is not None:
            from pyfi.recorder.writer import describe

            log.warning(
                "call recorder: dropping a record the database refuses: %s", describe(refusal)
            )

    def _end_outage(self, records: int) -> tuple[object, ...] | None:
        """Reset the backoff after a good write (lock held); the log line if an outage ended."""
        self._delay = 0.0
        self._retry_at = None
        self._warned_dropping = False
        self._settled.notify_all()
        if self._outage_since is None:
            return None
        lasted = time.monotonic() - self._outage_since
        self._outage_since = None
        return (
            "call recorder: writing to %s again after %.1f s; %d records were buffered, %d dropped",
            mask_url(self.database_url),
            lasted,
            records + self._buffer.pending_records,  # this batch and what still waits
            self._buffer.dropped - self._dropped_before_outage,
        )

    def _on_failure(self, batch: Batch, exc: Exception) -> None:
        with self._wake:
            self._buffer.restore(batch)
            self._failures += 1
            self._delay = min(self.retry_max_s, self._delay * 2 or RETRY_INITIAL_S)
            self._retry_at = time.monotonic() + self._delay
            self._settled.notify_all()
            starting = self._outage_since is None
            if starting:
                self._outage_since = time.monotonic()
                self._dropped_before_outage = self._buffer.dropped
        if starting:
            from pyfi.recorder.writer import describe

            log.warning(
                "call recorder: cannot write to %s (%s); buffering records and retrying",
                mask_url(self.database_url),
                describe(exc),
            )
