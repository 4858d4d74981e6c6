"""Write-behind recording of call lifecycles: ``Call`` rows and their ``Event`` rows.

Workers run calls far faster than a database accepts one transaction per state
change, and a worker must keep running calls while the database restarts. So
:meth:`CallRecorder.record_call` and :meth:`CallRecorder.record_event` only
append to memory under a lock, and one daemon thread writes what accumulated:

* Updates of the same call are merged while they wait (:mod:`.buffer`), so a
  call costs one row write per batch however many times its state changed.
* A batch is one transaction (:mod:`.writer`; on PostgreSQL over the
  recorder's own connection, :mod:`.postgres`): calls are upserted first
  (events have a foreign key to them), then events are inserted. Both
  statements are idempotent (``ON CONFLICT``), so a batch whose commit was
  lost with the connection can simply be written again.
* A database that cannot be reached keeps the batch in memory and is retried
  with exponential backoff (:mod:`.recorder`); new records keep arriving
  meanwhile. Memory is bounded by ``max_buffer``: past it the oldest events go
  first, calls' final states last, and every discarded record is counted.
* A batch the database refuses for its content (a constraint, a value too long)
  is retried row by row, so one bad record costs itself and nothing else.

Merge rules, in memory and in the database alike: a field an update leaves as
``None`` keeps its value; a final state (finished, failed, dead) never gives way
to a non-final one; ``attempt`` only grows; ``created`` is the first time the
call was seen.
"""

from __future__ import annotations

from pyfi.recorder.buffer import CallUpdate
from pyfi.recorder.recorder import CallRecorder, RecorderStats

__all__ = ["CallRecorder", "CallUpdate", "RecorderStats"]
