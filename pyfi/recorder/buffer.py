"""The recorder's memory: merged call updates and events, oldest first, bounded.

Nothing here locks or touches a database: :class:`~pyfi.recorder.CallRecorder`
holds its lock around every method, and the writer thread moves batches out
(:meth:`Buffer.take`) and back in when a write fails (:meth:`Buffer.restore`).
Every record gets a sequence number, so ``flush()`` can tell when everything
recorded before it has settled (:meth:`Buffer.low_water`).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from pyfi.db.enums import CallState, EventName

# How far into the buffer a full buffer looks for a non-final call to drop
# before it gives up and drops the oldest call, final or not. Bounded so the
# recording path stays O(1) even when every buffered call is final.
DROP_SCAN_LIMIT = 256

FINAL_STATES = tuple(state for state in CallState if state.is_final)
_FINAL = frozenset(FINAL_STATES)


@dataclass(frozen=True, slots=True)
class CallUpdate:
    """What changed about one call; ``None`` means "unchanged".

    The identity fields (``name``, ``tracking_id``, ``parent_id``, ``argument``,
    ``idempotency_key``, ``socket_id``) are needed once, by the update that
    creates the row; later updates carry only what changed. A field cannot be
    reset to NULL through an update. Ids are UUIDs or their text, as messages
    carry them.
    """

    id: uuid.UUID | str
    name: str | None = None
    socket_id: uuid.UUID | str | None = None
    tracking_id: uuid.UUID | str | None = None
    parent_id: uuid.UUID | str | None = None
    argument: str | None = None
    idempotency_key: str | None = None
    state: CallState | None = None
    attempt: int | None = None
    hostname: str | None = None
    received: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    error: str | None = None


UPDATE_FIELDS = tuple(field.name for field in fields(CallUpdate) if field.name != "id")


def values_of(update: CallUpdate) -> dict[str, Any]:
    """The columns ``update`` sets; instants as seconds since the epoch, as workers record them."""
    values = {}
    for name in UPDATE_FIELDS:
        value = getattr(update, name)
        if value is not None:
            values[name] = value.timestamp() if isinstance(value, datetime) else value
    return values


def merge(values: dict[str, Any], newer: dict[str, Any]) -> None:
    """Fold ``newer`` into ``values``: later fields win, except where a call would go back.

    A final state is not replaced by a non-final one (a stale "running" must
    not revive a finished call) and ``attempt`` never decreases.
    """
    for name, value in newer.items():
        if name == "state":
            if values.get("state") in _FINAL and value not in _FINAL:
                continue
        elif name == "attempt" and values.get("attempt", value) > value:
            continue
        values[name] = value


class PendingCall:
    """The merged, not yet written updates of one call."""

    __slots__ = ("call_id", "count", "created", "first_seq", "values")

    def __init__(self, call_id: str, values: dict[str, Any], seq: int) -> None:
        self.call_id = call_id
        self.values = values
        self.first_seq = seq
        self.count = 1  # records merged into this entry
        self.created = time.time()  # the first sighting (epoch seconds), kept by the upsert


class PendingEvent:
    """One event waiting to be written; its id is fixed at the first write attempt."""

    __slots__ = ("at", "call_id", "id", "name", "note", "seq")

    def __init__(
        self, seq: int, call_id: str, name: EventName, note: str | None, at: datetime
    ) -> None:
        self.seq = seq
        self.call_id = call_id
        self.name = name
        self.note = note
        self.at = at
        self.id: uuid.UUID | None = None


@dataclass
class Batch:
    """What the writer took out of the buffer for one transaction."""

    calls: list[PendingCall]
    events: list[PendingEvent]
    min_seq: int

    @property
    def records(self) -> int:
        """How many ``record_*`` calls the batch stands for."""
        return sum(entry.count for entry in self.calls) + len(self.events)

    @property
    def entries(self) -> int:
        """How many buffer entries (rows to write) the batch holds."""
        return len(self.calls) + len(self.events)

    def heads(self) -> int:
        """The oldest sequence number still in the batch (``sys.maxsize`` once empty)."""
        first = [entry.first_seq for entry in self.calls[:1]]
        first += [event.seq for event in self.events[:1]]
        return min(first, default=sys.maxsize)


class Buffer:
    """Records waiting to be written, oldest first; the caller provides the locking.

    Calls are keyed by id in first-seen order, so a later update merges into the
    waiting entry; events queue in arrival order. ``len()`` counts entries, the
    in-flight batch included: the quantity ``max_size`` bounds.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.calls: OrderedDict[str, PendingCall] = OrderedDict()
        self.events: deque[PendingEvent] = deque()
        self.inflight: Batch | None = None
        self.seq = 0  # records accepted so far, dropped ones included
        self.pending_records = 0
        self.dropped = 0

    def __len__(self) -> int:
        inflight = self.inflight.entries if self.inflight is not None else 0
        return len(self.calls) + len(self.events) + inflight

    def waiting(self) -> int:
        """Entries not yet taken by the writer."""
        return len(self.calls) + len(self.events)

    def add_call(self, call_id: str, values: dict[str, Any]) -> int:
        """Merge one update in; returns how many records were dropped to make room."""
        self.seq += 1
        self.pending_records += 1
        entry = self.calls.get(call_id)
        if entry is not None:
            merge(entry.values, values)
            entry.count += 1
            return 0
        self.calls[call_id] = PendingCall(call_id, values, self.seq)
        return self._enforce_bound()

    def add_event(self, call_id: str, name: EventName, note: str | None, at: datetime) -> int:
        """Queue one event; returns how many records were dropped to make room."""
        self.seq += 1
        self.pending_records += 1
        self.events.append(PendingEvent(self.seq, call_id, name, note, at))
        return self._enforce_bound()

    def discard(self) -> int:
        """Count a record that arrived too late to keep (after close)."""
        self.seq += 1
        self.dropped += 1
        return 1

    def _enforce_bound(self) -> int:
        dropped = 0
        # Only waiting entries can go; the in-flight batch belongs to the writer.
        while len(self) > self.max_size and (self.events or self.calls):
            dropped += self._drop_one()
        self.dropped += dropped
        self.pending_records -= dropped
        return dropped

    def _drop_one(self) -> int:
        # Events first: they are the cheapest loss. Then calls, non-final ones
        # before final ones, since a final state is the record users look for.
        if self.events:
            self.events.popleft()
            return 1
        victim: str | None = None
        for index, (call_id, entry) in enumerate(self.calls.items()):
            if index >= DROP_SCAN_LIMIT:
                break
            if entry.values.get("state") not in _FINAL:
                victim = call_id
                break
        if victim is None:
            victim = next(iter(self.calls))
        return self.calls.pop(victim).count

    def take(self, limit: int) -> Batch | None:
        """Move up to ``limit`` of the oldest entries, calls and events interleaved, in flight."""
        calls: list[PendingCall] = []
        events: list[PendingEvent] = []
        min_seq = self.low_water()
        beyond = self.seq + 1
        while len(calls) + len(events) < limit and (self.calls or self.events):
            call_seq = next(iter(self.calls.values())).first_seq if self.calls else beyond
            event_seq = self.events[0].seq if self.events else beyond
            if call_seq < event_seq:
                calls.append(self.calls.popitem(last=False)[1])
            else:
                events.append(self.events.popleft())
        if not calls and not events:
            return None
        self.inflight = Batch(calls, events, min_seq)
        return self.inflight

    def restore(self, batch: Batch) -> None:
        """Put a batch that could not be written back in front, merging newer updates into it."""
        self.inflight = None
        for entry in reversed(batch.calls):
            newer = self.calls.get(entry.call_id)
            if newer is not None:
                merge(entry.values, newer.values)
                entry.count += newer.count
            self.calls[entry.call_id] = entry
            self.calls.move_to_end(entry.call_id, last=False)
        self.events.extendleft(reversed(batch.events))

    def finish(self, batch: Batch) -> int:
        """End the flight of ``batch``, written in full; returns its record count."""
        self.inflight = None
        records = batch.records
        self.pending_records -= records
        return records

    def settle_first(self, batch: Batch, *, call: bool) -> int:
        """Remove the first call (or event) of ``batch``, written or rejected on its own.

        Returns how many records it stood for.
        """
        if call:
            records = batch.calls.pop(0).count
        else:
            batch.events.pop(0)
            records = 1
        batch.min_seq = batch.heads()
        self.pending_records -= records
        return records

    def low_water(self) -> int:
        """The sequence number of the oldest record not yet settled."""
        candidates = [self.seq + 1]
        if self.inflight is not None:
            candidates.append(self.inflight.min_seq)
        if self.calls:
            candidates.append(next(iter(self.calls.values())).first_seq)
        if self.events:
            candidates.append(self.events[0].seq)
        return min(candidates)
