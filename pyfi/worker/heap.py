"""Keeping CPython's cycle collector off the objects a worker process starts with.

A worker's heap is mostly what starting built: modules, their classes and
functions, connections, the model it read: about 108,000 objects that live
as long as the process. Each full collection walks every one of them with
the interpreter's lock held, 90-120 ms on a two-core host during which no
call in the process moves. Full collections follow from objects promoted
to the oldest generation, and recording calls promotes some (a call's
record waits up to a batch interval in memory): two workers recording
100,000 calls paused that way four times, 365 ms in all, two of them in
their first 11,000 calls. Frozen, the same run's full collections took
1 ms in all.

:func:`freeze` moves everything alive into the permanent generation, which
no collection walks; the young generations still collect what calls leave
behind. It is called as each start-up step ends (consuming, the signature
record, the recorder's first write), since each imports modules of its
own; it costs three list splices. A reference cycle that is already
garbage when it is frozen, or becomes garbage later, is never collected:
what start-up left, and the calls in flight at those three moments; a few,
once.

Only a process that is a worker does this (``flow worker start``): the
cycle collector is the process's, not a library's, to tune.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("pyfi.worker")


def freeze(step: str) -> None:
    """Exempt every object alive now from future collections; ``step`` names what just ended."""
    gc.freeze()
    if log.isEnabledFor(logging.DEBUG):  # counting walks every frozen object
        log.debug("%s: %d objects exempt from garbage collection", step, gc.get_freeze_count())
