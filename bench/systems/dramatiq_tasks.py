"""The Dramatiq actors the benchmark measures, as a Dramatiq user would write them.

The broker is a `RabbitmqBroker` on `PYFI_BENCH_TASKS_AMQP` with the `Results`
middleware (`RedisBackend`) and the `GroupCallbacks` middleware (its barriers
in Redis too), both on `PYFI_BENCH_TASKS_REDIS`; both are read at import. The
worker is `dramatiq bench.systems.dramatiq_tasks:broker`; the actors name the
broker explicitly rather than through `dramatiq.set_broker`.

Dramatiq's default middleware, less `Prometheus`: a metrics exporter that
forks a process of its own and listens on a TCP port, which neither Celery nor
pyfi runs by default and which Dramatiq 2 no longer enables (its author's
advice for 1.x is to pass the middleware list without it).

Choices where Dramatiq has no direct equivalent:

- W5 (a chord): Dramatiq's group callback gets no arguments, so the header's
  message ids go to `gather`, which reads their results from the backend.
- W6 (plugs): a `pipeline` of three actors. `on_success` callbacks are one
  level deep (the callback gets the message and the result, and cannot carry a
  further callback), so a pipeline is the closest thing to a wired chain.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import GroupCallbacks, Prometheus, default_middleware
from dramatiq.rate_limits.backends import RedisBackend as BarrierBackend
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from bench.systems import counter

try:
    AMQP_URL = os.environ[counter.AMQP_ENV]
    REDIS_URL = os.environ[counter.REDIS_ENV]
except KeyError as exc:
    raise RuntimeError(f"{exc.args[0]} is not set: start Dramatiq through DramatiqSystem") from exc

results = RedisBackend(url=REDIS_URL)
broker = RabbitmqBroker(
    url=AMQP_URL, middleware=[m() for m in default_middleware if m is not Prometheus]
)
# Results first: a header's result must be stored before its barrier is passed.
broker.add_middleware(Results(backend=results))
broker.add_middleware(GroupCallbacks(BarrierBackend(url=REDIS_URL)))


@dramatiq.actor(broker=broker, store_results=True)
def noop(x: int) -> int:
    """W1, W3 and the group members: return a small value."""
    return x


@dramatiq.actor(broker=broker)
def count(x: int, key: str) -> None:
    """W2: fire and forget; only the counter says it was processed."""
    counter.incr(REDIS_URL, key)


@dramatiq.actor(broker=broker, store_results=True)
def step(x: int) -> int:
    """W4: one stage of a pipeline."""
    return x + 1


@dramatiq.actor(broker=broker, store_results=True)
def gather(message_ids: list[str]) -> int:
    """W5: the group's completion callback; fetch the members' results and sum them."""
    members = [noop.message().copy(message_id=message_id) for message_id in message_ids]
    return sum(dramatiq.group(members, broker=broker).get_results())


@dramatiq.actor(broker=broker)
def hop1(x: int) -> int:
    """W6: the first stage; the pipeline feeds its result to `hop2`."""
    return x + 1


@dramatiq.actor(broker=broker)
def hop2(x: int) -> int:
    """W6: the second stage; the pipeline feeds its result to `hop3`."""
    return x + 1


@dramatiq.actor(broker=broker)
def hop3(x: int, key: str) -> None:
    """W6: the last stage, which counts."""
    counter.incr(REDIS_URL, key)
