"""Acknowledging a channel's messages in as few frames as their order allows.

Pool threads finish calls in any order; the consuming thread settles them. An
``ack`` with ``multiple`` set acknowledges every unacknowledged delivery up to
its tag, so a run of finished messages at the head of the channel costs one
frame instead of one each. A message whose predecessor is still running is
acknowledged on its own at once rather than held back: a held acknowledgement
would keep a prefetch slot busy for as long as a slow call runs.

Only AMQP honours ``multiple``: kombu's virtual transports (the embedded
filesystem broker) acknowledge the one tag given, so there every message is
acknowledged on its own (``batch=False``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol


class Verdict(StrEnum):
    """What becomes of a message once the worker is done with it (or not yet).

    Only ``ACK`` and ``REQUEUE`` reach the channel: a dead letter is
    published first and then acknowledged, and ``LATER`` says that the
    message is settled once its downstream messages are confirmed and its
    outcome stored (:mod:`pyfi.worker.pipeline`).
    """

    ACK = "ack"  # done: acknowledge
    REQUEUE = "requeue"  # not done: back to its queue, to run again
    DEAD_LETTER = "dead-letter"  # never to run: set aside with its reason, then acknowledged
    LATER = "later"  # settled by a later step of its call


ACK, REQUEUE = Verdict.ACK, Verdict.REQUEUE


class Delivery(Protocol):
    """What settling needs of a kombu message."""

    def ack(self, multiple: bool = False) -> None: ...

    def requeue(self) -> None: ...


class Settlement:
    """The unsettled deliveries of one channel, in the order they arrived.

    Deliveries are told apart by identity, not by tag: kombu's virtual
    transports tag a message when it is published, so the copies a fanout
    exchange makes of it arrive with the same tag.
    """

    def __init__(self, *, batch: bool) -> None:
        self._batch = batch
        self._order: deque[Delivery] = deque()

    def __len__(self) -> int:
        return len(self._order)

    def received(self, delivery: Delivery) -> None:
        """Track ``delivery`` until :meth:`settle` is given its outcome."""
        self._order.append(delivery)

    def settle(self, done: Sequence[tuple[Delivery, str]]) -> int:
        """Acknowledge or requeue the deliveries in ``done`` (delivery, action).

        Returns
        -------
        int
            How many acknowledgement frames were sent (requeues not counted).
        """
        outcomes = {id(delivery): (delivery, action) for delivery, action in done}
        frames = 0
        run: Delivery | None = None  # the last of a run of acks at the head
        while self._batch and self._order and id(self._order[0]) in outcomes:
            delivery, action = outcomes.pop(id(self._order.popleft()))
            if action == ACK:
                run = delivery
                continue
            if run is not None:
                run.ack(multiple=True)
                frames, run = frames + 1, None
            delivery.requeue()
        if run is not None:
            run.ack(multiple=True)
            frames += 1
        for delivery, action in outcomes.values():  # finished while an earlier one still runs
            self._order.remove(delivery)
            if action == ACK:
                delivery.ack()
                frames += 1
            else:
                delivery.requeue()
        return frames
